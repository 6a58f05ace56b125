"""The org's Airbyte side: its workspace, sources, and connections with their sync task and manual dataflow.

Every Airbyte id a caller sends is checked against the org's own workspace, so another org's source or
connection is "not found". A connection is three things kept together: the Airbyte connection, its
airbyte-sync OrgTask, and a manual dataflow (a Prefect deployment that syncs only this connection).
"""

from __future__ import annotations

import contextlib
import copy
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from ddpui.airbyte.client import AirbyteNotFound, get_airbyte
from ddpui.errors import Conflict, InvalidInput, NotFound
from ddpui.models.dataflows import DataflowOrgTask, OrgDataFlowv1
from ddpui.models.org import Org, OrgPrefectBlockv1, OrgWarehouse
from ddpui.models.tasks import OrgTask, Task
from ddpui.prefect_client import ProxyNotFound, get_proxy
from ddpui.services import locks, task_config
from ddpui.services.orgs import Rollback, airbyte_server_block_create, airbyte_workspace_create
from ddpui.services.transform_tasks import lock_view
from ddpui.services.warehouse import mask_secrets

SYNC_SLUG = "airbyte-sync"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SYNC_MODES = {"full_refresh", "incremental"}
_DESTINATION_SYNC_MODES = {"overwrite", "append", "append_dedup"}


@dataclass(frozen=True)
class StreamChoice:
    name: str
    selected: bool = True
    sync_mode: str | None = None
    destination_sync_mode: str | None = None


def _require_workspace(org: Org) -> str:
    if not org.airbyte_workspace_id:
        raise InvalidInput(
            "your organization has no Airbyte workspace: create one with POST /api/airbyte/v1/workspace/"
        )
    return org.airbyte_workspace_id


# ------------------------------------------------------------------------------------------ workspace


def airbyte_workspace_attach(*, org: Org, name: str) -> Org:
    """A new Airbyte workspace for an org that has none (and its Airbyte server block if that is missing)."""
    name = " ".join((name or "").split())
    if not name:
        raise InvalidInput("the workspace needs a name")
    if org.airbyte_workspace_id:
        raise Conflict(f"your organization already has the Airbyte workspace {org.airbyte_workspace_id}")
    has_server_block = OrgPrefectBlockv1.objects.filter(
        org=org, block_type=OrgPrefectBlockv1.BlockType.AIRBYTE_SERVER
    ).exists()
    with Rollback(f"attaching a workspace to {org.slug}") as rollback:
        workspace_id = airbyte_workspace_create(name=name, rollback=rollback)
        block = None if has_server_block else airbyte_server_block_create(org_slug=org.slug, rollback=rollback)
        with transaction.atomic():
            org.airbyte_workspace_id = workspace_id
            org.save(update_fields=["airbyte_workspace_id", "updated_at"])
            if block is not None:
                OrgPrefectBlockv1.objects.create(
                    org=org,
                    block_type=OrgPrefectBlockv1.BlockType.AIRBYTE_SERVER,
                    block_id=block["block_id"],
                    block_name=block["block_name"],
                )
    return org


# ------------------------------------------------------------------------------------------ sources


def _source_view(source: dict) -> dict:
    return {
        "sourceId": source["sourceId"],
        "name": source["name"],
        "sourceDefinitionId": source["sourceDefinitionId"],
        "sourceName": source.get("sourceName"),
        "connectionConfiguration": mask_secrets(source.get("connectionConfiguration") or {}),
    }


def source_get(*, org: Org, source_id: str) -> dict:
    """The org's source; a source of another workspace is not found."""
    workspace_id = _require_workspace(org)
    try:
        source = get_airbyte().source_get(source_id=source_id)
    except AirbyteNotFound:
        raise NotFound(f"source {source_id} not found") from None
    if source.get("workspaceId") != workspace_id:
        raise NotFound(f"source {source_id} not found")
    return _source_view(source)


def sources_list(*, org: Org) -> list[dict]:
    workspace_id = _require_workspace(org)
    return [_source_view(source) for source in get_airbyte().sources_list(workspace_id=workspace_id)]


def source_create(*, org: Org, name: str, source_definition_id: str, config: dict) -> dict:
    workspace_id = _require_workspace(org)
    name = (name or "").strip()
    if not name:
        raise InvalidInput("the source needs a name")
    source = get_airbyte().source_create(
        workspace_id=workspace_id, name=name, definition_id=source_definition_id, config=config
    )
    return _source_view(source)


def source_delete(*, org: Org, source_id: str) -> None:
    """Refused while connections read from the source (Airbyte would delete them behind our back)."""
    source_get(org=org, source_id=source_id)
    airbyte = get_airbyte()
    using = [
        c["name"] for c in airbyte.connections_list(workspace_id=org.airbyte_workspace_id) if c["sourceId"] == source_id
    ]
    if using:
        raise Conflict(f"the source is used by the connection(s) {', '.join(sorted(using))}: delete them first")
    airbyte.source_delete(source_id=source_id)


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


def _catalog(catalog: dict, streams: list[StreamChoice] | None) -> dict:
    """The discovered catalog with the caller's stream choices applied (every stream when none given)."""
    catalog = copy.deepcopy(catalog)
    if streams is None:
        return catalog
    known = {entry["stream"]["name"] for entry in catalog["streams"]}
    chosen = {choice.name: choice for choice in streams}
    unknown = sorted(set(chosen) - known)
    if unknown:
        raise InvalidInput(f"unknown stream(s) {', '.join(unknown)}: the source offers {', '.join(sorted(known))}")
    for choice in streams:
        if choice.sync_mode and choice.sync_mode not in _SYNC_MODES:
            raise InvalidInput(f"stream {choice.name}: syncMode must be one of {', '.join(sorted(_SYNC_MODES))}")
        if choice.destination_sync_mode and choice.destination_sync_mode not in _DESTINATION_SYNC_MODES:
            raise InvalidInput(
                f"stream {choice.name}: destinationSyncMode must be one of {', '.join(sorted(_DESTINATION_SYNC_MODES))}"
            )
    for entry in catalog["streams"]:
        choice = chosen.get(entry["stream"]["name"])
        config = entry.setdefault("config", {})
        config["selected"] = bool(choice and choice.selected)
        if choice and choice.sync_mode:
            config["syncMode"] = choice.sync_mode
        if choice and choice.destination_sync_mode:
            config["destinationSyncMode"] = choice.destination_sync_mode
    if not any(entry["config"]["selected"] for entry in catalog["streams"]):
        raise InvalidInput("select at least one stream")
    return catalog


def _namespace(destination_schema: str | None) -> dict:
    if destination_schema is None or destination_schema == "":
        return {"namespaceDefinition": "destination", "namespaceFormat": "${SOURCE_NAMESPACE}"}
    if not _IDENTIFIER.match(destination_schema):
        raise InvalidInput("destinationSchema must be a plain SQL identifier (letters, digits, underscores)")
    return {"namespaceDefinition": "customformat", "namespaceFormat": destination_schema}


def _streams_view(catalog: dict) -> list[dict]:
    return [
        {
            "name": entry["stream"]["name"],
            "selected": bool(entry.get("config", {}).get("selected", True)),
            "syncMode": entry.get("config", {}).get("syncMode"),
            "destinationSyncMode": entry.get("config", {}).get("destinationSyncMode"),
        }
        for entry in (catalog or {}).get("streams", [])
    ]


def _destination_schema(connection: dict) -> str | None:
    if connection.get("namespaceDefinition") == "customformat":
        return connection.get("namespaceFormat")
    return None


def connection_create(
    *,
    org: Org,
    name: str,
    source_id: str,
    streams: list[StreamChoice] | None = None,
    destination_schema: str | None = None,
) -> dict:
    """The Airbyte connection, its sync task and its manual dataflow (a deployment syncing only it)."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("the connection needs a name")
    warehouse = OrgWarehouse.objects.filter(org=org).first()
    if warehouse is None or not warehouse.airbyte_destination_id:
        raise InvalidInput("your organization has no warehouse: create it before its connections")
    namespace = _namespace(destination_schema)
    source_get(org=org, source_id=source_id)
    airbyte = get_airbyte()
    catalog = _catalog(airbyte.source_discover(source_id=source_id), streams)
    sync_task = Task.objects.get(slug=SYNC_SLUG)
    with Rollback(f"creating the connection '{name}' of {org.slug}") as rollback:
        connection = airbyte.connection_create(
            body={
                "name": name,
                "sourceId": source_id,
                "destinationId": warehouse.airbyte_destination_id,
                "syncCatalog": catalog,
                "status": "active",
                "scheduleType": "manual",
                **namespace,
            }
        )
        connection_id = connection["connectionId"]

        def undo_connection() -> None:
            with contextlib.suppress(AirbyteNotFound):
                airbyte.connection_delete(connection_id=connection_id)

        rollback.add(f"Airbyte connection {connection_id}", undo_connection)
        orgtask = OrgTask(org=org, task=sync_task, connection_id=connection_id)
        deployment_name = f"manual-{org.slug}-{connection_id}"
        deployment = get_proxy().deployments.create(
            name=deployment_name,
            org_slug=org.slug,
            parameters=task_config.deployment_parameters(org=org, orgtasks=[orgtask]),
            work_pool_name=settings.PREFECT_WORK_POOL,
        )
        rollback.add(f"deployment {deployment.id}", lambda: _deployment_delete(deployment.id))
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
    return {
        "name": connection["name"],
        "connectionId": connection_id,
        "sourceId": source_id,
        "destinationId": warehouse.airbyte_destination_id,
        "status": connection.get("status"),
        "deploymentId": deployment.id,
        "orgtaskUuid": str(orgtask.uuid),
        "streams": _streams_view(connection.get("syncCatalog")),
        "destinationSchema": _destination_schema(connection),
    }


def _deployment_delete(deployment_id: str) -> None:
    with contextlib.suppress(ProxyNotFound):
        get_proxy().deployment(deployment_id).delete()


def connections_list(*, org: Org) -> list[dict]:
    """Every connection of the org. Whatever their number: 4 queries, 2 Airbyte calls, 1 proxy call."""
    links = list(
        DataflowOrgTask.objects.select_related("dataflow", "orgtask")
        .filter(
            orgtask__org=org,
            orgtask__task__slug=SYNC_SLUG,
            dataflow__dataflow_type=OrgDataFlowv1.DataflowType.MANUAL,
        )
        .order_by("dataflow__name", "id")
    )
    if not links:
        return []
    warehouse = OrgWarehouse.objects.filter(org=org).first()
    airbyte = get_airbyte()
    workspace_id = _require_workspace(org)
    in_airbyte = {c["connectionId"]: c for c in airbyte.connections_list(workspace_id=workspace_id)}
    sources = {s["sourceId"]: s for s in airbyte.sources_list(workspace_id=workspace_id)}
    deployment_ids = [link.dataflow.deployment_id for link in links]
    last_runs = {
        str(run["deployment_id"]): run
        for run in get_proxy().flow_runs.filter(deployment_ids=deployment_ids, limit_per_deployment=1)
    }
    held = locks.locks_status(orgtask_ids=[link.orgtask_id for link in links])
    result = []
    for link in links:
        connection_id = link.orgtask.connection_id
        connection = in_airbyte.get(connection_id)
        source = sources.get(connection["sourceId"]) if connection else None
        last_run = last_runs.get(link.dataflow.deployment_id)
        result.append(
            {
                "name": connection["name"] if connection else link.dataflow.name,
                "connectionId": connection_id,
                "source": {"sourceId": source["sourceId"], "name": source["name"]} if source else None,
                "destination": {
                    "destinationId": warehouse.airbyte_destination_id,
                    "name": warehouse.name,
                }
                if warehouse
                else None,
                "status": connection.get("status") if connection else "missing in Airbyte",
                "deploymentId": link.dataflow.deployment_id,
                "orgtaskUuid": str(link.orgtask.uuid),
                "lastRun": last_run,
                "lock": lock_view(held.get(link.orgtask_id), last_run=last_run),
            }
        )
    return result


def connection_get(*, org: Org, connection_id: str) -> dict:
    orgtask = _sync_task_get(org=org, connection_id=connection_id)
    dataflow = _manual_dataflow(orgtask)
    try:
        connection = get_airbyte().connection_get(connection_id=connection_id)
    except AirbyteNotFound:
        raise NotFound(f"connection {connection_id} is missing in Airbyte") from None
    lock = locks.locks_status(orgtask_ids=[orgtask.id]).get(orgtask.id)
    return {
        "name": connection["name"],
        "connectionId": connection_id,
        "sourceId": connection["sourceId"],
        "destinationId": connection["destinationId"],
        "status": connection.get("status"),
        "deploymentId": dataflow.deployment_id if dataflow else None,
        "orgtaskUuid": str(orgtask.uuid),
        "streams": _streams_view(connection.get("syncCatalog")),
        "destinationSchema": _destination_schema(connection),
        "lock": lock_view(lock),
    }


def _refuse_while_locked(orgtask: OrgTask, verb: str) -> None:
    lock = locks.locks_status(orgtask_ids=[orgtask.id]).get(orgtask.id)
    if lock is not None:
        raise locks.TaskLocked(f"cannot {verb} the connection now: {locks.describe_lock(lock)}", [lock])


def connection_update(
    *,
    org: Org,
    connection_id: str,
    name: str | None = None,
    streams: list[StreamChoice] | None = None,
    destination_schema: str | None = None,
) -> dict:
    """Renames the connection, changes its streams or its destination schema. Refused while it syncs."""
    orgtask = _sync_task_get(org=org, connection_id=connection_id)
    _refuse_while_locked(orgtask, "update")
    airbyte = get_airbyte()
    current = airbyte.connection_get(connection_id=connection_id)
    body = {"connectionId": connection_id}
    name = (name or "").strip() or None
    if name:
        body["name"] = name
    if streams is not None:
        body["syncCatalog"] = _catalog(airbyte.source_discover(source_id=current["sourceId"]), streams)
    if destination_schema is not None:
        body.update(_namespace(destination_schema))
    airbyte.connection_update(body=body)
    if name:
        dataflow = _manual_dataflow(orgtask)
        if dataflow is not None and dataflow.name != name[:100]:
            dataflow.name = name[:100]
            dataflow.save(update_fields=["name", "updated_at"])
    return connection_get(org=org, connection_id=connection_id)


def connection_reset(*, org: Org, connection_id: str) -> dict:
    """Empties the connection's tables through Airbyte; refused while its sync task is locked."""
    orgtask = _sync_task_get(org=org, connection_id=connection_id)
    _refuse_while_locked(orgtask, "reset")
    job = get_airbyte().connection_reset(connection_id=connection_id)
    return {"jobId": (job.get("job") or {}).get("id")}


def _pipelines_without(orgtask: OrgTask) -> list[tuple[OrgDataFlowv1, list[OrgTask], dict, dict]]:
    """For every pipeline that runs the task: (pipeline, remaining tasks, old parameters, new parameters)."""
    pipelines = list(
        OrgDataFlowv1.objects.filter(
            dataflow_orgtasks__orgtask=orgtask, dataflow_type=OrgDataFlowv1.DataflowType.ORCHESTRATE
        ).distinct()
    )
    if not pipelines:
        return []
    links = DataflowOrgTask.objects.select_related("orgtask__task").filter(dataflow__in=pipelines).order_by("seq")
    by_pipeline: dict[int, list[OrgTask]] = {}
    for link in links:
        by_pipeline.setdefault(link.dataflow_id, []).append(link.orgtask)
    context = task_config.OrgContext(orgtask.org)

    def parameters(tasks: list[OrgTask]) -> dict:
        return {
            "config": {"org_slug": orgtask.org.slug, "tasks": [context.task(t, seq) for seq, t in enumerate(tasks)]}
        }

    plans = []
    for pipeline in pipelines:
        tasks = by_pipeline.get(pipeline.id, [])
        remaining = [t for t in tasks if t.id != orgtask.id]
        plans.append((pipeline, remaining, parameters(tasks), parameters(remaining)))
    return plans


def connection_delete(*, org: Org, connection_id: str) -> None:
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
    with Rollback(f"deleting the connection {connection_id} of {org.slug}") as rollback:
        for pipeline, _, old_parameters, new_parameters in plans:
            deployment = proxy.deployment(pipeline.deployment_id)
            deployment.update(parameters=new_parameters)
            rollback.add(
                f"parameters of deployment {pipeline.deployment_id}",
                lambda deployment=deployment, old=old_parameters: deployment.update(parameters=old),
            )
        if manual is not None:
            _deployment_delete(manual.deployment_id)
        with contextlib.suppress(AirbyteNotFound):
            airbyte.connection_delete(connection_id=connection_id)
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
