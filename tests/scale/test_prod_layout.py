"""The documented production layout, started by devtools/prod_layout.py, under real load (issue 20, item 1).

Django (gunicorn) and the Prefect server on PostgreSQL, two process workers on one pool, the proxy, the
Airbyte emulator, the webhook and the lock reconciler, each a process of its own. One org with 13 one-sync
pipelines; then, overlapping to keep the wall time down:

- one worker is killed (SIGKILL to its process group and to its flow-run process, as when its machine dies)
  while it runs a pipeline, and replaced, as a supervisor would;
- 40 pipeline runs are triggered over about a minute on the other pipelines;
- Prefect's crash detection (flow-run heartbeats + docs/prefect/crash-zombie-flow-runs.yaml) marks the
  killed run Crashed, and the webhook brings our record and locks in line.

Runs only in the PostgreSQL pass of scripts/test.sh (it fails, not skips, under CI=true without PostgreSQL).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter

import httpx
import psycopg
import pytest

from devtools.prod_layout import OPERATOR_EMAIL, ProductionLayout, databases_drop, warehouse_settings
from devtools.prod_layout_api import LayoutApi, OrgHandle
from tests.support.prefect_rest import prefect_request

RUNS = 40
PIPELINES = 12  # plus the one whose worker is killed; one sync each, so their locks never collide
TRIGGER_EVERY_SECONDS = 1.5  # 40 triggers over about a minute
VICTIM_SYNC_SECONDS = 120  # the killed run is in the middle of its sync for certain
SYNC_SECONDS = 0.2
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module")
def layout(pg_dsn, tmp_path_factory):
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("runs in the PostgreSQL pass of scripts/test.sh (DATABASE_URL=postgresql://...)")
    name = f"ddpui_scale_{uuid.uuid4().hex[:8]}"
    production = ProductionLayout(tmp_path_factory.mktemp("prod-layout"), pg_dsn, name=name, sync_seconds=SYNC_SECONDS)
    try:
        production.start()
        yield production
    finally:
        production.stop()
        databases_drop(pg_dsn, name)


def _prefect(layout, method: str, path: str, **request) -> httpx.Response:
    return prefect_request(method, path, api_url=layout.state.prefect_api_url, **request)


def _emulator(layout, method: str, path: str, **request) -> dict:
    response = httpx.request(method, f"{layout.state.airbyte_url}/_emulator/{path}", timeout=30, **request)
    response.raise_for_status()
    return response.json()


def _flow_run(layout, flow_run_id: str) -> dict:
    return _prefect(layout, "GET", f"flow_runs/{flow_run_id}").json()


def _wait(condition, *, timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def _heartbeat_seen(layout, flow_run_id: str) -> bool:
    body = {
        "filter": {
            "event": {"name": ["prefect.flow-run.heartbeat"]},
            "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
            "occurred": {"since": "2000-01-01T00:00:00Z"},
        },
        "limit": 1,
    }
    return bool(_prefect(layout, "POST", "events/filter", json=body).json()["events"])


def _kill_worker_mid_run(layout, api: LayoutApi, org: OrgHandle, deployment_id: str) -> tuple[str, str]:
    """Triggers the pipeline, waits until its sync is running and Prefect has its first heartbeat, then kills
    the worker running it with its flow-run process (SIGKILL, no goodbye) and starts a replacement of the same
    name. Returns the flow run id and the killed worker's name."""
    _emulator(layout, "POST", "config", json={"sync_seconds": VICTIM_SYNC_SECONDS})
    try:
        flow_run_id = api.pipeline_trigger(org, deployment_id).json()["flow_run_id"]
        _wait(
            lambda: any(job["status"] == "running" for job in _emulator(layout, "GET", "state")["jobs"].values()),
            timeout=120,
            what="the killed run's Airbyte sync to start",
            every=0.5,
        )
    finally:
        _emulator(layout, "POST", "config", json={"sync_seconds": SYNC_SECONDS})
    _wait(lambda: _heartbeat_seen(layout, flow_run_id), timeout=60, what="the first heartbeat of the run", every=0.5)
    run = _flow_run(layout, flow_run_id)
    assert run["state_type"] == "RUNNING", run["state"]
    worker_name = run["labels"]["prefect.worker.name"]
    flow_process = int(run["infrastructure_pid"])
    worker = layout.processes[worker_name].process
    flow_group = os.getpgid(flow_process)
    assert flow_group != worker.pid  # Prefect starts each flow run in a session of its own
    os.killpg(worker.pid, signal.SIGKILL)
    os.killpg(flow_group, signal.SIGKILL)
    worker.wait(timeout=10)
    layout.processes[worker_name].process = None
    layout.start_worker(worker_name)
    return flow_run_id, worker_name


def _trigger_runs(api: LayoutApi, org: OrgHandle, deployment_ids: list[str]) -> tuple[list[tuple[str, str]], int]:
    """RUNS triggers, one every TRIGGER_EVERY_SECONDS (or as soon as a pipeline is free when behind), each on
    the free pipeline (no lock in the pipeline list) triggered least recently. Returns (deployment, run)
    pairs and the number of 409 answers (a pipeline locked between the list and the trigger)."""
    triggered: list[tuple[str, str]] = []
    last_triggered: dict[str, int] = {}
    refused = 0
    next_at = time.monotonic()
    while len(triggered) < RUNS:
        time.sleep(max(0.0, next_at - time.monotonic()))
        pipelines = api.pipelines(org)
        free = [p["deploymentId"] for p in pipelines if p["lock"] is None and p["deploymentId"] in deployment_ids]
        free.sort(key=lambda deployment_id: last_triggered.get(deployment_id, -1))
        for deployment_id in free:
            response = api.pipeline_trigger(org, deployment_id)
            if response.status_code == 200:
                last_triggered[deployment_id] = len(triggered)
                triggered.append((deployment_id, response.json()["flow_run_id"]))
                break
            refused += 1
        else:
            time.sleep(1)  # every pipeline still busy
            continue
        next_at += TRIGGER_EVERY_SECONDS
    return triggered, refused


def _sql(layout, query: str) -> list[tuple]:
    with psycopg.connect(layout.state.databases["django"]) as connection:
        return connection.execute(query).fetchall()


@pytest.mark.postgres_pass
def test_forty_runs_spread_over_two_workers_once_each_and_a_killed_workers_run_ends_crashed(layout):
    started = time.monotonic()
    api = LayoutApi(layout.state.django_url)
    api.login(OPERATOR_EMAIL, layout.keys["operator_password"])
    org = api.org_create(
        "Scale Org", warehouse=warehouse_settings(layout.state.databases["warehouse"]), warehouse_schema="raw"
    )
    connections = api.connections_create(org, PIPELINES + 1, rows=3)
    deployments = [api.pipeline_create(org, f"sync {i}", [c]) for i, c in enumerate(connections)]
    victim_deployment, deployments = deployments[0], deployments[1:]
    connection_of = dict(zip([victim_deployment, *deployments], connections, strict=True))
    setup_done = time.monotonic()

    victim, killed_worker = _kill_worker_mid_run(layout, api, org, victim_deployment)
    killed_at = time.monotonic()
    triggered, refused = _trigger_runs(api, org, deployments)
    triggers_done = time.monotonic()
    run_ids = [run for _, run in triggered]

    # every run ends, in Prefect and in our records (the webhook reads each state back from Prefect)
    def all_over():
        body = {"flow_runs": {"id": {"any_": run_ids}}, "limit": 200}
        runs = _prefect(layout, "POST", "flow_runs/filter", json=body).json()
        return runs if len(runs) == RUNS and all(run["state_type"] in TERMINAL for run in runs) else None

    runs = _wait(all_over, timeout=600, what=f"{RUNS} runs to end", every=3)
    runs_done = time.monotonic()
    assert Counter(run["state_type"] for run in runs) == {"COMPLETED": RUNS}, [
        (run["id"], run["state_name"], run["state"]["message"]) for run in runs if run["state_type"] != "COMPLETED"
    ]

    # spread across both workers: Prefect labels each flow run with the worker that submitted it
    by_worker = Counter(run["labels"].get("prefect.worker.name") for run in runs)
    assert set(by_worker) == {"worker-1", "worker-2"}, by_worker

    # none ran twice: one flow run per trigger, one attempt each, one task run each, one Airbyte job each
    assert all(run["run_count"] == 1 for run in runs), [(run["id"], run["run_count"]) for run in runs]
    flow_runs_per_deployment = Counter(
        run["deployment_id"]
        for run in _prefect(
            layout, "POST", "flow_runs/filter", json={"deployments": {"id": {"any_": deployments}}, "limit": 200}
        ).json()
    )
    assert flow_runs_per_deployment == Counter(deployment for deployment, _ in triggered)
    task_runs = _prefect(
        layout, "POST", "task_runs/filter", json={"flow_runs": {"id": {"any_": run_ids}}, "limit": 200}
    ).json()
    assert Counter(task_run["flow_run_id"] for task_run in task_runs) == Counter(run_ids)
    assert all(task_run["run_count"] == 1 for task_run in task_runs)
    jobs = _emulator(layout, "GET", "state")["jobs"].values()
    jobs_per_connection = Counter(job["configId"] for job in jobs if job["configType"] == "sync")
    expected_jobs = Counter(connection_of[deployment] for deployment, _ in triggered)
    expected_jobs[connection_of[victim_deployment]] = 1
    assert jobs_per_connection == expected_jobs

    # the killed worker's run: Prefect's crash detection marks it Crashed once its heartbeats stop
    crashed = _wait(
        lambda: (run := _flow_run(layout, victim))["state_type"] in TERMINAL and run,
        timeout=240,
        what="the killed worker's run to be marked Crashed",
        every=2,
    )
    crash_seen = time.monotonic()
    assert crashed["state_type"] == "CRASHED", crashed["state"]
    assert "missing heartbeats" in crashed["state"]["message"]
    assert crashed["labels"]["prefect.worker.name"] == killed_worker

    # our records follow (webhook, else the reconciler): every run recorded in its final state, no lock left
    def records_in_line():
        recorded = dict(_sql(layout, "SELECT flow_run_id, state_type FROM ddpui_prefectflowrun"))
        expected = {run_id: "COMPLETED" for run_id in run_ids} | {victim: "CRASHED"}
        locks = _sql(layout, "SELECT count(*) FROM ddpui_locktask")[0][0]
        return recorded == expected and locks == 0

    _wait(records_in_line, timeout=150, what="our run records and locks to follow Prefect", every=2)
    assert all(pipeline["lock"] is None for pipeline in api.pipelines(org))
    assert api.flow_run(org, victim)["stateType"] == "CRASHED"
    live = _prefect(
        layout,
        "POST",
        "flow_runs/filter",
        json={"flow_runs": {"state": {"type": {"any_": ["RUNNING", "PENDING", "CANCELLING"]}}}},
    ).json()
    assert live == []
    api.close()
    print(
        f"\nset-up {setup_done - started:.0f} s; kill {killed_at - setup_done:.0f} s; {RUNS} triggers "
        f"{triggers_done - killed_at:.0f} s ({refused} x 409 on busy pipelines); all ended "
        f"{runs_done - triggers_done:.0f} s later; crash seen {crash_seen - killed_at:.0f} s after the kill; "
        f"runs per worker {dict(by_worker)}"
    )
