"""The org's Airbyte workspace, warehouse destination, sources and connections."""

from __future__ import annotations

from typing import Any

from ninja import Field, Router, Schema

from ddpui.api.schemas import ERRORS, OkOut
from ddpui.api.tasks_api import TaskLockOut
from ddpui.auth import org_auth
from ddpui.services import airbyte_setup, warehouse
from ddpui.services.airbyte_setup import StreamChoice

router = Router(tags=["airbyte"])


class WorkspaceIn(Schema):
    name: str = Field(min_length=1, max_length=100)


class WorkspaceOut(Schema):
    workspaceId: str


class DestinationUpdateIn(Schema):
    name: str | None = None
    airbyteConfig: dict[str, Any]


class DestinationOut(Schema):
    destinationId: str
    name: str
    wtype: str


class SourceIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    sourceDefId: str = Field(min_length=1)
    config: dict[str, Any] = {}


class SourceOut(Schema):
    sourceId: str
    name: str
    sourceDefinitionId: str
    sourceName: str | None
    connectionConfiguration: dict[str, Any]


class StreamIn(Schema):
    name: str = Field(min_length=1)
    selected: bool = True
    syncMode: str | None = None
    destinationSyncMode: str | None = None


class ConnectionIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    sourceId: str = Field(min_length=1)
    streams: list[StreamIn] | None = None
    destinationSchema: str | None = None


class ConnectionUpdateIn(Schema):
    name: str | None = None
    streams: list[StreamIn] | None = None
    destinationSchema: str | None = None


class StreamOut(Schema):
    name: str
    selected: bool
    syncMode: str | None
    destinationSyncMode: str | None


class ConnectionOut(Schema):
    name: str
    connectionId: str
    sourceId: str
    destinationId: str
    status: str | None
    deploymentId: str | None
    orgtaskUuid: str
    streams: list[StreamOut]
    destinationSchema: str | None
    lock: TaskLockOut | None = None


class ConnectionListItem(Schema):
    name: str
    connectionId: str
    source: dict[str, Any] | None
    destination: dict[str, Any] | None
    status: str | None
    deploymentId: str
    orgtaskUuid: str
    lastRun: dict[str, Any] | None
    lock: TaskLockOut | None


class ResetOut(Schema):
    jobId: int | None


def _streams(streams: list[StreamIn] | None) -> list[StreamChoice] | None:
    if streams is None:
        return None
    return [
        StreamChoice(
            name=s.name, selected=s.selected, sync_mode=s.syncMode, destination_sync_mode=s.destinationSyncMode
        )
        for s in streams
    ]


# ------------------------------------------------------------------------------------------ workspace


@router.post("/airbyte/v1/workspace/", response={200: WorkspaceOut, **ERRORS}, auth=org_auth("org:write"))
def attach_workspace(request, payload: WorkspaceIn):
    org = airbyte_setup.airbyte_workspace_attach(org=request.auth.org, name=payload.name)
    return {"workspaceId": org.airbyte_workspace_id}


@router.put(
    "/airbyte/v1/destinations/{destination_id}/",
    response={200: DestinationOut, **ERRORS},
    auth=org_auth("warehouse:write"),
)
def update_destination(request, destination_id: str, payload: DestinationUpdateIn):
    updated = warehouse.warehouse_update(
        org=request.auth.org, destination_id=destination_id, name=payload.name, airbyte_config=payload.airbyteConfig
    )
    return {"destinationId": updated.airbyte_destination_id, "name": updated.name, "wtype": updated.wtype}


# ------------------------------------------------------------------------------------------ sources


@router.post("/airbyte/sources/", response={200: SourceOut, **ERRORS}, auth=org_auth("sources:write"))
def create_source(request, payload: SourceIn):
    return airbyte_setup.source_create(
        org=request.auth.org, name=payload.name, source_definition_id=payload.sourceDefId, config=payload.config
    )


@router.get("/airbyte/sources/", response={200: list[SourceOut], **ERRORS}, auth=org_auth("sources:read"))
def list_sources(request):
    return airbyte_setup.sources_list(org=request.auth.org)


@router.get("/airbyte/sources/{source_id}", response={200: SourceOut, **ERRORS}, auth=org_auth("sources:read"))
def get_source(request, source_id: str):
    return airbyte_setup.source_get(org=request.auth.org, source_id=source_id)


@router.delete("/airbyte/sources/{source_id}", response={200: OkOut, **ERRORS}, auth=org_auth("sources:write"))
def delete_source(request, source_id: str):
    airbyte_setup.source_delete(org=request.auth.org, source_id=source_id)
    return {"success": True}


# ------------------------------------------------------------------------------------------ connections


@router.post("/airbyte/v1/connections/", response={200: ConnectionOut, **ERRORS}, auth=org_auth("connections:write"))
def create_connection(request, payload: ConnectionIn):
    return airbyte_setup.connection_create(
        org=request.auth.org,
        name=payload.name,
        source_id=payload.sourceId,
        streams=_streams(payload.streams),
        destination_schema=payload.destinationSchema,
    )


@router.get(
    "/airbyte/v1/connections", response={200: list[ConnectionListItem], **ERRORS}, auth=org_auth("connections:read")
)
def list_connections(request):
    return airbyte_setup.connections_list(org=request.auth.org)


@router.get(
    "/airbyte/v1/connections/{connection_id}",
    response={200: ConnectionOut, **ERRORS},
    auth=org_auth("connections:read"),
)
def get_connection(request, connection_id: str):
    return airbyte_setup.connection_get(org=request.auth.org, connection_id=connection_id)


@router.put(
    "/airbyte/v1/connections/{connection_id}/update",
    response={200: ConnectionOut, **ERRORS},
    auth=org_auth("connections:write"),
)
def update_connection(request, connection_id: str, payload: ConnectionUpdateIn):
    return airbyte_setup.connection_update(
        org=request.auth.org,
        connection_id=connection_id,
        name=payload.name,
        streams=_streams(payload.streams),
        destination_schema=payload.destinationSchema,
    )


@router.post(
    "/airbyte/v1/connections/{connection_id}/reset",
    response={200: ResetOut, **ERRORS},
    auth=org_auth("connections:run"),
)
def reset_connection(request, connection_id: str):
    return airbyte_setup.connection_reset(org=request.auth.org, connection_id=connection_id)


@router.delete(
    "/airbyte/v1/connections/{connection_id}", response={200: OkOut, **ERRORS}, auth=org_auth("connections:write")
)
def delete_connection(request, connection_id: str):
    airbyte_setup.connection_delete(org=request.auth.org, connection_id=connection_id)
    return {"success": True}
