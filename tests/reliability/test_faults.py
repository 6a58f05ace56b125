"""Fault suite for locks and runs (PostgreSQL): each scenario breaks one part of the stack, then one pass of
the reconciler (`manage.py reconcile_locks`) must leave no lock held by a run that is not live, no run
recorded in a wrong state, and the next trigger must succeed.

The suite runs its own stack so it can break it without touching the session's: a Prefect server (own
PREFECT_HOME and port), the proxy as a subprocess pointed at it, and process workers on a work pool of
its own (`settings.PREFECT_WORK_POOL`). The Airbyte emulator is the session's; a run is one Airbyte sync
whose length the emulator controls, so a run is reliably "mid-run" for as long as a scenario needs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import time
import uuid
from io import StringIO
from pathlib import Path

import httpx
import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client

from ddpui.models import PrefectFlowRun, TaskLock
from ddpui.prefect_client import get_proxy
from devtools.processes import (
    REPO_ROOT,
    ManagedProcess,
    PrefectServer,
    PrefectWorker,
    free_port,
    prefect_env,
    wait_http_ok,
)
from tests.support.orgsetup import make_sample_git_repo, setup_org_via_api
from tests.support.prefect_rest import prefect_request

from .conftest import require_postgres_django, unique_email, wait_for_run

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.prefect,
    pytest.mark.slow,
]

FAULT_POOL = "ddpui-faults"
PROXY_TOKEN = f"faults-proxy-{uuid.uuid4().hex[:8]}"
WEBHOOK_SECRET = f"faults-webhook-{uuid.uuid4().hex[:8]}"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
LIVE = {"SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED"}
# a bound against hangs, not a speed figure (a loaded 2-core machine took 70-85 s for some scenarios)
SCENARIO_SECONDS = 180


class FaultStack:
    """A Prefect server, a proxy and workers that the tests may kill and restart."""

    def __init__(self, home: Path):
        self.home = home
        self.server = PrefectServer(home)
        self.api_url = self.server.api_url
        self.proxy_port = free_port()
        self.proxy_url = f"http://127.0.0.1:{self.proxy_port}"
        self.proxy = ManagedProcess(
            [sys.executable, "-m", "proxy", "--host", "127.0.0.1", "--port", str(self.proxy_port)],
            # one retry: an outage of Prefect surfaces as a 503 within seconds (3 retries take ~15 s a call)
            env=prefect_env(
                self.api_url, home, PROXY_TOKEN=PROXY_TOKEN, PROXY_WORK_POOL=FAULT_POOL, PROXY_PREFECT_RETRIES="1"
            ),
            log_path=home / "proxy.log",
            cwd=REPO_ROOT,
        )
        self.worker: PrefectWorker | None = None

    def start(self) -> None:
        self.server.start()
        prefect_request(
            "POST", f"{self.api_url}/work_pools/", json={"name": FAULT_POOL, "type": "process"}, expect=(201, 409)
        )
        self.start_proxy()

    def start_proxy(self) -> None:
        self.proxy.start()
        wait_http_ok(f"{self.proxy_url}/proxy/health", timeout=60, process=self.proxy.process, log=self.proxy.log_path)

    def start_worker(self) -> PrefectWorker:
        self.worker = PrefectWorker(self.api_url, self.home, FAULT_POOL)
        self.worker.start()
        return self.worker

    def kill_worker(self) -> None:
        """SIGKILL to the worker's whole process group: no chance to report anything."""
        assert self.worker is not None and self.worker.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.worker.process.pid, signal.SIGKILL)
        self.worker.process.wait(timeout=10)
        self.worker.process = None

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def stop(self) -> None:
        self.stop_worker()
        self.proxy.stop()
        self.server.stop()


@pytest.fixture(scope="module")
def fault_stack(pg_dsn):
    """Started once for the module (the server takes ~20 s to start on this machine); not at all on SQLite."""
    require_postgres_django(pg_dsn)
    home = Path(tempfile.mkdtemp(prefix="ddpui-faults-prefect-"))
    stack = FaultStack(home)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def faults(postgres_only, fault_stack, settings, live_services, tmp_path):
    """An org set up through the API against the fault stack, with a one-sync pipeline; yields helpers."""
    settings.PROXY_URL = fault_stack.proxy_url
    settings.PROXY_TOKEN = PROXY_TOKEN
    settings.PREFECT_WORK_POOL = FAULT_POOL
    settings.WEBHOOK_SECRET = WEBHOOK_SECRET
    if not fault_stack.proxy.running:
        fault_stack.start_proxy()
    client = Client()
    setup = setup_org_via_api(
        client,
        email=unique_email("faults"),
        password="faults-password",
        org_name=f"Faults {uuid.uuid4().hex[:6]}",
        warehouse_path_or_pg=tmp_path / "warehouse.duckdb",
        git_repo_url=make_sample_git_repo(tmp_path),
    )
    helpers = Faults(client, setup, fault_stack, live_services["airbyte"])
    helpers.pipeline_id = helpers.create_pipeline("sync")
    yield helpers
    fault_stack.stop_worker()
    if not fault_stack.proxy.running:
        fault_stack.start_proxy()
    if not fault_stack.server.running:
        fault_stack.server.start()
    # leave no run of this test behind for the next one's worker
    for record in PrefectFlowRun.objects.all():
        with contextlib.suppress(Exception):
            httpx.post(
                f"{fault_stack.api_url}/flow_runs/{record.flow_run_id}/set_state",
                json={"state": {"type": "CANCELLED", "name": "Cancelled"}, "force": True},
                timeout=10,
            )


class Faults:
    def __init__(self, client: Client, setup: dict, stack: FaultStack, emulator):
        self.client = client
        self.setup = setup
        self.stack = stack
        self.emulator = emulator
        self.pipeline_id = ""

    @property
    def headers(self) -> dict:
        return self.setup["headers"]

    def create_pipeline(self, name: str) -> str:
        body = {"name": name, "connections": [{"id": self.setup["connection_id"], "seq": 0}]}
        response = self.client.post("/api/prefect/v1/flows/", body, "application/json", **self.headers)
        assert response.status_code == 200, response.content
        return response.json()["deploymentId"]

    def trigger(self, deployment_id: str | None = None):
        return self.client.post(f"/api/prefect/v1/flows/{deployment_id or self.pipeline_id}/flow_run/", **self.headers)

    def run(self, deployment_id: str | None = None) -> str:
        response = self.trigger(deployment_id)
        assert response.status_code == 200, response.content
        return response.json()["flow_run_id"]

    def webhook(self, body):
        content_type = "application/json" if isinstance(body, dict) else "text/plain"
        return self.client.post(
            "/webhooks/v1/notification/", body, content_type, HTTP_X_DDPUI_WEBHOOK_SECRET=WEBHOOK_SECRET
        )

    def wait(self, flow_run_id: str, states: set[str], timeout: float = 45) -> dict:
        return wait_for_run(flow_run_id, states, timeout=timeout, api_url=self.stack.api_url)

    def wait_for_log(self, flow_run_id: str, text: str, timeout: float = 30) -> None:
        """Until a log line of the run that contains `text` has reached Prefect's API (the flow ships its
        logs in batches, a second or two behind)."""
        deadline = time.monotonic() + timeout
        body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
        while True:
            logs = prefect_request("POST", f"{self.stack.api_url}/logs/filter", json=body).json()
            if any(text in entry["message"] for entry in logs):
                return
            assert time.monotonic() < deadline, f"no log line {text!r} from run {flow_run_id} in {timeout} s"
            time.sleep(0.25)

    def prefect_state(self, flow_run_id: str) -> str | None:
        response = prefect_request("GET", f"{self.stack.api_url}/flow_runs/{flow_run_id}", expect=(200, 404))
        return None if response.status_code == 404 else response.json()["state"]["type"]

    def reconcile(self) -> str:
        out = StringIO()
        call_command("reconcile_locks", stdout=out)
        return out.getvalue()

    def assert_consistent_after_one_reconcile(self) -> None:
        """The guarantee: one reconciler pass, then locks and records agree with Prefect, and a trigger works."""
        self.reconcile()
        for lock in TaskLock.objects.all():
            state = self.prefect_state(lock.flow_run_id) if lock.flow_run_id else None
            assert state in LIVE, f"lock on {lock.orgtask_id} held by run {lock.flow_run_id}, which is {state}"
        for record in PrefectFlowRun.objects.all():
            state = self.prefect_state(record.flow_run_id)
            if state is None:
                assert record.state_type == "CANCELLED", f"deleted run {record.flow_run_id} is {record.state_type}"
            elif state in TERMINAL or record.state_type in TERMINAL:
                assert record.state_type == state, f"run {record.flow_run_id}: recorded {record.state_type}, is {state}"
        live_runs = [r.flow_run_id for r in PrefectFlowRun.objects.all() if self.prefect_state(r.flow_run_id) in LIVE]
        assert not live_runs, f"scenario left live runs {live_runs}: the next trigger would be refused"
        assert self.run(), "the next trigger failed"


def test_worker_killed_mid_run(faults):
    started = time.monotonic()
    faults.emulator.configure(sync_seconds=8)
    faults.stack.start_worker()
    run_id = faults.run()
    running = faults.wait(run_id, {"RUNNING"})
    assert faults.webhook({"flow_run_id": run_id}).status_code == 200
    assert PrefectFlowRun.objects.get(flow_run_id=run_id).state_type == "RUNNING"
    # mid-run means inside the sync: a kill right after RUNNING can end the run before its first task has
    # logged anything (CI once saw it crash at "Beginning flow run"), and the e-mail below checks that line
    attempt_line = "task airbyte-sync (seq 0, Airbyte Connection): attempt 1"
    faults.wait_for_log(run_id, attempt_line)
    faults.stack.kill_worker()
    # while the run is still live for Prefect, the reconciler keeps its lock and a new trigger is refused
    faults.reconcile()
    if TaskLock.objects.filter(flow_run_id=run_id).exists():
        assert faults.trigger().status_code == 409
    else:
        assert faults.prefect_state(run_id) in TERMINAL, "the reconciler released the lock of a live run"
    # the flow process runs in a session of its own: it outlives the kill, loses its worker's control
    # channel, and ends the run Crashed
    final = faults.wait(run_id, TERMINAL, timeout=40)
    assert final["state"]["type"] == "CRASHED", (running["state"], final["state"])
    # the failure e-mail carries the run's last log lines (read from the proxy page by page)
    assert faults.webhook({"flow_run_id": run_id}).status_code == 200
    assert len(mail.outbox) == 1
    assert attempt_line in mail.outbox[0].body, mail.outbox[0].body
    faults.assert_consistent_after_one_reconcile()
    assert PrefectFlowRun.objects.get(flow_run_id=run_id).state_type == final["state"]["type"]
    assert time.monotonic() - started < SCENARIO_SECONDS


def test_webhook_dropped_duplicated_and_out_of_order(faults, monkeypatch):
    started = time.monotonic()
    faults.emulator.configure(sync_seconds=1)
    faults.stack.start_worker()
    run_id = faults.run()
    faults.wait(run_id, {"RUNNING"})
    stale_running = get_proxy().flow_run(run_id).state()  # what a slow delivery read before the run ended
    # the RUNNING notification is dropped; the terminal one arrives twice
    faults.wait(run_id, TERMINAL)
    first = faults.webhook({"flow_run_id": run_id})
    assert first.status_code == 200 and "COMPLETED" in first.json()["outcome"].upper(), first.content
    snapshot = PrefectFlowRun.objects.filter(flow_run_id=run_id).values().get()
    assert faults.webhook({"flow_run_id": run_id}).json()["outcome"] == "no change"
    # out of order: the Running notification, and a delivery whose read of Prefect is older than the last one
    assert faults.webhook(f"Flow run x with id {run_id} entered state Running").json()["outcome"] == "no change"
    real_state = type(get_proxy().flow_run(run_id)).state
    monkeypatch.setattr(
        type(get_proxy().flow_run(run_id)),
        "state",
        lambda self: stale_running if self.id == run_id else real_state(self),
    )
    assert faults.webhook({"flow_run_id": run_id}).json()["outcome"] == "no change"
    monkeypatch.undo()
    assert PrefectFlowRun.objects.filter(flow_run_id=run_id).values().get() == snapshot
    assert not TaskLock.objects.exists()

    # a run that Prefect started on its own (a schedule), whose every notification is lost ...
    scheduled = get_proxy().deployment(faults.pipeline_id).create_run().id
    faults.wait(scheduled, TERMINAL)
    # ... or whose stale "running" read is delivered after it ended: it may take locks for a moment
    monkeypatch.setattr(
        type(get_proxy().flow_run(scheduled)),
        "state",
        lambda self: (
            stale_running.model_copy(update={"flow_run_id": scheduled}) if self.id == scheduled else real_state(self)
        ),
    )
    assert faults.webhook({"flow_run_id": scheduled}).status_code == 200
    monkeypatch.undo()
    faults.assert_consistent_after_one_reconcile()
    assert PrefectFlowRun.objects.get(flow_run_id=scheduled).state_type == "COMPLETED"
    assert time.monotonic() - started < SCENARIO_SECONDS


def test_proxy_down_when_a_run_is_triggered(faults):
    started = time.monotonic()
    queued = faults.run()  # no worker: it stays queued, holding the pipeline's lock
    other = faults.create_pipeline("sync again")  # shares the sync task
    records_before = PrefectFlowRun.objects.count()
    faults.stack.proxy.stop()

    response = faults.trigger(faults.pipeline_id)
    assert response.status_code == 409  # the lock is checked before the proxy is called
    with pytest.raises(CommandError):
        faults.reconcile()  # Prefect cannot be asked: nothing is released on a guess
    assert set(TaskLock.objects.values_list("flow_run_id", flat=True)) == {queued}
    cancel = faults.client.post(f"/api/prefect/flow_runs/{queued}/cancel", **faults.headers)
    assert cancel.status_code == 503 and cancel.json()["detail"], cancel.content

    faults.stack.start_proxy()
    assert faults.client.post(f"/api/prefect/flow_runs/{queued}/cancel", **faults.headers).status_code == 200
    faults.wait(queued, {"CANCELLED"})
    faults.reconcile()
    faults.stack.proxy.stop()
    response = faults.trigger(other)
    assert response.status_code == 503, response.content
    assert "unreachable" in response.json()["detail"]
    assert not TaskLock.objects.exists(), "a failed trigger left its locks"
    assert PrefectFlowRun.objects.count() == records_before
    deployment_runs = prefect_request(
        "POST", f"{faults.stack.api_url}/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [other]}}}
    ).json()
    assert deployment_runs == []

    faults.stack.start_proxy()
    faults.assert_consistent_after_one_reconcile()
    assert time.monotonic() - started < SCENARIO_SECONDS


def test_prefect_restarted_mid_run(faults):
    started = time.monotonic()
    faults.emulator.configure(sync_seconds=6)
    faults.stack.start_worker()
    run_id = faults.run()
    faults.wait(run_id, {"RUNNING"})
    faults.stack.server.stop()

    down = faults.trigger()
    assert down.status_code in (409, 503), down.content  # locked by the run, or Prefect unreachable
    assert faults.webhook({"flow_run_id": run_id}).status_code == 503  # Prefect retries the notification
    with pytest.raises(CommandError):
        faults.reconcile()
    assert TaskLock.objects.filter(flow_run_id=run_id).exists()

    faults.stack.server.start()
    faults.wait(run_id, TERMINAL, timeout=40)
    faults.assert_consistent_after_one_reconcile()
    assert time.monotonic() - started < SCENARIO_SECONDS


def test_pipeline_deleted_while_queued(faults):
    started = time.monotonic()
    sibling = faults.create_pipeline("shares the sync")
    queued = faults.run()  # no worker: queued
    refused = faults.client.delete(f"/api/prefect/v1/flows/{faults.pipeline_id}", **faults.headers)
    assert refused.status_code == 409 and queued in refused.json()["detail"], refused.content
    assert faults.trigger(sibling).status_code == 409

    # the deployment goes away behind our back (an operator in Prefect's UI, or a delete racing a trigger):
    # Prefect deletes its queued runs with it
    prefect_request("DELETE", f"{faults.stack.api_url}/deployments/{faults.pipeline_id}", expect=(204,))
    assert faults.prefect_state(queued) is None
    out = faults.reconcile()
    assert f"run {queued} is unknown to Prefect" in out
    assert PrefectFlowRun.objects.get(flow_run_id=queued).state_type == "CANCELLED"
    deleted = faults.client.delete(f"/api/prefect/v1/flows/{faults.pipeline_id}", **faults.headers)
    assert deleted.status_code == 200, deleted.content
    faults.pipeline_id = sibling
    faults.assert_consistent_after_one_reconcile()
    assert time.monotonic() - started < SCENARIO_SECONDS
