"""Fixtures for the API tests: the real proxy (against the session's Prefect server) and the Airbyte emulator.

`api` wraps the Django test client with JSON helpers; `prefect` reads Prefect's own API so tests can
check that no block or deployment was left behind; `new_org` makes a user and an org through the API.
"""

from __future__ import annotations

import os
import uuid

import pytest

from ddpui.models import Org, OrgUser
from tests.ddpui.api.helpers import (
    Api,
    OrgHandle,
    Prefect,
    add_connection,
    add_dbt_workspace,
    add_source,
    add_transform_tasks,
    add_warehouse,
    unique,
)
from tests.factories import make_user, token_for
from tests.support.orgsetup import SOURCE_SCHEMA, make_sample_git_repo


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.fixture(scope="session")
def prefect(prefect_server) -> Prefect:
    return Prefect(os.environ["PREFECT_API_URL"])


@pytest.fixture
def live(live_services):
    return live_services


@pytest.fixture
def emulator(live):
    return live["airbyte"]


@pytest.fixture
def new_org(api, live):
    """new_org(role=...) -> an org made through the API by its account manager, plus (for other roles) a
    second user of that org holding `role`."""

    def make(name: str | None = None, role: str = "account-manager") -> OrgHandle:
        owner = make_user()
        response = api.post(
            "/api/v1/organizations/",
            {"name": name or unique("Org")},
            headers={"HTTP_AUTHORIZATION": f"Bearer {token_for(owner)}"},
        )
        assert response.status_code == 200, response.content
        body = response.json()
        user = owner
        if role != "account-manager":
            user = make_user()
            OrgUser.objects.create(user=user, org=Org.objects.get(slug=body["slug"]), role=role)
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token_for(user)}", "HTTP_X_DALGO_ORG": body["slug"]}
        return OrgHandle(slug=body["slug"], name=body["name"], headers=headers, user=user)

    return make


@pytest.fixture
def repo_url(tmp_path) -> str:
    return make_sample_git_repo(tmp_path)


@pytest.fixture
def ready_org(api, new_org, tmp_path, repo_url):
    """An org with warehouse, source, one connection, dbt workspace and transform tasks."""
    org = new_org()
    warehouse = add_warehouse(api, org, tmp_path)
    source_id = add_source(api, org)
    connection = add_connection(api, org, source_id)
    add_dbt_workspace(api, org, repo_url)
    tasks = add_transform_tasks(api, org)
    return {
        "org": org,
        "warehouse": warehouse,
        "source_id": source_id,
        "connection": connection,
        "tasks": tasks,
    }


@pytest.fixture
def pg_like_config() -> dict:
    """A PostgreSQL destination configuration with a distinctive password (so a leak would be visible).
    The emulator only connects on a check, so no server is needed to create the destination."""
    return {
        "host": "127.0.0.1",
        "port": 5432,
        "database": "warehouse",
        "username": "loader",
        "password": f"pw-{uuid.uuid4().hex}",
        "schema": SOURCE_SCHEMA,
    }
