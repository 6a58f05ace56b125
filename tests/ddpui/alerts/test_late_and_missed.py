"""Runs that did not happen on time, on the real Prefect server: a run Prefect's own late-runs service marks
Late (its work pool is paused), and a cron slot for which Prefect has no run at all; both alerted once, and a
run no notification told us about is found and recorded by the reconciler's check."""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from ddpui.errors import DomainError
from ddpui.models import Alert, OrgDataFlowv1, PrefectFlowRun
from ddpui.prefect_client import get_proxy
from ddpui.services.alerts.schedule import runs_check_missed
from ddpui.webhooks import SECRET_HEADER
from tests.factories import auth_headers
from tests.support.prefect_rest import prefect_request
from tests.support.webhook_capture import WebhookCapture

from .conftest import make_alert_org, make_pipeline, notify, set_webhook

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]

PAUSED_POOL = "ddpui-alerts-paused"


def scheduled_run(deployment_id: str, at) -> str:
    """A run of the deployment expected at `at`, made in Prefect as its scheduler makes them (not through us)."""
    state = {"type": "SCHEDULED", "name": "Scheduled", "state_details": {"scheduled_time": at.isoformat()}}
    return prefect_request("POST", f"deployments/{deployment_id}/create_flow_run", json={"state": state}).json()["id"]


@pytest.fixture
def prefect_notifications(alerting):
    """The Prefect automation of setup_prefect_webhook, posting to a receiver here; removed afterwards."""
    name = f"ddpui-test-{uuid.uuid4().hex[:8]}"
    with WebhookCapture() as receiver:
        call_command("setup_prefect_webhook", "--name", name, "--url", receiver.url, stdout=StringIO())
        yield receiver
    with contextlib.suppress(DomainError):
        get_proxy().flow_run_notifications(name).delete()


def test_a_run_prefect_marks_late_in_a_paused_pool_is_alerted_once(
    alerting, prefect_notifications, django_capture_on_commit_callbacks, alert_samples
):
    alerting.ALERTS_LATE_AFTER_MINUTES = 0.25  # 15 s
    prefect_request("POST", "work_pools/", json={"name": PAUSED_POOL, "type": "process"}, expect=(201, 409))
    prefect_request("PATCH", f"work_pools/{PAUSED_POOL}", json={"is_paused": True}, expect=(204,))
    alerting.PREFECT_WORK_POOL = PAUSED_POOL
    org, manager, account, _, _, tasks = make_alert_org("Late Org")
    deployment_id = make_pipeline(manager, tasks, "Nightly")
    with WebhookCapture() as hook:
        set_webhook(manager, hook.url)
        run_id = scheduled_run(deployment_id, timezone.now() - timedelta(seconds=20))
        # Prefect's late-runs service moves it to Late; its automation tells "Django" (the receiver)
        late = prefect_notifications.wait_for(
            lambda request: (
                request.json().get("flow_run_id") == run_id
                and request.json().get("message", "").endswith("entered state Late")
            ),
            timeout=90,
        )
        for _ in range(2):  # delivered twice: alerted once
            with django_capture_on_commit_callbacks(execute=True):
                response = Client().post(
                    "/webhooks/v1/notification/",
                    late.body,
                    content_type="application/json",
                    HTTP_X_DDPUI_WEBHOOK_SECRET=late.header(SECRET_HEADER),
                )
            assert response.status_code == 200, response.content
        with django_capture_on_commit_callbacks(execute=True):
            call_command("reconcile_locks", stdout=StringIO())
        posted = hook.wait_for(lambda request: True, timeout=10)
        posts = len(hook.requests)

    record = PrefectFlowRun.objects.get(flow_run_id=run_id)
    assert (record.state_type, record.state_name) == ("SCHEDULED", "Late")
    assert Alert.objects.filter(event="run-late").count() == 1 and posts == 1
    assert sorted(message.to[0] for message in mail.outbox) == sorted([manager.user.email, account.user.email])
    email = mail.outbox[0]
    assert email.subject == "[ddpui] Late Org: The pipeline 'Nightly' has not started"
    assert "Prefect shows it as 'Late'" in email.body and "work pool paused" in email.body
    assert posted.json()["text"] == email.body
    alert_samples.keep("run-late", email=email, webhook=posted.json())


def test_a_cron_slot_without_a_run_is_alerted_once_and_an_unknown_late_run_is_recorded(
    alerting, django_capture_on_commit_callbacks, alert_samples
):
    now = timezone.now()
    slot = (now - timedelta(minutes=20)).replace(second=0, microsecond=0)
    cron = f"{slot.minute} {slot.hour} * * *"  # daily, due 20 minutes ago: Prefect's next run is tomorrow
    org, manager, _, _, _, tasks = make_alert_org("Missed Org")
    missed = make_pipeline(manager, tasks, "Nightly", cron=cron)
    covered = make_pipeline(manager, {"dbt-run": tasks["dbt-test"]}, "Tests", cron=cron)
    # both existed before the slot (as if Prefect's scheduler had been down when it came)
    OrgDataFlowv1.objects.filter(deployment_id__in=[missed, covered]).update(updated_at=now - timedelta(hours=2))
    # Prefect has a run at the slot for the second pipeline, which no notification told us about
    unknown_run = scheduled_run(covered, slot)
    with WebhookCapture() as hook:
        set_webhook(manager, hook.url)
        out = StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command("reconcile_locks", stdout=out)
        assert f"pipeline {missed} of {org.slug} missed its run due at {slot.isoformat()}" in out.getvalue()
        calls = get_proxy().calls
        with django_capture_on_commit_callbacks(execute=True):
            assert runs_check_missed() == []  # once: the next pass raises nothing, and asks Prefect nothing
        assert get_proxy().calls == calls
        payloads = [request.json() for request in hook.requests]

    missed_alert = Alert.objects.get(event="run-missed")
    assert missed_alert.dataflow.deployment_id == missed and missed_alert.occurred_at == slot
    recorded = PrefectFlowRun.objects.get(flow_run_id=unknown_run)
    assert recorded.deployment_id == covered and recorded.expected_start_time == slot
    assert Alert.objects.get(event="run-late").flow_run == recorded  # it exists, 20 minutes late
    assert Alert.objects.count() == 2
    subjects = sorted(message.subject for message in mail.outbox)  # to both managers
    assert subjects == 2 * ["[ddpui] Missed Org: The pipeline 'Nightly' did not run"] + 2 * [
        "[ddpui] Missed Org: The pipeline 'Tests' has not started"
    ]
    email = next(message for message in mail.outbox if "did not run" in message.subject)
    assert f"schedule '{cron}'" in email.body and "Prefect created no run for that time" in email.body
    webhook = next(payload for payload in payloads if "was due to run" in payload["text"])
    alert_samples.keep("run-missed", email=email, webhook=webhook)


def test_a_paused_schedule_or_a_known_run_is_not_a_missed_run(alerting):
    now = timezone.now()
    slot = (now - timedelta(minutes=20)).replace(second=0, microsecond=0)
    cron = f"{slot.minute} {slot.hour} * * *"
    org, manager, _, _, _, tasks = make_alert_org("Not Missed Org")
    paused = make_pipeline(manager, tasks, "Paused", cron=cron)
    ran = make_pipeline(manager, {"dbt-run": tasks["dbt-test"]}, "Ran", cron=cron)
    OrgDataFlowv1.objects.filter(deployment_id__in=[paused, ran]).update(updated_at=now - timedelta(hours=2))
    response = Client().post(
        f"/api/prefect/v1/flows/{paused}/set_schedule/inactive",
        **auth_headers(manager),
    )
    assert response.status_code == 200, response.content
    PrefectFlowRun.objects.create(
        flow_run_id=str(uuid.uuid4()), deployment_id=ran, org=org, state_type="COMPLETED", expected_start_time=slot
    )
    assert runs_check_missed() == []
    assert not Alert.objects.exists()
    assert notify(str(uuid.uuid4())).status_code == 200  # an unknown run changes nothing either
