"""Contract tests against Dalgo's web app (DalgoT4D/webapp @ a6569dd1): each request is sent exactly as the web
app sends it and each answer is checked for every field the web app reads (rows W-nn of WEBAPP_CONTRACT.md).

How the web app sends (src/helpers/http.tsx): `${backend}/api/${path}`, `Authorization: Bearer <token>`,
`x-dalgo-org: <slug or ''>`, and a body given as a JSON string to fetch, which therefore goes out as
`text/plain;charset=UTF-8` (no Content-Type is set by the web app). The sign-in alone is posted by the
Next.js server with `Content-Type: application/json`.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.test import Client

from tests.support.orgsetup import make_sample_git_repo, setup_org_via_api
from tests.support.prefect_rest import prefect_request

TEXT_PLAIN = "text/plain;charset=UTF-8"
# the calls the web app sends with an empty x-dalgo-org (src/utils/common.ts getOrgHeaderValue)
_NO_ORG = {("GET", "currentuserv2"), ("GET", "users/invitations"), ("POST", "organizations/")}


class WebApp:
    """The web app's http helpers: httpGet, httpPost, httpPut, httpDelete over the Django test client."""

    def __init__(self, token: str | None = None, org_slug: str = ""):
        self.client = Client()
        self.token = token
        self.org_slug = org_slug  # what the web app keeps in localStorage['org-slug']

    def _headers(self, method: str, path: str) -> dict:
        org = "" if (method, path) in _NO_ORG else self.org_slug
        return {"Authorization": f"Bearer {self.token}", "x-dalgo-org": org}

    def get(self, path: str):
        return self.client.get(f"/api/{path}", headers=self._headers("GET", path))

    def _send(self, method: str, path: str, payload: dict | None):
        return self.client.generic(
            method, f"/api/{path}", json.dumps(payload), content_type=TEXT_PLAIN, headers=self._headers(method, path)
        )

    def post(self, path: str, payload: dict):
        return self._send("POST", path, payload)

    def put(self, path: str, payload: dict):
        return self._send("PUT", path, payload)

    def delete(self, path: str):
        # fetch with no body: no Content-Type at all
        return self.client.generic("DELETE", f"/api/{path}", headers=self._headers("DELETE", path))

    def sign_in(self, username: str, password: str):
        """NextAuth's credentials provider (src/pages/api/auth/[...nextauth].ts), server-side, JSON."""
        response = self.client.post(
            "/api/login/", json.dumps({"username": username, "password": password}), content_type="application/json"
        )
        if response.status_code == 200:
            self.token = response.json()["token"]
        return response


def unique_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.org"


def signed_in_org(tmp_path) -> tuple[dict, WebApp]:
    """An org set up through the API (warehouse, source, connection, dbt workspace, transform tasks) and the
    web app signed in as its account manager, with the org chosen."""
    email, password = unique_email("webapp"), "webapp-password-1"
    setup = setup_org_via_api(
        Client(),
        email=email,
        password=password,
        org_name=f"Webapp Org {uuid.uuid4().hex[:6]}",
        warehouse_path_or_pg=tmp_path / "warehouse.duckdb",
        git_repo_url=make_sample_git_repo(tmp_path),
    )
    webapp = WebApp()
    assert webapp.sign_in(email, password).status_code == 200
    webapp.org_slug = setup["org_slug"]
    return setup, webapp


@pytest.fixture
def ready_org(live_services, tmp_path):
    """signed_in_org, its deployments on the session's test pool (a worker runs them when one is started)."""
    return signed_in_org(tmp_path)


@pytest.fixture
def idle_org(idle_pool, tmp_path):
    """signed_in_org, its deployments on a pool no worker polls."""
    return signed_in_org(tmp_path)


IDLE_POOL = "ddpui-webapp-idle"  # no worker polls it: runs started there stay scheduled


@pytest.fixture
def idle_pool(settings, live_services, prefect_server):
    """New deployments go to a work pool no worker polls (for tests that start runs but must not run them)."""
    prefect_request(
        "POST", f"{prefect_server.api_url}/work_pools/", json={"name": IDLE_POOL, "type": "process"}, expect=(201, 409)
    )
    settings.PREFECT_WORK_POOL = IDLE_POOL
    return IDLE_POOL


def pipeline_body(webapp: WebApp, name: str, connection_ids: list[str], cron: str = "0 1 * * *") -> dict:
    """The body FlowCreate.tsx posts: connections numbered from 1, and, with "run transform tasks" on, every
    task of the transform list that the system generated, with its `seq`."""
    tasks = webapp.get("prefect/tasks/transform/").json()
    return {
        "name": name,
        "connections": [{"id": connection_id, "seq": index + 1} for index, connection_id in enumerate(connection_ids)],
        "dbtTransform": "yes",
        "cron": cron,
        "transformTasks": [{"uuid": t["uuid"], "seq": t["seq"]} for t in tasks if t["generated_by"] == "system"],
    }


def settled_log_messages(webapp, flow_run_id: str, timeout: float = 30) -> list[str]:
    """The run's log messages once Prefect has stored them all: its last lines arrive a moment after the run
    ends (Prefect ships logs in batches), so read until two reads a second apart agree."""
    deadline = time.monotonic() + timeout
    previous = None
    while True:
        page = webapp.get(f"prefect/flow_runs/{flow_run_id}/logs").json()
        messages = [line["message"] for line in page["logs"]["logs"]]
        if messages == previous or time.monotonic() > deadline:
            return messages
        previous = messages
        time.sleep(1)
