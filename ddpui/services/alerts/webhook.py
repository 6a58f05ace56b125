"""The org's incoming webhook (Slack, Mattermost, Discord-compatible relays) and what every channel has done.

The URL is a secret (chat services put their token in it): it is written into a Prefect Secret block
through the proxy and never stored, logged or answered by Django; what Django keeps and shows is the
block's name and the URL's scheme and host. Messages go out through the proxy, which alone reads it.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from ddpcontract import proxy_api as api
from ddpui.errors import InvalidInput, NotFound
from ddpui.models.alerts import AlertEvent, OrgAlertSettings
from ddpui.models.org import Org, OrgPrefectBlockv1, OrgUser
from ddpui.prefect_client import get_proxy
from ddpui.services.alerts.delivery import webhook_send
from ddpui.services.alerts.events import ALL_EVENTS
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.orgs import block_name_for, prefect_block_create, prefect_block_delete
from ddpui.services.undo import UndoStack

MAX_URL_LENGTH = 2000


def _hint(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}/…"


def _is_private(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        raise InvalidInput(f"the webhook's host {host} cannot be found: check the URL") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            return True
    return False


def webhook_url_check(url: str) -> str:
    """The URL if it can be an incoming webhook: http(s), a host, and (unless allowed) not a private address,
    so it cannot be aimed at the installation's own services."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if len(url) > MAX_URL_LENGTH or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url must be the incoming webhook's http(s) URL, e.g. https://hooks.slack.com/services/...")
    if not settings.ALERTS_WEBHOOK_ALLOW_PRIVATE_HOSTS and _is_private(parts.hostname):
        raise InvalidInput(
            f"the webhook's host {parts.hostname} is a private or local address: use the chat service's public URL"
        )
    return url


def _events(values: list[str] | None) -> list[str]:
    if values is None:
        return [event.value for event in ALL_EVENTS]
    unknown = sorted(set(values) - set(AlertEvent.values))
    if unknown:
        raise InvalidInput(
            f"unknown event(s) {', '.join(unknown)}: the events are {', '.join(e.value for e in ALL_EVENTS)}"
        )
    return [event.value for event in ALL_EVENTS if event.value in values]


def webhook_set(*, org: Org, actor: OrgUser | None, url: str, events: list[str] | None = None) -> OrgAlertSettings:
    """Sets (or replaces) the org's webhook URL, kept in a Secret block, and which events it receives
    (all by default)."""
    url, events = webhook_url_check(url), _events(events)
    current = OrgAlertSettings.objects.select_related("webhook_block").filter(org=org).first()
    proxy = get_proxy()
    with UndoStack(f"setting the alert webhook of {org.slug}") as undo:
        if current is not None and current.webhook_block is not None:
            proxy.blocks.secret.update(blockName=current.webhook_block.block_name, secret=url)
            block = current.webhook_block
        else:
            made = prefect_block_create(
                name=block_name_for(org, "alerts-webhook"),
                create=lambda name: proxy.blocks.secret.create(blockName=name, secret=url),
            )
            undo.push("alert webhook block", lambda: prefect_block_delete(block_id=made.block_id))
            block = None
        with transaction.atomic():
            if block is None:
                block = OrgPrefectBlockv1.objects.create(
                    org=org,
                    block_type=OrgPrefectBlockv1.BlockType.SECRET,
                    block_id=made.block_id,
                    block_name=made.block_name,
                )
            org_settings, _ = OrgAlertSettings.objects.update_or_create(
                org=org, defaults={"webhook_block": block, "webhook_url_hint": _hint(url), "webhook_events": events}
            )
            audit_record(
                org=org,
                orguser=actor,
                action=AuditAction.ALERTS_WEBHOOK_SET,
                object_type="alerts_webhook",
                object_id=block.block_name,
                details={"host": urlsplit(url).hostname, "events": events},
            )
    return org_settings


def webhook_events_set(*, org: Org, actor: OrgUser | None, events: list[str]) -> OrgAlertSettings:
    """Changes which events the webhook receives, keeping its URL."""
    events = _events(events)
    with transaction.atomic():
        org_settings = OrgAlertSettings.objects.select_for_update().filter(org=org).first()
        if org_settings is None or org_settings.webhook_block_id is None:
            raise NotFound("your organization has no alert webhook: set one with its url first")
        org_settings.webhook_events = events
        org_settings.save(update_fields=["webhook_events", "updated_at"])
        audit_record(
            org=org,
            orguser=actor,
            action=AuditAction.ALERTS_WEBHOOK_SET,
            object_type="alerts_webhook",
            object_id=org_settings.webhook_block.block_name,
            details={"events": events},
        )
    return org_settings


def webhook_update(*, org: Org, actor: OrgUser | None, url: str | None, events: list[str] | None) -> OrgAlertSettings:
    """A new URL (and events), or only new events for the webhook the org has."""
    if url is not None:
        return webhook_set(org=org, actor=actor, url=url, events=events)
    if events is None:
        raise InvalidInput("send the webhook's url, its events, or both")
    return webhook_events_set(org=org, actor=actor, events=events)


def webhook_clear(*, org: Org, actor: OrgUser | None) -> None:
    """Removes the webhook and its Secret block; deliveries still waiting for it are skipped."""
    org_settings = OrgAlertSettings.objects.select_related("webhook_block").filter(org=org).first()
    if org_settings is None or org_settings.webhook_block is None:
        raise NotFound("your organization has no alert webhook")
    block = org_settings.webhook_block
    prefect_block_delete(block_id=block.block_id)
    with transaction.atomic():
        org_settings.webhook_block = None
        org_settings.webhook_url_hint = ""
        org_settings.save(update_fields=["webhook_block", "webhook_url_hint", "updated_at"])
        block.delete()
        audit_record(
            org=org,
            orguser=actor,
            action=AuditAction.ALERTS_WEBHOOK_REMOVED,
            object_type="alerts_webhook",
            object_id=block.block_name,
        )


def webhook_test(*, org: Org) -> api.OutgoingWebhookSent:
    """Sends a test message now: whether it went and why not (nothing is retried or recorded)."""
    org_settings = OrgAlertSettings.objects.select_related("webhook_block").filter(org=org).first()
    if org_settings is None or org_settings.webhook_block is None:
        raise NotFound("your organization has no alert webhook: set one with its url first")
    text = f"ddpui: a test message from the organization {org.name}. Alerts will arrive here."
    return webhook_send(org_settings, {"text": text})
