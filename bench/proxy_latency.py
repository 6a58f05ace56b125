"""Latency of proxy calls vs the same operation sent straight to Prefect's REST API (target: p50 <= 1.2x, and
the proxy's p95 within 3x of its p50 at 8 concurrent callers).

For each Prefect server (SQLite, then PostgreSQL) it starts the server and the proxy (`python -m proxy`, as in
production), measures every operation both ways with the calls interleaved (so the server's background work and
the machine's other load hit both sides alike), first one caller at a time, then 8 callers at once, and prints
p50/p95 per side, the ratios, and the machine with its load. The reads go first, then the creates; what a create
measurement made is deleted after it and the server left to settle, so that no measurement takes in Prefect's
background work about another one's objects. Everything it starts is stopped. Not a test.

    .venv/bin/python bench/proxy_latency.py                       # both servers; PostgreSQL started for the run
    .venv/bin/python bench/proxy_latency.py --pg-dsn postgresql://postgres:postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/proxy_latency.py --servers sqlite --iterations 200

A PostgreSQL server is started with scripts/postgres.sh in a temporary directory unless --pg-dsn (or
DDPUI_TEST_PG_DSN) names one; the Prefect database is made on it and dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from devtools.processes import ManagedProcess, PrefectServer, free_port, prefect_env, wait_http_ok  # noqa: E402

TOKEN = "bench-token"
POOL = "bench-idle"  # no worker polls it: created runs stay Scheduled
CRON = "0 6 1 * *"  # monthly: Prefect's scheduler fills in a few runs per new deployment, not a hundred
PARAMETERS = {"config": {"org_slug": "bench", "tasks": [{"seq": 0, "type": "Shell Operation", "commands": ["true"]}]}}
RESULTS = [{"seq": 0, "slug": "shell", "type": "Shell Operation", "status": "success", "duration": 0.1}]
LOG_LINES = 60
SETTLE_SECONDS = 10  # after deleting what a measurement made (Prefect's event persister flushes every 5 s)
LATE_AFTER_SECONDS = 15  # Prefect's late-runs service marks a scheduled run Late this long after its time


def machine_info() -> str:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    import prefect

    return (
        f"{platform.system()} {platform.release()} | {cpu} | {os.cpu_count()} CPUs | {memory} RAM | "
        f"Python {platform.python_version()} | Prefect {prefect.__version__}"
    )


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ------------------------------------------------------------------------------------------- measuring


@dataclass
class Sides:
    proxy: list[float] = field(default_factory=list)
    direct: list[float] = field(default_factory=list)
    retried: int = 0
    unavailable: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


Call = Callable[[httpx.Client], httpx.Response]


def timed(call: Call, client: httpx.Client, sides: Sides) -> float | None:
    """One call's wall time in ms, or None if Prefect stayed unavailable.

    A 503 (Prefect's database busy) is retried after 2, 4, 8 s, as Prefect's client does (the proxy's client
    retries inside the proxy call the same way); the retries count in the time.
    """
    started = time.perf_counter()
    for attempt in range(4):
        response = call(client)
        if response.status_code != 503:
            break
        with sides.lock:
            sides.retried += 1
        time.sleep(2 ** (attempt + 1))
    elapsed = time.perf_counter() - started
    if response.status_code == 503:
        with sides.lock:
            sides.unavailable += 1
        return None
    if response.status_code >= 300:
        request = response.request
        raise RuntimeError(f"{request.method} {request.url} -> {response.status_code}: {response.text[:500]}")
    return elapsed * 1000


@dataclass
class Servers:
    proxy_url: str
    api_url: str

    def clients(self) -> tuple[httpx.Client, httpx.Client]:
        """A keep-alive client for each side (as Django keeps one for the proxy)."""
        return (
            httpx.Client(base_url=self.proxy_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60),
            httpx.Client(base_url=self.api_url, timeout=60),
        )


def interleaved(servers: Servers, proxy_call: Call, direct_call: Call, pairs: int, sides: Sides, first: int) -> None:
    """`pairs` calls each way on one caller's own clients, alternating which side goes first."""
    via_proxy, direct = servers.clients()
    with via_proxy, direct:
        for index in range(pairs):
            order = [(sides.proxy, proxy_call, via_proxy), (sides.direct, direct_call, direct)]
            if (index + first) % 2:
                order.reverse()
            for samples, call, client in order:
                elapsed = timed(call, client, sides)
                if elapsed is not None:
                    with sides.lock:
                        samples.append(elapsed)


def compare(servers: Servers, proxy_call: Call, direct_call: Call, *, pairs: int, callers: int) -> Sides:
    """`callers` callers at once, each making `pairs` interleaved pairs (after a short warm-up each way)."""
    warmup = Sides()
    interleaved(servers, proxy_call, direct_call, 3, warmup, 0)
    sides = Sides()
    if callers == 1:
        interleaved(servers, proxy_call, direct_call, pairs, sides, 0)
        return sides
    start = threading.Barrier(callers)

    def caller(index: int) -> None:
        start.wait()
        interleaved(servers, proxy_call, direct_call, pairs, sides, index)

    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(caller, range(callers)))
    return sides


# ------------------------------------------------------------------------------------------- the operations


@dataclass
class Fixtures:
    flow_id: str
    deployment_id: str
    create_target: str
    filter_target: str
    flow_run_id: str
    secret_name: str


def set_up(servers: Servers) -> Fixtures:
    """A work pool nobody polls, deployments with a few runs, a finished run with results and logs, a secret."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    via_proxy, direct = servers.clients()
    with via_proxy, direct:
        pool = WorkPoolCreate(
            name=POOL, type="process", base_job_template=ProcessWorker.get_default_base_job_template()
        )
        direct.post("/work_pools/", json=pool.model_dump(mode="json")).raise_for_status()

        def deployment(name: str) -> str:
            response = via_proxy.post(
                "/proxy/v1/deployments/",
                json={"deployment_name": name, "org_slug": "bench", "parameters": PARAMETERS, "work_pool_name": POOL},
            )
            response.raise_for_status()
            return response.json()["deployment_id"]

        deployment_id = deployment("bench-read")
        filter_target = deployment("bench-filter")
        create_target = deployment("bench-create-runs")  # the runs the create measurement adds go here
        for _ in range(12):
            via_proxy.post(f"/proxy/deployments/{filter_target}/flow_run", json={}).raise_for_status()
        flow_id = direct.get(f"/deployments/{deployment_id}").json()["flow_id"]

        # a finished run with its task-results artifact and a page of logs, as a pipeline run leaves them
        flow_run_id = via_proxy.post(f"/proxy/deployments/{deployment_id}/flow_run", json={}).json()["flow_run_id"]
        for state in ("RUNNING", "COMPLETED"):
            direct.post(
                f"/flow_runs/{flow_run_id}/set_state", json={"state": {"type": state}, "force": True}
            ).raise_for_status()
        direct.post(
            "/artifacts/",
            json={"key": "task-results", "type": "table", "data": json.dumps(RESULTS), "flow_run_id": flow_run_id},
        ).raise_for_status()
        started = datetime.now(UTC)
        logs = [
            {
                "name": "prefect.flow_runs",
                "level": 20,
                "message": f"line {index}: dbt run finished; {index * 7} models, 0 errors",
                "timestamp": (started + timedelta(milliseconds=index)).isoformat(),
                "flow_run_id": flow_run_id,
            }
            for index in range(LOG_LINES)
        ]
        direct.post("/logs/", json=logs).raise_for_status()
        secret_name = "bench-secret"
        via_proxy.put("/proxy/blocks/secret/", json={"blockName": secret_name, "secret": "s3cr3t"}).raise_for_status()
    return Fixtures(flow_id, deployment_id, create_target, filter_target, flow_run_id, secret_name)


@dataclass
class Made:
    """What a measurement made in Prefect, deleted after it (see `clean_up`)."""

    deployments: list[str] = field(default_factory=list)
    flow_runs: list[str] = field(default_factory=list)


def operations(fixtures: Fixtures, made: Made) -> list[tuple[str, Call, Call]]:
    """(name, the proxy call, the same operation sent to Prefect directly): the reads, then the creates. What the
    creates make is listed in `made`, to be deleted after each measurement."""
    f = fixtures
    future = "2100-01-01T00:00:00Z"

    def proxy_create_deployment(*, unique_suffix: bool) -> Call:
        """unique_suffix: as Django makes every cron deployment (the proxy names it: one Prefect call); without,
        a name the caller chose, which the proxy first checks is free (two calls)."""

        def call(client: httpx.Client) -> httpx.Response:
            body = {
                "deployment_name": "bench" if unique_suffix else f"bench-{uuid.uuid4().hex[:12]}",
                "unique_suffix": unique_suffix,
                "org_slug": "bench",
                "parameters": PARAMETERS,
                "cron": CRON,
                "work_pool_name": POOL,
            }
            response = client.post("/proxy/v1/deployments/", json=body)
            if response.status_code == 201:
                made.deployments.append(response.json()["deployment_id"])
            return response

        return call

    def direct_create_deployment(client: httpx.Client) -> httpx.Response:
        # what the proxy asks Prefect to store, sent by a caller that already knows the flow's id
        body = {
            "name": f"bench-{uuid.uuid4().hex[:12]}",
            "flow_id": f.flow_id,
            "parameters": PARAMETERS,
            "tags": ["bench"],
            "work_pool_name": POOL,
            "entrypoint": "prefect_flows.py:pipeline_flow",
            "path": str(REPO_ROOT),
            "pull_steps": [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}],
            "schedules": [{"schedule": {"cron": CRON, "timezone": "UTC"}, "active": True}],
            "enforce_parameter_schema": False,
        }
        response = client.post("/deployments/", json=body)
        if response.status_code < 300:
            made.deployments.append(response.json()["id"])
        return response

    def proxy_create_flow_run(client: httpx.Client) -> httpx.Response:
        response = client.post(f"/proxy/deployments/{f.create_target}/flow_run", json={})
        if response.status_code == 201:
            made.flow_runs.append(response.json()["flow_run_id"])
        return response

    def direct_create_flow_run(client: httpx.Client) -> httpx.Response:
        response = client.post(f"/deployments/{f.create_target}/create_flow_run", json={"parameters": {}, "tags": []})
        if response.status_code < 300:
            made.flow_runs.append(response.json()["id"])
        return response

    return [
        (
            "read deployment",
            lambda c: c.get(f"/proxy/deployments/{f.deployment_id}"),
            lambda c: c.get(f"/deployments/{f.deployment_id}"),
        ),
        (
            "read flow run",
            lambda c: c.get(f"/proxy/flow_runs/{f.flow_run_id}"),
            lambda c: c.get(f"/flow_runs/{f.flow_run_id}"),
        ),
        (
            f"read logs ({LOG_LINES} lines)",
            lambda c: c.get(f"/proxy/flow_runs/logs/{f.flow_run_id}"),
            lambda c: c.post(
                "/logs/filter",
                json={
                    "logs": {"flow_run_id": {"any_": [f.flow_run_id]}},
                    "sort": "TIMESTAMP_ASC",
                    "offset": 0,
                    "limit": 200,
                },
            ),
        ),
        (
            "filter runs (1 deployment, 10 newest)",
            lambda c: c.post(
                "/proxy/flow_runs/filter",
                json={"deployment_ids": [f.filter_target], "limit": 10, "include_future": True},
            ),
            lambda c: c.post(
                "/flow_runs/filter",
                json={
                    "deployments": {"id": {"any_": [f.filter_target]}},
                    "flow_runs": {"expected_start_time": {"before_": future}},
                    "sort": "START_TIME_DESC",
                    "limit": 10,
                },
            ),
        ),
        (
            "secret read",
            lambda c: c.get(f"/proxy/blocks/secret/{f.secret_name}"),
            lambda c: c.get(
                f"/block_types/slug/secret/block_documents/name/{f.secret_name}", params={"include_secrets": "false"}
            ),
        ),
        ("create cron deployment", proxy_create_deployment(unique_suffix=True), direct_create_deployment),
        (
            "create cron deployment, chosen name",
            proxy_create_deployment(unique_suffix=False),
            direct_create_deployment,
        ),
        ("create flow run", proxy_create_flow_run, direct_create_flow_run),
    ]


# ------------------------------------------------------------------------------------------- servers


@contextlib.contextmanager
def postgres_dsn(given: str | None):
    """A PostgreSQL superuser DSN: the given one, or a throwaway server started for this run."""
    if given:
        yield given
        return
    # the server runs as the postgres user: its data directory must not sit inside a directory only root can enter
    directory = Path(tempfile.gettempdir()) / f"ddpui-bench-pg-{uuid.uuid4().hex[:8]}"
    script = REPO_ROOT / "scripts" / "postgres.sh"
    port = str(free_port())
    try:
        dsn = subprocess.run(
            ["bash", str(script), "start", str(directory), port], check=True, capture_output=True, text=True
        ).stdout.strip()
        yield dsn
    finally:
        subprocess.run(["bash", str(script), "stop", str(directory)], check=False, capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def prefect_database(dsn: str):
    """A fresh database for Prefect on that server, as Prefect's asyncpg URL; dropped afterwards."""
    import psycopg

    name = f"bench_proxy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running_stack(home: Path, database_url: str | None):
    server = PrefectServer(home, database_url=database_url)
    proxy_port = free_port()
    proxy = ManagedProcess(
        [sys.executable, "-m", "proxy", "--host", "127.0.0.1", "--port", str(proxy_port), "--log-level", "warning"],
        env=prefect_env(server.api_url, home, PROXY_TOKEN=TOKEN, PROXY_WORK_POOL=POOL, PYTHONPATH=str(REPO_ROOT)),
        log_path=home / "proxy.log",
        cwd=REPO_ROOT,
    )
    try:
        server.start()
        proxy.start()
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        wait_http_ok(f"{proxy_url}/proxy/health", timeout=60, process=proxy.process, log=proxy.log_path)
        yield Servers(proxy_url=proxy_url, api_url=server.api_url)
    finally:
        proxy.stop()
        server.stop()


def clean_up(servers: Servers, made: Made) -> None:
    """Deletes what a measurement made (a dropped connection or a busy answer is tried again, after 1, 2, 4 s),
    then lets Prefect's server settle, so that the next measurement does not take in the work its background
    services do about it: left alone, the runs the create measurement made turn Late 15 s later, hundreds of
    state changes at once, and Prefect's scheduler fills in runs for the new cron deployments."""
    deleting = [("deployments", made.deployments), ("flow_runs", made.flow_runs)]
    if not any(ids for _, ids in deleting):
        return
    with httpx.Client(base_url=servers.api_url, timeout=60) as direct:
        for kind, ids in deleting:
            while ids:
                object_id = ids.pop()
                for delay in (1, 2, 4, None):
                    try:
                        if direct.delete(f"/{kind}/{object_id}").status_code not in (429, 502, 503):
                            break
                    except httpx.TransportError:
                        if delay is None:
                            raise
                    time.sleep(delay or 0)
    time.sleep(SETTLE_SECONDS)


def bench_server(label: str, database_url: str | None, args) -> list[dict]:
    home = Path(tempfile.mkdtemp(prefix="ddpui-bench-proxy-"))
    rows = []
    try:
        print(f"{label}: starting the Prefect server and the proxy ...", flush=True)
        with running_stack(home, database_url) as servers:
            fixtures = set_up(servers)
            time.sleep(SETTLE_SECONDS + LATE_AFTER_SECONDS)  # the set-up's scheduled runs turn Late meanwhile
            for callers in (1, args.concurrency):
                pairs = args.iterations if callers == 1 else max(10, args.iterations * 4 // callers)
                made = Made()
                for name, proxy_call, direct_call in operations(fixtures, made):
                    load_before = load()
                    sides = compare(servers, proxy_call, direct_call, pairs=pairs, callers=callers)
                    clean_up(servers, made)
                    rows.append(
                        {
                            "server": label,
                            "callers": callers,
                            "name": name,
                            "samples": len(sides.proxy),
                            "proxy_p50": statistics.median(sides.proxy),
                            "proxy_p95": percentile(sides.proxy, 0.95),
                            "direct_p50": statistics.median(sides.direct),
                            "direct_p95": percentile(sides.direct, 0.95),
                            "retried": sides.retried,
                            "unavailable": sides.unavailable,
                            "load": f"{load_before} -> {load()}",
                        }
                    )
                    print_row(rows[-1])
    except BaseException:
        for log in ("prefect-server.log", "proxy.log"):
            with contextlib.suppress(OSError):
                print(f"--- the end of {log}:\n{(home / log).read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return rows


# ------------------------------------------------------------------------------------------- output

HEADER = (
    f"{'server':<10} {'callers':>7} {'operation':<38} {'proxy p50':>9} {'p95':>7} {'direct p50':>10} {'p95':>7}"
    f" {'ratio p50':>9} {'p95':>6} {'proxy p95/p50':>13} {'503s':>5}  load (1/5/15 min) before -> after"
)


def print_row(row: dict) -> None:
    print(
        f"{row['server']:<10} {row['callers']:>7} {row['name']:<38} {row['proxy_p50']:>9.1f} {row['proxy_p95']:>7.1f} "
        f"{row['direct_p50']:>10.1f} {row['direct_p95']:>7.1f} {row['proxy_p50'] / row['direct_p50']:>8.2f}x "
        f"{row['proxy_p95'] / row['direct_p95']:>5.2f}x {row['proxy_p95'] / row['proxy_p50']:>12.2f}x "
        f"{row['retried'] + row['unavailable']:>5}  {row['load']}",
        flush=True,
    )


def print_results(rows: list[dict], args) -> None:
    print()
    print(f"machine: {machine_info()}")
    print(f"load average now (1/5/15 min): {load()}")
    print(
        f"{args.iterations} interleaved pairs per operation one caller at a time; {args.concurrency} callers at once "
        f"making {max(10, args.iterations * 4 // args.concurrency)} pairs each; keep-alive HTTP clients; times in ms"
    )
    print()
    print(HEADER)
    print("-" * len(HEADER))
    for row in rows:
        print_row(row)
    print()
    print(f"target: proxy p50 <= 1.2x the direct call; proxy p95 <= 3x its p50 at {args.concurrency} callers")
    print("503s: calls answered 503 (Prefect's database busy) and retried after 2, 4, 8 s, counted in the time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60, help="interleaved pairs per operation (sequential)")
    parser.add_argument("--concurrency", type=int, default=8, help="callers at once in the concurrent pass")
    parser.add_argument("--servers", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--pg-dsn", default=os.environ.get("DDPUI_TEST_PG_DSN"), help="a PostgreSQL superuser DSN")
    args = parser.parse_args()
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = set(servers) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")

    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="ddpui-bench-prefect-home-"))
    print(f"load average at start (1/5/15 min): {load()}", flush=True)
    print(HEADER, flush=True)
    rows: list[dict] = []
    if "sqlite" in servers:
        rows += bench_server("SQLite", None, args)
    if "postgres" in servers:
        with postgres_dsn(args.pg_dsn) as dsn, prefect_database(dsn) as database_url:
            rows += bench_server("PostgreSQL", database_url, args)
    print_results(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
