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
from tests.support.prefect_rest import prefect_request

_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="ddpui-test-prefect-"))
_PREFECT_PORT = free_port()
os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{_PREFECT_PORT}/api"
os.environ["PREFECT_HOME"] = str(_PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
os.environ["DO_NOT_TRACK"] = "1"

TEST_WORK_POOL = "ddpui-test"


def pytest_addoption(parser):
    parser.addoption(
        "--fast",
        action="store_true",
        help="the fast tier: only tests that need no Prefect server (scripts/test.sh --fast)",
    )
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="only tests whose outcome can depend on Django's database (the PostgreSQL pass of scripts/test.sh): "
        "tests of the proxy, the flows, the emulator and other code that never opens Django's database ran in "
        "the SQLite pass and would run identically again",
    )


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """Tests make many users and log in often: a cheap hasher (Django's own advice for tests) instead of
    PBKDF2's deliberately slow one, which costs about a second a password on this machine."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


# Fixtures that start Prefect (directly or through the proxy) and markers of tests that do it themselves.
_PREFECT_FIXTURES = {"prefect_server", "demo"}
_PREFECT_MARKERS = {"prefect", "worker", "e2e"}


def needs_prefect(item) -> bool:
    """Whether a collected test needs a Prefect server: its fixture closure includes one, or it is marked so."""
    if _PREFECT_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    return any(item.get_closest_marker(name) for name in _PREFECT_MARKERS)


# Fixtures through which a test reaches Django's database (pytest-django's, and ours that start a process
# given the pass's DATABASE_URL); the `django_db` marker and the `postgres_pass` marker say the same.
_DATABASE_FIXTURES = {"db", "transactional_db", "django_db_setup", "demo"}
_DATABASE_MARKERS = {"django_db", "postgres_pass"}


def uses_django_database(item) -> bool:
    """Whether a collected test's outcome can depend on which database Django runs on."""
    if _DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    return any(item.get_closest_marker(name) for name in _DATABASE_MARKERS)


def transactional_without_serialized_rollback(item) -> bool:
    marker = item.get_closest_marker("django_db")
    return marker is not None and marker.kwargs.get("transaction") and not marker.kwargs.get("serialized_rollback")


def pytest_collection_modifyitems(config, items):
    """Marks every test that needs a Prefect server `needs_prefect`; with --fast, deselects them and the tests
    marked `slow` (real dbt builds and the like); with --database-tests-only, deselects the tests that never
    reach Django's database."""
    unserialized = [item.nodeid for item in items if transactional_without_serialized_rollback(item)]
    if unserialized:
        raise pytest.UsageError(
            "django_db(transaction=True) needs serialized_rollback=True here: the flush at the end of such a test "
            "empties the tables the next serialized tests restore into (content types), and they fail. Missing in: "
            + ", ".join(unserialized)
        )
    if config.getoption("--database-tests-only"):
        kept = [item for item in items if uses_django_database(item)]
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
    fast, slow = [], []
    for item in items:
        prefect = needs_prefect(item)
        if prefect:
            item.add_marker(pytest.mark.needs_prefect)
        (slow if prefect or item.get_closest_marker("slow") else fast).append(item)
    if config.getoption("--fast"):
        config.hook.pytest_deselected(items=slow)
        items[:] = fast


def pytest_unconfigure(config):
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


def _prefect_database() -> tuple[str | None, str | None]:
    """(connection URL, database name) for the session's Prefect server: a fresh PostgreSQL database when
    Django itself runs on PostgreSQL (the production layout, the PostgreSQL pass of scripts/test.sh), else
    None for Prefect's embedded SQLite. DDPUI_TEST_PREFECT_DB=sqlite keeps SQLite."""
    from django.db import connection

    dsn = os.environ.get("DDPUI_TEST_PG_DSN", "").strip()
    if connection.vendor != "postgresql" or not dsn or os.environ.get("DDPUI_TEST_PREFECT_DB") == "sqlite":
        return None, None
    import psycopg

    name = f"prefect_test_{os.getpid()}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}", name


def _drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(os.environ["DDPUI_TEST_PG_DSN"], autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def prefect_server():
    """A real `prefect server start` for the whole session (on PostgreSQL when Django is; SQLite otherwise);
    yields the server."""
    database_url, database_name = _prefect_database()
    server = PrefectServer(_PREFECT_HOME, _PREFECT_PORT, database_url=database_url)
    server.start()
    prefect_request(
        "POST", f"{server.api_url}/work_pools/", json={"name": TEST_WORK_POOL, "type": "process"}, expect=(201, 409)
    )
    try:
        yield server
    finally:
        server.stop()
        if database_name:
            _drop_database(database_name)


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
    # one-off task runs answer at once (no wait for the run's end) unless a test asks for the web app's wait
    settings.TASK_RUN_WAIT_SECONDS = 0
    airbyte_emulator.configure(sync_seconds=0.2, fail_next_syncs=0, fail_connection_ids=[], unavailable=False)
    return {"proxy_url": proxy_server, "airbyte": airbyte_emulator}
