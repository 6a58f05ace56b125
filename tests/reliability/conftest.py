"""Fixtures of the reliability suite: PostgreSQL-only guard, an idle work pool, recording clients, waits.

The suite proves the guarantees listed in docs/reliability.md with real parts: the session's Prefect server,
the real proxy, the Airbyte emulator, git, dbt and (for the fault and load tests) PostgreSQL.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from django.db import connection
from django.test import Client

from ddpui.models import PrefectFlowRun, TaskLock
from ddpui.prefect_client import get_proxy
from ddpui.services.run_states import LIVE_STATES, TERMINAL_STATES
from devtools.airbyte_emulator import EmulatorServer
from tests.support.prefect_rest import prefect_request

IDLE_POOL = "ddpui-reliability-idle"  # no worker ever polls it: runs stay queued where a test puts them


def require_postgres_django(pg_dsn: str) -> str:
    """PostgreSQL for Django, or skip. `pg_dsn` already fails under CI=true when no PostgreSQL is provided;
    with one provided, the SQLite pass of scripts/test.sh skips here and its PostgreSQL pass runs the test."""
    if connection.vendor != "postgresql":
        pytest.skip("needs Django on PostgreSQL (the DATABASE_URL pass of scripts/test.sh runs it)")
    return pg_dsn


@pytest.fixture
def postgres_only(pg_dsn):
    return require_postgres_django(pg_dsn)


@pytest.fixture
def idle_pool(settings, live_services) -> str:
    """New deployments go to a work pool no worker polls: runs are created but never executed."""
    prefect_request("POST", "work_pools/", json={"name": IDLE_POOL, "type": "process"}, expect=(201, 409))
    settings.PREFECT_WORK_POOL = IDLE_POOL
    return IDLE_POOL


def unique_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.org"


class RecordingClient(Client):
    """The Django test client, keeping every response body it received (for the secret scan)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bodies: list[bytes] = []

    def request(self, **request):
        response = super().request(**request)
        if not getattr(response, "streaming", False):
            self.bodies.append(bytes(response.content))
        return response


class HttpxRecorder:
    """Keeps the body of every httpx response whose URL starts with one of `prefixes`, from any thread."""

    def __init__(self, prefixes: list[str]):
        self.prefixes = prefixes
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()

    def wrap(self, send):
        recorder = self

        def recording_send(client, request, *args, **kwargs):
            response = send(client, request, *args, **kwargs)
            if any(str(request.url).startswith(prefix) for prefix in recorder.prefixes):
                response.read()
                with recorder._lock:
                    recorder.bodies.append(bytes(response.content))
            return response

        return recording_send


@pytest.fixture
def record_httpx(monkeypatch) -> Iterator:
    """record_httpx([url prefixes]) -> a HttpxRecorder collecting the bodies of matching httpx responses."""
    recorders: list[HttpxRecorder] = []

    def start(prefixes: list[str]) -> HttpxRecorder:
        recorder = HttpxRecorder(prefixes)
        monkeypatch.setattr(httpx.Client, "send", recorder.wrap(httpx.Client.send))
        recorders.append(recorder)
        return recorder

    yield start


@pytest.fixture
def airbyte_with_password(settings, live_services):
    """An Airbyte emulator of our own whose password is distinctive; Django points at it."""
    password = f"abpw{secrets.token_hex(12)}"
    server = EmulatorServer(host="127.0.0.1", port=0, username="airbyte", password=password)
    server.start()
    server.configure(sync_seconds=0.2)
    settings.AIRBYTE_SERVER_HOST = "127.0.0.1"
    settings.AIRBYTE_SERVER_PORT = server.port
    settings.AIRBYTE_PASSWORD = password
    try:
        yield password
    finally:
        server.stop()


def prefect_state(flow_run_id: str) -> dict:
    """The run as Prefect's own REST API reports it (not through the proxy)."""
    return prefect_request("GET", f"flow_runs/{flow_run_id}").json()


def wait_for_run(flow_run_id: str, states: set[str], *, timeout: float = 60, api_url: str | None = None) -> dict:
    """Polls Prefect until the run is in one of `states`; returns the run."""
    api_url = api_url or os.environ["PREFECT_API_URL"]
    deadline = time.monotonic() + timeout
    while True:
        try:
            run = httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=10).json()
        except httpx.HTTPError:
            run = {}
        state = (run.get("state") or {}).get("type")
        if state in states:
            return run
        assert time.monotonic() < deadline, f"flow run {flow_run_id} is {state}, not in {sorted(states)}"
        time.sleep(0.3)


def assert_locks_and_runs_consistent() -> None:
    """No lock is held by a run that Prefect says is over (or does not know), and every run record we keep
    says what Prefect says (for terminal runs: the same terminal state type)."""
    proxy = get_proxy()
    for flow_run_id in set(TaskLock.objects.values_list("flow_run_id", flat=True)):
        assert flow_run_id is not None, "a lock without a run survived the reconciler"
        state = proxy.flow_run(flow_run_id).state().state_type
        assert state in LIVE_STATES, f"lock held by run {flow_run_id}, which is {state}"
    for record in PrefectFlowRun.objects.all():
        state = proxy.flow_run(record.flow_run_id).state().state_type
        if state in TERMINAL_STATES or record.state_type in TERMINAL_STATES:
            assert record.state_type == state, f"run {record.flow_run_id}: recorded {record.state_type}, is {state}"
