"""The org's Airbyte side: its workspace, sources, and connections with their sync task and manual dataflow.

Every Airbyte id a caller sends is checked against the org's own workspace, so another org's source or
connection is "not found". A connection is three things kept together: the Airbyte connection, its
airbyte-sync OrgTask, and a manual dataflow (a Prefect deployment that syncs only this connection).

Functions return Airbyte's objects (dicts, secrets masked) or the small read models below; the API
handlers shape them into the web app's JSON.
"""

from __future__ import annotations

import contextlib
import copy
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ddpcontract import proxy_api as api
from ddpcontract.tasks import TaskSlug
from ddpui.airbyte.client import AirbyteNotFound, get_airbyte
from ddpui.errors import Conflict, InvalidInput, NotFound
from ddpui.models.alerts import ConnectionFreshness
from ddpui.models.dataflows import DataflowOrgTask, OrgDataFlowv1
from ddpui.models.locks import TaskLock
from ddpui.models.org import Org, OrgPrefectBlockv1, OrgUser, OrgWarehouse
from ddpui.models.tasks import OrgTask, Task
from ddpui.prefect_client import ProxyNotFound, get_proxy
from ddpui.services import connectors, locks, task_config
from ddpui.services.alerts.freshness import MAX_LIMIT_HOURS, Freshness, freshness_limit_set, freshness_of
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.connectors import CheckResult, require_workspace
from ddpui.services.orgs import airbyte_server_block_create, airbyte_workspace_create
from ddpui.services.undo import UndoStack
from ddpui.services.warehouse import mask_secrets

SYNC_SLUG = TaskSlug.AIRBYTE_SYNC
UNCHANGED = object()  # an update that leaves the freshness limit as it is
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
SYNC_MODES = ("full_refresh", "incremental")
DESTINATION_SYNC_MODES = ("overwrite", "append", "append_dedup")
_INCREMENTAL_DESTINATION_MODES = ("append", "append_dedup")


@dataclass(frozen=True)
class StreamChoice:
    """What the caller chose for one stream of the source's catalog."""

    name: str
    selected: bool = True
    sync_mode: str | None = None
    destination_sync_mode: str | None = None
    cursor_field: str | None = None


@dataclass(frozen=True)
class LastSync:
    """The connection's latest Airbyte sync job, whichever pipeline or manual sync started it."""

    status: str  # Airbyte's: pending | running | succeeded | failed | cancelled | incomplete
    created_at: int  # epoch seconds


@dataclass(frozen=True)
class ConnectionSummary:
    """One row of the connection list."""

    connection_id: str
    name: str
    status: str | None
    source: dict  # {sourceId, name, sourceName, sourceDefinitionId, icon}
    destination: dict  # {destinationId, name, destinationName, destinationDefinitionId, icon}
    deployment_id: str
    orgtask_uuid: str
    last_sync: LastSync | None
    is_syncing: bool
    lock: TaskLock | None
    lock_run: api.FlowRun | None  # the newest run of the manual deployment, to tell a running lock from a queued one
    freshness: Freshness  # last successful sync (by any run of ours), freshness limit, stale or not


@dataclass(frozen=True)
class ConnectionDetail:
    """A connection as Airbyte's web backend reads it (catalog, source, destination) with our references."""

    connection: dict
    deployment_id: str | None
    orgtask_uuid: str
    lock: TaskLock | None
    freshness: Freshness

    @property
    def destination_schema(self) -> str | None:
        if self.connection.get("namespaceDefinition") == "customformat":
            return self.connection.get("namespaceFormat")
        return None


@dataclass(frozen=True)
class SyncLogs:
    job_id: int
    status: str
    records_synced: int | None
    logs: list[str]


# ------------------------------------------------------------------------------------------ workspace


def airbyte_workspace_attach(*, org: Org, actor: OrgUser | None, name: str) -> Org:
    """A new Airbyte workspace for an org that has none (and its Airbyte server block if that is missing)."""
    name = " ".join((name or "").split())
    if not name:
        raise InvalidInput("the workspace needs a name")
    if org.airbyte_workspace_id:
        raise Conflict(f"your organization already has the Airbyte workspace {org.airbyte_workspace_id}")
    has_server_block = OrgPrefectBlockv1.objects.filter(
        org=org, block_type=OrgPrefectBlockv1.BlockType.AIRBYTE_SERVER
    ).exists()
    with UndoStack(f"attaching a workspace to {org.slug}") as undo:
        workspace_id = airbyte_workspace_create(name=name, undo=undo)
        block = None if has_server_block else airbyte_server_block_create(org_slug=org.slug, undo=undo)
        with transaction.atomic():
            org.airbyte_workspace_id = workspace_id
            org.save(update_fields=["airbyte_workspace_id", "updated_at"])
            if block is not None:
                OrgPrefectBlockv1.objects.create(
                    org=org,
                    block_type=OrgPrefectBlockv1.BlockType.AIRBYTE_SERVER,
                    block_id=block.block_id,
                    block_name=block.block_name,
                )
            audit_record(
                org=org,
                orguser=actor,
                action=AuditAction.AIRBYTE_WORKSPACE_ATTACHED,
                object_type="airbyte_workspace",
                object_id=workspace_id,
                details={"name": name},
            )
    return org


# ------------------------------------------------------------------------------------------ sources


def _masked(source: dict) -> dict:
    source = dict(source)
    source["connectionConfiguration"] = mask_secrets(source.get("connectionConfiguration") or {})
    return source


def source_get(*, org: Org, source_id: str) -> dict:
    """The org's source as Airbyte reads it (secrets masked); a source of another workspace is not found."""
    workspace_id = require_workspace(org)
    try:
        source = get_airbyte().source_get(source_id=source_id)
    except AirbyteNotFound:
        raise NotFound(f"source {source_id} not found") from None
    if source.get("workspaceId") != workspace_id:
        raise NotFound(f"source {source_id} not found")
    return _masked(source)


def sources_list(*, org: Org) -> list[dict]:
    workspace_id = require_workspace(org)
    return [_masked(source) for source in get_airbyte().sources_list(workspace_id=workspace_id)]


def _clean_name(name: str, what: str) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput(f"the {what} needs a name")
    return name


def source_check(*, org: Org, source_definition_id: str, config: dict) -> CheckResult:
    """Airbyte's connection check of a new source's configuration (nothing is saved)."""
    return connectors.source_check(org=org, definition_id=source_definition_id, config=config)


def source_check_for_update(*, org: Org, source_id: str, name: str | None, config: dict) -> CheckResult:
    source = source_get(org=org, source_id=source_id)
    name = (name or "").strip() or source["name"]
    return connectors.source_check_for_update(org=org, source=source, name=name, config=config)


def source_create(*, org: Org, actor: OrgUser | None, name: str, source_definition_id: str, config: dict) -> dict:
    """A source in the org's workspace, its configuration first checked against the connector's spec."""
    workspace_id = require_workspace(org)
    name = _clean_name(name, "source")
    connectors.source_config_check(org=org, definition_id=source_definition_id, config=config)
    airbyte = get_airbyte()
    with UndoStack(f"creating the source '{name}' of {org.slug}") as undo:
        source = airbyte.source_create(
            workspace_id=workspace_id, name=name, definition_id=source_definition_id, config=config
        )
        undo.push(f"Airbyte source {source['sourceId']}", lambda: _source_delete(source["sourceId"]))
        with transaction.atomic():
            audit_record(
                org=org,
                orguser=actor,
                action=AuditAction.SOURCE_CREATED,
                object_type="source",
                object_id=source["sourceId"],
                details={"name": name, "sourceName": source.get("sourceName")},
            )
    return _masked(source)


def source_update(
    *,
    org: Org,
    actor: OrgUser | None,
    source_id: str,
    name: str | None,
    config: dict,
    source_definition_id: str | None = None,
) -> dict:
    """New name and configuration of the org's source. Masked secrets sent back keep the stored ones
    (Airbyte merges them in). A source keeps its connector: another definition is refused."""
    source = source_get(org=org, source_id=source_id)
    if source_definition_id and source_definition_id != source["sourceDefinitionId"]:
        raise InvalidInput(
            f"a source keeps its connector ({source.get('sourceName')}): create a new source for another one"
        )
    name = (name or "").strip() or source["name"]
    specification = connectors.source_specification(org=org, definition_id=source["sourceDefinitionId"])
    connectors.config_check_against_spec(
        specification=specification, config=config, connector=source.get("sourceName") or "source"
    )
    updated = get_airbyte().source_update(source_id=source_id, name=name, config=config)
    with transaction.atomic():
        audit_record(
            org=org,
            orguser=actor,
            action=AuditAction.SOURCE_UPDATED,
            object_type="source",
            object_id=source_id,
            details={"name": name},
        )
    return _masked(updated)


def _source_delete(source_id: str) -> None:
    with contextlib.suppress(AirbyteNotFound):
        get_airbyte().source_delete(source_id=source_id)


def source_delete(*, org: Org, actor: OrgUser | None, source_id: str) -> None:
    """Refused while connections read from the source (Airbyte would delete them behind our back)."""
    source = source_get(org=org, source_id=source_id)
    airbyte = get_airbyte()
    using = [
        c["name"] for c in airbyte.connections_list(workspace_id=org.airbyte_workspace_id) if c["sourceId"] == source_id
    ]
    if using:
        raise Conflict(f"the source is used by the connection(s) {', '.join(sorted(using))}: delete them first")
    airbyte.source_delete(source_id=source_id)
    with transaction.atomic():
        audit_record(
            org=org,
            orguser=actor,
            action=AuditAction.SOURCE_DELETED,
            object_type="source",
            object_id=source_id,
            details={"name": source["name"]},
        )


def source_schema_catalog(*, org: Org, source_id: str) -> dict:
    """The source's streams as Airbyte discovers them now: {catalog: {streams: [...]}, catalogId}."""
    source_get(org=org, source_id=source_id)
    discovered = get_airbyte().source_discover(source_id=source_id)
    if "catalog" not in discovered:
        failure = (discovered.get("jobInfo") or {}).get("failureReason") or {}
        reason = failure.get("externalMessage") or discovered.get("message") or "Airbyte gave no reason"
        raise InvalidInput(f"the source's streams could not be discovered: {reason}")
    return {"catalog": discovered["catalog"], "catalogId": discovered.get("catalogId")}


# ------------------------------------------------------------------------------------------ connections


def _sync_task_get(*, org: Org, connection_id: str) -> OrgTask:
    orgtask = (
        OrgTask.objects.select_related("task")
        .filter(org=org, task__slug=SYNC_SLUG, connection_id=str(connection_id))
        .first()
    )
    if orgtask is None:
        raise NotFound(f"connection {connection_id} not found")
    return orgtask


def _manual_dataflow(orgtask: OrgTask) -> OrgDataFlowv1 | None:
    link = (
        DataflowOrgTask.objects.select_related("dataflow")
        .filter(orgtask=orgtask, dataflow__dataflow_type=OrgDataFlowv1.DataflowType.MANUAL)
        .first()
    )
    return link.dataflow if link else None


def _check_choices(streams: list[StreamChoice]) -> None:
    for choice in streams:
        if choice.sync_mode and choice.sync_mode not in SYNC_MODES:
            raise InvalidInput(f"stream {choice.name}: syncMode must be one of {', '.join(SYNC_MODES)}")
        if choice.destination_sync_mode and choice.destination_sync_mode not in DESTINATION_SYNC_MODES:
            raise InvalidInput(
                f"stream {choice.name}: destinationSyncMode must be one of {', '.join(DESTINATION_SYNC_MODES)}"
            )


def _configure_stream(entry: dict, choice: StreamChoice, destination_modes: list[str]) -> None:
    """Applies a selected stream's choices to its catalog entry, refusing what the stream or the
    destination cannot do."""
    stream, config = entry["stream"], entry.setdefault("config", {})
    name = stream["name"]
    config["selected"] = True
    sync_mode = choice.sync_mode or config.get("syncMode") or "full_refresh"
    supported = stream.get("supportedSyncModes") or ["full_refresh"]
    if sync_mode not in supported:
        raise InvalidInput(f"stream {name}: syncMode {sync_mode} is not supported (supported: {', '.join(supported)})")
    destination_mode = choice.destination_sync_mode or config.get("destinationSyncMode") or "overwrite"
    if destination_mode not in destination_modes:
        raise InvalidInput(
            f"stream {name}: destinationSyncMode {destination_mode} is not supported by the warehouse "
            f"(supported: {', '.join(destination_modes)})"
        )
    if sync_mode == "incremental":
        if destination_mode not in _INCREMENTAL_DESTINATION_MODES:
            raise InvalidInput(
                f"stream {name}: an incremental sync needs destinationSyncMode append or append_dedup, "
                f"not {destination_mode}"
            )
        fields = sorted((stream.get("jsonSchema") or {}).get("properties") or {})
        if stream.get("sourceDefinedCursor"):
            cursor = list(stream.get("defaultCursorField") or [])
        else:
            chosen = choice.cursor_field or (stream.get("defaultCursorField") or [None])[0]
            if not chosen:
                raise InvalidInput(
                    f"stream {name}: an incremental sync needs a cursorField (one of {', '.join(fields)})"
                )
            if chosen not in fields:
                raise InvalidInput(
                    f"stream {name}: cursorField {chosen} is not a field of the stream (fields: {', '.join(fields)})"
                )
            cursor = [chosen]
        config["cursorField"] = cursor
    if destination_mode == "append_dedup":
        primary_key = config.get("primaryKey") or stream.get("sourceDefinedPrimaryKey") or []
        if not primary_key:
            raise InvalidInput(f"stream {name}: append_dedup needs a primary key and the stream has none")
        config["primaryKey"] = primary_key
    config["syncMode"] = sync_mode
    config["destinationSyncMode"] = destination_mode


def _catalog(discovered: dict, streams: list[StreamChoice] | None, destination_modes: list[str]) -> dict:
    """The discovered catalog with the caller's stream choices applied (every stream, as discovered,
    when none are given)."""
    catalog = copy.deepcopy(discovered)
    if streams is None:
        return catalog
    _check_choices(streams)
    known = {entry["stream"]["name"] for entry in catalog["streams"]}
    chosen = {choice.name: choice for choice in streams}
    unknown = sorted(set(chosen) - known)
    if unknown:
        raise InvalidInput(f"unknown stream(s) {', '.join(unknown)}: the source offers {', '.join(sorted(known))}")
    for entry in catalog["streams"]:
        choice = chosen.get(entry["stream"]["name"])
        if choice is not None and choice.selected:
            _configure_stream(entry, choice, destination_modes)
        else:
            entry.setdefault("config", {})["selected"] = False
    if not any(entry["config"]["selected"] for entry in catalog["streams"]):
        raise InvalidInput("select at least one stream")
    return catalog


def _namespace(destination_schema: str | None) -> dict:
    if destination_schema is None or destination_schema == "":
        return {"namespaceDefinition": "destination", "namespaceFormat": "${SOURCE_NAMESPACE}"}
    if not _IDENTIFIER.match(destination_schema):
        raise InvalidInput("destinationSchema must be a plain SQL identifier (letters, digits, underscores)")
    return {"namespaceDefinition": "customformat", "namespaceFormat": destination_schema}


def _warehouse_destination(org: Org, destination_id: str | None = None) -> OrgWarehouse:
    """The warehouse a connection writes into: the one of that destination, else the org's default one."""
    warehouses = OrgWarehouse.objects.filter(org=org).order_by("id")
    if destination_id:
        warehouse = warehouses.filter(airbyte_destination_id=destination_id).first()
        if warehouse is None:
            raise InvalidInput(f"destinationId {destination_id} is not one of your organization's warehouses")
        return warehouse
    warehouse = warehouses.first()
    if warehouse is None or not warehouse.airbyte_destination_id:
        raise InvalidInput("your organization has no warehouse: create it before its connections")
    return warehouse


def _destination_sync_modes(org: Org, warehouse: OrgWarehouse) -> list[str]:
    destination = get_airbyte().destination_get(destination_id=warehouse.airbyte_destination_id)
    specification = connectors.destination_specification(org=org, definition_id=destination["destinationDefinitionId"])
    return list(specification.get("supportedDestinationSyncModes") or ["overwrite", "append"])


def _discovered(org: Org, source_id: str) -> tuple[dict, str | None]:
    discovered = source_schema_catalog(org=org, source_id=source_id)
    return discovered["catalog"], discovered.get("catalogId")


def connection_create(
    *,
    org: Org,
    actor: OrgUser | None,
    name: str,
    source_id: str,
    streams: list[StreamChoice] | None = None,
    destination_schema: str | None = None,
    freshness_limit_hours: int | None = None,
    destination_id: str | None = None,
) -> ConnectionDetail:
    """The Airbyte connection (into the warehouse of `destination_id`, by default the org's default warehouse),
    its sync task and its manual dataflow (a deployment syncing only it), with an optional freshness limit. Every
    choice is checked before Airbyte or Prefect is asked for anything."""
    name = _clean_name(name, "connection")
    if freshness_limit_hours is not None:
        _check_limit(freshness_limit_hours)
    warehouse = _warehouse_destination(org, destination_id)
    namespace = _namespace(destination_schema)
    source_get(org=org, source_id=source_id)
    discovered, catalog_id = _discovered(org, source_id)
    catalog = _catalog(discovered, streams, _destination_sync_modes(org, warehouse))
    airbyte = get_airbyte()
    sync_task = Task.objects.get(slug=SYNC_SLUG)
    with UndoStack(f"creating the connection '{name}' of {org.slug}") as undo:
        connection = airbyte.connection_create(
            body={
                "name": name,
                "sourceId": source_id,
                "destinationId": warehouse.airbyte_destination_id,
                "syncCatalog": catalog,
                "sourceCatalogId": catalog_id,
                "status": "active",
                "scheduleType": "manual",
                "prefix": "",
                "nonBreakingChangesPreference": "ignore",
                **namespace,
            }
        )
        connection_id = connection["connectionId"]
        undo.push(f"Airbyte connection {connection_id}", lambda: _connection_delete(connection_id))
        orgtask = OrgTask(org=org, task=sync_task, connection_id=connection_id)
        deployment_name = f"manual-{org.slug}-{connection_id}"
        deployment = get_proxy().deployments.create(
            name=deployment_name,
            org_slug=org.slug,
            parameters=task_config.deployment_parameters(org=org, orgtasks=[orgtask]),
            work_pool_name=settings.PREFECT_WORK_POOL,
        )
        undo.push(f"deployment {deployment.id}", lambda: _deployment_delete(deployment.id))
        with transaction.atomic():
            orgtask.save()
            dataflow = OrgDataFlowv1.objects.create(
                org=org,
                name=name[:100],
                deployment_id=deployment.id,
                deployment_name=deployment_name,
                dataflow_type=OrgDataFlowv1.DataflowType.MANUAL,
            )
            DataflowOrgTask.objects.create(dataflow=dataflow, orgtask=orgtask, seq=0)
            if freshness_limit_hours is not None:
                freshness_limit_set(sync_task=orgtask, hours=freshness_limit_hours)
            audit_record(
                org=org,
                orguser=actor,
                action=AuditAction.CONNECTION_CREATED,
                object_type="connection",
                object_id=connection_id,
                details={"name": name, "sourceId": source_id, "streams": _selected_names(catalog)},
            )
    return connection_get(org=org, connection_id=connection_id)


def _selected_names(catalog: dict) -> list[str]:
    return [entry["stream"]["name"] for entry in catalog["streams"] if (entry.get("config") or {}).get("selected")]


def _connection_delete(connection_id: str) -> None:
    with contextlib.suppress(AirbyteNotFound):
        get_airbyte().connection_delete(connection_id=connection_id)


def _deployment_delete(deployment_id: str) -> None:
    with contextlib.suppress(ProxyNotFound):
        get_proxy().deployment(deployment_id).delete()


def connections_list(*, org: Org) -> list[ConnectionSummary]:
    """Every connection of the org with its source, destination, latest sync and lock. Whatever their
    number: 2 queries, 1 Airbyte call, and 1 proxy call when any of them is locked."""
    links = list(
        DataflowOrgTask.objects.select_related("dataflow", "orgtask", "orgtask__freshness")
        .filter(
            orgtask__org=org,
            orgtask__task__slug=SYNC_SLUG,
            dataflow__dataflow_type=OrgDataFlowv1.DataflowType.MANUAL,
        )
        .order_by("dataflow__name", "id")
    )
    if not links:
        return []
    workspace_id = require_workspace(org)
    in_airbyte = {
        item["connectionId"]: item for item in get_airbyte().connections_list_with_status(workspace_id=workspace_id)
    }
    held = locks.locks_status(orgtask_ids=[link.orgtask_id for link in links])
    lock_runs = {}
    if held:
        deployment_ids = [link.dataflow.deployment_id for link in links if link.orgtask_id in held]
        lock_runs = {
            run.deployment_id: run
            for run in get_proxy().flow_runs.filter(deployment_ids=deployment_ids, limit_per_deployment=1)
        }
    summaries, now = [], timezone.now()
    for link in links:
        connection_id = link.orgtask.connection_id
        item = in_airbyte.get(connection_id) or {}
        last_sync = None
        if item.get("latestSyncJobStatus") and item.get("latestSyncJobCreatedAt") is not None:
            last_sync = LastSync(status=item["latestSyncJobStatus"], created_at=int(item["latestSyncJobCreatedAt"]))
        summaries.append(
            ConnectionSummary(
                connection_id=connection_id,
                name=item.get("name") or link.dataflow.name,
                status=item.get("status") if item else "missing in Airbyte",
                source=dict(item.get("source") or {}),
                destination=dict(item.get("destination") or {}),
                deployment_id=link.dataflow.deployment_id,
                orgtask_uuid=str(link.orgtask.uuid),
                last_sync=last_sync,
                is_syncing=bool(item.get("isSyncing")),
                lock=held.get(link.orgtask_id),
                lock_run=lock_runs.get(link.dataflow.deployment_id),
                freshness=freshness_of(getattr(link.orgtask, "freshness", None), now=now),
            )
        )
    return summaries


def connection_get(*, org: Org, connection_id: str) -> ConnectionDetail:
    orgtask = _sync_task_get(org=org, connection_id=connection_id)
    dataflow = _manual_dataflow(orgtask)
    try:
        connection = get_airbyte().connection_get_with_source(connection_id=connection_id)
    except AirbyteNotFound:
        raise NotFound(f"connection {connection_id} is missing in Airbyte") from None
    connection["source"] = _masked(connection.get("source") or {})
    destination = dict(connection.get("destination") or {})
    destination["connectionConfiguration"] = mask_secrets(destination.get("connectionConfiguration") or {})
    connection["destination"] = destination
    return ConnectionDetail(
        connection=connection,
        deployment_id=dataflow.deployment_id if dataflow else None,
        orgtask_uuid=str(orgtask.uuid),
        lock=locks.locks_status(orgtask_ids=[orgtask.id]).get(orgtask.id),
        freshness=freshness_of(ConnectionFreshness.objects.filter(sync_task=orgtask).first()),
    )


def _check_limit(hours: int) -> None:
    if not (1 <= hours <= MAX_LIMIT_HOURS):
        raise InvalidInput(f"freshnessLimitHours must be between 1 and {MAX_LIMIT_HOURS} hours, or null for no limit")


def _refuse_while_locked(orgtask: OrgTask, verb: str) -> None:
    lock = locks.locks_status(orgtask_ids=[orgtask.id]).get(orgtask.id)
    if lock is not None:
        raise locks.TaskLocked(f"cannot {verb} the connection now: {locks.describe_lock(lock)}", [lock])


def connection_update(
    *,
    org: Org,
    actor: OrgUser | None,
    connection_id: str,
    name: str | None = None,
    streams: list[StreamChoice] | None = None,
    destination_schema: str | None = None,
    freshness_limit_hours: int | None | object = UNCHANGED,
) -> ConnectionDetail:
    """Renames the connection, changes its streams (from a fresh discovery, each with the caller's sync
    mode, destination sync mode and cursor), its destination schema or its freshness limit (None: no
    limit; UNCHANGED: keep it). Refused while it syncs."""
    orgtask = _sync_task_get(org=org, connection_id=connection_id)
    if freshness_limit_hours is not UNCHANGED and freshness_limit_hours is not None:
        _check_limit(freshness_limit_hours)
    _refuse_while_locked(orgtask, "update")
    airbyte = get_airbyte()
    try:
        current = airbyte.connection_get(connection_id=connection_id)
    except AirbyteNotFound:
        raise NotFound(f"connection {connection_id} is missing in Airbyte") from None
    body = {"connectionId": connection_id}
    name = (name or "").strip() or None
    if name:
        body["name"] = name
    if destination_schema is not None:
        body.update(_namespace(destination_schema))
    if streams is not None:
        discovered, catalog_id = _discovered(org, current["sourceId"])
        body["syncCatalog"] = _catalog(discovered, streams, _destination_sync_modes(org, _warehouse_destination(org)))
        body["sourceCatalogId"] = catalog_id
    if len(body) > 1 or freshness_limit_hours is UNCHANGED:  # a freshness limit alone is ours only
        airbyte.connection_update(body=body)
    with transaction.atomic():
        if freshness_limit_hours is not UNCHANGED:
            freshness_limit_set(sync_task=orgtask, hours=freshness_limit_hours)
        if name:
            dataflow = _manual_dataflow(orgtask)
            if dataflow is not None and dataflow.name != name[:100]:
                dataflow.name = name[:100]
                dataflow.save(update_fields=["name", "updated_at"])
        details = {key: body[key] for key in ("name", "namespaceFormat") if key in body}
        if "syncCatalog" in body:
            details["streams"] = _selected_names(body["syncCatalog"])
        if freshness_limit_hours is not UNCHANGED:
            details["freshnessLimitHours"] = freshness_limit_hours
        audit_record(
            org=org,
            orguser=actor,
            action=AuditAction.CONNECTION_UPDATED,
            object_type="connection",
            object_id=connection_id,
            details=details,
        )
    return connection_get(org=org, connection_id=connection_id)


def connection_reset(*, org: Org, actor: OrgUser | None, connection_id: str) -> int | None:
    """Empties the connection's tables through Airbyte; refused while its sync task is locked.
    Returns Airbyte's job id."""
    orgtask = _sync_task_get(org=org, connection_id=connection_id)
    _refuse_while_locked(orgtask, "reset")
    job = get_airbyte().connection_reset(connection_id=connection_id)
    job_id = (job.get("job") or {}).get("id")
    with transaction.atomic():
        audit_record(
            org=org,
            orguser=actor,
            action=AuditAction.CONNECTION_RESET,
            object_type="connection",
            object_id=connection_id,
            details={"jobId": job_id},
        )
    return job_id


def connection_sync_logs(*, org: Org, connection_id: str) -> SyncLogs | None:
    """The latest Airbyte sync job of the connection and the log lines of its last attempt (None: the
    connection never synced). 2 Airbyte calls."""
    _sync_task_get(org=org, connection_id=connection_id)
    airbyte = get_airbyte()
    jobs = airbyte.jobs_list(connection_id=connection_id, config_types=["sync"], limit=1)
    if not jobs:
        return None
    job, attempts = jobs[0]["job"], jobs[0].get("attempts") or []
    logs: list[str] = []
    if attempts:
        logs = airbyte.attempt_get(job_id=job["id"], attempt_number=len(attempts) - 1).get("logs", {}).get("logLines")
    records = next((a.get("recordsSynced") for a in reversed(attempts) if a.get("status") == "succeeded"), None)
    return SyncLogs(job_id=job["id"], status=job["status"], records_synced=records, logs=list(logs or []))


def _pipelines_without(orgtask: OrgTask) -> list[tuple[OrgDataFlowv1, list[OrgTask], dict, dict]]:
    """For every pipeline that runs the task: (pipeline, remaining tasks, old parameters, new parameters)."""
    pipelines = list(
        OrgDataFlowv1.objects.filter(
            dataflow_orgtasks__orgtask=orgtask, dataflow_type=OrgDataFlowv1.DataflowType.ORCHESTRATE
        )
        .select_related("target__warehouse", "target__profile_block")
        .distinct()
    )
    if not pipelines:
        return []
    links = DataflowOrgTask.objects.select_related("orgtask__task").filter(dataflow__in=pipelines).order_by("seq")
    by_pipeline: dict[int, list[OrgTask]] = {}
    for link in links:
        by_pipeline.setdefault(link.dataflow_id, []).append(link.orgtask)

    def parameters(context: task_config.OrgContext, pipeline: OrgDataFlowv1, tasks: list[OrgTask]) -> dict:
        return context.parameters(
            [context.task(t, seq) for seq, t in enumerate(tasks)], max_parallel_syncs=pipeline.max_parallel_syncs
        )

    plans = []
    for pipeline in pipelines:
        context = task_config.OrgContext(orgtask.org, pipeline.target)  # its git and dbt tasks stay on its target
        tasks = by_pipeline.get(pipeline.id, [])
        remaining = [t for t in tasks if t.id != orgtask.id]
        plans.append(
            (pipeline, remaining, parameters(context, pipeline, tasks), parameters(context, pipeline, remaining))
        )
    return plans


def connection_delete(*, org: Org, actor: OrgUser | None, connection_id: str) -> None:
    """Removes the connection everywhere: out of every pipeline (their deployments get the new task list),
    its manual deployment, the Airbyte connection, its sync task. Refused while it is locked.

    Pipeline changes are undone if a later step fails; deletes skip what is already gone, so a failed
    delete can simply be sent again."""
    orgtask = _sync_task_get(org=org, connection_id=connection_id)
    _refuse_while_locked(orgtask, "delete")
    airbyte = get_airbyte()
    with contextlib.suppress(AirbyteNotFound):
        # confirms Airbyte answers before anything is changed
        airbyte.connection_get(connection_id=connection_id)
    manual = _manual_dataflow(orgtask)
    plans = _pipelines_without(orgtask)
    proxy = get_proxy()
    with UndoStack(f"deleting the connection {connection_id} of {org.slug}") as undo:
        for pipeline, _, old_parameters, new_parameters in plans:
            deployment = proxy.deployment(pipeline.deployment_id)
            deployment.update(parameters=new_parameters)
            undo.push(
                f"parameters of deployment {pipeline.deployment_id}",
                lambda deployment=deployment, old=old_parameters: deployment.update(parameters=old),
            )
        if manual is not None:
            _deployment_delete(manual.deployment_id)
        _connection_delete(connection_id)
    with transaction.atomic():
        DataflowOrgTask.objects.filter(orgtask=orgtask).delete()
        for pipeline, remaining, _, _ in plans:
            links = {link.orgtask_id: link for link in DataflowOrgTask.objects.filter(dataflow=pipeline)}
            for seq, task in enumerate(remaining):
                link = links[task.id]
                if link.seq != seq:
                    link.seq = seq
                    link.save(update_fields=["seq"])
        if manual is not None:
            manual.delete()
        orgtask.delete()
        audit_record(
            org=org,
            orguser=actor,
            action=AuditAction.CONNECTION_DELETED,
            object_type="connection",
            object_id=connection_id,
            details={"pipelines": [pipeline.name for pipeline, _, _, _ in plans]},
        )
