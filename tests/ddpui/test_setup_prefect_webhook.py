"""manage.py setup_prefect_webhook: the Prefect automation it makes (through the proxy) is idempotent, never
shows the secret, and fires for a real flow run; the request Prefect sends is accepted by our webhook."""

from __future__ import annotations

import contextlib
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from ddpui.errors import DomainError
from ddpui.models import PrefectFlowRun, TaskLock
from ddpui.prefect_client import get_proxy
from ddpui.webhooks import SECRET_HEADER
from tests.support.prefect_rest import prefect_request
from tests.support.webhook_capture import WebhookCapture

from .pipelines.conftest import make_pipeline_org
from .test_webhooks import make_pipeline, trigger

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]

SECRET = "whs-setup-3f9b2c71d0"  # distinctive, so a leak is easy to spot


def setup_webhook(*args: str) -> str:
    out = StringIO()
    call_command("setup_prefect_webhook", *args, stdout=out)
    return out.getvalue()


def automations_named(name: str) -> list[dict]:
    response = prefect_request("POST", "automations/filter", json={"automations": {"name": {"any_": [name]}}})
    return [automation for automation in response.json() if automation["name"] == name]


@pytest.fixture
def notifications(settings, live_services):
    """A unique automation name for the test, removed afterwards (the Prefect server outlives the test)."""
    settings.WEBHOOK_SECRET = SECRET
    name = f"ddpui-test-{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(DomainError):  # never made (the test failed first), or the proxy was made unreachable
        get_proxy().flow_run_notifications(name).delete()


def test_refuses_to_run_without_a_webhook_secret(settings):
    settings.WEBHOOK_SECRET = ""
    with pytest.raises(CommandError, match="WEBHOOK_SECRET is not set"):
        setup_webhook()


def test_second_run_changes_nothing_and_the_secret_is_never_shown(notifications):
    url = "http://127.0.0.1:8000/webhooks/v1/notification/"
    first = setup_webhook("--name", notifications)
    assert f"webhook block '{notifications}'" in first and "): created" in first
    assert f"automation '{notifications}'" in first and f"POST to {url} with the {SECRET_HEADER} header" in first
    assert first.strip().endswith("setup_prefect_webhook: done")

    second = setup_webhook("--name", notifications)
    assert second.count("): unchanged") == 2
    assert second.strip().endswith("nothing to change, already set up")
    assert len(automations_named(notifications)) == 1

    shown = get_proxy().flow_run_notifications(notifications).get()
    assert (shown.url, shown.secret_header_name, shown.events) == (url, SECRET_HEADER, ["prefect.flow-run.*"])
    for text in (first, second, str(shown), str(automations_named(notifications))):
        assert SECRET not in text

    moved = setup_webhook("--name", notifications, "--url", "https://ddpui.example.org/webhooks/v1/notification/")
    assert "): updated" in moved and "https://ddpui.example.org/webhooks/v1/notification/" in moved


def test_an_unreachable_proxy_is_a_clear_error(notifications, settings):
    settings.PROXY_URL = "http://127.0.0.1:9"
    with pytest.raises(CommandError, match="could not set the Prefect webhook up: .*unreachable"):
        setup_webhook("--name", notifications)


@pytest.mark.worker
def test_the_automation_fires_for_a_real_flow_run_and_its_request_is_processed(notifications, settings, prefect_worker):
    """A pipeline run on the worker (it fails: its dbt project is not on disk); Prefect's automation posts
    each state change to a capturing endpoint, and replaying what it sent to our webhook records the run."""
    settings.PREFECT_WORK_POOL = prefect_worker.pool
    org, orguser, _, tasks = make_pipeline_org(f"Notified Org {uuid.uuid4().hex[:6]}")
    deployment_id = make_pipeline(orguser, {"dbt-run": tasks["git-pull"]}, "notified")
    with WebhookCapture() as capture:
        setup_webhook("--name", notifications, "--url", capture.url)
        run_id = trigger(orguser, deployment_id)
        assert TaskLock.objects.filter(flow_run_id=run_id).exists()

        def terminal_notice(request) -> bool:
            payload = request.json()
            return payload.get("flow_run_id") == run_id and payload.get("message", "").rsplit(" ", 1)[-1] in {
                "Completed",
                "Failed",
                "Crashed",
                "Cancelled",
            }

        delivered = capture.wait_for(terminal_notice, timeout=180)
        received = [request for request in capture.requests if request.json().get("flow_run_id") == run_id]

    assert delivered.header(SECRET_HEADER) == SECRET
    assert f"with id {run_id} entered state Failed" in delivered.json()["message"]
    assert {request.json()["message"].rsplit(" ", 1)[-1] for request in received} >= {"Running", "Failed"}

    # replay what Prefect sent, as it sent it, in the order it arrived
    client = Client()
    for request in received:
        response = client.post(
            "/webhooks/v1/notification/",
            request.body,
            content_type=request.header("Content-Type"),
            HTTP_X_DDPUI_WEBHOOK_SECRET=request.header(SECRET_HEADER),
        )
        assert response.status_code == 200, response.content
        assert response.json()["flow_run_id"] == run_id
    record = PrefectFlowRun.objects.get(flow_run_id=run_id)
    assert (record.state_type, record.deployment_id) == ("FAILED", deployment_id)
    assert not TaskLock.objects.filter(flow_run_id=run_id).exists()


def test_the_automation_fires_for_a_state_set_through_prefects_api(notifications, settings):
    """Without a worker: every state change Prefect records emits the event the automation reacts to."""
    org, orguser, _, tasks = make_pipeline_org(f"Idle Org {uuid.uuid4().hex[:6]}")
    settings.PREFECT_WORK_POOL = "ddpui-idle"
    pool = {"name": "ddpui-idle", "type": "process"}
    prefect_request("POST", "work_pools/", json=pool, expect=(201, 409))
    deployment_id = make_pipeline(orguser, tasks, "idle")
    with WebhookCapture() as capture:
        setup_webhook("--name", notifications, "--url", capture.url)
        run_id = trigger(orguser, deployment_id)
        prefect_request("POST", f"flow_runs/{run_id}/set_state", json={"state": {"type": "COMPLETED"}, "force": True})
        delivered = capture.wait_for(
            lambda request: request.json().get("message", "").endswith(f"{run_id} entered state Completed"),
            timeout=60,
        )
    response = Client().post(
        "/webhooks/v1/notification/",
        delivered.body,
        content_type="application/json",
        HTTP_X_DDPUI_WEBHOOK_SECRET=delivered.header(SECRET_HEADER),
    )
    assert response.status_code == 200 and response.json()["outcome"] == "recorded Completed"
    assert PrefectFlowRun.objects.get(flow_run_id=run_id).state_type == "COMPLETED"
    assert not TaskLock.objects.filter(flow_run_id=run_id).exists()
