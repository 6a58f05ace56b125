"""Real runs on the session's worker: a legacy deployment works, keeps working through phases 1 and 2 (legacy flow,
old + new parameters), and after the entrypoint switch gives the same warehouse result through the new flow."""

from __future__ import annotations

import time

import duckdb
import pytest

from ddpcontract import proxy_api as api
from ddpui.prefect_client import get_proxy

pytestmark = [pytest.mark.django_db, pytest.mark.prefect, pytest.mark.worker]

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def start(deployment_id: str):
    return get_proxy().deployment(deployment_id).create_run()


def wait(run, timeout: float = 300) -> api.FlowRun:
    deadline = time.monotonic() + timeout
    while True:
        state = run.state()
        if state.state_type in TERMINAL:
            return run.state(include_task_results=True)
        assert time.monotonic() < deadline, f"run {run.id} still {state.state_name} after {timeout}s"
        time.sleep(0.3)


def customer_orders(path) -> list[tuple]:
    connection = duckdb.connect(str(path), read_only=True)
    try:
        return connection.execute("select * from analytics.customer_orders order by customer_id").fetchall()
    finally:
        connection.close()


def empty_the_warehouse(path) -> None:
    connection = duckdb.connect(str(path))
    try:
        connection.execute("drop schema if exists analytics cascade")
        connection.execute("drop schema if exists airbyte_raw cascade")
    finally:
        connection.close()


def test_a_legacy_deployment_gives_the_same_warehouse_result_through_the_new_flow(legacy, commands, prefect_worker):
    install, other = legacy
    orders = install.deployments["Orders hourly"]
    # meanwhile the other org's manual sync runs after phase 1: still the legacy flow, now given old + new parameters
    commands.migrate_ok("--phase", "1", "--org", other.slug)
    legacy_run, other_sync = start(orders), start(other.deployments["Sample data copy"])

    first = wait(legacy_run)
    assert first.state_type == "COMPLETED", first.state_message
    assert [result["slug"] for result in first.task_results] == [
        f"{install.slug}-sample-data-connection",
        f"{install.slug}-git-pull",
        f"{install.slug}-ddpui-dev-dbt-run-orders",
    ]
    legacy_rows = customer_orders(install.warehouse_path)
    assert len(legacy_rows) == 20
    synced = wait(other_sync)
    assert synced.state_type == "COMPLETED", synced.state_message
    assert [result["slug"] for result in synced.task_results] == [f"{other.slug}-sample-data-copy-connection"]

    for step in (["--phase", "1"], ["--phase", "2"], ["--switch-entrypoint"]):
        commands.migrate_ok(*step, "--org", install.slug)
    empty_the_warehouse(install.warehouse_path)

    second = wait(start(orders))
    assert second.state_type == "COMPLETED", second.state_message
    assert [(result["slug"], result["status"]) for result in second.task_results] == [
        ("airbyte-sync", "success"),
        ("git-pull", "success"),
        ("dbt-run", "success"),
    ]
    assert all(result["orgtask_uuid"] for result in second.task_results)  # the new flow ran the tasks
    assert customer_orders(install.warehouse_path) == legacy_rows
