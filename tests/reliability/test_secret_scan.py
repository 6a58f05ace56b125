"""Secret scan: after a full pipeline run, no secret value is anywhere it could be read back.

An org is set up through the API on a PostgreSQL warehouse whose role has a distinctive password, with its
dbt project cloned over HTTP from a server that only accepts a distinctive git token, and an Airbyte server
(the emulator) with a distinctive password. A pipeline (sync, git pull, dbt run, dbt test) runs on the
session's worker, its webhook is delivered with a distinctive secret, and the reconciler runs. Then the
warehouse password, git token, Airbyte password, webhook secret and proxy token must appear in none of:
the Django database dump (`manage.py dumpdata`), Prefect's deployments, flow runs (parameters, state
messages), logs, artifacts, block documents and automations (the webhook automation that
`manage.py setup_prefect_webhook` makes is set up first; all read through Prefect's REST API), every response of
the API, the webhook and the proxy seen during the test, the log records of Django and the proxy, the
Prefect server and worker log files, and the files left in the org's dbt directory.
Runs of the legacy block migration are scanned in test_secret_scan_migration.py.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import uuid
from io import StringIO
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg
import pytest
from django.core.management import call_command

from ddpui.prefect_client import get_proxy
from devtools.processes import free_port
from tests.conftest import PROXY_TEST_TOKEN
from tests.support.git_http import serve_git_with_token
from tests.support.orgsetup import make_sample_git_repo, setup_org_via_api
from tests.support.prefect_rest import prefect_client, prefect_request

from .conftest import RecordingClient, unique_email, wait_for_run

pytestmark = [pytest.mark.django_db, pytest.mark.prefect, pytest.mark.worker, pytest.mark.slow]

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture
def git_server(tmp_path):
    """(plain http URL of the sample dbt repository, token) — the URL is useless without the token."""
    bare = Path(urlsplit(make_sample_git_repo(tmp_path)).path)
    subprocess.run(["git", "update-server-info"], cwd=bare, check=True, capture_output=True)
    token = f"gittok{secrets.token_hex(12)}"
    with serve_git_with_token(bare.parent, token) as base_url:
        yield f"{base_url}/{bare.name}", token


@pytest.fixture
def pg_warehouse(pg_dsn):
    """A database owned by a new role with a distinctive password."""
    parts = urlsplit(pg_dsn)
    suffix = uuid.uuid4().hex[:8]
    config = {
        "host": parts.hostname,
        "port": parts.port or 5432,
        "database": f"scan_wh_{suffix}",
        "username": f"scan_{suffix}",
        "password": f"whpw{secrets.token_hex(12)}",
    }
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f"create role {config['username']} login password '{config['password']}'")
        admin.execute(f"create database {config['database']} owner {config['username']}")
    try:
        yield config
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(f"drop database if exists {config['database']} with (force)")
            admin.execute(f"drop role if exists {config['username']}")


def _prefect_documents(flow_run_ids: set[str]) -> list[str]:
    """Deployments, flow runs, their logs and artifacts, and block documents, as Prefect's REST API gives
    them to anyone who can reach it (no include_secrets)."""
    prefect = prefect_client(timeout=60)
    documents = []

    def everything(path: str, body: dict) -> list:
        found, offset = [], 0
        while True:
            page = prefect.post(path, json={**body, "offset": offset, "limit": 200}).raise_for_status().json()
            found.extend(page)
            if len(page) < 200:
                return found
            offset += len(page)

    documents.append(json.dumps(everything("/deployments/filter", {})))
    runs = everything("/flow_runs/filter", {"flow_runs": {"id": {"any_": sorted(flow_run_ids)}}})
    assert {run["id"] for run in runs} == flow_run_ids
    documents.append(json.dumps(runs))
    log_filter = {"logs": {"flow_run_id": {"any_": sorted(flow_run_ids)}}}
    logs = everything("/logs/filter", log_filter)
    assert logs, "the runs left no logs to scan"
    documents.append(json.dumps(logs))
    documents.append(json.dumps(everything("/artifacts/filter", {"flow_runs": {"id": {"any_": sorted(flow_run_ids)}}})))
    documents.append(json.dumps(everything("/block_documents/filter", {})))
    return documents


def _files(directory: Path) -> list[tuple[str, bytes]]:
    return [(str(path), path.read_bytes()) for path in sorted(directory.rglob("*")) if path.is_file()]


def test_no_secret_survives_a_full_pipeline_run(
    settings, live_services, prefect_worker, git_server, pg_warehouse, airbyte_with_password, record_httpx, caplog
):
    caplog.set_level(logging.DEBUG)
    settings.PREFECT_WORK_POOL = prefect_worker.pool
    settings.WEBHOOK_SECRET = f"whsecret{secrets.token_hex(12)}"
    repo_url, git_token = git_server
    proxy_bodies = record_httpx([settings.PROXY_URL])
    client = RecordingClient()
    # the Prefect automation that would post state changes to us, holding the webhook secret (nothing
    # listens on its URL here: Prefect's attempts to call it end in the server's log, which is scanned)
    notifications = f"scan-notifications-{uuid.uuid4().hex[:8]}"
    webhook_url = f"http://127.0.0.1:{free_port()}/webhooks/v1/notification/"
    call_command("setup_prefect_webhook", "--name", notifications, "--url", webhook_url, stdout=StringIO())

    setup = setup_org_via_api(
        client,
        email=unique_email("scan"),
        password="scan-user-password",
        org_name="Secret Scan Org",
        warehouse_path_or_pg=pg_warehouse,
        git_repo_url=repo_url,
        git_access_token=git_token,
    )
    headers, tasks = setup["headers"], setup["transform_tasks"]
    body = {
        "name": "scanned",
        "connections": [{"id": setup["connection_id"], "seq": 0}],
        "transformTasks": [
            {"uuid": tasks[slug], "seq": i + 1} for i, slug in enumerate(["git-pull", "dbt-run", "dbt-test"])
        ],
    }
    created = client.post("/api/prefect/v1/flows/", body, "application/json", **headers)
    assert created.status_code == 200, created.content
    pipeline_id = created.json()["deploymentId"]
    run_id = client.post(f"/api/prefect/v1/flows/{pipeline_id}/flow_run/", **headers).json()["flow_run_id"]
    run = wait_for_run(run_id, TERMINAL, timeout=240)
    assert run["state"]["type"] == "COMPLETED", run["state"]

    webhook = {"HTTP_X_DDPUI_WEBHOOK_SECRET": settings.WEBHOOK_SECRET}
    for _ in range(2):  # a duplicate too
        delivered = client.post("/webhooks/v1/notification/", {"flow_run_id": run_id}, "application/json", **webhook)
        assert delivered.status_code == 200, delivered.content
    call_command("reconcile_locks", stdout=StringIO())
    for path in (
        f"/api/prefect/flow_runs/{run_id}",
        f"/api/prefect/flow_runs/{run_id}/logs",
        f"/api/prefect/v1/flows/{pipeline_id}/flow_runs/history",
        f"/api/prefect/v1/flows/{pipeline_id}",
        "/api/prefect/v1/flows/",
        "/api/airbyte/v1/connections",
        "/api/v1/organizations/warehouses",
        "/api/dbt/dbt_workspace",
        "/api/v1/audit",
    ):
        assert client.get(path, **headers).status_code == 200, path
    assert client.get(f"/api/prefect/flow_runs/{run_id}/logs", **headers).json()["logs"]["logs"]

    secret_values = {
        "warehouse password": pg_warehouse["password"],
        "git token": git_token,
        "git token (URL-encoded)": quote(git_token, safe=""),
        "Airbyte password": airbyte_with_password,
        "webhook secret": settings.WEBHOOK_SECRET,
        "proxy token": PROXY_TEST_TOKEN,
    }
    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    automations = prefect_request("POST", "automations/filter", json={})
    get_proxy().flow_run_notifications(notifications).delete()
    prefect_home = Path(os.environ["PREFECT_HOME"])
    places: list[tuple[str, str]] = [("dumpdata", dump.getvalue())]
    places += [(f"Prefect REST document {i}", text) for i, text in enumerate(_prefect_documents({run_id}))]
    places.append(("Prefect automations", automations.raise_for_status().text))
    places += [(f"API response {i}", body.decode(errors="replace")) for i, body in enumerate(client.bodies)]
    places += [(f"proxy response {i}", body.decode(errors="replace")) for i, body in enumerate(proxy_bodies.bodies)]
    places.append(("Django and proxy log records", caplog.text))
    places += [(name, data.decode(errors="replace")) for name, data in _files(prefect_home) if name.endswith(".log")]
    org_dir = Path(settings.CLIENT_DBT_ROOT) / setup["org_slug"]
    places += [(name, data.decode(errors="replace")) for name, data in _files(org_dir)]

    assert len(client.bodies) > 20 and len(proxy_bodies.bodies) > 10, "too little traffic was recorded"
    assert any("prefect-worker" in name for name, _ in places), "the worker's log file was not scanned"
    hits = [f"{what} in {where}" for where, text in places for what, value in secret_values.items() if value in text]
    assert not hits, "secrets found:\n" + "\n".join(hits)
