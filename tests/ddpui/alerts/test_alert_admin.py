"""Alerts without Prefect: raising is once per key and sends only after the commit (nothing when the
transaction rolls back), the checks cost three queries and no proxy call when there is nothing to do, the admin
shows deliveries with their last error, retries them, and sets each user's e-mail choices and each
connection's freshness limit, and a connection's last successful sync is whichever run synced it last."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from ddpui.models import Alert, AlertDelivery, AlertSubscription, ConnectionFreshness
from ddpui.services.alerts import alerts_check
from ddpui.services.alerts.freshness import freshness_limit_set, freshness_of
from ddpui.services.alerts.preferences import email_events_of
from ddpui.services.alerts.raising import alert_raise
from ddpui.services.run_states import run_state_apply
from tests.factories import make_dataflow, make_org, make_orgtask, make_orguser

pytestmark = pytest.mark.django_db


@pytest.fixture
def stale_connection(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    org = make_org("Admin Alerts Org")
    manager = make_orguser(org, "pipeline-manager")
    analyst = make_orguser(org, "analyst")
    sync = make_orgtask(org, "airbyte-sync", connection_id="conn-survey")
    make_dataflow(org, name="Survey responses", orgtasks=[sync], dataflow_type="manual")
    row = freshness_limit_set(sync_task=sync, hours=6)
    ConnectionFreshness.objects.filter(pk=row.pk).update(
        last_successful_sync_at=timezone.now() - timedelta(hours=8), stale_after=timezone.now() - timedelta(hours=2)
    )
    return org, manager, analyst, sync


def test_raising_is_once_per_key(stale_connection, django_capture_on_commit_callbacks):
    org, manager, analyst, sync = stale_connection
    AlertSubscription.objects.create(orguser=manager, email_events=["connection-stale"])
    kwargs = {"org": org, "event": "connection-stale", "key": "connection-stale:x:1", "occurred_at": timezone.now()}
    # raised in a transaction that rolls back: no alert, nothing sent, and the key is still free
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        assert alert_raise(facts={"org": org.name, "connection": "Survey responses"}, **kwargs) is not None
        raise RuntimeError("the bookkeeping failed after the alert was raised")
    assert not Alert.objects.exists() and mail.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        first = alert_raise(facts={"org": org.name, "connection": "Survey responses", "limit_hours": 6}, **kwargs)
        second = alert_raise(facts={}, **kwargs)
        assert mail.outbox == []  # sent only after the commit
    assert first is not None and second is None
    assert Alert.objects.count() == 1 and [m.to for m in mail.outbox] == [[manager.user.email]]


def test_the_checks_with_nothing_to_do_cost_three_queries_and_no_proxy_call(monkeypatch, django_assert_max_num_queries):
    def no_proxy():
        raise AssertionError("the alert checks called the proxy with nothing to do")

    monkeypatch.setattr("ddpui.services.alerts.schedule.get_proxy", no_proxy)
    monkeypatch.setattr("ddpui.services.alerts.delivery.get_proxy", no_proxy)
    with django_assert_max_num_queries(3):
        assert alerts_check() == []


def test_the_admin_shows_deliveries_retries_them_and_sets_choices(
    stale_connection, admin_client, settings, django_capture_on_commit_callbacks
):
    org, manager, analyst, sync = stale_connection
    # the analyst opts in to stale data in the admin; the manager keeps the defaults (no stale data)
    response = admin_client.post(
        "/admin/ddpui/alertsubscription/add/",
        {"orguser": analyst.id, "email_events": ["connection-stale", "run-failed"]},
    )
    assert response.status_code == 302, response.content[:500]
    analyst.refresh_from_db()
    assert {event.value for event in email_events_of(analyst)} == {"connection-stale", "run-failed"}

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"  # the mail server is down
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 1
    with django_capture_on_commit_callbacks(execute=True):
        assert alerts_check() == [f"connection conn-survey of {org.slug} is stale: alert raised"]
    delivery = AlertDelivery.objects.get()
    assert (delivery.recipient, delivery.status) == (analyst.user.email, "pending")
    for page in ["alert", "alertdelivery", "alertsubscription", "orgalertsettings", "connectionfreshness"]:
        assert admin_client.get(f"/admin/ddpui/{page}/").status_code == 200, page
    listed = admin_client.get("/admin/ddpui/alertdelivery/").content.decode()
    assert "the mail server refused or did not answer" in listed
    alert = Alert.objects.get()
    shown = admin_client.get(f"/admin/ddpui/alert/{alert.pk}/change/").content.decode()
    assert "The data from the connection &#x27;Survey responses&#x27; is stale" in shown

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # back
    retried = admin_client.post(
        "/admin/ddpui/alertdelivery/", {"action": "retry", "_selected_action": [delivery.pk]}, follow=True
    )
    assert "1 of 1 delivery(ies) sent" in retried.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == "sent" and [m.to for m in mail.outbox] == [[analyst.user.email]]
    assert mail.outbox[0].subject == "[ddpui] Admin Alerts Org: The data of 'Survey responses' is stale"

    # the freshness limit set in the admin moves the staleness deadline
    row = ConnectionFreshness.objects.get(sync_task=sync)
    response = admin_client.post(f"/admin/ddpui/connectionfreshness/{row.pk}/change/", {"freshness_limit_hours": 24})
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.freshness_limit_hours == 24 and freshness_of(row).is_stale is False
    assert row.stale_after == row.last_successful_sync_at + timedelta(hours=24)


def test_the_last_successful_sync_is_whichever_run_synced_last_and_never_moves_back(settings):
    """Run reports as run_states receives them (webhook, read or reconciler): a pipeline's and the
    connection's own (manual) runs both move the connection's last successful sync, by the sync's end;
    a late report of an older run and a failed sync do not."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    org = make_org("Freshness Org")
    sync = make_orgtask(org, "airbyte-sync", connection_id="conn-orders")
    dbt = make_orgtask(org, "dbt-run")
    pipeline = make_dataflow(org, name="Nightly", orgtasks=[sync, dbt])
    manual = make_dataflow(org, name="Orders", orgtasks=[sync], dataflow_type="manual")
    now = timezone.now()

    def report(dataflow, state_type: str, sync_status: str, ended_hours_ago: float) -> str:
        ended = now - timedelta(hours=ended_hours_ago)
        results = [
            {"seq": 1, "slug": "airbyte-sync", "type": "Airbyte Connection", "orgtask_uuid": str(sync.uuid),
             "status": sync_status, "ended_at": ended.isoformat()},
        ]  # fmt: skip
        if dataflow is pipeline:
            results.append({"seq": 2, "slug": "dbt-run", "type": "dbt Core Operation", "orgtask_uuid": str(dbt.uuid),
                            "status": "failed", "ended_at": (ended + timedelta(minutes=5)).isoformat()})  # fmt: skip
        flow_run_id = str(uuid.uuid4())
        run_state_apply(
            org=org,
            run={"flow_run_id": flow_run_id, "deployment_id": dataflow.deployment_id, "state_type": state_type,
                 "state_name": state_type.title(), "end_time": ended + timedelta(minutes=5), "task_results": results},
        )  # fmt: skip
        return flow_run_id

    def last_sync():
        row = ConnectionFreshness.objects.get(sync_task=sync)
        return row.last_successful_sync_at, row.last_successful_flow_run_id

    # a pipeline whose dbt step failed after the sync: the data was still synced
    by_pipeline = report(pipeline, "FAILED", "success", ended_hours_ago=3)
    assert last_sync() == (now - timedelta(hours=3), by_pipeline)
    # the connection's own (manual) sync, later
    by_hand = report(manual, "COMPLETED", "success", ended_hours_ago=1)
    assert last_sync() == (now - timedelta(hours=1), by_hand)
    # a late report of an older run, and a failed sync: no move
    report(pipeline, "COMPLETED", "success", ended_hours_ago=5)
    report(manual, "FAILED", "failed", ended_hours_ago=0)
    assert last_sync() == (now - timedelta(hours=1), by_hand)

    # a two-hour limit counts from that sync
    row = freshness_limit_set(sync_task=sync, hours=2)
    assert freshness_of(row, now=now).is_stale is False
    assert freshness_of(row, now=now + timedelta(hours=1, minutes=1)).is_stale is True
