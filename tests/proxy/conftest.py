"""Fixtures for the proxy tests: the proxy app called in-process, against the session's real Prefect server.

Deployments whose runs must not execute go to IDLE_POOL, which no worker polls; the session worker polls
TEST_WORK_POOL (the proxy's default pool here).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
import warnings
from collections.abc import Iterator

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.workers.process import ProcessWorker

from proxy.main import create_app
from proxy.settings import ProxySettings

with warnings.catch_warnings():
    # Starlette suggests another HTTP library for its TestClient; httpx is the one this project pins
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
TOKEN = "proxy-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEST_WORK_POOL = "ddpui-test"  # the pool the session worker of tests/conftest.py polls
IDLE_POOL = "ddpui-test-idle"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def proxy_settings(**env: str) -> ProxySettings:
    # More retries than the default 3: the session's Prefect server runs on SQLite, which answers 503 ("database
    # is locked") while a long write holds it, e.g. its scheduler filling in runs for the suite's cron schedules.
    base = {"PROXY_TOKEN": TOKEN, "PROXY_WORK_POOL": TEST_WORK_POOL, "PROXY_PREFECT_RETRIES": "6"}
    return ProxySettings.from_env({**os.environ, **base, **env})


@pytest.fixture(scope="session")
def prefect(prefect_server) -> Iterator[SyncPrefectClient]:
    """Prefect's own client, to check what the proxy did without going through the proxy."""
    with get_client(sync_client=True) as client:
        yield client


@pytest.fixture(scope="session")
def work_pools(prefect) -> None:
    """Both test pools, made as `prefect work-pool create --type process` would (the worker reuses its pool)."""
    template = ProcessWorker.get_default_base_job_template()
    for name in (TEST_WORK_POOL, IDLE_POOL):
        with contextlib.suppress(ObjectAlreadyExists):
            prefect.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))


@pytest.fixture(scope="session")
def api(prefect_server, work_pools) -> Iterator[TestClient]:
    """The proxy app (PROXY_TOKEN and PROXY_WORK_POOL set as in production), sending the right token."""
    with TestClient(create_app(proxy_settings()), headers=AUTH, raise_server_exceptions=False) as client:
        yield client


def make_deployment(api: TestClient, *, pool: str | None = IDLE_POOL, **fields) -> str:
    body = {
        "deployment_name": unique("dep"),
        "org_slug": "acme",
        "parameters": {"config": {"org_slug": "acme", "tasks": []}},
        **fields,
    }
    if pool is not None:
        body["work_pool_name"] = pool
    response = api.post("/proxy/v1/deployments/", json=body)
    assert response.status_code == 201, response.text
    return response.json()["deployment_id"]


def shell_task(*commands: str, seq: int = 0, slug: str = "shell") -> dict:
    return {
        "seq": seq,
        "type": "Shell Operation",
        "slug": slug,
        "commands": list(commands),
        "working_dir": "/tmp",
        "env": {},
    }


def wait_for_run(api: TestClient, flow_run_id: str, *, states: set[str] = TERMINAL, timeout: float = 90) -> dict:
    """The run once it is in one of `states`, read then with its task results."""
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/proxy/flow_runs/{flow_run_id}")
        assert response.status_code == 200, response.text
        run = response.json()
        if run["state_type"] in states:
            return api.get(f"/proxy/flow_runs/{flow_run_id}", params={"include_task_results": True}).json()
        if time.monotonic() > deadline:
            raise AssertionError(f"flow run {flow_run_id} still {run['state_type']} after {timeout}s")
        time.sleep(0.5)
