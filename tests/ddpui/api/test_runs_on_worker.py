"""An org set up through the API really runs: its connection's manual deployment syncs into the DuckDB
warehouse, and one-off git and dbt task runs (through the proxy's ad-hoc route) build the dbt models
with the profile the warehouse wrote. Needs the session's Prefect worker."""

from __future__ import annotations

import time

import duckdb
import pytest

from ddpcontract import proxy_api as api
from ddpui.models import TaskLock
from ddpui.prefect_client import get_proxy
from tests.ddpui.api.helpers import unique
from tests.support.orgsetup import SOURCE_SCHEMA, make_sample_git_repo, setup_org_via_api

pytestmark = [pytest.mark.django_db, pytest.mark.prefect, pytest.mark.worker]

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def wait_for(flow_run_id: str, timeout: float = 180) -> api.FlowRun:
    deadline = time.monotonic() + timeout
    while True:
        run = get_proxy().flow_run(flow_run_id).state()
        if run.state_type in TERMINAL:
            return run
        assert time.monotonic() < deadline, f"flow run {flow_run_id} still {run.state_name}"
        time.sleep(0.5)


def tables(path, schema: str) -> set[str]:
    connection = duckdb.connect(str(path), read_only=True)
    try:
        rows = connection.execute(
            "select table_name from information_schema.tables where table_schema = ?", [schema]
        ).fetchall()
    finally:
        connection.close()
    return {row[0] for row in rows}


def test_connection_and_transform_tasks_run_on_a_worker(api, live, prefect_worker, tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    setup = setup_org_via_api(
        api.client,
        email=f"runner-{unique('u').split()[1]}@example.org",
        password="runner-password",
        org_name=unique("Runner Org"),
        warehouse_path_or_pg=warehouse,
        git_repo_url=make_sample_git_repo(tmp_path),
    )
    headers = setup["headers"]

    def run_task(slug: str) -> str:
        uuid = setup["transform_tasks"][slug]
        response = api.post(f"/api/prefect/tasks/{uuid}/run/", headers=headers)
        assert response.status_code == 200, response.content
        flow_run_id = response.json()["flow_run_id"]
        # the lock holds until the run's end is reported (webhook / reconciler), so a second start is refused
        assert TaskLock.objects.get(orgtask__uuid=uuid).flow_run_id == flow_run_id
        assert api.post(f"/api/prefect/tasks/{uuid}/run/", headers=headers).status_code == 409
        return flow_run_id

    # the sync and the git pull are independent: the worker runs them side by side
    sync_run = get_proxy().deployment(setup["deployment_id"]).create_run().id
    pull_run = run_task("git-pull")
    for flow_run_id in (sync_run, pull_run):
        run = wait_for(flow_run_id)
        assert run.state_type == "COMPLETED", run.state_message
    assert {"customers", "orders"} <= tables(warehouse, SOURCE_SCHEMA)

    run = wait_for(run_task("dbt-run"))
    assert run.state_type == "COMPLETED", run.state_message
    assert {"customer_orders", "daily_revenue"} <= tables(warehouse, "analytics")
