"""What the org's managers see of alerts: each channel's record (last delivery, last error, what waits or
gave up) and the alerts raised, with their deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, Q

from ddpui.models.alerts import Alert, AlertChannel, AlertDelivery, OrgAlertSettings
from ddpui.models.org import Org
from ddpui.services.alerts.events import ALL_EVENTS


@dataclass(frozen=True)
class ChannelStatus:
    channel: str
    configured: bool
    url_hint: str | None
    events: list[str]
    last_delivered_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    pending: int
    failed: int


def channels_status(*, org: Org) -> list[ChannelStatus]:
    """Each channel's recent record for the org: last delivery, last error, what is waiting or gave up.
    Four queries."""
    org_settings = OrgAlertSettings.objects.filter(org=org).first()
    deliveries = AlertDelivery.objects.filter(alert__org=org)
    counts = {
        row["channel"]: row
        for row in deliveries.values("channel").annotate(
            pending=Count("id", filter=Q(status__in=[AlertDelivery.Status.PENDING, AlertDelivery.Status.SENDING])),
            failed=Count("id", filter=Q(status=AlertDelivery.Status.FAILED)),
            last_delivered_at=Max("sent_at"),
        )
    }
    failing = deliveries.exclude(last_error="").exclude(status=AlertDelivery.Status.SKIPPED)
    errors = {
        channel.value: failing.filter(channel=channel).order_by("-last_attempt_at", "-id").first()
        for channel in AlertChannel
    }
    statuses = []
    for channel in AlertChannel:
        row, error = counts.get(channel.value, {}), errors.get(channel.value)
        if channel == AlertChannel.EMAIL:
            configured, hint, events = True, None, [event.value for event in ALL_EVENTS]
        else:
            configured = org_settings is not None and org_settings.webhook_block_id is not None
            hint = org_settings.webhook_url_hint if configured else None
            events = list(org_settings.webhook_events) if configured else []
        statuses.append(
            ChannelStatus(
                channel=channel.value,
                configured=configured,
                url_hint=hint,
                events=events,
                last_delivered_at=row.get("last_delivered_at"),
                last_error=error.last_error if error else None,
                last_error_at=error.last_attempt_at if error else None,
                pending=row.get("pending", 0),
                failed=row.get("failed", 0),
            )
        )
    return statuses


def alerts_list(*, org: Org, limit: int, offset: int):
    """The org's alerts, newest first, with their deliveries (two queries)."""
    alerts = Alert.objects.filter(org=org)
    page = list(alerts.order_by("-created_at", "-id").prefetch_related("deliveries")[offset : offset + limit])
    return alerts.count(), page
