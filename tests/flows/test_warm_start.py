"""Warm start (ddpui/flows/warm_start.py): flow runs forked from a warm server behave as cold ones — they run,
they are cancelled through the launcher, and when the warm path is not certain (no server, another
environment) the launcher starts the run cold. Real runs on the session's worker, through deployments whose
command is the launcher."""

from __future__ import annotations

import os
import sys
import time
import uuid

import pytest
from prefect import Flow

from ddpui.flows import warm_start
from devtools.processes import VENV_BIN, ManagedProcess
from tests.flows.conftest import REPO_ROOT, process_alive


@pytest.fixture(scope="session")
def warm_server(prefect_worker, tmp_path_factory):
    """A warm server with the worker's environment, on a socket of its own."""
    directory = tmp_path_factory.mktemp("warm")
    socket_path = str(directory / "warm.sock")
    env = {**prefect_worker.env, warm_start.SOCKET_ENV: socket_path}
    server = ManagedProcess(
        [str(VENV_BIN / "python"), "-m", "ddpui.flows.warm_start", "serve"],
        env=env,
        log_path=directory / "warm.log",
        cwd=REPO_ROOT,
    )
    server.start()
    deadline = time.monotonic() + 120
    while not os.path.exists(socket_path):
        assert server.running, server.log_path.read_text()
        assert time.monotonic() < deadline, "the warm server did not start"
        time.sleep(0.2)
    yield server, socket_path
    server.stop()


def deployment(prefect_worker, socket_path: str, **env: str) -> uuid.UUID:
    flow = Flow.from_source(source=str(REPO_ROOT), entrypoint="prefect_flows.py:pipeline_flow")
    return flow.deploy(
        name=f"warm-{uuid.uuid4().hex[:8]}",
        work_pool_name=prefect_worker.pool,
        build=False,
        push=False,
        print_next_steps=False,
        ignore_warnings=True,
        job_variables={"command": warm_start.launcher_command(), "env": {warm_start.SOCKET_ENV: socket_path, **env}},
    )


@pytest.mark.prefect
@pytest.mark.worker
def test_runs_start_warm_are_cancelled_through_the_launcher_and_fall_back_to_cold(
    flow_runs, prefect_worker, warm_server, tasks, tmp_path
):
    server, socket_path = warm_server
    warm = deployment(prefect_worker, socket_path)
    # a setting the warm server was not started with: this run must start cold
    different = deployment(prefect_worker, socket_path, PREFECT_RESULTS_PERSIST_BY_DEFAULT="false")
    no_server = deployment(prefect_worker, str(tmp_path / "no-such.sock"))
    pid_file = tmp_path / "sleep.pid"
    quick = {"config": {"tasks": [tasks.shell(0, "hello", ["echo hello from the run"])]}}
    slow = {"config": {"tasks": [tasks.shell(0, "slow", [f"sleep 600 & echo $! > {pid_file}; wait"])]}}

    def start(deployment_id, parameters) -> uuid.UUID:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            return client.create_flow_run_from_deployment(deployment_id, parameters=parameters).id

    started = {name: start(deployment_id, quick) for name, deployment_id in
               (("warm", warm), ("different", different), ("no_server", no_server))}  # fmt: skip
    cancelled = start(warm, slow)
    runs = {name: flow_runs.wait(flow_run_id) for name, flow_run_id in started.items()}
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the slow run did not start"
        time.sleep(0.2)
    flow_runs.cancel(cancelled)
    cancelled_run = flow_runs.wait_terminal(cancelled)

    for name, run in runs.items():
        assert run.state.type.value == "COMPLETED", (name, run.state.message)
        assert "hello from the run" in flow_runs.logs(run.id), name
    log = server.log_path.read_text()
    assert f"started flow run {started['warm']} warm" in log
    assert f"started flow run {cancelled} warm" in log
    assert str(started["different"]) not in log and "PREFECT_RESULTS_PERSIST_BY_DEFAULT" in log  # said why it went cold
    assert str(started["no_server"]) not in log
    assert cancelled_run.state.type.value == "CANCELLED"
    assert not process_alive(int(pid_file.read_text()))


def test_a_run_starts_warm_only_in_the_servers_environment():
    env = {"PREFECT_API_URL": "http://x/api", "PYTHONPATH": "/srv", "PREFECT__FLOW_RUN_ID": "1", "PATH": "/bin"}
    same = {**env, "PREFECT__FLOW_RUN_ID": "2", "PREFECT__CONTROL_PORT": "4", "PREFECT_WORKER_QUERY_SECONDS": "1"}
    assert warm_start._mismatch(env, same, sys.executable) is None  # per-run and worker settings differ
    assert "PREFECT_API_URL" in warm_start._mismatch(env, {**env, "PREFECT_API_URL": "http://y/api"}, sys.executable)
    assert "PREFECT_HOME" in warm_start._mismatch(env, {**env, "PREFECT_HOME": "/elsewhere"}, sys.executable)
    assert "PYTHONPATH" in warm_start._mismatch(env, {**env, "PYTHONPATH": "/other"}, sys.executable)
    assert "Python" in warm_start._mismatch(env, env, "/usr/bin/python3.12")
