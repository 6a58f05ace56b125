"""Alerts from real runs on the session's worker, for an org set up through the API: a pipeline whose dbt test
fails (pushed to the org's repository), a sync whose source password was changed behind Airbyte's back, and a
connection whose data went stale. Each alert arrives once, by e-mail and on the org's webhook, in words a
programme officer can act on; the connection carries its last successful sync and staleness."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.core import mail
from django.db.models import F
from django.test import Client
from django.utils import timezone
from psycopg.conninfo import conninfo_to_dict

from ddpui.models import Alert, ConnectionFreshness, PrefectFlowRun
from ddpui.prefect_client import get_proxy
from ddpui.services.alerts import alerts_check
from devtools.airbyte_emulator import POSTGRES_SOURCE_DEFINITION_ID
from tests.support.orgsetup import GIT_IDENTITY, make_sample_git_repo, setup_org_via_api
from tests.support.webhook_capture import WebhookCapture

from .conftest import notify

pytestmark = [pytest.mark.django_db, pytest.mark.prefect, pytest.mark.worker]

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
FAILING_TEST = """-- every order must have been reviewed before it reaches the reports (none is in the sample data)
select order_id from {{ ref('stg_orders') }} where order_id is not null
"""


def wait_for(flow_run_id: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while True:
        run = get_proxy().flow_run(flow_run_id).state()
        if run.state_type in TERMINAL:
            return run
        assert time.monotonic() < deadline, f"flow run {flow_run_id} still {run.state_name}"
        time.sleep(0.5)


def call(method: str, path: str, headers: dict, body=None) -> dict | list:
    client = Client()
    response = (
        getattr(client, method)(path, **headers)
        if body is None
        else getattr(client, method)(path, body, content_type="application/json", **headers)
    )
    assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.content[:400]}"
    return response.json()


def push_failing_test(tmp_path) -> None:
    author = tmp_path / "sample-dbt-author"  # the clone make_sample_git_repo pushed from
    (author / "tests" / "assert_every_order_reviewed.sql").write_text(FAILING_TEST)
    env = {**os.environ, **GIT_IDENTITY}
    for args in (
        ["add", "-A"],
        ["commit", "-q", "-m", "a data test"],
        ["push", "-q", str(tmp_path / "sample-dbt.git"), "main"],
    ):
        subprocess.run(["git", *args], cwd=author, env=env, check=True, capture_output=True)


@pytest.fixture
def survey_database(pg_dsn):
    """A PostgreSQL schema with survey responses, readable by a role of its own: (source config, admin conn)."""
    params = conninfo_to_dict(pg_dsn)
    suffix = uuid.uuid4().hex[:8]
    role, schema = f"survey_{suffix}", f"survey_src_{suffix}"
    admin = psycopg.connect(pg_dsn, autocommit=True)
    admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'survey-pw-1'")
    admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {role}")
    admin.execute(f"CREATE TABLE {schema}.responses (id serial PRIMARY KEY, village text, households integer)")
    admin.execute(f"INSERT INTO {schema}.responses (village, households) VALUES ('Kalwa', 41), ('Pimpri', 17)")
    admin.execute(f"ALTER TABLE {schema}.responses OWNER TO {role}")
    config = {
        "host": params.get("host", "127.0.0.1"),
        "port": int(params.get("port", 5432)),
        "database": params.get("dbname", "postgres"),
        "schemas": [schema],
        "username": role,
        "password": "survey-pw-1",
        "ssl_mode": {"mode": "disable"},
        "replication_method": {"method": "Standard"},
    }
    try:
        yield config, admin, role
    finally:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


def test_alerts_from_real_runs(
    alerting, prefect_worker, survey_database, tmp_path, django_capture_on_commit_callbacks, alert_samples
):
    alerting.PREFECT_WORK_POOL = prefect_worker.pool
    org_name = f"Alerts Org {uuid.uuid4().hex[:6]}"
    setup = setup_org_via_api(
        Client(),
        email=f"officer-{uuid.uuid4().hex[:6]}@example.org",
        password="officer-password",
        org_name=org_name,
        warehouse_path_or_pg=tmp_path / "warehouse.duckdb",
        git_repo_url=make_sample_git_repo(tmp_path),
        connection_name="Sample orders",
    )
    headers, manager_email = setup["headers"], None
    manager_email = call("get", "/api/v1/currentuser", headers)["email"]
    with WebhookCapture() as hook:
        call("put", "/api/v1/alerts/channels/webhook", headers, {"url": hook.url})

        # 1. dbt tests fail in a pipeline (a data test pushed to the org's repository)
        push_failing_test(tmp_path)
        tasks = setup["transform_tasks"]
        pipeline = call(
            "post",
            "/api/prefect/v1/flows/",
            headers,
            {
                "name": "Nightly",
                "connections": [{"id": setup["connection_id"], "seq": 0}],
                "transformTasks": [
                    {"uuid": tasks[slug], "seq": seq} for seq, slug in enumerate(["git-pull", "dbt-run", "dbt-test"], 1)
                ],
                "cron": None,
            },
        )
        run_id = call("post", f"/api/prefect/v1/flows/{pipeline['deploymentId']}/flow_run/", headers)["flow_run_id"]

        # meanwhile, a sync that will fail: the source's password was changed in its database, not in Airbyte
        config, admin, role = survey_database
        source = call(
            "post",
            "/api/airbyte/sources/",
            headers,
            {"name": "Survey database", "sourceDefId": POSTGRES_SOURCE_DEFINITION_ID, "config": config},
        )
        survey = call(
            "post",
            "/api/airbyte/v1/connections/",
            headers,
            {"name": "Survey responses", "sourceId": source["sourceId"]},
        )
        admin.execute(f"ALTER ROLE {role} PASSWORD 'survey-pw-2'")
        sync_run = call("post", f"/api/prefect/v1/flows/{survey['deploymentId']}/flow_run/", headers)["flow_run_id"]

        ended = wait_for(run_id)
        assert (ended.state_type, ended.state_name) == ("COMPLETED", "DBT_TEST_FAILED"), ended.state_message
        with django_capture_on_commit_callbacks(execute=True):
            for _ in range(2):  # delivered twice: alerted once
                assert notify(run_id).status_code == 200
        tests_mail = [message for message in mail.outbox if "dbt tests failed" in message.subject]
        tests_hook = hook.wait_for(lambda request: "found problems" in request.json()["text"], timeout=10)
        # the run's last log lines reached Prefect before its final state: the alert's tail holds dbt's verdict
        # on the failing test and its summary (it used to stop in the middle of dbt's output)
        tail = tests_mail[0].body.split("Last log lines:", 1)[1].split("\n\nThe run in", 1)[0]
        assert "Failure in test assert_every_order_reviewed" in tail, tail
        assert "Done. PASS=16 WARN=0 ERROR=1" in tail, tail

        # the sync of that run is the connection's last successful sync; no limit, so never stale
        connections = {c["name"]: c for c in call("get", "/api/airbyte/v1/connections", headers)}
        synced = connections["Sample orders"]
        record = PrefectFlowRun.objects.get(flow_run_id=run_id)
        sync_result = next(r for r in record.task_results if r["slug"] == "airbyte-sync")
        assert sync_result["status"] == "success"
        assert synced["lastSuccessfulSyncAt"] is not None and synced["isStale"] is False
        assert synced["freshnessLimitHours"] is None

        # 2. a sync fails (it ran beside the pipeline's run: the worker takes both at once)
        assert wait_for(sync_run).state_type == "FAILED"
        with django_capture_on_commit_callbacks(execute=True):
            assert notify(sync_run).status_code == 200
        sync_mail = [message for message in mail.outbox if "Survey responses" in message.subject]
        sync_hook = hook.wait_for(
            lambda request: "The sync of 'Survey responses' failed" in request.json()["text"], timeout=10
        )

        # 3. a connection goes stale: a one-hour limit, and its last sync two hours old
        limited = call(
            "put", f"/api/airbyte/v1/connections/{setup['connection_id']}/update", headers, {"freshnessLimitHours": 1}
        )
        assert (limited["freshnessLimitHours"], limited["isStale"]) == (1, False)
        call("put", "/api/v1/alerts/preferences", headers, {"email": {"connection-stale": True}})
        ConnectionFreshness.objects.filter(sync_task__connection_id=setup["connection_id"]).update(
            last_successful_sync_at=F("last_successful_sync_at") - timedelta(hours=2),
            stale_after=F("stale_after") - timedelta(hours=2),
        )
        stale = call("get", f"/api/airbyte/v1/connections/{setup['connection_id']}", headers)
        assert stale["isStale"] is True and stale["lastSuccessfulSyncAt"] is not None
        with django_capture_on_commit_callbacks(execute=True):
            raised = alerts_check()  # what the reconciler loop runs after each pass
            # the same episode hours later: no new alert (its deliveries, due, are sent by this pass or by the
            # first attempt after the commit, whichever claims them first: once)
            again = alerts_check(now=timezone.now() + timedelta(hours=5))
        assert any("is stale: alert raised" in line for line in raised)
        assert not any("stale" in line for line in again)
        stale_mail = [message for message in mail.outbox if "is stale" in message.subject]
        stale_hook = hook.wait_for(lambda request: "is stale" in request.json()["text"], timeout=10)
        posts = [request.json()["text"].split("\n", 1)[0] for request in hook.requests]

    assert len(posts) == 3  # one per event
    assert Alert.objects.filter(org__slug=setup["org_slug"]).count() == 3

    assert len(tests_mail) == 1 and tests_mail[0].to == [manager_email]
    body = tests_mail[0].body
    assert tests_mail[0].subject == f"[ddpui] {org_name}: dbt tests failed in the pipeline 'Nightly'"
    assert body.startswith(
        "The data checks (dbt tests) of the pipeline 'Nightly' found problems: 1 test failed in the data of stg_orders."
    )
    assert "- assert_every_order_reviewed (on stg_orders): Got " in body and "Last log lines:" in body
    assert f"/admin/ddpui/prefectflowrun/{record.pk}/change/" in body
    alert_samples.keep("dbt-test-failed", email=tests_mail[0], webhook=tests_hook.json())

    assert len(sync_mail) == 1
    assert sync_mail[0].subject == f"[ddpui] {org_name}: The sync of 'Survey responses' failed"
    assert sync_mail[0].body.startswith(
        "The sync of 'Survey responses' failed: Airbyte says the source password is wrong."
    )
    assert f'password authentication failed for user "{role}"' in sync_mail[0].body
    assert "survey-pw" not in sync_mail[0].body and "survey-pw" not in str(sync_hook.json())
    alert_samples.keep("run-failed-sync", email=sync_mail[0], webhook=sync_hook.json())

    assert len(stale_mail) == 1
    assert stale_mail[0].subject == f"[ddpui] {org_name}: The data of 'Sample orders' is stale"
    assert "longer than its freshness limit of 1 hour." in stale_mail[0].body
    alert_samples.keep("connection-stale", email=stale_mail[0], webhook=stale_hook.json())
