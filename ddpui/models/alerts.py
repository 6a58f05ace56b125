"""Alerts: what happened that people are told about, each delivery of it on a channel, what each org user
and each org chose to receive; and how fresh each connection's data is.

An `Alert` is written in the transaction that decides the event happened (its `key` is unique: one alert
per event), together with one `AlertDelivery` per recipient and channel (an outbox): the deliveries are
attempted after that transaction commits and retried by the reconciler loop until they succeed or give up.
"""

from __future__ import annotations

from django.db import models

from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.org import Org, OrgPrefectBlockv1, OrgUser
from ddpui.models.tasks import OrgTask


class AlertEvent(models.TextChoices):
    """The events that raise an alert (the values are the API's names)."""

    RUN_FAILED = "run-failed", "A run failed or crashed"
    DBT_TEST_FAILED = "dbt-test-failed", "dbt tests failed in a run"
    RUN_LATE = "run-late", "A run did not start on time"
    RUN_MISSED = "run-missed", "A scheduled run did not happen"
    CONNECTION_STALE = "connection-stale", "A connection's data is older than its freshness limit"


class AlertChannel(models.TextChoices):
    EMAIL = "email", "e-mail"
    WEBHOOK = "webhook", "incoming webhook (Slack message format)"


class Alert(models.Model):
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="alerts")
    event = models.CharField(max_length=32, choices=AlertEvent.choices)
    key = models.CharField(max_length=200, unique=True, help_text="the event, once: e.g. run-failed:<flow run id>")
    flow_run = models.ForeignKey(PrefectFlowRun, on_delete=models.CASCADE, null=True, blank=True, related_name="alerts")
    dataflow = models.ForeignKey(OrgDataFlowv1, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    sync_task = models.ForeignKey(
        OrgTask, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="the connection"
    )
    occurred_at = models.DateTimeField(help_text="when it happened (run end, expected start, stale since)")
    facts = models.JSONField(default=dict, blank=True, help_text="what was known when it was raised")
    subject = models.CharField(max_length=300, blank=True, default="")
    text = models.TextField(blank=True, default="")
    payload = models.JSONField(default=dict, blank=True, help_text="the webhook message (Slack format)")
    rendered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["org", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.org.slug}: {self.event} ({self.key})"


class AlertDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENDING = "sending", "sending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed (gave up)"
        SKIPPED = "skipped", "skipped"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=16, choices=AlertChannel.choices)
    recipient = models.CharField(max_length=254, blank=True, default="", help_text="e-mail address; '' for a webhook")
    orguser = models.ForeignKey(OrgUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True, help_text="a sender holds it until then")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["alert", "channel", "recipient"], name="one_delivery_per_recipient")
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.channel} {self.recipient or 'webhook'}: {self.status}"


class AlertSubscription(models.Model):
    """The events an org user receives by e-mail; without a row, the defaults of the user's role."""

    orguser = models.OneToOneField(OrgUser, on_delete=models.CASCADE, related_name="alert_subscription")
    email_events = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.orguser}: {', '.join(self.email_events) or 'nothing'}"


class OrgAlertSettings(models.Model):
    """The org's incoming webhook: the URL itself lives only in a Prefect Secret block."""

    org = models.OneToOneField(Org, on_delete=models.CASCADE, related_name="alert_settings")
    webhook_block = models.ForeignKey(
        OrgPrefectBlockv1, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    webhook_url_hint = models.CharField(max_length=300, blank=True, default="", help_text="scheme and host only")
    webhook_events = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "org alert settings"

    def __str__(self) -> str:
        return f"{self.org.slug}: webhook {self.webhook_url_hint or 'none'}"


class ConnectionFreshness(models.Model):
    """When the connection last synced successfully (whichever run synced it) and its freshness limit."""

    sync_task = models.OneToOneField(OrgTask, on_delete=models.CASCADE, related_name="freshness")
    last_successful_sync_at = models.DateTimeField(null=True, blank=True)
    last_successful_flow_run_id = models.CharField(max_length=64, blank=True, default="")
    freshness_limit_hours = models.PositiveIntegerField(null=True, blank=True)
    limit_set_at = models.DateTimeField(null=True, blank=True)
    stale_after = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="when the data becomes stale without another successful sync"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "connection freshness"

    def __str__(self) -> str:
        return f"{self.sync_task}: last synced {self.last_successful_sync_at or 'never'}"
