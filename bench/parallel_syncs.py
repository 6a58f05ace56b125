"""Parallel syncs: a pipeline of four Airbyte syncs (about 2 s each, through the emulator) and one dbt task,
run with `max_parallel_syncs` 1 (one after the other) and 4 (side by side). Wall time from the flow run's
start to its end, as Prefect records it. Target: parallel <= 1.3 x the longest sync + the dbt task.

    .venv/bin/python bench/parallel_syncs.py [--rounds 3] [--sync-seconds 2]

The flow runs in this process (as in bench/flow_overhead.py) against a Prefect server started here. Not a
test: it prints its figures and the machine they were measured on.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from devtools.processes import PrefectServer, free_port  # noqa: E402

SYNCS = 4


def emulator_connections(root: Path, count: int):
    """The emulator (its syncs write into DuckDB files of their own) and `count` connections."""
    import httpx

    from devtools.airbyte_emulator import (
        DUCKDB_DESTINATION_DEFINITION_ID,
        SAMPLE_SOURCE_DEFINITION_ID,
        EmulatorServer,
    )

    emulator = EmulatorServer(host="127.0.0.1", port=0, username="airbyte", password="bench-password").start()
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
        connections = []
        for index in range(count):
            destination = post(
                "/destinations/create/",
                {
                    "workspaceId": workspace,
                    "name": f"duckdb-{index}",
                    "destinationDefinitionId": DUCKDB_DESTINATION_DEFINITION_ID,
                    "connectionConfiguration": {"destination_path": str(root / f"raw-{index}.duckdb"), "schema": "raw"},
                },
            )["destinationId"]
            connection = post("/connections/create/", {"sourceId": source, "destinationId": destination})
            connections.append(connection["connectionId"])
    return emulator, connections


def pipeline_config(connections: list[str], server_block: str, workspace, profile_block: str, parallel: int) -> dict:
    syncs = [
        {
            "seq": seq,
            "type": "Airbyte Connection",
            "slug": "airbyte-sync",
            "airbyte_server_block": server_block,
            "connection_id": connection_id,
            "timeout": 120,
            "poll_interval_s": 1,
        }
        for seq, connection_id in enumerate(connections)
    ]
    dbt_run = {
        "seq": len(syncs),
        "type": "dbt Core Operation",
        "slug": "dbt-run",
        "commands": ["dbt run"],
        "cli_profile_block": profile_block,
        "project_dir": str(workspace.work),
        "working_dir": str(workspace.work),
        "env": {"DDPUI_SOURCE_SCHEMA": "airbyte_raw"},
    }
    return {"org_slug": "bench", "max_parallel_syncs": parallel, "tasks": [*syncs, dbt_run]}


def run_bench(rounds: int, sync_seconds: float) -> None:
    from airbyte_prefect.server import AirbyteServer
    from flow_overhead import Workspace
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogWorker

    import prefect_flows

    root = Path(tempfile.mkdtemp(prefix="ddpui-bench-parallel-"))
    emulator = None
    try:
        workspace = Workspace(root / "dbt")
        workspace.load_source_tables()
        Secret(value=workspace.profile()).save("bench-parallel-dbt-profile", overwrite=True)
        emulator, connections = emulator_connections(root, SYNCS)
        emulator.configure(sync_seconds=sync_seconds)
        AirbyteServer(
            server_host="127.0.0.1", server_port=emulator.port, username="airbyte", password="bench-password"
        ).save("bench-parallel-airbyte", overwrite=True)

        def timed_run(parallel: int) -> dict:
            config = pipeline_config(
                connections, "bench-parallel-airbyte", workspace, "bench-parallel-dbt-profile", parallel
            )
            state = prefect_flows.pipeline_flow(config=config, return_state=True)
            if not state.is_completed():
                raise SystemExit(f"the pipeline did not complete: {state.message}")
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(state.state_details.flow_run_id)
            results = state.result()
            syncs = [result["duration_seconds"] for result in results[:SYNCS]]
            return {
                "wall": (run.end_time - run.start_time).total_seconds(),
                "longest_sync": max(syncs),
                "sum_syncs": sum(syncs),
                "dbt": results[SYNCS]["duration_seconds"],
            }

        timed_run(SYNCS)  # warm-up: imports, dbt's first parse
        measured = {1: [], SYNCS: []}
        for _ in range(rounds):
            for parallel in (1, SYNCS):
                measured[parallel].append(timed_run(parallel))
        print_report(measured, sync_seconds)
        APILogWorker.drain_all(timeout=10)
    finally:
        if emulator is not None:
            emulator.stop()
        shutil.rmtree(root, ignore_errors=True)


def print_report(measured: dict[int, list[dict]], sync_seconds: float) -> None:
    print("machine:")
    print(f"  cpus={os.cpu_count()} platform={platform.platform()} load average={os.getloadavg()[0]:.2f}")
    packages = ("prefect", "dbt-core", "dbt-duckdb")
    print(f"  python={platform.python_version()} " + " ".join(f"{name}={version(name)}" for name in packages))
    print(f"pipeline: {SYNCS} Airbyte syncs (emulator, {sync_seconds:g} s each, polled every 1 s) then dbt run")
    print()
    print(f"{'max_parallel_syncs':>18} {'round':>5} {'wall':>7} {'longest sync':>13} {'sum of syncs':>13} {'dbt':>6}")
    for parallel, rows in measured.items():
        for index, row in enumerate(rows, start=1):
            print(
                f"{parallel:>18} {index:>5} {row['wall']:>6.2f}s {row['longest_sync']:>12.2f}s "
                f"{row['sum_syncs']:>12.2f}s {row['dbt']:>5.2f}s"
            )
    print()
    for parallel, rows in measured.items():
        wall = statistics.median(row["wall"] for row in rows)
        print(f"median wall time, max_parallel_syncs={parallel}: {wall:.2f} s")
    parallel_rows = measured[SYNCS]
    ratios = [(row["wall"] - row["dbt"]) / row["longest_sync"] for row in parallel_rows]
    within = all(row["wall"] <= 1.3 * row["longest_sync"] + row["dbt"] for row in parallel_rows)
    print(
        f"parallel: (wall - dbt) / longest sync = {statistics.median(ratios):.2f} (median); "
        f"target wall <= 1.3 x longest sync + dbt: {'met' if within else 'NOT met'} in every round"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sync-seconds", type=float, default=2.0)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="ddpui-bench-prefect-"))
    port = free_port()
    os.environ.update(
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="INFO",
        PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="WARNING",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DO_NOT_TRACK="1",
    )
    server = PrefectServer(home, port)
    print("starting a Prefect server ...", flush=True)
    started = time.monotonic()
    server.start()
    print(f"... up in {time.monotonic() - started:.0f} s", flush=True)
    try:
        run_bench(args.rounds, args.sync_seconds)
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
