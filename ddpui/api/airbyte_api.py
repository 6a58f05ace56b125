"""The org's Airbyte workspace, connector catalogue, warehouse destination, sources and connections.

Paths and JSON are those of Dalgo's web app (WEBAPP_CONTRACT.md rows W-05…W-31); ddpui's own fields stay
beside them, and the earlier spellings (a trailing slash, `airbyteConfig`) keep working. Every web-app
shape is written here, once, from what the services return.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Field, Router, Schema
from pydantic import ConfigDict, model_validator

from ddpcontract import proxy_api as api
from ddpcontract.states import StateType
from ddpui.api.schemas import ERRORS, OkOut
from ddpui.api.tasks_api import TaskLockOut
from ddpui.auth import org_auth
from ddpui.errors import InvalidInput
from ddpui.services import airbyte_setup, connectors, locks, warehouse
from ddpui.services.airbyte_setup import ConnectionDetail, ConnectionSummary, StreamChoice
from ddpui.services.alerts.freshness import MAX_LIMIT_HOURS, Freshness
from ddpui.services.connectors import CheckResult

router = Router(tags=["airbyte"])


# ------------------------------------------------------------------------------------------ schemas


class WorkspaceIn(Schema):
    name: str = Field(min_length=1, max_length=100)


class WorkspaceOut(Schema):
    workspaceId: str


class SourceDefinitionOut(Schema):
    """An Airbyte source definition; Airbyte's other fields pass through."""

    model_config = ConfigDict(extra="allow")
    sourceDefinitionId: str
    name: str
    dockerRepository: str | None = None
    dockerImageTag: str | None = None
    documentationUrl: str | None = None
    icon: str | None = None


class DestinationDefinitionOut(Schema):
    model_config = ConfigDict(extra="allow")
    destinationDefinitionId: str
    name: str
    dockerRepository: str | None = None
    dockerImageTag: str | None = None
    documentationUrl: str | None = None
    icon: str | None = None


class SourceCheckIn(Schema):
    name: str = ""
    sourceDefId: str = Field(min_length=1)
    config: dict[str, Any] = {}


class DestinationCheckIn(Schema):
    name: str = ""
    destinationDefId: str = Field(min_length=1)
    config: dict[str, Any] = {}


class CheckForUpdateIn(Schema):
    name: str | None = None
    sourceDefId: str | None = None
    config: dict[str, Any] = {}


class CheckOut(Schema):
    status: str
    message: str
    logs: list[str]


class DestinationUpdateIn(Schema):
    """The web app sends `config` (and `destinationDefId`, which cannot change); ddpui's clients send
    `airbyteConfig`."""

    name: str | None = None
    destinationDefId: str | None = None
    config: dict[str, Any] | None = None
    airbyteConfig: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_configuration(self):
        if self.config is None and self.airbyteConfig is None:
            raise ValueError("send the destination configuration as config (or airbyteConfig)")
        return self


class DestinationOut(Schema):
    destinationId: str
    name: str
    wtype: str


class SourceIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    sourceDefId: str = Field(min_length=1)
    config: dict[str, Any] = {}


class SourceUpdateIn(Schema):
    name: str | None = Field(default=None, max_length=100)
    sourceDefId: str | None = None
    config: dict[str, Any]


class SourceOut(Schema):
    sourceId: str
    name: str
    sourceDefinitionId: str
    sourceName: str | None
    connectionConfiguration: dict[str, Any]
    workspaceId: str | None = None
    icon: str | None = None


class CatalogOut(Schema):
    catalog: dict[str, Any]
    catalogId: str | None


class StreamIn(Schema):
    name: str = Field(min_length=1)
    selected: bool = True
    syncMode: str | None = None
    destinationSyncMode: str | None = None
    cursorField: str | list[str] | None = None
    supportsIncremental: bool | None = None


class ConnectionIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    sourceId: str = Field(min_length=1)
    streams: list[StreamIn] | None = None
    destinationSchema: str | None = None
    # the warehouse it writes into (its Airbyte destination); the org's default warehouse when left out
    destinationId: str | None = None
    normalize: bool = False
    freshnessLimitHours: int | None = Field(default=None, ge=1, le=MAX_LIMIT_HOURS)


class ConnectionUpdateIn(Schema):
    name: str | None = None
    sourceId: str | None = None
    streams: list[StreamIn] | None = None
    destinationSchema: str | None = None
    normalize: bool = False
    # absent: unchanged; null: no limit; a number of hours: stale (and an alert) after that long without a
    # successful sync
    freshnessLimitHours: int | None = Field(default=None, ge=1, le=MAX_LIMIT_HOURS)


class StreamOut(Schema):
    name: str
    selected: bool
    syncMode: str | None
    destinationSyncMode: str | None
    cursorField: list[str]


class ConnectionSourceOut(Schema):
    id: str
    sourceId: str
    name: str | None
    sourceName: str | None
    sourceDefinitionId: str | None


class ConnectionDestinationOut(Schema):
    id: str
    destinationId: str
    name: str | None
    destinationName: str | None
    destinationDefinitionId: str | None


class ConnectionOut(Schema):
    name: str
    connectionId: str
    sourceId: str
    destinationId: str
    status: str | None
    deploymentId: str | None
    orgtaskUuid: str
    source: ConnectionSourceOut
    destination: ConnectionDestinationOut
    syncCatalog: dict[str, Any]
    catalogId: str | None
    destinationSchema: str | None
    normalize: bool
    streams: list[StreamOut]
    lock: TaskLockOut | None = None
    lastSuccessfulSyncAt: dt.datetime | None = None
    freshnessLimitHours: int | None = None
    isStale: bool = False


class LastRunOut(Schema):
    status: str
    startTime: str
    airbyteJobStatus: str


class ListSourceOut(Schema):
    sourceId: str | None
    name: str | None
    sourceName: str | None
    sourceDefinitionId: str | None = None
    icon: str | None = None


class ListDestinationOut(Schema):
    destinationId: str | None
    name: str | None
    destinationName: str | None
    destinationDefinitionId: str | None = None
    icon: str | None = None


class ConnectionListItem(Schema):
    name: str
    connectionId: str
    source: ListSourceOut
    destination: ListDestinationOut
    status: str | None
    deploymentId: str
    orgtaskUuid: str
    lastRun: LastRunOut | None
    isRunning: bool
    lock: TaskLockOut | None
    lastSuccessfulSyncAt: dt.datetime | None
    freshnessLimitHours: int | None
    isStale: bool


class ResetOut(Schema):
    success: bool = True
    jobId: int | None


class SyncLogsOut(Schema):
    status: str
    logs: list[str]
    jobId: int | None = None
    recordsSynced: int | None = None


# ------------------------------------------------------------------------------------------ shaping

# how the web app names an Airbyte job's outcome (it shows "Success" for COMPLETED, "Failed" otherwise)
_RUN_STATES = {
    "succeeded": StateType.COMPLETED,
    "failed": StateType.FAILED,
    "incomplete": StateType.FAILED,
    "cancelled": StateType.CANCELLED,
    "running": StateType.RUNNING,
    "pending": StateType.PENDING,
}


def _check_json(result: CheckResult) -> dict:
    return {"status": "succeeded", "message": result.message, "logs": result.logs}


def _source_json(source: dict) -> dict:
    return {
        "sourceId": source["sourceId"],
        "name": source["name"],
        "sourceDefinitionId": source["sourceDefinitionId"],
        "sourceName": source.get("sourceName"),
        "connectionConfiguration": source.get("connectionConfiguration") or {},
        "workspaceId": source.get("workspaceId"),
        "icon": source.get("icon"),
    }


def _lock_json(lock, run: api.FlowRun | None = None) -> locks.LockState | None:
    """The one lock rule (`locks.lock_state`), shaped by TaskLockOut: a run nobody started by hand (a schedule)
    is held by "system", which the web app prints as "Triggered by: system"."""
    return locks.lock_state_for(lock, observed_run=run)


def _streams_json(catalog: dict) -> list[dict]:
    return [
        {
            "name": entry["stream"]["name"],
            "selected": bool(entry.get("config", {}).get("selected", True)),
            "syncMode": entry.get("config", {}).get("syncMode"),
            "destinationSyncMode": entry.get("config", {}).get("destinationSyncMode"),
            "cursorField": list(entry.get("config", {}).get("cursorField") or []),
        }
        for entry in (catalog or {}).get("streams", [])
    ]


def _connection_json(detail: ConnectionDetail, *, with_lock: bool = True) -> dict:
    connection = detail.connection
    source, destination = connection.get("source") or {}, connection.get("destination") or {}
    return {
        "name": connection["name"],
        "connectionId": connection["connectionId"],
        "sourceId": connection["sourceId"],
        "destinationId": connection["destinationId"],
        "status": connection.get("status"),
        "deploymentId": detail.deployment_id,
        "orgtaskUuid": detail.orgtask_uuid,
        "source": {
            "id": connection["sourceId"],
            "sourceId": connection["sourceId"],
            "name": source.get("name"),
            "sourceName": source.get("sourceName"),
            "sourceDefinitionId": source.get("sourceDefinitionId"),
        },
        "destination": {
            "id": connection["destinationId"],
            "destinationId": connection["destinationId"],
            "name": destination.get("name"),
            "destinationName": destination.get("destinationName"),
            "destinationDefinitionId": destination.get("destinationDefinitionId"),
        },
        "syncCatalog": connection.get("syncCatalog") or {"streams": []},
        "catalogId": connection.get("catalogId"),
        "destinationSchema": detail.destination_schema,
        "normalize": False,
        "streams": _streams_json(connection.get("syncCatalog")),
        "lock": _lock_json(detail.lock) if with_lock else None,
        **_freshness_json(detail.freshness),
    }


def _list_item_json(summary: ConnectionSummary) -> dict:
    last_run = None
    if summary.last_sync is not None:
        last_run = {
            "status": _RUN_STATES.get(summary.last_sync.status, summary.last_sync.status.upper()),
            "startTime": dt.datetime.fromtimestamp(summary.last_sync.created_at, tz=dt.UTC).isoformat(),
            "airbyteJobStatus": summary.last_sync.status,
        }
    source, destination = summary.source, summary.destination
    return {
        "name": summary.name,
        "connectionId": summary.connection_id,
        "source": {key: source.get(key) for key in ("sourceId", "name", "sourceName", "sourceDefinitionId", "icon")},
        "destination": {
            key: destination.get(key)
            for key in ("destinationId", "name", "destinationName", "destinationDefinitionId", "icon")
        },
        "status": summary.status,
        "deploymentId": summary.deployment_id,
        "orgtaskUuid": summary.orgtask_uuid,
        "lastRun": last_run,
        "isRunning": summary.is_syncing,
        "lock": _lock_json(summary.lock, summary.lock_run),
        **_freshness_json(summary.freshness),
    }


def _freshness_json(freshness: Freshness) -> dict:
    return {
        "lastSuccessfulSyncAt": freshness.last_successful_sync_at,
        "freshnessLimitHours": freshness.limit_hours,
        "isStale": freshness.is_stale,
    }


def _limit_change(payload: ConnectionUpdateIn):
    """The freshness limit sent (null: no limit), or UNCHANGED when the body leaves it out."""
    if "freshnessLimitHours" in payload.model_fields_set:
        return payload.freshnessLimitHours
    return airbyte_setup.UNCHANGED


def _stream_choices(streams: list[StreamIn] | None) -> list[StreamChoice] | None:
    if streams is None:
        return None
    choices = []
    for stream in streams:
        cursor = stream.cursorField
        if isinstance(cursor, list):
            cursor = cursor[0] if cursor else None
        choices.append(
            StreamChoice(
                name=stream.name,
                selected=stream.selected,
                sync_mode=stream.syncMode,
                destination_sync_mode=stream.destinationSyncMode,
                cursor_field=cursor or None,
            )
        )
    return choices


def _refuse_normalization(normalize: bool) -> None:
    if normalize:
        raise InvalidInput(
            "normalize is not supported: Airbyte writes the raw tables and dbt transforms them (send false)"
        )


# ------------------------------------------------------------------------------------------ workspace


@router.post("/airbyte/v1/workspace/", response={200: WorkspaceOut, **ERRORS}, auth=org_auth("org:write"))
def attach_workspace(request, payload: WorkspaceIn):
    org = airbyte_setup.airbyte_workspace_attach(org=request.auth.org, actor=request.auth.orguser, name=payload.name)
    return {"workspaceId": org.airbyte_workspace_id}


# ------------------------------------------------------------------------------------------ definitions


@router.get(
    "/airbyte/source_definitions",
    response={200: list[SourceDefinitionOut], **ERRORS},
    auth=org_auth("sources:read"),
)
def list_source_definitions(request):
    return connectors.source_definitions_list(org=request.auth.org)


@router.get(
    "/airbyte/source_definitions/{definition_id}/specifications",
    response={200: dict[str, Any], **ERRORS},
    auth=org_auth("sources:read"),
)
def get_source_specification(request, definition_id: str):
    """The connector's configuration as a JSON Schema (Airbyte's connectionSpecification)."""
    read = connectors.source_specification(org=request.auth.org, definition_id=definition_id)
    return read["connectionSpecification"]


@router.get(
    "/airbyte/destination_definitions",
    response={200: list[DestinationDefinitionOut], **ERRORS},
    auth=org_auth("warehouse:read"),
)
def list_destination_definitions(request):
    return connectors.destination_definitions_list(org=request.auth.org)


@router.get(
    "/airbyte/destination_definitions/{definition_id}/specifications",
    response={200: dict[str, Any], **ERRORS},
    auth=org_auth("warehouse:read"),
)
def get_destination_specification(request, definition_id: str):
    read = connectors.destination_specification(org=request.auth.org, definition_id=definition_id)
    return read["connectionSpecification"]


# ------------------------------------------------------------------------------------------ destinations


@router.post(
    "/airbyte/destinations/check_connection/",
    response={200: CheckOut, **ERRORS},
    auth=org_auth("warehouse:write"),
)
def check_destination(request, payload: DestinationCheckIn):
    result = connectors.destination_check(
        org=request.auth.org, definition_id=payload.destinationDefId, config=payload.config
    )
    return _check_json(result)


@router.post(
    "/airbyte/destinations/{destination_id}/check_connection_for_update/",
    response={200: CheckOut, **ERRORS},
    auth=org_auth("warehouse:write"),
)
def check_destination_for_update(request, destination_id: str, payload: CheckForUpdateIn):
    result = warehouse.destination_check_for_update(
        org=request.auth.org, destination_id=destination_id, name=payload.name, config=payload.config
    )
    return _check_json(result)


@router.put(
    "/airbyte/v1/destinations/{destination_id}/",
    response={200: DestinationOut, **ERRORS},
    auth=org_auth("warehouse:write"),
)
def update_destination(request, destination_id: str, payload: DestinationUpdateIn):
    updated = warehouse.warehouse_update(
        org=request.auth.org,
        actor=request.auth.orguser,
        destination_id=destination_id,
        name=payload.name,
        airbyte_config=payload.config if payload.config is not None else payload.airbyteConfig,
    )
    return {"destinationId": updated.airbyte_destination_id, "name": updated.name, "wtype": updated.wtype}


# ------------------------------------------------------------------------------------------ sources


@router.post("/airbyte/sources/", response={200: SourceOut, **ERRORS}, auth=org_auth("sources:write"))
def create_source(request, payload: SourceIn):
    source = airbyte_setup.source_create(
        org=request.auth.org,
        actor=request.auth.orguser,
        name=payload.name,
        source_definition_id=payload.sourceDefId,
        config=payload.config,
    )
    return _source_json(source)


@router.post("/airbyte/sources/check_connection/", response={200: CheckOut, **ERRORS}, auth=org_auth("sources:write"))
def check_source(request, payload: SourceCheckIn):
    result = airbyte_setup.source_check(
        org=request.auth.org, source_definition_id=payload.sourceDefId, config=payload.config
    )
    return _check_json(result)


def _sources(request) -> list[dict]:
    return [_source_json(source) for source in airbyte_setup.sources_list(org=request.auth.org)]


@router.get("/airbyte/sources", response={200: list[SourceOut], **ERRORS}, auth=org_auth("sources:read"))
def list_sources(request):
    """The web app's spelling, answered directly: a cross-origin preflight cannot follow a redirect."""
    return _sources(request)


@router.get("/airbyte/sources/", response={200: list[SourceOut], **ERRORS}, auth=org_auth("sources:read"))
def list_sources_slash(request):
    return _sources(request)


@router.get("/airbyte/sources/{source_id}", response={200: SourceOut, **ERRORS}, auth=org_auth("sources:read"))
def get_source(request, source_id: str):
    return _source_json(airbyte_setup.source_get(org=request.auth.org, source_id=source_id))


@router.put("/airbyte/sources/{source_id}", response={200: SourceOut, **ERRORS}, auth=org_auth("sources:write"))
def update_source(request, source_id: str, payload: SourceUpdateIn):
    source = airbyte_setup.source_update(
        org=request.auth.org,
        actor=request.auth.orguser,
        source_id=source_id,
        name=payload.name,
        config=payload.config,
        source_definition_id=payload.sourceDefId,
    )
    return _source_json(source)


@router.post(
    "/airbyte/sources/{source_id}/check_connection_for_update/",
    response={200: CheckOut, **ERRORS},
    auth=org_auth("sources:write"),
)
def check_source_for_update(request, source_id: str, payload: CheckForUpdateIn):
    result = airbyte_setup.source_check_for_update(
        org=request.auth.org, source_id=source_id, name=payload.name, config=payload.config
    )
    return _check_json(result)


@router.get(
    "/airbyte/sources/{source_id}/schema_catalog",
    response={200: CatalogOut, **ERRORS},
    auth=org_auth("connections:read"),
)
def get_source_schema_catalog(request, source_id: str):
    """The source's streams, discovered now, in Airbyte's catalog shape."""
    return airbyte_setup.source_schema_catalog(org=request.auth.org, source_id=source_id)


@router.delete("/airbyte/sources/{source_id}", response={200: OkOut, **ERRORS}, auth=org_auth("sources:write"))
def delete_source(request, source_id: str):
    airbyte_setup.source_delete(org=request.auth.org, actor=request.auth.orguser, source_id=source_id)
    return {"success": True}


# ------------------------------------------------------------------------------------------ connections


@router.post("/airbyte/v1/connections/", response={200: ConnectionOut, **ERRORS}, auth=org_auth("connections:write"))
def create_connection(request, payload: ConnectionIn):
    _refuse_normalization(payload.normalize)
    detail = airbyte_setup.connection_create(
        org=request.auth.org,
        actor=request.auth.orguser,
        name=payload.name,
        source_id=payload.sourceId,
        streams=_stream_choices(payload.streams),
        destination_schema=payload.destinationSchema,
        freshness_limit_hours=payload.freshnessLimitHours,
        destination_id=payload.destinationId,
    )
    return _connection_json(detail, with_lock=False)


@router.get(
    "/airbyte/v1/connections", response={200: list[ConnectionListItem], **ERRORS}, auth=org_auth("connections:read")
)
def list_connections(request):
    return [_list_item_json(summary) for summary in airbyte_setup.connections_list(org=request.auth.org)]


@router.get(
    "/airbyte/v1/connections/{connection_id}",
    response={200: ConnectionOut, **ERRORS},
    auth=org_auth("connections:read"),
)
def get_connection(request, connection_id: str):
    return _connection_json(airbyte_setup.connection_get(org=request.auth.org, connection_id=connection_id))


@router.put(
    "/airbyte/v1/connections/{connection_id}/update",
    response={200: ConnectionOut, **ERRORS},
    auth=org_auth("connections:write"),
)
def update_connection(request, connection_id: str, payload: ConnectionUpdateIn):
    _refuse_normalization(payload.normalize)
    detail = airbyte_setup.connection_update(
        org=request.auth.org,
        actor=request.auth.orguser,
        connection_id=connection_id,
        name=payload.name,
        streams=_stream_choices(payload.streams),
        destination_schema=payload.destinationSchema,
        freshness_limit_hours=_limit_change(payload),
    )
    return _connection_json(detail)


@router.post(
    "/airbyte/v1/connections/{connection_id}/reset",
    response={200: ResetOut, **ERRORS},
    auth=org_auth("connections:run"),
)
def reset_connection(request, connection_id: str):
    job_id = airbyte_setup.connection_reset(
        org=request.auth.org, actor=request.auth.orguser, connection_id=connection_id
    )
    return {"success": True, "jobId": job_id}


@router.get(
    "/airbyte/v1/connections/{connection_id}/jobs",
    response={200: SyncLogsOut, **ERRORS},
    auth=org_auth("connections:read"),
)
def get_connection_sync_logs(request, connection_id: str):
    """The latest Airbyte sync job of the connection with its log lines ({status: "not found"} if none)."""
    logs = airbyte_setup.connection_sync_logs(org=request.auth.org, connection_id=connection_id)
    if logs is None:
        return {"status": "not found", "logs": []}
    return {"status": logs.status, "logs": logs.logs, "jobId": logs.job_id, "recordsSynced": logs.records_synced}


@router.delete(
    "/airbyte/v1/connections/{connection_id}", response={200: OkOut, **ERRORS}, auth=org_auth("connections:write")
)
def delete_connection(request, connection_id: str):
    airbyte_setup.connection_delete(org=request.auth.org, actor=request.auth.orguser, connection_id=connection_id)
    return {"success": True}
