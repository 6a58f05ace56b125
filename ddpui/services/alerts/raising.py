"""Raising an alert: inside the transaction that decides the event happened, the alert (its unique key makes
it once per event) and one delivery per recipient and channel are written; they go out after it commits.

Writing the deliveries with the decision (an outbox) means a crash between the commit and the sending
loses nothing: the reconciler loop sends what is still pending.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ddpui.models.alerts import Alert, AlertChannel, AlertDelivery, AlertEvent, OrgAlertSettings
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.org import Org, OrgUser
from ddpui.models.tasks import OrgTask
from ddpui.services.alerts.events import event_key, run_alert_events
from ddpui.services.alerts.facts import run_facts
from ddpui.services.alerts.preferences import email_events_of

logger = logging.getLogger(__name__)


def late_after() -> timedelta:
    return timedelta(minutes=settings.ALERTS_LATE_AFTER_MINUTES)


def _deliveries(alert: Alert, now: datetime) -> list[AlertDelivery]:
    deliveries = []
    for orguser in OrgUser.objects.filter(org=alert.org).select_related("user", "alert_subscription"):
        email = (orguser.user.email or "").strip()
        if email and orguser.user.is_active and alert.event in email_events_of(orguser):
            deliveries.append(
                AlertDelivery(
                    alert=alert, channel=AlertChannel.EMAIL, recipient=email, orguser=orguser, next_attempt_at=now
                )
            )
    org_settings = OrgAlertSettings.objects.filter(org=alert.org).first()
    if org_settings is not None and org_settings.webhook_block_id and alert.event in org_settings.webhook_events:
        deliveries.append(AlertDelivery(alert=alert, channel=AlertChannel.WEBHOOK, recipient="", next_attempt_at=now))
    return deliveries


def alert_raise(
    *,
    org: Org,
    event: AlertEvent,
    key: str,
    occurred_at: datetime,
    facts: dict,
    flow_run: PrefectFlowRun | None = None,
    dataflow: OrgDataFlowv1 | None = None,
    sync_task: OrgTask | None = None,
) -> Alert | None:
    """The alert and its deliveries, in the caller's transaction (or one of its own); sent after the commit.
    None when this event was raised before (by whichever observer saw it first)."""
    from ddpui.services.alerts.delivery import alert_dispatch  # delivery renders with the facts gathered here

    now = timezone.now()
    with transaction.atomic():
        alert, created = Alert.objects.get_or_create(
            key=key,
            defaults={
                "org": org,
                "event": event,
                "occurred_at": occurred_at,
                "facts": facts,
                "flow_run": flow_run,
                "dataflow": dataflow,
                "sync_task": sync_task,
            },
        )
        if not created:
            return None
        AlertDelivery.objects.bulk_create(_deliveries(alert, now))
    alert_id = alert.id
    transaction.on_commit(lambda: alert_dispatch(alert_id=alert_id), robust=True)
    logger.info("alert %s raised for %s", key, org.slug)
    return alert


def run_alerts_due(record: PrefectFlowRun, *, now: datetime | None = None) -> list[AlertEvent]:
    """The events this run's state raises now that it has not raised yet (see PrefectFlowRun.notified_events)."""
    if record.org_id is None:
        return []
    events = run_alert_events(
        state_type=record.state_type,
        state_name=record.state_name,
        expected_start_time=record.expected_start_time,
        now=now or timezone.now(),
        late_after=late_after(),
    )
    return [event for event in events if event.value not in (record.notified_events or [])]


def run_alerts_raise(record: PrefectFlowRun, events: list[AlertEvent], *, now: datetime | None = None) -> None:
    """Raises these events of the run; called by run_states in the transaction that claims them on the record."""
    if not events:
        return
    now = now or timezone.now()
    facts = run_facts(record)
    dataflow = OrgDataFlowv1.objects.filter(id=facts["dataflow_id"]).first() if facts["dataflow_id"] else None
    for event in events:
        occurred_at = record.end_time or now
        if event == AlertEvent.RUN_LATE:
            occurred_at = record.expected_start_time or now
            facts = {**facts, "late_after_minutes": settings.ALERTS_LATE_AFTER_MINUTES, "noticed_at": now.isoformat()}
        alert_raise(
            org=record.org,
            event=event,
            key=event_key(event, record.flow_run_id),
            occurred_at=occurred_at,
            facts=facts,
            flow_run=record,
            dataflow=dataflow,
        )
