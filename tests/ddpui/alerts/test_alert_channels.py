"""Alerts on their channels, for runs whose states are set in the real Prefect server: once per event whatever
the order and number of notifications, by e-mail (Django's outbox) and to an incoming webhook (a receiver on
127.0.0.1) — including a webhook that fails, hangs or gives up, which never touches the run's bookkeeping —
each user's choice and its opt-out at once, and the webhook URL kept secret."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from ddpui.models import Alert, AlertDelivery, OrgAlertSettings, PrefectFlowRun, TaskLock
from ddpui.prefect_client.client import FlowRun
from ddpui.services import run_logs
from ddpui.services.alerts.delivery import deliveries_retry
from tests.factories import auth_headers
from tests.support.prefect_rest import prefect_request, prefect_set_state
from tests.support.webhook_capture import WebhookCapture

from ..pipelines.conftest import make_pipeline_org
from .conftest import api, make_alert_org, make_pipeline, notify, set_webhook, trigger

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]


def failed_run(manager, tasks, name="nightly") -> str:
    run_id = trigger(manager, make_pipeline(manager, tasks, name))
    prefect_set_state(run_id, "RUNNING")
    prefect_set_state(run_id, "FAILED")
    return run_id


def test_a_failure_is_alerted_once_on_each_channel_whatever_the_notifications(
    alerting, django_capture_on_commit_callbacks, alert_samples
):
    org, manager, account, analyst, _, tasks = make_alert_org("Once Org")
    assert api("put", "/api/v1/alerts/preferences", account, {"email": {"run-failed": False}}).status_code == 200
    with WebhookCapture() as receiver:
        shown = set_webhook(manager, receiver.url)
        assert shown["configured"] and shown["urlHint"] == receiver.url.split("/webhooks")[0] + "/…"
        run_id = failed_run(manager, tasks)
        message_form = f"Flow run brave-fox with id {run_id} entered state Running"  # a late, stale-looking hint
        observers = [
            lambda: notify(run_id, message_form),
            lambda: notify(run_id),
            lambda: Client().get(f"/api/prefect/flow_runs/{run_id}", **auth_headers(manager)),
            lambda: call_command("reconcile_locks", stdout=StringIO()),
            lambda: notify(run_id),
            lambda: notify(run_id, {"flow_run_id": run_id, "state": {"type": "RUNNING"}}),
        ]
        for observe in observers:
            with django_capture_on_commit_callbacks(execute=True):
                observe()
        delivered = receiver.wait_for(lambda request: True, timeout=10)
        posts = list(receiver.requests)

    record = PrefectFlowRun.objects.get(flow_run_id=run_id)
    assert record.state_type == "FAILED" and not TaskLock.objects.exists()
    alert = Alert.objects.get(flow_run=record)
    assert alert.event == "run-failed" and Alert.objects.count() == 1
    # e-mail: the pipeline manager only (the account manager opted out, the analyst gets nothing by default)
    assert [message.to for message in mail.outbox] == [[manager.user.email]]
    email = mail.outbox[0]
    assert email.subject == "[ddpui] Once Org: The pipeline 'nightly' failed"
    assert "Organization: Once Org" in email.body and "Pipeline: nightly" in email.body
    assert f"http://ddpui.test/admin/ddpui/prefectflowrun/{record.pk}/change/" in email.body
    assert "http://webapp.test/pipeline/orchestrate" in email.body
    # the webhook: one POST in Slack's format, the same text
    assert len(posts) == 1 and delivered.header("Content-Type") == "application/json"
    payload = delivered.json()
    assert payload["text"] == email.body and payload["blocks"][0]["text"]["text"] == email.subject
    assert {d.channel: d.status for d in alert.deliveries.all()} == {"email": "sent", "webhook": "sent"}
    alert_samples.keep("run-failed-crash-or-fail", email=email, webhook=payload)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_duplicate_notifications_raise_one_alert(alerting):
    org, manager, account, _, _, tasks = make_alert_org("Race Org")
    with WebhookCapture() as receiver:
        set_webhook(manager, receiver.url)
        run_id = failed_run(manager, tasks)
        barrier = threading.Barrier(6)
        statuses = []

        def deliver():
            try:
                barrier.wait()
                statuses.append(notify(run_id).status_code)
            finally:
                connection.close()  # the thread's own connection (the test client keeps it open)

        threads = [threading.Thread(target=deliver) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        receiver.wait_for(lambda request: True, timeout=10)
        call_command("reconcile_locks", stdout=StringIO())  # and a later observer: nothing more
        posts = len(receiver.requests)
    assert statuses == [200] * 6
    assert Alert.objects.filter(flow_run__flow_run_id=run_id).count() == 1
    assert sorted(message.to[0] for message in mail.outbox) == sorted([manager.user.email, account.user.email])
    assert posts == 1


def test_a_failing_webhook_is_retried_with_backoff_and_never_blocks_the_bookkeeping(
    alerting, django_capture_on_commit_callbacks
):
    alerting.ALERTS_RETRY_BASE_SECONDS = 30
    org, manager, account, analyst, _, tasks = make_alert_org("Flaky Hook Org")
    with WebhookCapture(statuses=[500, 503]) as receiver:
        set_webhook(manager, receiver.url)
        run_id = failed_run(manager, tasks)
        with django_capture_on_commit_callbacks(execute=True):
            response = notify(run_id)
        # the run's bookkeeping is done whatever the channel did
        assert response.status_code == 200 and response.json()["outcome"] == "recorded Failed"
        assert PrefectFlowRun.objects.get(flow_run_id=run_id).state_type == "FAILED"
        assert not TaskLock.objects.exists() and len(mail.outbox) == 2  # the account and the pipeline manager
        hook = AlertDelivery.objects.get(channel="webhook")
        assert (hook.status, hook.attempts) == ("pending", 1)
        assert hook.last_error == "127.0.0.1 answered 500: no_service"
        first_wait = hook.next_attempt_at - hook.last_attempt_at
        assert first_wait == timedelta(seconds=30)

        # its last error is visible to the org's managers, not to analysts
        channels = {c["channel"]: c for c in api("get", "/api/v1/alerts/channels", account).json()}
        assert channels["webhook"]["lastError"] == "127.0.0.1 answered 500: no_service"
        assert channels["webhook"]["pending"] == 1 and channels["email"]["lastDeliveredAt"] is not None
        assert api("get", "/api/v1/alerts/channels", analyst).status_code == 403

        assert deliveries_retry() == []  # not due yet
        assert deliveries_retry(now=hook.next_attempt_at) == [f"alert delivery {hook.id}: pending"]
        hook.refresh_from_db()
        assert hook.attempts == 2 and hook.last_error == "127.0.0.1 answered 503: no_service"
        assert hook.next_attempt_at - hook.last_attempt_at == 2 * first_wait  # backing off
        assert deliveries_retry(now=hook.next_attempt_at) == [f"alert delivery {hook.id}: sent"]
        bodies = [request.body for request in receiver.requests]
    hook.refresh_from_db()
    assert (hook.status, hook.attempts, hook.sent_at is not None) == ("sent", 3, True)
    assert len(bodies) == 3 and len(set(bodies)) == 1  # the same message each time
    listed = api("get", "/api/v1/alerts", manager).json()
    assert listed["count"] == 1
    assert sorted((d["channel"], d["status"]) for d in listed["alerts"][0]["deliveries"]) == [
        ("email", "sent"),
        ("email", "sent"),
        ("webhook", "sent"),
    ]


def test_a_hanging_webhook_times_out_and_gives_up_after_the_last_attempt(alerting, django_capture_on_commit_callbacks):
    alerting.ALERTS_WEBHOOK_TIMEOUT_SECONDS = 1
    alerting.ALERTS_MAX_ATTEMPTS = 2
    org, manager, _, _, _, tasks = make_alert_org("Hanging Hook Org")
    with WebhookCapture(delay_seconds=3) as receiver:
        set_webhook(manager, receiver.url)
        run_id = failed_run(manager, tasks)
        with django_capture_on_commit_callbacks(execute=True):
            assert notify(run_id).json()["outcome"] == "recorded Failed"
        hook = AlertDelivery.objects.get(channel="webhook")
        assert hook.status == "pending" and hook.last_error == "127.0.0.1 did not answer within 1 s"
        deliveries_retry(now=hook.next_attempt_at)
        hook.refresh_from_db()
        assert (hook.status, hook.attempts, hook.next_attempt_at) == ("failed", 2, None)
        assert deliveries_retry(now=timezone.now() + timedelta(days=1)) == []  # given up: never again
    channel = next(c for c in api("get", "/api/v1/alerts/channels", manager).json() if c["channel"] == "webhook")
    assert channel["failed"] == 1 and channel["pending"] == 0
    assert mail.outbox and PrefectFlowRun.objects.get(flow_run_id=run_id).state_type == "FAILED"


def test_an_opt_out_counts_at_once_even_for_an_alert_waiting_for_its_retry(
    alerting, django_capture_on_commit_callbacks
):
    org, manager, _, tasks = make_pipeline_org("Opt Out Org")  # one manager: the only default recipient
    prefs = api("get", "/api/v1/alerts/preferences", manager).json()
    assert prefs["isDefault"] and {e["event"] for e in prefs["events"] if e["email"]} == {
        "run-failed",
        "dbt-test-failed",
        "run-late",
        "run-missed",
    }
    # the mail server is down: the failure's e-mail waits for a retry
    alerting.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    alerting.EMAIL_HOST, alerting.EMAIL_PORT, alerting.EMAIL_TIMEOUT = "127.0.0.1", 9, 1
    first = failed_run(manager, tasks, "first")
    with django_capture_on_commit_callbacks(execute=True):
        notify(first)
    waiting = AlertDelivery.objects.get(alert__flow_run__flow_run_id=first, channel="email")
    assert waiting.status == "pending" and waiting.last_error.startswith("the mail server refused or did not answer")

    changed = api("put", "/api/v1/alerts/preferences", manager, {"email": {"run-failed": False}}).json()
    assert not changed["isDefault"] and not next(e for e in changed["events"] if e["event"] == "run-failed")["email"]
    alerting.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # the mail server is back
    deliveries_retry(now=waiting.next_attempt_at)
    waiting.refresh_from_db()
    assert waiting.status == "skipped" and waiting.last_error == "the recipient no longer receives this event by e-mail"
    second = failed_run(manager, tasks, "second")
    with django_capture_on_commit_callbacks(execute=True):
        notify(second)
    assert not AlertDelivery.objects.filter(alert__flow_run__flow_run_id=second).exists()
    assert mail.outbox == []

    assert api("delete", "/api/v1/alerts/preferences", manager).json()["isDefault"]  # back to the defaults
    third = failed_run(manager, tasks, "third")
    with django_capture_on_commit_callbacks(execute=True):
        notify(third)
    assert [message.to for message in mail.outbox] == [[manager.user.email]] and "third" in mail.outbox[0].subject
    bad = api("put", "/api/v1/alerts/preferences", manager, {"email": {"everything": True}})
    assert bad.status_code == 400 and "unknown event(s) everything" in bad.json()["detail"]


def test_the_webhook_url_is_a_secret_checked_and_kept_in_prefect(alerting, django_capture_on_commit_callbacks):
    org, manager, account, analyst, _, tasks = make_alert_org("Secret Hook Org")
    token = "T0SECRET/B0SECRET/xoxTokenPart"
    with WebhookCapture() as receiver:
        url = f"{receiver.url}{token}"
        alerting.ALERTS_WEBHOOK_ALLOW_PRIVATE_HOSTS = False  # as in production
        for bad_url, detail in [
            ("not a url", "must be the incoming webhook's http(s) URL"),
            ("ftp://hooks.example.org/x", "must be the incoming webhook's http(s) URL"),
            ("https://no-such-host.invalid/x", "no-such-host.invalid cannot be found"),
            (url, "127.0.0.1 is a private or local address"),
        ]:
            response = api("put", "/api/v1/alerts/channels/webhook", manager, {"url": bad_url})
            assert response.status_code == 400 and detail in response.json()["detail"], response.content
        alerting.ALERTS_WEBHOOK_ALLOW_PRIVATE_HOSTS = True
        assert api("put", "/api/v1/alerts/channels/webhook", analyst, {"url": url}).status_code == 403
        answers = [set_webhook(manager, url, events=["run-failed"])]
        answers.append(api("put", "/api/v1/alerts/channels/webhook", manager, {"events": ["run-failed", "run-late"]}))
        answers.append(api("get", "/api/v1/alerts/channels", account))
        tested = api("post", "/api/v1/alerts/channels/webhook/test", manager)
        assert tested.json() == {"delivered": True, "statusCode": 200, "error": None}
        run_id = failed_run(manager, tasks)
        with django_capture_on_commit_callbacks(execute=True):
            notify(run_id)
        answers.append(api("get", "/api/v1/alerts", manager))
        assert len(receiver.requests) == 2 and receiver.requests[1].path.endswith(token)

    settings_row = OrgAlertSettings.objects.select_related("webhook_block").get(org=org)
    assert settings_row.webhook_events == ["run-failed", "run-late"]
    block_name = settings_row.webhook_block.block_name
    document = prefect_request("GET", f"block_types/slug/secret/block_documents/name/{block_name}").json()
    assert document["data"]["value"] == "********"  # masked by Prefect
    dump = StringIO()
    call_command("dumpdata", "ddpui", stdout=dump)
    texts = [
        dump.getvalue(),
        *(json.dumps(answer) if isinstance(answer, dict) else answer.content.decode() for answer in answers),
    ]
    for text in texts:
        assert token not in text and "xoxTokenPart" not in text

    assert api("delete", "/api/v1/alerts/channels/webhook", manager).json() == {"success": True}
    prefect_request("GET", f"block_types/slug/secret/block_documents/name/{block_name}", expect=(404,))
    assert api("delete", "/api/v1/alerts/channels/webhook", manager).status_code == 404
    assert api("post", "/api/v1/alerts/channels/webhook/test", manager).status_code == 404


def test_an_alert_for_a_run_that_ended_long_ago_reads_its_logs_once(
    alerting, django_capture_on_commit_callbacks, monkeypatch
):
    """A failed run logs no "Finished in state" line here (its state is set through Prefect's API), so the
    reader waits the settle time for it — counted from the run's end: a notification arriving after that (a
    lost one repaired by the reconciler, say) reads the logs once and does not hold the webhook's answer."""
    monkeypatch.setattr(run_logs, "LOG_SETTLE_SECONDS", 2.0)
    reads: list[str] = []
    real_logs = FlowRun.logs

    def counted_logs(self, **page):
        reads.append(self.id)
        return real_logs(self, **page)

    monkeypatch.setattr(FlowRun, "logs", counted_logs)
    _, manager, _, _, _, tasks = make_alert_org("Settled Org")
    run_id = failed_run(manager, tasks)
    # the same reader with the end unknown polls until the settle time has passed: the count below can tell
    assert run_logs.ended_run_log_lines(run_id, max_lines=100, settle_seconds=3.0) == []
    assert len(reads) >= 2
    ended_at = prefect_request("GET", f"flow_runs/{run_id}").json()["end_time"]
    assert ended_at is not None
    time.sleep(2.5)  # the run ended longer ago than the settle time
    reads.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert notify(run_id).status_code == 200
    assert {message.subject for message in mail.outbox} == {"[ddpui] Settled Org: The pipeline 'nightly' failed"}
    assert PrefectFlowRun.objects.get(flow_run_id=run_id).end_time is not None
    assert reads == [run_id]
