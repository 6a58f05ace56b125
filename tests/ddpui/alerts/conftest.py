"""Alert tests: the real proxy, Prefect server and Airbyte emulator behind Django; runs in a work pool no worker
polls (their states set through Prefect's API) unless a test needs a real run on the session's worker.

With DDPUI_ALERT_SAMPLES_DIR set, the alerts the tests receive (e-mail text, webhook JSON) are written there,
one file per kind: what an alert looks like as received.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from django.test import Client

from tests.factories import auth_headers, make_orguser
from tests.support.prefect_rest import prefect_request

from ..pipelines.conftest import make_pipeline_org

SECRET = "alerts-test-webhook-secret"
IDLE_POOL = "ddpui-idle"  # no worker polls it: runs stay where the test puts them


@pytest.fixture
def alerting(settings, live_services, prefect_server):
    settings.WEBHOOK_SECRET = SECRET
    settings.PREFECT_WORK_POOL = IDLE_POOL
    settings.ALERTS_WEBHOOK_ALLOW_PRIVATE_HOSTS = True  # the receivers listen on 127.0.0.1
    settings.ALERTS_WEBHOOK_TIMEOUT_SECONDS = 2
    settings.DDPUI_WEBAPP_URL = "http://webapp.test"
    settings.DDPUI_ADMIN_URL = "http://ddpui.test/admin"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    prefect_request("POST", "work_pools/", json={"name": IDLE_POOL, "type": "process"}, expect=(201, 409))
    return settings


def notify(flow_run_id: str, body: dict | str | None = None):
    """Posts a notification to our webhook as Prefect's automation does (the body is only a hint)."""
    payload = body if body is not None else {"flow_run_id": flow_run_id}
    content_type = "text/plain" if isinstance(payload, str) else "application/json"
    return Client().post(
        "/webhooks/v1/notification/", payload, content_type=content_type, HTTP_X_DDPUI_WEBHOOK_SECRET=SECRET
    )


def api(method: str, path: str, orguser, body=None):
    client = Client()
    call = getattr(client, method)
    if body is None:
        return call(path, **auth_headers(orguser))
    return call(path, body, content_type="application/json", **auth_headers(orguser))


def make_alert_org(name: str):
    """An org with a pipeline manager (the default recipient), an account manager and an analyst."""
    org, manager, syncs, tasks = make_pipeline_org(name)
    account = make_orguser(org, "account-manager")
    analyst = make_orguser(org, "analyst")
    return org, manager, account, analyst, syncs, tasks


def make_pipeline(orguser, tasks, name="nightly", **extra) -> str:
    body = {"name": name, "transformTasks": [{"uuid": str(tasks["dbt-run"].uuid), "seq": 0}], **extra}
    response = api("post", "/api/prefect/v1/flows/", orguser, body)
    assert response.status_code == 200, response.content
    return response.json()["deploymentId"]


def trigger(orguser, deployment_id: str) -> str:
    response = api("post", f"/api/prefect/v1/flows/{deployment_id}/flow_run/", orguser)
    assert response.status_code == 200, response.content
    return response.json()["flow_run_id"]


def set_webhook(orguser, url: str, events: list[str] | None = None):
    body = {"url": url} if events is None else {"url": url, "events": events}
    response = api("put", "/api/v1/alerts/channels/webhook", orguser, body)
    assert response.status_code == 200, response.content
    return response.json()


class AlertSamples:
    """Keeps what an alert looked like as received, when DDPUI_ALERT_SAMPLES_DIR says where."""

    def __init__(self, directory: str | None):
        self.directory = Path(directory) if directory else None

    def keep(self, kind: str, *, email=None, webhook: dict | None = None) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        parts = []
        if email is not None:
            parts.append(f"--- e-mail to {', '.join(email.to)}\nSubject: {email.subject}\n\n{email.body}\n")
        if webhook is not None:
            parts.append(f"--- webhook JSON\n{json.dumps(webhook, indent=2)}\n")
        (self.directory / f"{kind}.txt").write_text("\n".join(parts))


@pytest.fixture
def alert_samples() -> AlertSamples:
    return AlertSamples(os.environ.get("DDPUI_ALERT_SAMPLES_DIR"))
