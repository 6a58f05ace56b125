"""Benchmark (issue 20, item 4): does cost grow as it should on the PostgreSQL production layout?

Starts devtools/prod_layout.py (Django under gunicorn and the Prefect server on PostgreSQL, two workers, the
proxy, the Airbyte emulator, webhook, reconciler), then through the HTTP API only:

1. 10 orgs; the first grows to --big pipelines (the list is timed at 10, 100 and --big, each time once Prefect's
   scheduler has made the new deployments' runs: see 2), the 9 others get --small each. Every pipeline has a
   daily cron far from now (Prefect schedules its runs ahead);
2. trigger: one run of 3 pipelines per org (30 triggers, distinct syncs), timed with the work pool paused
   (the target excludes worker pickup; on 2 cores, flow-run processes starting would compete with Django), once
   Prefect's scheduler has made the new deployments' runs (no new scheduled run for 15 s): its first pass over a
   thousand new deployments is part of the set-up. Each trigger is followed by a run create sent straight to
   Prefect (of a deployment Django does not know; deleted after), timed too: Prefect's share at that moment;
3. webhook: once those 30 runs are over, --deliveries notifications about them are posted to the webhook
   from --threads threads (each makes Django read the run back through the proxy): deliveries per second;
4. scheduler: one pipeline per org gets a cron that falls due 2 (5 orgs) or 3 minutes (5 orgs) later;
   every run it makes must start within 30 s of its scheduled time (start_time - expected_start_time), and
   the scheduler must have created it before that time.

Latencies are HTTP round trips on 127.0.0.1 (gunicorn in front of Django), so they hold the app side and
under a millisecond of transport. Prints a table and the machine.

    .venv/bin/python bench/scale.py --pg-dsn postgresql://postgres:postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from devtools.prod_layout import (  # noqa: E402
    OPERATOR_EMAIL,
    ProductionLayout,
    databases_drop,
    warehouse_settings,
)
from devtools.prod_layout_api import LayoutApi  # noqa: E402

ORGS = 10
CONNECTIONS_PER_ORG = 5  # pipelines 0-2 are triggered, 3-4 fall due: all on distinct syncs
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def machine() -> str:
    memory = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    gib = int(memory.split()[1]) / 1024 / 1024
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{platform.platform()}; {os.cpu_count()} cores; {gib:.0f} GiB; Python {platform.python_version()}; "
        f"Prefect {version('prefect')}, Django {version('django')}, gunicorn {version('gunicorn')}; "
        f"load average at the end {load} (the machine may be shared with other work)"
    )


def scheduler_settled(prefect: httpx.Client, *, quiet_seconds: float = 15, limit_seconds: float = 240) -> float:
    """Waits until Prefect's scheduler has stopped adding scheduled runs (the count unchanged for `quiet_seconds`,
    at most `limit_seconds`); returns the seconds waited."""
    started = time.monotonic()
    body = {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
    last, since = None, time.monotonic()
    while time.monotonic() - started < limit_seconds:
        count = prefect.post("/flow_runs/count", json=body).json()
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            break
        time.sleep(3)
    return time.monotonic() - started


def side_deployment(prefect: httpx.Client, like_deployment_id: str) -> str:
    """A deployment of the same flow and pool that Django does not know (its runs' notifications are ignored),
    without a schedule: the runs Prefect creates for it straight away measure Prefect's share of a trigger."""
    like = prefect.get(f"/deployments/{like_deployment_id}").json()
    body = {
        "name": f"bench-side-{uuid.uuid4().hex[:8]}",
        "flow_id": like["flow_id"],
        "work_pool_name": like["work_pool_name"],
        "entrypoint": like["entrypoint"],
        "path": like["path"],
        "parameters": {},
        "enforce_parameter_schema": False,
    }
    response = prefect.post("/deployments/", json=body)
    response.raise_for_status()
    return response.json()["id"]


def far_cron(now: datetime) -> str:
    return f"0 {(now.hour + 12) % 24} * * *"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-dsn", default=os.environ.get("DDPUI_TEST_PG_DSN", ""), help="a superuser's DSN")
    parser.add_argument("--big", type=int, default=1000, help="pipelines of the big org (default 1000)")
    parser.add_argument("--small", type=int, default=10, help="pipelines of each of the 9 other orgs (default 10)")
    parser.add_argument("--repeat", type=int, default=60, help="list calls per size (default 60)")
    parser.add_argument("--deliveries", type=int, default=600, help="webhook notifications to post (default 600)")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    if not args.pg_dsn:
        parser.error("--pg-dsn (or DDPUI_TEST_PG_DSN) is required: bash scripts/postgres.sh start DIR PORT")
    sizes = sorted({size for size in (10, 100, args.big) if size <= args.big})
    load_at_start = os.getloadavg()
    bench_started = time.monotonic()
    name = f"ddpui_bench_{uuid.uuid4().hex[:8]}"
    layout = ProductionLayout(Path(tempfile.mkdtemp(prefix="ddpui-bench-scale-")), args.pg_dsn, name=name)
    try:
        layout.start()
        started_in = time.monotonic() - bench_started
        api = LayoutApi(layout.state.django_url)
        api.login(OPERATOR_EMAIL, layout.keys["operator_password"])
        warehouse = warehouse_settings(layout.state.databases["warehouse"])
        now = datetime.now(UTC)
        cron = far_cron(now)

        # 1. orgs, pipelines, the list at 10, 100, big
        setup_started = time.monotonic()
        orgs = [api.org_create(f"Bench Org {i}", warehouse=warehouse, warehouse_schema="raw") for i in range(ORGS)]
        pipelines: dict[str, list[str]] = {org.slug: [] for org in orgs}
        for org in orgs:
            api.connections_create(org, CONNECTIONS_PER_ORG, rows=3)

        def grow(org, count: int) -> None:
            have = len(pipelines[org.slug])
            for index in range(have, count):
                connection = org.connections[index % CONNECTIONS_PER_ORG]
                pipelines[org.slug].append(api.pipeline_create(org, f"pipeline {index:04d}", [connection], cron))

        for org in orgs[1:]:
            grow(org, args.small)
        big = orgs[0]
        list_ms: dict[int, list[float]] = {}
        prefect = httpx.Client(base_url=layout.state.prefect_api_url, timeout=60)
        for size in sizes:
            grow(big, size)
            settled = scheduler_settled(prefect)
            print(f"[bench] {size} pipelines: Prefect's scheduler settled after {settled:.0f} s", flush=True)
            api.pipelines(big)  # warm
            list_ms[size] = [timed(lambda: api.pipelines(big))[0] for _ in range(args.repeat)]
            assert len(api.pipelines(big)) == size
            print(f"[bench] list at {size}: p50 {statistics.median(list_ms[size]):.0f} ms", flush=True)
        total = sum(len(ids) for ids in pipelines.values())
        setup_seconds = time.monotonic() - setup_started

        # 2. triggers: 3 pipelines per org, distinct syncs, the pool paused while they are timed, once Prefect's
        # scheduler has filled in the new deployments' runs (its first pass over a thousand new deployments is
        # set-up, not the steady state); each trigger is followed by Prefect's own create of a run (of a deployment
        # Django does not know), sent straight to it: Prefect's share at that moment
        settle_seconds = scheduler_settled(prefect)
        print(f"[bench] Prefect's scheduler settled after {settle_seconds:.0f} s", flush=True)
        pool_url = f"{layout.state.prefect_api_url}/work_pools/{layout.state.work_pool}"
        httpx.patch(pool_url, json={"is_paused": True}, timeout=30).raise_for_status()
        side = side_deployment(prefect, pipelines[orgs[0].slug][0])
        trigger_ms, prefect_create_ms, run_ids, side_runs = [], [], [], []
        for org in orgs:
            for deployment_id in pipelines[org.slug][:3]:
                elapsed, response = timed(lambda org=org, d=deployment_id: api.pipeline_trigger(org, d))
                assert response.status_code == 200, response.text
                trigger_ms.append(elapsed)
                run_ids.append((org, response.json()["flow_run_id"]))
                elapsed, response = timed(
                    lambda: prefect.post(f"/deployments/{side}/create_flow_run", json={"parameters": {}})
                )
                response.raise_for_status()
                prefect_create_ms.append(elapsed)
                side_runs.append(response.json()["id"])
        for flow_run_id in side_runs:
            prefect.delete(f"/flow_runs/{flow_run_id}").raise_for_status()
        prefect.delete(f"/deployments/{side}").raise_for_status()
        httpx.patch(pool_url, json={"is_paused": False}, timeout=30).raise_for_status()

        # 3. webhook deliveries about the triggered runs, once they are over
        deadline = time.monotonic() + 600
        ids = [run_id for _, run_id in run_ids]
        while time.monotonic() < deadline:
            runs = prefect.post("/flow_runs/filter", json={"flow_runs": {"id": {"any_": ids}}}).json()
            if all(run["state_type"] in TERMINAL for run in runs):
                break
            time.sleep(3)
        webhook = f"{layout.state.django_url}/webhooks/v1/notification/"
        headers = {"X-Ddpui-Webhook-Secret": layout.keys["webhook_secret"]}

        def deliver(index: int) -> int:
            flow_run_id = ids[index % len(ids)]
            body = {"flow_run_id": flow_run_id, "message": f"Flow run x with id {flow_run_id} entered state Completed"}
            return httpx.post(webhook, json=body, headers=headers, timeout=60).status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            statuses = list(pool.map(deliver, range(args.deliveries)))
        webhook_seconds = time.perf_counter() - started
        bad = [status for status in statuses if status != 200]

        # 4. the scheduler, on idle workers: one pipeline per org falls due, 5 in 2 minutes, 5 in 3 minutes
        due_at = (datetime.now(UTC) + timedelta(minutes=2)).replace(second=0, microsecond=0)
        due_deployments = []
        for index, org in enumerate(orgs):
            when = due_at + timedelta(minutes=index // 5)
            body = {
                "name": "due",
                "connections": [{"id": org.connections[3], "seq": 0}],
                "cron": f"{when.minute} {when.hour} * * *",
            }
            api.call("PUT", f"/api/prefect/v1/flows/{pipelines[org.slug][3]}", body, org=org)
            due_deployments.append(pipelines[org.slug][3])
        last_due = due_at + timedelta(minutes=1)
        print(f"[bench] 10 pipelines fall due at {due_at:%H:%M} and {last_due:%H:%M} UTC", flush=True)

        # 4, measured: every run of the due pipelines, when Prefect created it and when it started
        while datetime.now(UTC) < last_due + timedelta(seconds=90):
            time.sleep(5)
        due_runs = prefect.post(
            "/flow_runs/filter",
            json={
                "deployments": {"id": {"any_": due_deployments}},
                "flow_runs": {
                    "expected_start_time": {
                        "after_": (due_at - timedelta(seconds=1)).isoformat(),
                        "before_": (last_due + timedelta(seconds=1)).isoformat(),
                    }
                },
            },
        ).json()
        lateness, created_ahead = [], 0
        for run in due_runs:
            expected = datetime.fromisoformat(run["expected_start_time"])
            actual = datetime.fromisoformat(run["start_time"]) if run["start_time"] else datetime.now(UTC)
            lateness.append((actual - expected).total_seconds())
            created_ahead += datetime.fromisoformat(run["created"]) < expected
        on_time = sum(1 for seconds in lateness if seconds <= 30)
        api.close()
        prefect.close()
    finally:
        layout.stop()
        databases_drop(args.pg_dsn, name)

    rows = []
    for size in sizes:
        note = f"p50 {statistics.median(list_ms[size]):.0f} ms, {args.repeat} calls"
        if size == args.big:
            note += "; target < 100 ms"
        p95 = f"{percentile(list_ms[size], 0.95):.0f} ms"
        rows.append((f"pipeline list p95, {size} pipelines in the org", p95, note))
    trigger_note = f"p50 {statistics.median(trigger_ms):.0f} ms, {len(trigger_ms)} triggers; target < 150 ms"
    rows.append(("trigger p95", f"{percentile(trigger_ms, 0.95):.0f} ms", trigger_note))
    prefect_note = f"p50 {statistics.median(prefect_create_ms):.0f} ms; each right after a trigger, straight to Prefect"
    rows.append(("  Prefect's own run create p95", f"{percentile(prefect_create_ms, 0.95):.0f} ms", prefect_note))
    webhook_note = f"{args.deliveries} from {args.threads} threads in {webhook_seconds:.1f} s; {len(bad)} not 200"
    rows.append(("webhook deliveries", f"{args.deliveries / webhook_seconds:.0f} /s", webhook_note))
    worst = max(lateness, default=float("nan"))
    middle = statistics.median(lateness) if lateness else float("nan")
    due_note = (
        f"expected 10; start - scheduled time: max {worst:.1f} s, median {middle:.1f} s; "
        f"{created_ahead} created by the scheduler before their time"
    )
    rows.append(("scheduled runs started within 30 s", f"{on_time} of {len(due_runs)}", due_note))
    whole = time.monotonic() - bench_started
    print()
    print(
        f"PostgreSQL production layout: {total} pipelines with schedules in {ORGS} orgs "
        f"(set-up {setup_seconds:.0f} s, layout start {started_in:.0f} s, whole bench {whole:.0f} s)"
    )
    width = max(len(row[0]) for row in rows)
    for label, value, note in rows:
        print(f"  {label:<{width}}  {value:>10}   {note}")
    print(f"machine: {machine()}; load average at the start {', '.join(f'{v:.1f}' for v in load_at_start)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
