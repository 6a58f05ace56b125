"""Session-wide test set-up: one real Prefect server for the whole run, a worker on demand, PostgreSQL.

PREFECT_API_URL is fixed here, before anything imports prefect, so no process ever falls back to a
temporary server of its own. The server itself starts only when a test asks for it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from devtools.processes import PrefectServer, PrefectWorker, free_port

_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="ddpui-test-prefect-"))
_PREFECT_PORT = free_port()
os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{_PREFECT_PORT}/api"
os.environ["PREFECT_HOME"] = str(_PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
os.environ["DO_NOT_TRACK"] = "1"

TEST_WORK_POOL = "ddpui-test"


def pytest_unconfigure(config):
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_server():
    """A real `prefect server start` (SQLite) for the whole session; yields the API URL."""
    import httpx

    server = PrefectServer(_PREFECT_HOME, _PREFECT_PORT)
    server.start()
    created = httpx.post(f"{server.api_url}/work_pools/", json={"name": TEST_WORK_POOL, "type": "process"}, timeout=30)
    assert created.status_code in (201, 409), created.text
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prefect_worker(prefect_server):
    """A process worker on the work pool TEST_WORK_POOL, running flows from the repository root."""
    worker = PrefectWorker(prefect_server.api_url, _PREFECT_HOME, TEST_WORK_POOL)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """DSN of a PostgreSQL server for warehouse tests. CI always provides one; it is never skipped there."""
    dsn = os.environ.get("DDPUI_TEST_PG_DSN", "").strip()
    if not dsn:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                "DDPUI_TEST_PG_DSN is not set: CI must run the PostgreSQL tests (scripts/test.sh starts PostgreSQL)"
            )
        pytest.skip("DDPUI_TEST_PG_DSN not set (local run without PostgreSQL)")
    return dsn


PROXY_TEST_TOKEN = "test-proxy-token"


@pytest.fixture(scope="session")
def proxy_server(prefect_server):
    """The real proxy app served by uvicorn in a thread on 127.0.0.1; yields its base URL."""
    import threading
    import time

    import uvicorn

    os.environ["PROXY_TOKEN"] = PROXY_TEST_TOKEN
    os.environ.setdefault("PROXY_WORK_POOL", TEST_WORK_POOL)
    from proxy.main import app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="proxy-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the proxy did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session")
def airbyte_emulator():
    """The Airbyte config-API test double on 127.0.0.1 (devtools/airbyte_emulator)."""
    from devtools.airbyte_emulator import EmulatorServer

    server = EmulatorServer(host="127.0.0.1", port=0, username="airbyte", password="password")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_services(settings, proxy_server, airbyte_emulator, tmp_path):
    """Points Django at the real proxy and the emulator, with the org dbt root in a temporary directory."""
    from urllib.parse import urlparse

    settings.PROXY_URL = proxy_server
    settings.PROXY_TOKEN = PROXY_TEST_TOKEN
    settings.PREFECT_WORK_POOL = TEST_WORK_POOL
    emulator = urlparse(airbyte_emulator.url)
    settings.AIRBYTE_SERVER_HOST = emulator.hostname
    settings.AIRBYTE_SERVER_PORT = emulator.port
    settings.AIRBYTE_USERNAME = "airbyte"
    settings.AIRBYTE_PASSWORD = "password"
    settings.CLIENT_DBT_ROOT = tmp_path / "clients"
    airbyte_emulator.configure(sync_seconds=0.2, fail_next_syncs=0, fail_connection_ids=[], unavailable=False)
    return {"proxy_url": proxy_server, "airbyte": airbyte_emulator}
