"""The session's Prefect server runs on PostgreSQL in the PostgreSQL pass (the production layout) and on
its embedded SQLite otherwise; either way a test's direct call to it waits out a busy moment."""

from __future__ import annotations

import os
import uuid

import pytest
from django.db import connection

from tests.support.prefect_rest import prefect_request

pytestmark = [pytest.mark.prefect, pytest.mark.postgres_pass]


def test_prefect_server_database_follows_django(prefect_server):
    flow = prefect_request("POST", "flows/", json={"name": f"db-check-{uuid.uuid4().hex[:8]}"}).json()
    dsn = os.environ.get("DDPUI_TEST_PG_DSN", "")
    if connection.vendor == "postgresql" and dsn and os.environ.get("DDPUI_TEST_PREFECT_DB") != "sqlite":
        import psycopg

        database = dsn.rsplit("/", 1)[0] + f"/prefect_test_{os.getpid()}"
        with psycopg.connect(database) as prefect_db:
            assert prefect_db.execute("select count(*) from flow where id = %s", [flow["id"]]).fetchone() == (1,)
    else:
        assert (prefect_server.home / "prefect.db").exists()
