"""Alerts: each org user's e-mail choices; the org's channels (e-mail, an incoming webhook whose URL is never
shown) with their last errors, and the alerts raised, for the org's managers."""

from __future__ import annotations

from datetime import datetime

from ninja import Field, Query, Router, Schema

from ddpui.api.schemas import ERRORS, MAX_OFFSET, OkOut
from ddpui.auth import org_auth
from ddpui.services.alerts import preferences, status, webhook
from ddpui.services.alerts.events import ALL_EVENTS
from ddpui.services.alerts.preferences import EmailPreferences

router = Router(tags=["alerts"])


# ------------------------------------------------------------------------------------------ schemas


class EventPreferenceOut(Schema):
    event: str
    label: str
    email: bool


class PreferencesOut(Schema):
    isDefault: bool = Field(description="true while the user has not chosen: their role's defaults apply")
    events: list[EventPreferenceOut]


class PreferencesIn(Schema):
    email: dict[str, bool] = Field(description="event -> receive it by e-mail; events left out keep their setting")


class ChannelOut(Schema):
    channel: str
    configured: bool
    urlHint: str | None = Field(description="the webhook URL's scheme and host only: the URL is a secret")
    events: list[str]
    lastDeliveredAt: datetime | None
    lastError: str | None
    lastErrorAt: datetime | None
    pending: int
    failed: int


class WebhookIn(Schema):
    url: str | None = Field(default=None, max_length=2000, description="the incoming webhook URL (Slack format)")
    events: list[str] | None = Field(default=None, description="the events it receives (all when left out)")


class WebhookTestOut(Schema):
    delivered: bool
    statusCode: int | None
    error: str | None


class DeliveryOut(Schema):
    channel: str
    recipient: str
    status: str
    attempts: int
    lastError: str
    lastAttemptAt: datetime | None
    nextAttemptAt: datetime | None
    sentAt: datetime | None


class AlertOut(Schema):
    id: int
    event: str
    subject: str
    text: str
    occurredAt: datetime
    createdAt: datetime
    flowRunId: str | None
    deploymentId: str | None
    connectionId: str | None
    deliveries: list[DeliveryOut]


class AlertPageOut(Schema):
    count: int
    limit: int
    offset: int
    alerts: list[AlertOut]


# ------------------------------------------------------------------------------------------ shaping


def _preferences_json(prefs: EmailPreferences) -> dict:
    return {
        "isDefault": prefs.is_default,
        "events": [
            {"event": event.value, "label": event.label, "email": event in prefs.email_events} for event in ALL_EVENTS
        ],
    }


def _channel_json(channel: status.ChannelStatus) -> dict:
    return {
        "channel": channel.channel,
        "configured": channel.configured,
        "urlHint": channel.url_hint,
        "events": channel.events,
        "lastDeliveredAt": channel.last_delivered_at,
        "lastError": channel.last_error,
        "lastErrorAt": channel.last_error_at,
        "pending": channel.pending,
        "failed": channel.failed,
    }


def _webhook_json(request) -> dict:
    return next(_channel_json(c) for c in status.channels_status(org=request.auth.org) if c.channel == "webhook")


def _alert_json(alert) -> dict:
    facts = alert.facts or {}
    return {
        "id": alert.id,
        "event": alert.event,
        "subject": alert.subject,
        "text": alert.text,
        "occurredAt": alert.occurred_at,
        "createdAt": alert.created_at,
        "flowRunId": facts.get("flow_run_id"),
        "deploymentId": facts.get("deployment_id"),
        "connectionId": facts.get("connection_id"),
        "deliveries": [
            {
                "channel": delivery.channel,
                "recipient": delivery.recipient,
                "status": delivery.status,
                "attempts": delivery.attempts,
                "lastError": delivery.last_error,
                "lastAttemptAt": delivery.last_attempt_at,
                "nextAttemptAt": delivery.next_attempt_at,
                "sentAt": delivery.sent_at,
            }
            for delivery in alert.deliveries.all()
        ],
    }


# ------------------------------------------------------------------------------------------ preferences


@router.get("/v1/alerts/preferences", response={200: PreferencesOut, **ERRORS}, auth=org_auth("org:read"))
def get_preferences(request):
    """The events the caller receives by e-mail in this org."""
    return _preferences_json(preferences.preferences_get(orguser=request.auth.orguser))


@router.put("/v1/alerts/preferences", response={200: PreferencesOut, **ERRORS}, auth=org_auth("org:read"))
def set_preferences(request, payload: PreferencesIn):
    """Turns e-mail for events on or off, for the caller only; it counts at once (alerts waiting included)."""
    return _preferences_json(preferences.preferences_set(orguser=request.auth.orguser, email=payload.email))


@router.delete("/v1/alerts/preferences", response={200: PreferencesOut, **ERRORS}, auth=org_auth("org:read"))
def reset_preferences(request):
    """Back to the defaults of the caller's role."""
    return _preferences_json(preferences.preferences_reset(orguser=request.auth.orguser))


# ------------------------------------------------------------------------------------------ channels


@router.get("/v1/alerts/channels", response={200: list[ChannelOut], **ERRORS}, auth=org_auth("alerts:manage"))
def list_channels(request):
    """E-mail and the webhook: configured or not, last delivery, last error, deliveries waiting or given up."""
    return [_channel_json(channel) for channel in status.channels_status(org=request.auth.org)]


@router.put("/v1/alerts/channels/webhook", response={200: ChannelOut, **ERRORS}, auth=org_auth("alerts:manage"))
def set_webhook(request, payload: WebhookIn):
    """Sets the webhook URL (kept in a Prefect Secret block) and its events; with only `events`, changes
    which events an existing webhook receives."""
    webhook.webhook_update(org=request.auth.org, actor=request.auth.orguser, url=payload.url, events=payload.events)
    return _webhook_json(request)


@router.delete("/v1/alerts/channels/webhook", response={200: OkOut, **ERRORS}, auth=org_auth("alerts:manage"))
def delete_webhook(request):
    webhook.webhook_clear(org=request.auth.org, actor=request.auth.orguser)
    return {"success": True}


@router.post(
    "/v1/alerts/channels/webhook/test", response={200: WebhookTestOut, **ERRORS}, auth=org_auth("alerts:manage")
)
def test_webhook(request):
    """Sends a test message now and says how the URL answered (nothing is retried)."""
    return webhook.webhook_test(org=request.auth.org)


# ------------------------------------------------------------------------------------------ alerts


@router.get("/v1/alerts", response={200: AlertPageOut, **ERRORS}, auth=org_auth("alerts:manage"))
def list_alerts(request, limit: int = Query(20, ge=1, le=100), offset: int = Query(0, ge=0, le=MAX_OFFSET)):
    """The org's alerts, newest first, with each delivery's status and last error."""
    count, alerts = status.alerts_list(org=request.auth.org, limit=limit, offset=offset)
    return {"count": count, "limit": limit, "offset": offset, "alerts": [_alert_json(alert) for alert in alerts]}
