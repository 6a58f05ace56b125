"""The Prefect automation that tells Django about flow-run state changes, and its webhook block.

One name covers both: a Custom Webhook notification block (URL, secret header, JSON body) and an automation
whose trigger is any `prefect.flow-run.*` event of a state change and whose action sends a notification
through that block. Only state changes carry the `prefect.state-type` label (Scheduled, Late, Running,
Completed, our own DBT_TEST_FAILED ... all do), so matching on it leaves out the events that are not state
changes: the heartbeat every running run emits every 30-180 s, and the pull-step events.
The shared secret lives in the block's `secrets` (a SecretDict: masked in Prefect's API and UI); the header
only names it as a template (`{{webhook_secret}}`), which Prefect fills in when it sends. Writing is an
upsert by name, so setting the notifications up twice changes nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any
from uuid import UUID

import httpx
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import PrefectClient
from prefect.events.actions import SendNotification
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

WEBHOOK_SLUG = CustomWebhookNotificationBlock.get_block_type_slug()
SECRET_KEY = "webhook_secret"
EVENTS = ["prefect.flow-run.*"]
# any value of the label, which heartbeats and other non-state events of a flow run do not carry
MATCH = {"prefect.resource.id": "prefect.flow-run.*", "prefect.state-type": "*"}
# Rendered by Prefect's actions service for each event; `flow_run` is the run the event is about.
SUBJECT_TEMPLATE = "Flow run {{ flow_run.name }} with id {{ flow_run.id }} entered state {{ flow_run.state.name }}"
BODY_TEMPLATE = "{{ flow_run.id }}"
# The block's own templates: `body` and `subject` are the rendered texts above.
JSON_BODY = {"flow_run_id": "{{body}}", "message": "{{subject}}"}
DESCRIPTION = "Posts every flow-run state change to ddpui's webhook (managed by the ddpui proxy)."

# ---------------------------------------------------------------- service


def _block(request: FlowRunNotificationsWrite) -> CustomWebhookNotificationBlock:
    return CustomWebhookNotificationBlock(
        name=request.name,
        url=str(request.url),
        method="POST",
        headers={request.secret_header_name: "{{" + SECRET_KEY + "}}"},
        json_data=JSON_BODY,
        secrets={SECRET_KEY: request.secret},
    )


def _block_is_current(saved: dict[str, Any], block: CustomWebhookNotificationBlock) -> bool:
    wanted = {
        "url": block.url,
        "method": block.method,
        "headers": block.headers,
        "json_data": block.json_data,
        "form_data": None,
        "params": None,
        "secrets": block.secrets.get_secret_value(),
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
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT_TEMPLATE, body=BODY_TEMPLATE)],
    )


def _comparable(automation: dict[str, Any] | AutomationCore) -> dict[str, Any]:
    """The fields Prefect's automation update takes, as JSON (the trigger's generated id left out)."""
    if isinstance(automation, dict):
        automation = AutomationCore.model_validate(automation)
    return automation.model_dump(mode="json", exclude={"owner_resource"})


async def _read_block(client: PrefectClient, name: str, *, include_secrets: bool) -> dict[str, Any] | None:
    try:
        response = await client.request(
            "GET",
            f"/block_types/slug/{WEBHOOK_SLUG}/block_documents/name/{name}",
            params={"include_secrets": include_secrets},
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
    return next((key for key, value in headers.items() if value == "{{" + SECRET_KEY + "}}"), None)


def _describe(automation: dict[str, Any], block: dict[str, Any] | None) -> dict[str, Any]:
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

    automation = await prefect_json(client, "GET", f"/automations/{automation_id}")
    document = await _read_block(client, request.name, include_secrets=False)
    return FlowRunNotificationsWritten(
        **_describe(automation, document),
        block_change=block_change,
        automation_change=automation_change,
        duplicates_removed=len(existing[1:]),
    )


async def flow_run_notifications_read(client: PrefectClient, *, name: str) -> FlowRunNotifications:
    existing = await _automations_named(client, name)
    if not existing:
        raise NotFound(f"no flow-run notification automation named {name!r}")
    document = await _read_block(client, name, include_secrets=False)
    return FlowRunNotifications(**_describe(existing[0], document))


async def flow_run_notifications_delete(client: PrefectClient, *, name: str) -> FlowRunNotificationsDeleted:
    existing = await _automations_named(client, name)
    document = await _read_block(client, name, include_secrets=False)
    if not existing and document is None:
        raise NotFound(f"no flow-run notification automation or webhook block named {name!r}")
    for automation in existing:  # the automations first: none may point at a deleted block
        await client.delete_automation(UUID(automation["id"]))
    if document is not None:
        await client.delete_block_document(document["id"])
    return FlowRunNotificationsDeleted(name=name, automations_deleted=len(existing), block_deleted=document is not None)
