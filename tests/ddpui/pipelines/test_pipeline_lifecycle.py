"""A pipeline's whole life through the API, on a real worker: create → run → Completed, the dbt output in
the warehouse, and the run with its per-task results in the history."""

import time

import duckdb
import pytest
from django.test import Client

from ddpui.models import TaskLock
from tests.support.orgsetup import make_sample_git_repo, setup_org_via_api

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.worker]


@pytest.fixture(autouse=True)
def idle_work_pool(settings, live_services, prefect_worker):
    """Overrides the package's idle pool: this test's runs must reach the worker."""
    settings.PREFECT_WORK_POOL = prefect_worker.pool


def test_create_run_complete_and_history(live_services, tmp_path):
    client = Client()
    warehouse = tmp_path / "warehouse.duckdb"
    org = setup_org_via_api(
        client,
        email="lifecycle@example.org",
        password="lifecycle-pass-1",
        org_name="Lifecycle Org",
        warehouse_path_or_pg=warehouse,
        git_repo_url=make_sample_git_repo(tmp_path),
    )
    headers = org["headers"]
    tasks = org["transform_tasks"]
    body = {
        "name": "nightly",
        "connections": [{"id": org["connection_id"], "seq": 0}],
        # git-pull goes first whatever its seq; dbt tasks follow by seq
        "transformTasks": [
            {"uuid": tasks["dbt-test"], "seq": 5},
            {"uuid": tasks["git-pull"], "seq": 9},
            {"uuid": tasks["dbt-run"], "seq": 2},
        ],
        "cron": "0 2 * * *",
    }
    created = client.post("/api/prefect/v1/flows/", body, content_type="application/json", **headers)
    assert created.status_code == 200, created.content
    deployment_id = created.json()["deploymentId"]

    started = client.post(f"/api/prefect/v1/flows/{deployment_id}/flow_run/", **headers)
    assert started.status_code == 200, started.content
    run_id = started.json()["flow_run_id"]
    deadline = time.monotonic() + 240
    while True:
        run = client.get(f"/api/prefect/flow_runs/{run_id}", **headers).json()
        if run["stateType"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            break
        assert time.monotonic() < deadline, f"run still {run['stateType']}"
        time.sleep(0.3)
    assert run["stateType"] == "COMPLETED", run["stateMessage"]
    assert not TaskLock.objects.exists()  # reading the terminal state released the locks

    with duckdb.connect(str(warehouse), read_only=True) as db:
        tables = {row[0] for row in db.execute("select table_name from information_schema.tables").fetchall()}
        assert {"customer_orders", "daily_revenue"} <= tables
        assert db.execute("select count(*) from analytics.customer_orders").fetchone()[0] > 0

    history = client.get(f"/api/prefect/v1/flows/{deployment_id}/flow_runs/history?limit=5", **headers).json()
    assert [h["flowRunId"] for h in history] == [run_id]
    results = {r["slug"]: r for r in history[0]["taskResults"]}
    assert [r["slug"] for r in history[0]["taskResults"]] == ["airbyte-sync", "git-pull", "dbt-run", "dbt-test"]
    assert all(r["status"] == "success" for r in results.values())
    assert results["airbyte-sync"]["records_synced"] > 0
    assert {n["unique_id"].split(".")[-1] for n in results["dbt-run"]["nodes"]} >= {"customer_orders", "daily_revenue"}

    logs = client.get(f"/api/prefect/flow_runs/{run_id}/logs?offset=0", **headers).json()["logs"]
    assert logs["logs"] and any("dbt" in line["message"] for line in logs["logs"])
    listed = client.get("/api/prefect/v1/flows/", **headers).json()
    assert listed[0]["lastRun"]["state_type"] == "COMPLETED" and listed[0]["lock"] is None
