"""Which events each org user receives by e-mail: their own choice, or their role's defaults until they make one.

Read again when each e-mail is sent, so an opt-out also stops alerts raised before it that are still waiting.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from ddpui.errors import InvalidInput
from ddpui.models.alerts import AlertEvent, AlertSubscription
from ddpui.models.org import OrgUser
from ddpui.services.alerts.events import ALL_EVENTS, default_email_events


@dataclass(frozen=True)
class EmailPreferences:
    email_events: frozenset[AlertEvent]
    is_default: bool  # the role's defaults: the user has not chosen


def email_events_of(orguser: OrgUser) -> frozenset[AlertEvent]:
    """The events this org user receives by e-mail now (use select_related("alert_subscription") for lists)."""
    try:
        subscription = orguser.alert_subscription
    except AlertSubscription.DoesNotExist:
        return default_email_events(orguser.role)
    return frozenset(AlertEvent(value) for value in subscription.email_events if value in AlertEvent.values)


def preferences_get(*, orguser: OrgUser) -> EmailPreferences:
    subscription = AlertSubscription.objects.filter(orguser=orguser).first()
    if subscription is None:
        return EmailPreferences(email_events=default_email_events(orguser.role), is_default=True)
    return EmailPreferences(email_events=email_events_of(orguser), is_default=False)


def _events(values: dict[str, bool]) -> dict[AlertEvent, bool]:
    unknown = sorted(set(values) - set(AlertEvent.values))
    if unknown:
        known = ", ".join(event.value for event in ALL_EVENTS)
        raise InvalidInput(f"unknown event(s) {', '.join(unknown)}: the events are {known}")
    return {AlertEvent(key): bool(value) for key, value in values.items()}


def preferences_set(*, orguser: OrgUser, email: dict[str, bool]) -> EmailPreferences:
    """Turns e-mail for the named events on or off (the others keep their current setting)."""
    changes = _events(email)
    with transaction.atomic():
        current = set(preferences_get(orguser=orguser).email_events)
        for event, wanted in changes.items():
            (current.add if wanted else current.discard)(event)
        ordered = [event.value for event in ALL_EVENTS if event in current]
        AlertSubscription.objects.update_or_create(orguser=orguser, defaults={"email_events": ordered})
    return preferences_get(orguser=orguser)


def preferences_reset(*, orguser: OrgUser) -> EmailPreferences:
    """Back to the role's defaults."""
    AlertSubscription.objects.filter(orguser=orguser).delete()
    return preferences_get(orguser=orguser)
