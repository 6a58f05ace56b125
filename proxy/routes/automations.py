"""Automations: the flow-run notifications that post every state change to Django's webhook."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from ddpcontract.tasks import BLOCK_NAME_PATTERN
from proxy import automations, schemas
from proxy.dependencies import Prefect, resource_router

Name = Annotated[str, Path(pattern=BLOCK_NAME_PATTERN)]

router = resource_router(tags=["automations"], prefix="/automations/flow-run-notifications")


@router.put("/")
async def write_flow_run_notifications(
    request: schemas.FlowRunNotificationsWrite, client: Prefect
) -> schemas.FlowRunNotificationsWritten:
    return await automations.flow_run_notifications_write(client, request=request)


@router.get("/{name}")
async def read_flow_run_notifications(name: Name, client: Prefect) -> schemas.FlowRunNotifications:
    return await automations.flow_run_notifications_read(client, name=name)


@router.delete("/{name}")
async def delete_flow_run_notifications(name: Name, client: Prefect) -> schemas.FlowRunNotificationsDeleted:
    return await automations.flow_run_notifications_delete(client, name=name)
