"""Benchmark: p50/p95 latency of the pipeline list at 10, 100 and 1,000 pipelines, and of the trigger.

Real parts: a Prefect server, the proxy on uvicorn, Django in-process with a throwaway database
(SQLite unless DATABASE_URL is set), real deployments for every pipeline. Prints figures and the machine.

    .venv/bin/python bench/pipeline_api.py [--sizes 10,100,1000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.processes import PrefectServer, free_port  # noqa: E402

HOME = Path(tempfile.mkdtemp(prefix="ddpui-bench-"))
PORT = free_port()
os.environ.update(
    PREFECT_API_URL=f"http://127.0.0.1:{PORT}/api",
    PREFECT_HOME=str(HOME),
    DDPUI_DATA_DIR=str(HOME / "django"),
    DJANGO_SETTINGS_MODULE="ddpui.settings",
    PROXY_TOKEN="bench-token",
    PROXY_WORK_POOL="bench",
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    server = PrefectServer(HOME, PORT)
    server.start()
    import httpx

    httpx.post(f"{server.api_url}/work_pools/", json={"name": "bench", "type": "process"}, timeout=30)
    import uvicorn

    from proxy.main import app

    proxy_port = free_port()
    proxy = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=proxy_port, log_level="warning"))
    thread = threading.Thread(target=proxy.run, daemon=True)
    thread.start()
    while not proxy.started:
        time.sleep(0.05)
    os.environ["PROXY_URL"] = f"http://127.0.0.1:{proxy_port}"

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    settings.PREFECT_WORK_POOL = "bench"
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        from ddpui.models import DbtTarget, OrgDbt, OrgPrefectBlockv1, OrgWarehouse, TaskLock
        from ddpui.prefect_client import get_proxy
        from ddpui.services import locks
        from ddpui.services.pipelines import TaskRef, pipeline_create
        from tests.factories import auth_headers, make_org, make_orgtask, make_orguser

        org = make_org("Bench Org")
        orguser = make_orguser(org, "pipeline-manager")
        OrgPrefectBlockv1.objects.create(org=org, block_type="Airbyte Server", block_id="1", block_name="bench-airbyte")
        profile = OrgPrefectBlockv1.objects.create(
            org=org, block_type="dbt CLI Profile", block_id="2", block_name="bench-profile"
        )
        dbt = OrgDbt.objects.create(org=org, project_dir="/tmp/bench")
        warehouse = OrgWarehouse.objects.create(
            org=org, wtype="duckdb", name="bench", credentials_block_name="bench-wh"
        )
        DbtTarget.objects.create(
            dbt=dbt, name="default", schema="analytics", warehouse=warehouse, profile_block=profile, is_default=True
        )
        run_task, test_task = make_orgtask(org, "dbt-run"), make_orgtask(org, "dbt-test")
        headers = auth_headers(orguser)
        client = Client()

        def create_pipelines(count: int) -> None:
            def one(i: int) -> None:
                try:
                    pipeline_create(
                        org=org,
                        orguser=orguser,
                        name=f"p{i}",
                        connections=[],
                        transform_tasks=[TaskRef(key=str(test_task.uuid), seq=0)],
                        cron="0 2 * * *",
                    )
                finally:
                    connection.close()

            existing = org.dataflows.count()
            with ThreadPoolExecutor(max_workers=1 if connection.vendor == "sqlite" else 8) as pool:
                list(pool.map(one, range(existing, count)))

        print(
            f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"database {connection.vendor}"
        )
        for size in sizes:
            create_pipelines(size)
            client.get("/api/prefect/v1/flows/", **headers)  # warm
            timings = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                response = client.get("/api/prefect/v1/flows/", **headers)
                timings.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200 and len(response.json()) == size
            print(
                f"pipeline list @ {size:>5} pipelines: p50 {statistics.median(timings):7.1f} ms  "
                f"p95 {percentile(timings, 0.95):7.1f} ms  (n={args.repeat})"
            )

        trigger_pipeline = pipeline_create(
            org=org,
            orguser=orguser,
            name="trigger",
            connections=[],
            transform_tasks=[TaskRef(key=str(run_task.uuid), seq=0)],
            cron=None,
        )
        timings = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            response = client.post(f"/api/prefect/v1/flows/{trigger_pipeline.deployment_id}/flow_run/", **headers)
            timings.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.content
            locks.locks_release_for_run(flow_run_id=response.json()["flow_run_id"])  # untimed: free for the next
        assert not TaskLock.objects.exists()
        print(
            f"trigger (locks + flow run created): p50 {statistics.median(timings):7.1f} ms  "
            f"p95 {percentile(timings, 0.95):7.1f} ms  (n={args.repeat}); proxy calls so far {get_proxy().calls}"
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        proxy.should_exit = True
        thread.join(timeout=10)
        server.stop()


if __name__ == "__main__":
    main()
