"""The operator's console for alerts: what was raised and how each delivery went (last errors, retry now),
who receives what by e-mail, the orgs' webhooks (never their URL) and each connection's freshness."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.utils import timezone

from ddpui.models.alerts import (
    Alert,
    AlertDelivery,
    AlertEvent,
    AlertSubscription,
    ConnectionFreshness,
    OrgAlertSettings,
)
from ddpui.services.alerts.delivery import delivery_attempt
from ddpui.services.alerts.freshness import freshness_limit_set, freshness_of
from ddpui.services.alerts.preferences import email_events_of


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


def _retry_now(modeladmin, request, deliveries) -> None:
    """Makes the deliveries due now (also those that gave up) and attempts each once."""
    ids = list(
        deliveries.filter(Q(status=AlertDelivery.Status.PENDING) | Q(status=AlertDelivery.Status.FAILED)).values_list(
            "id", flat=True
        )
    )
    AlertDelivery.objects.filter(id__in=ids).update(status=AlertDelivery.Status.PENDING, next_attempt_at=timezone.now())
    outcomes = [delivery_attempt(delivery_id) for delivery_id in ids]
    sent = outcomes.count(AlertDelivery.Status.SENT)
    level = messages.SUCCESS if sent == len(ids) else messages.WARNING
    modeladmin.message_user(request, f"{sent} of {len(ids)} delivery(ies) sent; see each one's last error", level)


class AlertDeliveryInline(admin.TabularInline):
    model = AlertDelivery
    extra = 0
    can_delete = False
    fields = [
        "channel",
        "recipient",
        "status",
        "attempts",
        "last_error",
        "last_attempt_at",
        "next_attempt_at",
        "sent_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(_ReadOnly):
    list_display = ["created_at", "org", "event", "subject", "deliveries_summary"]
    list_filter = ["event", "org"]
    search_fields = ["key", "subject", "org__slug"]
    list_select_related = ["org"]
    date_hierarchy = "created_at"
    fields = ["org", "event", "key", "occurred_at", "subject", "text", "payload", "facts", "created_at", "rendered_at"]
    inlines = [AlertDeliveryInline]
    actions = ["retry_deliveries"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("deliveries")

    @admin.display(description="deliveries")
    def deliveries_summary(self, obj: Alert) -> str:
        return ", ".join(f"{d.channel} {d.status}" for d in obj.deliveries.all()) or "nobody to tell"

    @admin.action(description="Retry their pending or failed deliveries now")
    def retry_deliveries(self, request, queryset):
        _retry_now(self, request, AlertDelivery.objects.filter(alert__in=queryset))


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(_ReadOnly):
    list_display = ["alert", "channel", "recipient", "status", "attempts", "last_error", "next_attempt_at", "sent_at"]
    list_filter = ["status", "channel", "alert__org"]
    search_fields = ["recipient", "alert__key", "last_error"]
    list_select_related = ["alert__org"]
    actions = ["retry"]

    @admin.action(description="Retry now")
    def retry(self, request, queryset):
        _retry_now(self, request, queryset)


class SubscriptionForm(forms.ModelForm):
    email_events = forms.MultipleChoiceField(
        choices=AlertEvent.choices, widget=forms.CheckboxSelectMultiple, required=False, label="e-mail for"
    )

    class Meta:
        model = AlertSubscription
        fields = ["orguser", "email_events"]


@admin.register(AlertSubscription)
class AlertSubscriptionAdmin(admin.ModelAdmin):
    """An org user's choice of e-mailed events (users without one get their role's defaults)."""

    form = SubscriptionForm
    list_display = ["orguser", "events", "updated_at"]
    list_filter = ["orguser__org", "orguser__role"]
    search_fields = ["orguser__user__email", "orguser__org__slug"]
    list_select_related = ["orguser__user", "orguser__org"]
    autocomplete_fields = ["orguser"]

    @admin.display(description="e-mail for")
    def events(self, obj: AlertSubscription) -> str:
        return ", ".join(sorted(event.value for event in email_events_of(obj.orguser))) or "nothing"


class OrgAlertSettingsForm(forms.ModelForm):
    webhook_events = forms.MultipleChoiceField(
        choices=AlertEvent.choices, widget=forms.CheckboxSelectMultiple, required=False, label="webhook gets"
    )

    class Meta:
        model = OrgAlertSettings
        fields = ["webhook_events"]


@admin.register(OrgAlertSettings)
class OrgAlertSettingsAdmin(admin.ModelAdmin):
    """The org's webhook: its URL is a secret (set it through the API); here, its events and how it went."""

    form = OrgAlertSettingsForm
    list_display = ["org", "webhook_url_hint", "last_webhook_error", "updated_at"]
    search_fields = ["org__slug", "org__name"]
    list_select_related = ["org"]
    readonly_fields = ["org", "webhook_block", "webhook_url_hint", "last_webhook_error"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="last webhook error")
    def last_webhook_error(self, obj: OrgAlertSettings) -> str:
        failed = (
            AlertDelivery.objects.filter(alert__org_id=obj.org_id, channel="webhook")
            .exclude(last_error="")
            .exclude(status=AlertDelivery.Status.SKIPPED)
            .order_by("-last_attempt_at")
            .first()
        )
        return f"{failed.last_attempt_at:%Y-%m-%d %H:%M} UTC: {failed.last_error}" if failed else "-"


class FreshnessForm(forms.ModelForm):
    class Meta:
        model = ConnectionFreshness
        fields = ["freshness_limit_hours"]


@admin.register(ConnectionFreshness)
class ConnectionFreshnessAdmin(admin.ModelAdmin):
    form = FreshnessForm
    list_display = ["sync_task", "last_successful_sync_at", "freshness_limit_hours", "stale_after", "is_stale"]
    list_filter = ["sync_task__org"]
    search_fields = ["sync_task__connection_id", "sync_task__org__slug"]
    list_select_related = ["sync_task__org", "sync_task__task"]
    readonly_fields = ["sync_task", "last_successful_sync_at", "last_successful_flow_run_id", "stale_after"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(boolean=True, description="stale")
    def is_stale(self, obj: ConnectionFreshness) -> bool:
        return freshness_of(obj).is_stale

    def save_model(self, request, obj, form, change):
        # through the service: the staleness deadline follows the limit
        freshness_limit_set(sync_task=obj.sync_task, hours=form.cleaned_data["freshness_limit_hours"])
