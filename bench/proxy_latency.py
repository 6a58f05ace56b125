"""Latency of proxy calls vs the same operation sent straight to Prefect's REST API (target: <= 1.3x).

Starts its own Prefect server and the proxy (uvicorn, 127.0.0.1), measures each operation both ways with
the calls interleaved (so background work on the Prefect server hits both sides alike), prints p50/p95 and
the ratios plus the machine it ran on, and stops everything. Not a test.

    .venv/bin/python bench/proxy_latency.py [--iterations 200]
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
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from devtools.processes import ManagedProcess, PrefectServer, free_port, prefect_env, wait_http_ok  # noqa: E402

TOKEN = "bench-token"
POOL = "bench-idle"  # no worker polls it: created runs stay Scheduled


def machine_info() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    import prefect

    return (
        f"{platform.system()} {platform.release()} | {cpu} | {os.cpu_count()} CPUs | {memory} RAM | "
        f"Python {platform.python_version()} | Prefect {prefect.__version__} (SQLite)"
    )


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(call: Callable[[], httpx.Response], counts: dict[str, int]) -> float | None:
    """One call's wall time in ms, or None if Prefect stayed unavailable.

    A 503 (Prefect's SQLite busy) is retried after 2, 4, 8 s, as Prefect's client does (the proxy's client
    retries inside the proxy call the same way).
    """
    started = time.perf_counter()
    for attempt in range(4):
        response = call()
        if response.status_code != 503:
            break
        counts["retried"] += 1
        time.sleep(2 ** (attempt + 1))
    elapsed = time.perf_counter() - started
    if response.status_code == 503:
        counts["unavailable"] += 1
        return None
    if response.status_code >= 300:
        request = response.request
        raise RuntimeError(f"{request.method} {request.url} -> {response.status_code}: {response.text}")
    return elapsed * 1000


def compare(name: str, proxy_call, direct_call, iterations: int, warmup: int = 10) -> dict:
    counts = {"retried": 0, "unavailable": 0}
    for _ in range(warmup):
        measure(proxy_call, counts)
        measure(direct_call, counts)
    counts = {"retried": 0, "unavailable": 0}
    proxy_ms: list[float] = []
    direct_ms: list[float] = []
    for index in range(iterations):
        # alternate which side goes first so neither always follows the other's side effects
        pair = [(proxy_ms, proxy_call), (direct_ms, direct_call)]
        for samples, call in pair if index % 2 == 0 else reversed(pair):
            elapsed = measure(call, counts)
            if elapsed is not None:
                samples.append(elapsed)
    return {
        "name": name,
        "proxy_p50": statistics.median(proxy_ms),
        "proxy_p95": percentile(proxy_ms, 0.95),
        "direct_p50": statistics.median(direct_ms),
        "direct_p95": percentile(direct_ms, 0.95),
        "retried": counts["retried"],
        "unavailable": counts["unavailable"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="ddpui-bench-proxy-"))
    os.environ["PREFECT_HOME"] = str(home)  # this process imports prefect's schemas: keep its files here too
    server = PrefectServer(home)
    proxy_port = free_port()
    proxy = ManagedProcess(
        [sys.executable, "-m", "proxy", "--host", "127.0.0.1", "--port", str(proxy_port), "--log-level", "warning"],
        env=prefect_env(
            server.api_url,
            home,
            PROXY_TOKEN=TOKEN,
            PROXY_WORK_POOL=POOL,
            PYTHONPATH=str(REPO_ROOT),
        ),
        log_path=home / "proxy.log",
        cwd=REPO_ROOT,
    )
    try:
        print("starting the Prefect server ...", flush=True)
        server.start()
        proxy.start()
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        wait_http_ok(f"{proxy_url}/proxy/health", timeout=60, process=proxy.process, log=proxy.log_path)

        with (
            httpx.Client(base_url=proxy_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as via_proxy,
            httpx.Client(base_url=server.api_url, timeout=30) as direct,
        ):
            results = run_benchmark(via_proxy, direct, args.iterations)
            print_results(results, args.iterations)
    finally:
        proxy.stop()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return 0


def run_benchmark(via_proxy: httpx.Client, direct: httpx.Client, iterations: int) -> list[dict]:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    pool = WorkPoolCreate(name=POOL, type="process", base_job_template=ProcessWorker.get_default_base_job_template())
    direct.post("/work_pools/", json=pool.model_dump(mode="json")).raise_for_status()

    parameters = {
        "config": {"org_slug": "bench", "tasks": [{"seq": 0, "type": "Shell Operation", "commands": ["true"]}]}
    }
    deployment_ids = []
    for _ in range(50):
        response = via_proxy.post(
            "/proxy/v1/deployments/",
            json={"deployment_name": f"bench-{uuid.uuid4().hex[:8]}", "org_slug": "bench", "parameters": parameters},
        )
        response.raise_for_status()
        deployment_ids.append(response.json()["deployment_id"])
    deployment_id = deployment_ids[0]
    # the create-flow-run measurement adds hundreds of runs: give them a deployment of their own, so the batch
    # read below sees the usual picture (a few recent runs per pipeline)
    response = via_proxy.post(
        "/proxy/v1/deployments/",
        json={"deployment_name": "bench-create-runs", "org_slug": "bench-other", "parameters": parameters},
    )
    response.raise_for_status()
    create_target = response.json()["deployment_id"]
    for each in deployment_ids:
        for _ in range(3):
            via_proxy.post(f"/proxy/deployments/{each}/flow_run", json={}).raise_for_status()
    via_proxy.put("/proxy/blocks/secret/", json={"blockName": "bench-secret", "secret": "s3cr3t"}).raise_for_status()

    now = "2100-01-01T00:00:00Z"
    results = [
        compare(
            "GET deployment",
            lambda: via_proxy.get(f"/proxy/deployments/{deployment_id}"),
            lambda: direct.get(f"/deployments/{deployment_id}"),
            iterations,
        ),
        compare(
            "read secret block by name",
            lambda: via_proxy.get("/proxy/blocks/secret/bench-secret"),
            lambda: direct.get(
                "/block_types/slug/secret/block_documents/name/bench-secret", params={"include_secrets": "false"}
            ),
            iterations,
        ),
        compare(
            "filter flow runs (1 deployment, 10 newest)",
            lambda: via_proxy.post(
                "/proxy/flow_runs/filter", json={"deployment_ids": [deployment_id], "limit": 10, "include_future": True}
            ),
            lambda: direct.post(
                "/flow_runs/filter",
                json={
                    "deployments": {"id": {"any_": [deployment_id]}},
                    "flow_runs": {"expected_start_time": {"before_": now}},
                    "sort": "START_TIME_DESC",
                    "limit": 10,
                },
            ),
            iterations,
        ),
        compare(
            "create flow run",
            lambda: via_proxy.post(f"/proxy/deployments/{create_target}/flow_run", json={}),
            lambda: direct.post(
                f"/deployments/{create_target}/create_flow_run",
                json={"parameters": {}, "tags": []},  # the body the proxy sends
            ),
            min(iterations, 100),  # every call writes: keep SQLite's write lock from dominating
        ),
    ]

    # The list page's batch read: one proxy call vs the 50 calls a caller would otherwise send to Prefect.
    def fifty_direct_calls() -> httpx.Response:
        response = None
        for each in deployment_ids:
            response = direct.post(
                "/flow_runs/filter",
                json={"deployments": {"id": {"any_": [each]}}, "sort": "START_TIME_DESC", "limit": 1},
            )
        return response

    results.append(
        compare(
            "last run of 50 deployments (1 proxy call vs 50 sequential Prefect calls)",
            lambda: via_proxy.post(
                "/proxy/flow_runs/filter",
                json={"deployment_ids": deployment_ids, "limit_per_deployment": 1, "include_future": True},
            ),
            fifty_direct_calls,
            max(10, iterations // 10),
            warmup=2,
        )
    )
    return results


def print_results(results: list[dict], iterations: int) -> None:
    print()
    print(f"machine: {machine_info()}")
    print(f"{iterations} interleaved calls per operation (keep-alive HTTP clients), times in ms")
    print()
    header = (
        f"{'operation':<74} {'proxy p50':>9} {'p95':>7} {'direct p50':>10} {'p95':>7} {'ratio p50':>9} {'p95':>6}"
        f" {'503s':>5} {'failed':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in results:
        print(
            f"{row['name']:<74} {row['proxy_p50']:>9.1f} {row['proxy_p95']:>7.1f} {row['direct_p50']:>10.1f} "
            f"{row['direct_p95']:>7.1f} {row['proxy_p50'] / row['direct_p50']:>8.2f}x "
            f"{row['proxy_p95'] / row['direct_p95']:>5.2f}x {row['retried']:>5} {row['unavailable']:>6}"
        )
    print()
    print("target: proxy <= 1.3x the direct call")
    print("503s: calls Prefect (or the proxy) answered 503 that were retried; failed: still 503 after 3 retries")


if __name__ == "__main__":
    sys.exit(main())
