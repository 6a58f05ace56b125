"""Sending alerts: each delivery when it is due, on its channel, retried with backoff until it goes through or
gives up. Sending happens after the commit and outside any transaction, and every error is caught and
recorded on the delivery: a failing channel never blocks or fails the run's bookkeeping.

A delivery is claimed before it is sent (a conditional update: pending and due -> sending, with a lease), so
the first attempt after the commit and the reconciler's retries never send the same delivery twice; a
sender that dies mid-way leaves a lease that expires, and the delivery is tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F, Q
from django.utils import timezone

from ddpcontract import proxy_api as api
from ddpui.airbyte.client import get_airbyte
from ddpui.errors import DomainError
from ddpui.models.alerts import Alert, AlertChannel, AlertDelivery, AlertEvent, OrgAlertSettings
from ddpui.prefect_client import get_proxy
from ddpui.services.alerts.content import airbyte_explanation, redact, render
from ddpui.services.alerts.preferences import email_events_of
from ddpui.services.run_logs import ended_run_log_lines

logger = logging.getLogger(__name__)

Status = AlertDelivery.Status
RETRY_BATCH = 200


class DeliveryFailed(Exception):
    """The channel did not take the message; the text says why (never a secret)."""


# --------------------------------------------------------------------------------------------- rendering


def last_log_lines(
    flow_run_id: str, *, ended_at: datetime | None = None, count: int = 20, max_lines: int = 10_000
) -> list[dict]:
    """The run's last `count` log lines, once Prefect has them all (services/run_logs.py)."""
    lines = ended_run_log_lines(flow_run_id, max_lines=max_lines, ended_at=ended_at)
    return [line.model_dump(mode="json") for line in lines[-count:]]


def _airbyte_failure(job_id: int) -> tuple[str, str] | None:
    """(origin, message) of the job's last failure, as Airbyte tells it."""
    job = get_airbyte().job_get(job_id=int(job_id))
    for attempt in reversed(job.get("attempts") or []):
        summary = (attempt.get("attempt") or attempt).get("failureSummary") or {}
        for failure in summary.get("failures") or []:
            message = failure.get("externalMessage") or failure.get("internalMessage")
            if message:
                return str(failure.get("failureOrigin") or ""), str(message)
    return None


def _explained(facts: dict) -> dict:
    """The facts with Airbyte's own words about a failed sync turned into plain ones."""
    task = facts.get("failed_task")
    if not task or "connection_id" not in task:
        return facts
    origin, reason = None, task.get("airbyte_reason")
    if task.get("job_id") is not None:
        try:
            found = _airbyte_failure(task["job_id"])
        except Exception:  # noqa: BLE001 - Airbyte away: the flow's copy of its reason will do
            logger.warning("could not ask Airbyte about job %s for an alert", task["job_id"])
            found = None
        if found:
            origin, reason = found
    if not reason:
        return facts
    return {
        **facts,
        "failed_task": {**task, "airbyte_reason": reason, "explanation": airbyte_explanation(reason, origin)},
    }


def _links(alert: Alert) -> list[tuple[str, str]]:
    web, admin, facts = settings.DDPUI_WEBAPP_URL, settings.DDPUI_ADMIN_URL, alert.facts
    if alert.event == AlertEvent.CONNECTION_STALE:
        return [
            ("Connections in the web app", f"{web}/pipeline/ingest"),
            ("In the admin", f"{admin}/ddpui/connectionfreshness/{facts.get('freshness_pk')}/change/"),
        ]
    if alert.event == AlertEvent.RUN_MISSED:
        return [
            ("Pipelines in the web app", f"{web}/pipeline/orchestrate"),
            ("In the admin", f"{admin}/ddpui/orgdataflowv1/{facts.get('dataflow_id')}/change/"),
        ]
    page = "ingest" if facts.get("kind") == "sync" else "orchestrate"
    return [
        (
            f"The run in the web app ({'connections' if page == 'ingest' else 'pipelines'} page)",
            f"{web}/pipeline/{page}",
        ),
        ("The run in the admin", f"{admin}/ddpui/prefectflowrun/{alert.flow_run_id}/change/"),
    ]


def alert_render(alert: Alert) -> Alert:
    """Writes the alert's text once (the first sender does it; every channel and retry sends the same)."""
    if alert.rendered_at is not None:
        return alert
    facts, logs = alert.facts, None
    if alert.flow_run_id and alert.event in (AlertEvent.RUN_FAILED, AlertEvent.DBT_TEST_FAILED):
        try:
            logs = last_log_lines(facts["flow_run_id"], ended_at=alert.flow_run.end_time)
        except Exception:  # noqa: BLE001 - the alert still goes out, without its logs
            logger.warning("could not read the logs of run %s for an alert", facts.get("flow_run_id"))
            logs = [{"message": "(the run's log lines could not be read)", "level_name": ""}]
    message = render(event=alert.event, facts=_explained(facts), logs=logs, links=_links(alert))
    Alert.objects.filter(pk=alert.pk, rendered_at__isnull=True).update(
        subject=message.subject[:300], text=message.text(), payload=message.slack(), rendered_at=timezone.now()
    )
    alert.refresh_from_db()
    return alert


# --------------------------------------------------------------------------------------------- channels


def _send_email(alert: Alert, delivery: AlertDelivery) -> None:
    try:
        send_mail(alert.subject, alert.text, settings.DEFAULT_FROM_EMAIL, [delivery.recipient])
    except Exception as exc:  # noqa: BLE001 - SMTP errors are many; each is a failed attempt
        raise DeliveryFailed(f"the mail server refused or did not answer ({type(exc).__name__}: {exc})") from None


def webhook_send(org_settings: OrgAlertSettings, payload: dict) -> api.OutgoingWebhookSent:
    """One POST of `payload` to the org's webhook URL, through the proxy (which alone reads the URL)."""
    try:
        return (
            get_proxy()
            .outgoing_webhook(org_settings.webhook_block.block_name)
            .send(payload=payload, timeout_seconds=settings.ALERTS_WEBHOOK_TIMEOUT_SECONDS)
        )
    except DomainError as exc:
        return api.OutgoingWebhookSent(
            delivered=False, statusCode=None, error=f"the proxy could not send it: {exc.message}"
        )


def _send_webhook(alert: Alert, delivery: AlertDelivery) -> None:
    org_settings = OrgAlertSettings.objects.select_related("webhook_block").get(org_id=alert.org_id)
    sent = webhook_send(org_settings, alert.payload)
    if not sent.delivered:
        raise DeliveryFailed(redact(sent.error or "not delivered"))


CHANNELS: dict[str, Callable[[Alert, AlertDelivery], None]] = {
    AlertChannel.EMAIL: _send_email,
    AlertChannel.WEBHOOK: _send_webhook,
}


def _skip_reason(alert: Alert, delivery: AlertDelivery) -> str | None:
    """Why this delivery must not go out any more (decided at sending time: an opt-out counts at once)."""
    if delivery.channel == AlertChannel.EMAIL:
        if delivery.orguser is None:
            return "the recipient is no longer a member of the organization"
        if alert.event not in email_events_of(delivery.orguser):
            return "the recipient no longer receives this event by e-mail"
        return None
    org_settings = OrgAlertSettings.objects.filter(org_id=alert.org_id).first()
    if org_settings is None or org_settings.webhook_block_id is None:
        return "the organization's webhook was removed"
    if alert.event not in org_settings.webhook_events:
        return "the organization's webhook no longer receives this event"
    return None


# --------------------------------------------------------------------------------------------- attempts


def _due(now: datetime) -> Q:
    return Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(status=Status.SENDING, lease_until__lt=now)


def _claim(delivery_id: int, now: datetime) -> bool:
    lease = now + timedelta(seconds=settings.ALERTS_WEBHOOK_TIMEOUT_SECONDS + max(60.0, settings.EMAIL_TIMEOUT * 2))
    claimed = (
        AlertDelivery.objects.filter(pk=delivery_id)
        .filter(_due(now))
        .update(status=Status.SENDING, lease_until=lease, attempts=F("attempts") + 1, last_attempt_at=now)
    )
    return claimed == 1


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: base, 2 x base, 4 x base …"""
    return timedelta(seconds=settings.ALERTS_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))


def _finish(delivery: AlertDelivery, **fields) -> None:
    AlertDelivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(lease_until=None, **fields)


def delivery_attempt(delivery_id: int, *, now: datetime | None = None) -> str | None:
    """One attempt of one delivery, if it is due at `now` and nobody else is sending it. Returns its new status."""
    now = now or timezone.now()
    if not _claim(delivery_id, now):
        return None
    delivery = AlertDelivery.objects.select_related("alert__org", "orguser__user").get(pk=delivery_id)
    try:
        alert = alert_render(delivery.alert)
        skip = _skip_reason(alert, delivery)
        if skip:
            _finish(delivery, status=Status.SKIPPED, last_error=skip, next_attempt_at=None)
            return Status.SKIPPED
        CHANNELS[delivery.channel](alert, delivery)
    except Exception as exc:  # noqa: BLE001 - whatever failed, it is recorded and retried
        error = str(exc) if isinstance(exc, DeliveryFailed) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, DeliveryFailed):
            logger.exception("alert delivery %s failed", delivery_id)
        gave_up = delivery.attempts >= settings.ALERTS_MAX_ATTEMPTS
        _finish(
            delivery,
            status=Status.FAILED if gave_up else Status.PENDING,
            last_error=error[:1000],
            next_attempt_at=None if gave_up else now + retry_delay(delivery.attempts),
        )
        logger.warning(
            "alert %s: %s delivery failed (attempt %s%s): %s",
            delivery.alert.key,
            delivery.channel,
            delivery.attempts,
            ", giving up" if gave_up else "",
            error,
        )
        return Status.FAILED if gave_up else Status.PENDING
    _finish(delivery, status=Status.SENT, sent_at=now, next_attempt_at=None)
    return Status.SENT


def alert_dispatch(*, alert_id: int) -> dict[str, int]:
    """The first attempt of every delivery of the alert, right after the transaction that raised it committed."""
    outcomes: dict[str, int] = {}
    for delivery_id in AlertDelivery.objects.filter(alert_id=alert_id).values_list("id", flat=True):
        status = delivery_attempt(delivery_id)
        if status:
            outcomes[status] = outcomes.get(status, 0) + 1
    return outcomes


def deliveries_retry(*, now: datetime | None = None) -> list[str]:
    """Sends every delivery that is due (a failed attempt whose wait is over, or one a dead sender left).
    Run by the reconciler loop; with nothing due it costs one query. Returns what it did."""
    now = now or timezone.now()
    due = list(
        AlertDelivery.objects.filter(_due(now))
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:RETRY_BATCH]
    )
    done = []
    for delivery_id in due:
        status = delivery_attempt(delivery_id, now=now)
        if status:
            done.append(f"alert delivery {delivery_id}: {status}")
    return done
