"""Fuzzing the proxy: every operation of its own OpenAPI schema (`/openapi.json`), driven by schemathesis over
real HTTP, against a proxy served by uvicorn in front of the session's real Prefect server.

Proves: no 5xx; every response has a documented status code, content type and body schema; every 4xx carries
`{"detail": "<message>"}`; an operation that declares the bearer token refuses requests without it.
Path parameters are either generated or (one case in three) real ids and names seeded beforehand (blocks, a
deployment, a flow run, an automation), so the handlers behind the 404 are exercised too. No operation is
excluded: the proxy under test sends deployments and ad-hoc runs to a work pool no worker polls, so a fuzzed
run starts no real work; what the fuzzing created in Prefect (deployments, automations, blocks) is deleted
afterwards so that later tests see the session's server as before.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import httpx
import pytest
import schemathesis
import uvicorn

from devtools.processes import free_port
from proxy.main import create_app
from proxy.settings import ProxySettings
from tests.support.prefect_rest import prefect_client

from .fuzzing import fuzz_failures, operations_of

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

TOKEN = f"proxy-fuzz-{uuid.uuid4().hex[:8]}"
FUZZ_POOL = "ddpui-proxy-fuzz-idle"  # no worker polls it


class _Served:
    """A proxy app on uvicorn in a thread on 127.0.0.1, stopped by `stop()`."""

    def __init__(self, settings: ProxySettings):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="proxy-fuzz-uvicorn", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the proxy under fuzzing did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def _ids(prefect: httpx.Client, kind: str) -> set[str]:
    found: set[str] = set()
    offset = 0
    while True:
        page = prefect.post(f"/{kind}/filter", json={"limit": 200, "offset": offset}).raise_for_status().json()
        found |= {item["id"] for item in page}
        if len(page) < 200:
            return found
        offset += 200


@pytest.fixture
def fuzzed_proxy(prefect_server):
    """The proxy (own token, idle pool) and real objects to aim at; afterwards, what the fuzzing made is deleted."""
    prefect = prefect_client(timeout=60)
    created = prefect.post("/work_pools/", json={"name": FUZZ_POOL, "type": "process"})
    assert created.status_code in (201, 409), created.text
    before = {kind: _ids(prefect, kind) for kind in ("deployments", "automations", "block_documents")}

    # four Prefect retries (backing off 2, 4, 8, 16 s): a busy moment of the session's Prefect server is a
    # wait, and the proxy still answers within the fuzzer's 120 s request timeout
    settings = ProxySettings.from_env(
        {**os.environ, "PROXY_TOKEN": TOKEN, "PROXY_WORK_POOL": FUZZ_POOL, "PROXY_PREFECT_RETRIES": "4"}
    )
    served = _Served(settings)
    served.start()
    api = httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    tag = uuid.uuid4().hex[:8]

    def made(response: httpx.Response) -> dict:
        assert response.status_code in (200, 201), response.text
        return response.json()

    airbyte = made(
        api.post(
            "/proxy/blocks/airbyte/server/",
            json={
                "blockName": f"fuzz-{tag}-airbyte",
                "serverHost": "127.0.0.1",
                "serverPort": 8001,
                "username": "airbyte",
                "password": "fuzz-airbyte-password",
            },
        )
    )
    secret = made(api.post("/proxy/blocks/secret/", json={"blockName": f"fuzz-{tag}-secret", "secret": "s3cret"}))
    profile = made(
        api.post(
            "/proxy/blocks/dbtcli/profile/",
            json={
                "cli_profile_block_name": f"fuzz-{tag}-profile",
                "profile": {"name": "fuzz"},
                "wtype": "duckdb",
                "target_schema": "analytics",
                "credentials": {"path": "/tmp/fuzz.duckdb"},
            },
        )
    )
    task = {"seq": 0, "type": "Shell Operation", "slug": "shell", "commands": ["true"], "working_dir": "/tmp"}
    deployment = made(
        api.post(
            "/proxy/v1/deployments/",
            json={
                "deployment_name": f"fuzz-{tag}",
                "org_slug": f"fuzz-{tag}",
                "parameters": {"config": {"org_slug": f"fuzz-{tag}", "tasks": [task]}},
                "cron": "0 4 * * *",
            },
        )
    )
    run = made(api.post(f"/proxy/deployments/{deployment['deployment_id']}/flow_run"))
    automation_name = f"fuzz-{tag}-notify"
    made(
        api.put(
            "/proxy/automations/flow-run-notifications/",
            json={
                "name": automation_name,
                "url": "http://127.0.0.1:9/webhooks/v1/notification/",
                "secret_header_name": "X-Fuzz-Secret",
                "secret": "fuzz-webhook-secret",
            },
        )
    )
    real_ids = {
        "block_id": [airbyte["block_id"], secret["block_id"], profile["block_id"]],
        "block_name": [secret["block_name"]],
        "deployment_id": [deployment["deployment_id"]],
        "flow_run_id": [run["flow_run_id"]],
        "name": [automation_name],
    }
    try:
        yield served.url, real_ids
    finally:
        served.stop()
        # a new client: the fixture's one may hold a keep-alive connection the server has closed meanwhile
        prefect = prefect_client(timeout=60, headers={"Connection": "close"})
        for kind in ("automations", "deployments", "block_documents"):
            for object_id in _ids(prefect, kind) - before[kind]:
                prefect.delete(f"/{kind}/{object_id}")


def test_every_proxy_operation_survives_fuzzing(fuzzed_proxy):
    url, real_ids = fuzzed_proxy
    operations = operations_of(schemathesis.openapi.from_url(f"{url}/openapi.json"), real_ids)
    assert len(operations) >= 32, f"the proxy's schema lost operations: {len(operations)}"
    # correctness, not speed, is checked here: the session's Prefect server (SQLite) can stall for seconds
    # while its scheduler fills in runs for the cron schedules the fuzzing created
    failures = fuzz_failures(operations, real_ids, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    assert not failures, "\n\n".join(failures)
