"""Cancelling a running flow run (as Prefect's UI or the proxy do: the run goes Cancelling) stops what its
task started: the Airbyte job is cancelled in Airbyte, the process group of a shell or dbt command is killed,
and the run ends Cancelled with the task results saying which task was stopped. Real runs on the worker."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.flows.conftest import process_alive

pytestmark = [pytest.mark.prefect, pytest.mark.worker]

SLOW_MODEL = """
import os
import time


def model(dbt, session):
    dbt.config(materialized="table")
    with open({pid_file!r}, "w") as pid_file:
        pid_file.write(str(os.getpid()))
    time.sleep(600)
    return session.sql("select 1 as finished")
"""


def wait_until(condition, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.2)
    return value


def read_pid(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text.isdigit() else None


@pytest.fixture
def endless_syncs(slow_airbyte):
    slow_airbyte.server.configure(sync_seconds=3600)
    yield slow_airbyte
    slow_airbyte.server.configure(sync_seconds=60)


def test_cancelling_stops_the_airbyte_job_the_shell_commands_and_dbt(
    flow_runs, endless_syncs, tasks, dbt_repo, duckdb_warehouse, save_secret, tmp_path
):
    slow_airbyte = endless_syncs
    connection_id = slow_airbyte.duckdb_connection(tmp_path / "slow.duckdb")
    shell_pid_file, dbt_pid_file = tmp_path / "shell.pid", tmp_path / "dbt.pid"
    (dbt_repo.work / "models" / "slow_model.py").write_text(SLOW_MODEL.format(pid_file=str(dbt_pid_file)))
    profile_block = save_secret("dbt-profile", duckdb_warehouse.profile())
    after = tasks.shell(1, "after", [f"touch {tmp_path / 'after'}"])
    configs = {
        "airbyte": [tasks.airbyte(0, connection_id, block=slow_airbyte.block_name, timeout=600), after],
        # the command's child (sleep) must die with it: the whole process group is killed
        "shell": [tasks.shell(0, "slow-shell", [f"sleep 600 & echo $! > {shell_pid_file}; wait"]), after],
        "dbt": [tasks.dbt(0, "dbt-run", "dbt run --select slow_model", dbt_repo, profile_block), after],
    }
    started = {kind: flow_runs.start({"config": {"tasks": config}}) for kind, config in configs.items()}

    def airbyte_job():
        jobs = [job for job in slow_airbyte.server.state()["jobs"].values() if job["configId"] == connection_id]
        return jobs if jobs and jobs[0]["status"] == "running" else None

    wait_until(airbyte_job, "the sync runs")
    shell_pid = wait_until(lambda: read_pid(shell_pid_file), "the shell command runs")
    dbt_pid = wait_until(lambda: read_pid(dbt_pid_file), "dbt runs the slow model", timeout=180)
    for flow_run_id in started.values():
        flow_runs.cancel(flow_run_id)
    runs = {kind: flow_runs.wait_terminal(flow_run_id) for kind, flow_run_id in started.items()}

    for kind, run in runs.items():
        assert run.state.type.value == "CANCELLED", (kind, run.state)
        results = flow_runs.task_results(run.id)
        assert [result["status"] for result in results] == ["cancelled", "skipped"], (kind, results)
        assert "the flow run was cancelled" in results[0]["message"]
    jobs = [job for job in slow_airbyte.server.state()["jobs"].values() if job["configId"] == connection_id]
    assert [job["status"] for job in jobs] == ["cancelled"]
    assert flow_runs.task_results(runs["airbyte"].id)[0]["job_id"] == jobs[0]["id"]
    assert not process_alive(shell_pid)
    assert not process_alive(dbt_pid)
    assert not (tmp_path / "after").exists()
    os.unlink(dbt_repo.work / "models" / "slow_model.py")
