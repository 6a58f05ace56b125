"""Run latency on the local stack: trigger -> first task running, and cancel -> Cancelled.

A Prefect server, a process worker polling every second (PREFECT_WORKER_QUERY_SECONDS=1, as the demo and the
tests run it) and the Airbyte emulator are started here; each measurement is made with the work pool's
default command (a cold `python -m prefect.engine` per run) and with the warm start
(ddpui/flows/warm_start.py: a warm server forks each run). Target: trigger -> first task running <= 2 s,
cancel -> Cancelled (Airbyte job cancelled, commands gone) <= 10 s.

- trigger -> first task running: from the flow run's creation (Prefect's API, as the proxy makes it) to the
  first task's command starting (it writes the time) — the worker's poll, the flow process's start, the
  flow's set-up and the task's start;
- cancel -> Cancelled: a run whose task is a `sleep` (or an Airbyte sync) is set Cancelling, as Prefect's UI
  and the proxy do; the time until its state is Cancelled, with the sleep's process and the Airbyte job checked.

    .venv/bin/python bench/run_latency.py [--rounds 5]

Not a test: it prints its figures and the machine they were measured on.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from devtools.processes import VENV_BIN, ManagedProcess, PrefectServer, PrefectWorker, free_port  # noqa: E402

POOL = "bench-latency"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def wait_for(condition, timeout: float = 300, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(interval)
    return value


class Stack:
    def __init__(self, home: Path, port: int):
        self.home = home
        self.server = PrefectServer(home, port)
        self.worker: PrefectWorker | None = None
        self.warm: ManagedProcess | None = None

    def start(self) -> None:
        import httpx

        self.server.start()
        httpx.post(f"{self.server.api_url}/work_pools/", json={"name": POOL, "type": "process"}, timeout=30)
        self.worker = PrefectWorker(self.server.api_url, self.home, POOL, query_seconds=1)
        self.warm = ManagedProcess(
            [str(VENV_BIN / "python"), "-m", "ddpui.flows.warm_start", "serve"],
            env=dict(self.worker.env),
            log_path=self.home / "warm-start.log",
            cwd=REPO_ROOT,
        )
        self.warm.start()
        self.worker.start()
        wait_for(lambda: (self.home / "ddpui-warm-start.sock").exists(), timeout=120)

    def use_warm_start(self, warm: bool) -> None:
        command = ["configure-pool", POOL] + ([] if warm else ["--reset"])
        subprocess.run(
            [str(VENV_BIN / "python"), "-m", "ddpui.flows.warm_start", *command],
            env=dict(self.worker.env),
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        for process in (self.worker, self.warm, self.server):
            if process is not None:
                process.stop()


def measure(deployment_id, work: Path, emulator, connection_id: str, airbyte_block: str, rounds: int) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    figures = {"trigger_to_flow_running": [], "trigger_to_first_task": [], "cancel_shell": [], "cancel_airbyte": []}
    marker, pid_file = work / "started", work / "sleep.pid"
    quick = {"config": {"tasks": [{"seq": 0, "type": "Shell Operation", "slug": "first", "commands": [
        f"date +%s.%N > {marker}"]}]}}  # fmt: skip
    slow = {"config": {"tasks": [{"seq": 0, "type": "Shell Operation", "slug": "slow", "commands": [
        f"sleep 600 & echo $! > {pid_file}; wait"]}]}}  # fmt: skip
    sync = {"config": {"tasks": [{"seq": 0, "type": "Airbyte Connection", "slug": "airbyte-sync",
        "airbyte_server_block": airbyte_block, "connection_id": connection_id, "poll_interval_s": 1}]}}  # fmt: skip
    with get_client(sync_client=True) as client:

        def state(flow_run_id) -> str:
            return client.read_flow_run(flow_run_id).state.type.value

        def cancel_when(flow_run_id, ready) -> float:
            wait_for(ready)
            started = time.time()
            client.set_flow_run_state(flow_run_id, Cancelling(message="bench"))
            wait_for(lambda: state(flow_run_id) in TERMINAL, interval=0.01)
            elapsed = time.time() - started
            if state(flow_run_id) != "CANCELLED":
                raise SystemExit(f"flow run {flow_run_id} ended {state(flow_run_id)}, not Cancelled")
            return elapsed

        for _ in range(rounds):
            marker.unlink(missing_ok=True)
            triggered = time.time()
            run = client.create_flow_run_from_deployment(deployment_id, parameters=quick)
            wait_for(lambda run=run: state(run.id) in TERMINAL)
            start_time = client.read_flow_run(run.id).start_time.timestamp()
            figures["trigger_to_flow_running"].append(start_time - triggered)
            figures["trigger_to_first_task"].append(float(marker.read_text()) - triggered)

            pid_file.unlink(missing_ok=True)
            run = client.create_flow_run_from_deployment(deployment_id, parameters=slow)
            figures["cancel_shell"].append(cancel_when(run.id, lambda: pid_file.exists() and pid_file.read_text()))
            pid = int(pid_file.read_text())
            if os.path.exists(f"/proc/{pid}") and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text():
                raise SystemExit(f"the cancelled run's sleep (pid {pid}) is still running")

            before = set(emulator.state()["jobs"])
            run = client.create_flow_run_from_deployment(deployment_id, parameters=sync)

            def job_running(before=before):
                jobs = emulator.state()["jobs"]
                return [job for key, job in jobs.items() if key not in before and job["status"] == "running"]

            figures["cancel_airbyte"].append(cancel_when(run.id, job_running))
            jobs = [job for key, job in emulator.state()["jobs"].items() if key not in before]
            if [job["status"] for job in jobs] != ["cancelled"]:
                raise SystemExit(f"the cancelled run's Airbyte job is {[job['status'] for job in jobs]}")
    return figures


def emulator_connection(root: Path):
    import httpx

    from devtools.airbyte_emulator import DUCKDB_DESTINATION_DEFINITION_ID, SAMPLE_SOURCE_DEFINITION_ID, EmulatorServer

    emulator = EmulatorServer(host="127.0.0.1", port=0, username="airbyte", password="bench-password").start()
    emulator.configure(sync_seconds=3600)
    with httpx.Client(base_url=emulator.api_url, auth=("airbyte", "bench-password"), timeout=10) as api:

        def post(path: str, body: dict) -> dict:
            response = api.post(path, json=body)
            response.raise_for_status()
            return response.json()

        workspace = post("/workspaces/create/", {"name": "bench"})["workspaceId"]
        source = post(
            "/sources/create/",
            {"workspaceId": workspace, "name": "sample", "sourceDefinitionId": SAMPLE_SOURCE_DEFINITION_ID},
        )["sourceId"]
        destination = post(
            "/destinations/create/",
            {
                "workspaceId": workspace,
                "name": "duckdb",
                "destinationDefinitionId": DUCKDB_DESTINATION_DEFINITION_ID,
                "connectionConfiguration": {"destination_path": str(root / "raw.duckdb"), "schema": "raw"},
            },
        )["destinationId"]
        connection = post("/connections/create/", {"sourceId": source, "destinationId": destination})
    return emulator, connection["connectionId"]


def print_report(results: dict[str, dict]) -> None:
    print("machine:")
    print(f"  cpus={os.cpu_count()} platform={platform.platform()} load average={os.getloadavg()[0]:.2f}")
    print(f"  python={platform.python_version()} prefect={version('prefect')}; worker polls every 1 s")
    print()
    labels = {
        "trigger_to_flow_running": "trigger -> flow run Running",
        "trigger_to_first_task": "trigger -> first task running",
        "cancel_shell": "cancel -> Cancelled (shell: sleep killed)",
        "cancel_airbyte": "cancel -> Cancelled (Airbyte job cancelled)",
    }
    print(f"{'':44} {'mode':>5} {'median':>7} {'max':>6}   each round (s)")
    for mode, figures in results.items():
        for key, label in labels.items():
            values = figures[key]
            rounds = " ".join(f"{value:.2f}" for value in values)
            print(f"{label:<44} {mode:>5} {statistics.median(values):>7.2f} {max(values):>6.2f}   {rounds}")
    print()
    first_task = {mode: statistics.median(figures["trigger_to_first_task"]) for mode, figures in results.items()}
    slowest_cancel = max(
        max(figures[key]) for figures in results.values() for key in ("cancel_shell", "cancel_airbyte")
    )
    print(
        f"targets: trigger -> first task <= 2 s: median {first_task['warm']:.2f} s warm, {first_task['cold']:.2f} s "
        f"cold; cancel -> Cancelled <= 10 s: slowest {slowest_cancel:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="ddpui-bench-latency-"))
    port = free_port()
    os.environ.update(
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    stack = Stack(home, port)
    emulator = None
    print("starting a Prefect server, a worker and a warm server ...", flush=True)
    try:
        stack.start()
        from airbyte_prefect.server import AirbyteServer
        from prefect import Flow

        emulator, connection_id = emulator_connection(home)
        AirbyteServer(
            server_host="127.0.0.1", server_port=emulator.port, username="airbyte", password="bench-password"
        ).save("bench-latency-airbyte", overwrite=True)
        flow = Flow.from_source(source=str(REPO_ROOT), entrypoint="prefect_flows.py:pipeline_flow")
        deployment_id = flow.deploy(
            name="bench-latency", work_pool_name=POOL, build=False, push=False, print_next_steps=False,
            ignore_warnings=True,
        )  # fmt: skip
        results = {}
        for mode in ("cold", "warm"):
            stack.use_warm_start(mode == "warm")
            measure(deployment_id, home, emulator, connection_id, "bench-latency-airbyte", 1)  # warm-up
            results[mode] = measure(deployment_id, home, emulator, connection_id, "bench-latency-airbyte", args.rounds)
        print_report(results)
    finally:
        if emulator is not None:
            emulator.stop()
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
