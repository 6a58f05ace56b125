"""The Prefect automation that tells Django about flow-run state changes, and its webhook block.

One name covers both: a Webhook block (URL, and the headers: the JSON content type and the secret header)
and an automation whose trigger is any `prefect.flow-run.*` event of a state change and whose action calls
that webhook with a JSON payload. Only state changes carry the `prefect.state-type` label (Scheduled, Late,
Running, Completed, our own DBT_TEST_FAILED ... all do), so matching on it leaves out the events that are not
state changes: the heartbeat every running run emits every 30-180 s, and the pull-step events.
The shared secret lives in the block's `headers` (a SecretDict, like the `url`: masked in Prefect's API and
UI). Writing is an upsert by name, so setting the notifications up twice changes nothing.

Why a Webhook block and a "call-webhook" action, not a Custom Webhook notification block and a
"send-notification" action (what earlier versions wrote, and still replaced here): Prefect's notification
block builds a new HTTP client for every message, and with it a TLS context from the whole CA bundle, even
for a plain-http URL. That costs tens of milliseconds of CPU inside the Prefect server's event loop for every
state change, which every API call made meanwhile waits for. The Webhook block uses one process-wide
connection pool.
"""

from __future__ import annotations

import contextlib
from typing import Any
from uuid import UUID

import httpx
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import PrefectClient
from prefect.events.actions import CallWebhook
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from proxy.errors import NotFound
from proxy.prefect_api import prefect_json
from proxy.schemas import (
    Change,
    FlowRunNotifications,
    FlowRunNotificationsDeleted,
    FlowRunNotificationsWrite,
    FlowRunNotificationsWritten,
)

WEBHOOK_SLUG = Webhook.get_block_type_slug()
# what earlier versions wrote under the same name: replaced (and deleted) by the next write
LEGACY_SLUG = CustomWebhookNotificationBlock.get_block_type_slug()
CONTENT_TYPE = {"Content-Type": "application/json"}
EVENTS = ["prefect.flow-run.*"]
# any value of the label, which heartbeats and other non-state events of a flow run do not carry
MATCH = {"prefect.resource.id": "prefect.flow-run.*", "prefect.state-type": "*"}
# Rendered by Prefect's actions service for each event; `flow_run` is the run the event is about. The message
# is Prefect's own notification sentence, JSON-quoted (a run's name may hold any character).
PAYLOAD_TEMPLATE = (
    '{"flow_run_id": "{{ flow_run.id }}", "message": {{ ("Flow run " ~ flow_run.name ~ " with id " ~ flow_run.id'
    ' ~ " entered state " ~ flow_run.state.name) | tojson }}}'
)
DESCRIPTION = "Posts every flow-run state change to ddpui's webhook (managed by the ddpui proxy)."

# ---------------------------------------------------------------- service


def _block(request: FlowRunNotificationsWrite) -> Webhook:
    return Webhook(
        url=str(request.url),
        method="POST",
        headers={**CONTENT_TYPE, request.secret_header_name: request.secret},
        allow_private_urls=True,  # Django is usually on the same host or network as Prefect
        verify=True,
    )


def _block_is_current(saved: dict[str, Any], block: Webhook) -> bool:
    """`saved`: the block's data read with its secrets."""
    wanted = {
        "url": block.url.get_secret_value(),
        "method": block.method,
        "headers": block.headers.get_secret_value(),
        "allow_private_urls": block.allow_private_urls,
        "verify": block.verify,
    }
    return all(saved.get(key) == value for key, value in wanted.items())


def _automation(name: str, block_id: UUID) -> AutomationCore:
    return AutomationCore(
        name=name,
        description=DESCRIPTION,
        enabled=True,
        trigger=EventTrigger(
            match=MATCH,
            expect=set(EVENTS),
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[CallWebhook(block_document_id=block_id, payload=PAYLOAD_TEMPLATE)],
    )


def _comparable(automation: dict[str, Any] | AutomationCore) -> dict[str, Any]:
    """The fields Prefect's automation update takes, as JSON (the trigger's generated id left out)."""
    if isinstance(automation, dict):
        automation = AutomationCore.model_validate(automation)
    return automation.model_dump(mode="json", exclude={"owner_resource"})


async def _read_block(
    client: PrefectClient, name: str, *, include_secrets: bool, slug: str = WEBHOOK_SLUG
) -> dict[str, Any] | None:
    try:
        response = await client.request(
            "GET", f"/block_types/slug/{slug}/block_documents/name/{name}", params={"include_secrets": include_secrets}
        )
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise
    return response.json()


async def _automations_named(client: PrefectClient, name: str) -> list[dict[str, Any]]:
    """Newest first; Prefect does not keep automation names unique, so there may be several."""
    found = await prefect_json(
        client,
        "POST",
        "/automations/filter",
        json={"automations": {"name": {"any_": [name]}}, "sort": "UPDATED_DESC"},
    )
    return [automation for automation in found if automation["name"] == name]


def _header_name(block_data: dict[str, Any] | None) -> str | None:
    headers = (block_data or {}).get("headers") or {}
    return next((key for key in headers if key.lower() != "content-type"), None)


def _describe(automation: dict[str, Any], block: dict[str, Any] | None) -> dict[str, Any]:
    """`block` read with its secrets, for the URL and the header's name; the header's value is left out."""
    data = block["data"] if block else None
    return {
        "name": automation["name"],
        "automation_id": automation["id"],
        "enabled": automation["enabled"],
        "events": sorted(automation["trigger"].get("expect") or []),
        "match": automation["trigger"].get("match") or {},
        "block_id": block["id"] if block else None,
        "block_name": block["name"] if block else None,
        "url": data.get("url") if data else None,
        "secret_header_name": _header_name(data),
    }


async def _delete_legacy_block(client: PrefectClient, name: str) -> bool:
    """Deletes the Custom Webhook notification block an earlier version wrote under `name`, if any."""
    legacy = await _read_block(client, name, include_secrets=False, slug=LEGACY_SLUG)
    if legacy is not None:
        await client.delete_block_document(legacy["id"])
    return legacy is not None


async def flow_run_notifications_write(
    client: PrefectClient, *, request: FlowRunNotificationsWrite
) -> FlowRunNotificationsWritten:
    block = _block(request)
    saved = await _read_block(client, request.name, include_secrets=True)
    existing = await _automations_named(client, request.name)

    block_change: Change = "created" if saved is None else "updated"
    if saved is not None and _block_is_current(saved["data"], block):
        block_id, block_change = UUID(saved["id"]), "unchanged"
    else:
        block_id = await block.asave(name=request.name, overwrite=True, client=client)

    wanted = _comparable(_automation(request.name, block_id))
    automation_change: Change = "unchanged"
    try:
        if not existing:
            automation_id = (await prefect_json(client, "POST", "/automations/", json=wanted))["id"]
            automation_change = "created"
        else:
            automation_id = existing[0]["id"]
            if _comparable(existing[0]) != wanted:
                await client.request("PUT", f"/automations/{automation_id}", json=wanted)
                automation_change = "updated"
    except Exception:
        if block_change == "created":  # a webhook block that no automation uses is only clutter
            with contextlib.suppress(Exception):
                await client.delete_block_document(block_id)
        raise
    # more automations of this name (made by hand, or by two first set-ups at once) would post twice
    for duplicate in existing[1:]:
        await client.delete_automation(UUID(duplicate["id"]))
    # no automation of this name points at an earlier version's block any more
    legacy_block_removed = await _delete_legacy_block(client, request.name)

    automation = await prefect_json(client, "GET", f"/automations/{automation_id}")
    document = await _read_block(client, request.name, include_secrets=True)
    return FlowRunNotificationsWritten(
        **_describe(automation, document),
        block_change=block_change,
        automation_change=automation_change,
        duplicates_removed=len(existing[1:]),
        legacy_block_removed=legacy_block_removed,
    )


async def flow_run_notifications_read(client: PrefectClient, *, name: str) -> FlowRunNotifications:
    existing = await _automations_named(client, name)
    if not existing:
        raise NotFound(f"no flow-run notification automation named {name!r}")
    document = await _read_block(client, name, include_secrets=True)
    return FlowRunNotifications(**_describe(existing[0], document))


async def flow_run_notifications_delete(client: PrefectClient, *, name: str) -> FlowRunNotificationsDeleted:
    existing = await _automations_named(client, name)
    document = await _read_block(client, name, include_secrets=False)
    legacy = await _read_block(client, name, include_secrets=False, slug=LEGACY_SLUG)
    if not existing and document is None and legacy is None:
        raise NotFound(f"no flow-run notification automation or webhook block named {name!r}")
    for automation in existing:  # the automations first: none may point at a deleted block
        await client.delete_automation(UUID(automation["id"]))
    for block in (document, legacy):
        if block is not None:
            await client.delete_block_document(block["id"])
    return FlowRunNotificationsDeleted(
        name=name, automations_deleted=len(existing), block_deleted=document is not None or legacy is not None
    )
