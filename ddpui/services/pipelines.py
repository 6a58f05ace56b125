"""Pipelines: ordered org tasks deployed as one Prefect deployment, and their runs."""

from __future__ import annotations

import contextlib
import re
import uuid
import zoneinfo
from dataclasses import dataclass

from django.db import transaction
from django.utils.text import slugify

from ddpcontract import proxy_api as api
from ddpcontract.flows import Entrypoint
from ddpcontract.tasks import DEFAULT_MAX_PARALLEL_SYNCS, MAX_PARALLEL_SYNCS_LIMIT, TaskSlug
from ddpui.errors import Conflict, InvalidInput
from ddpui.models.dataflows import DataflowOrgTask, OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.org import DbtTarget, Org, OrgUser
from ddpui.models.tasks import OrgTask, TaskType
from ddpui.prefect_client import ProxyNotFound, get_proxy, meanwhile
from ddpui.services import locks, runs
from ddpui.services.alerts.freshness import (
    LAST_SUCCESSFUL_RUN_FIELDS,
    last_successful_run_fields,
    last_successful_run_of,
)
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.cron import cron_check
from ddpui.services.selectors import dataflow_get, dataflow_orgtasks, manual_dataflows_of
from ddpui.services.targets import target_resolve
from ddpui.services.task_config import OrgContext, deployment_parameters, pipeline_order
from ddpui.services.undo import UndoStack

__all__ = ["dataflow_get", "dataflow_orgtasks"]  # re-exported: older imports name them here

_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_.:+@,=/*\-]+$")
# how many runs of each pipeline the overview shows
OVERVIEW_RUNS = 50


@dataclass(frozen=True)
class TaskRef:
    key: str  # a connection id or an org task uuid
    seq: int


@dataclass(frozen=True)
class PipelineSummary:
    """A pipeline as the list shows it."""

    dataflow_id: int
    name: str
    deployment_id: str
    deployment_name: str
    cron: str | None
    timezone: str | None
    is_schedule_active: bool
    missing_in_prefect: bool
    last_run: api.FlowRun | None  # Prefect's newest run of the deployment, as the proxy reports it
    lock: locks.LockState | None
    target: str | None  # the dbt target its git and dbt tasks run on
    last_successful_run: dict | None = None  # our newest record of a run with every task succeeded

    @property
    def is_running(self) -> bool:
        """One of its runs holds its tasks (rather than another pipeline's run, or none)."""
        return self.lock is not None and self.lock.held_by(self.dataflow_id)


@dataclass(frozen=True)
class PipelineDetail:
    dataflow: OrgDataFlowv1
    orgtasks: list[OrgTask]  # in run order
    connection_names: dict[str, str]  # connection id -> its name (its sync's manual dataflow's)
    is_schedule_active: bool
    lock: locks.LockState | None

    @property
    def target(self) -> str | None:
        return self.dataflow.target.name if self.dataflow.target_id is not None else None


@dataclass(frozen=True)
class PipelineOverview:
    """A pipeline with its most recent runs (newest first), for the overview page."""

    name: str
    deployment_id: str
    deployment_name: str
    cron: str | None
    runs: list[api.FlowRun]  # as the proxy reports them
    lock: locks.LockState | None
    target: str | None


def _validate_schedule(cron: str | None, timezone: str | None) -> tuple[str | None, str | None]:
    cron = cron_check(cron)
    timezone = (timezone or "").strip() or None
    if timezone is not None:
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"unknown timezone '{timezone}': use an IANA name such as 'Asia/Kolkata'") from None
    return cron, timezone


def _resolve_tasks(*, org: Org, connections: list[TaskRef], transform_tasks: list[TaskRef]) -> list[OrgTask]:
    """The org tasks named by the request, in run order. Unknown or foreign ids are a 400 naming them."""
    connection_ids = [ref.key for ref in connections]
    task_uuids = [ref.key for ref in transform_tasks]
    for kind, keys in (("connection", connection_ids), ("task", task_uuids)):
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise InvalidInput(f"each {kind} may appear once; repeated: {', '.join(duplicates)}")
    if not connection_ids and not task_uuids:
        raise InvalidInput("a pipeline needs at least one connection or transform task")

    syncs = {
        t.connection_id: t
        for t in OrgTask.objects.filter(
            org=org, task__slug=TaskSlug.AIRBYTE_SYNC, connection_id__in=connection_ids
        ).select_related("task")
    }
    valid_uuids = []
    for key in task_uuids:
        with contextlib.suppress(ValueError):
            valid_uuids.append(uuid.UUID(key))
    transforms = {
        str(t.uuid): t
        for t in OrgTask.objects.filter(
            org=org, uuid__in=valid_uuids, task__type__in=[TaskType.DBT, TaskType.GIT]
        ).select_related("task")
    }
    unknown_connections = [k for k in connection_ids if k not in syncs]
    unknown_tasks = [k for k in task_uuids if k not in transforms]
    problems = []
    if unknown_connections:
        problems.append(f"unknown connections: {', '.join(unknown_connections)}")
    if unknown_tasks:
        problems.append(f"unknown transform tasks: {', '.join(unknown_tasks)}")
    if problems:
        raise InvalidInput("; ".join(problems) + " (they must exist in your organization)")
    pairs = [(ref.seq, syncs[ref.key]) for ref in connections] + [
        (ref.seq, transforms[ref.key]) for ref in transform_tasks
    ]
    return pipeline_order(pairs)


def _store_links(dataflow: OrgDataFlowv1, orgtasks: list[OrgTask]) -> None:
    DataflowOrgTask.objects.filter(dataflow=dataflow).delete()
    DataflowOrgTask.objects.bulk_create(
        [DataflowOrgTask(dataflow=dataflow, orgtask=task, seq=seq) for seq, task in enumerate(orgtasks)]
    )


def _pipeline_target(*, org: Org, orgtasks: list[OrgTask], name: str | None) -> DbtTarget | None:
    """The target the pipeline's git and dbt tasks run on: the one named, else the default target; a pipeline of
    syncs only has none unless it names one."""
    if not name and not any(locks.is_targeted(task) for task in orgtasks):
        return None
    return target_resolve(org=org, name=name)


@dataclass(frozen=True)
class _Checked:
    """A create or update request, checked: what the pipeline becomes."""

    name: str
    cron: str | None
    timezone: str | None
    orgtasks: list[OrgTask]  # in run order
    target: DbtTarget | None
    parameters: dict


def _prepare(
    *,
    org: Org,
    name: str,
    connections: list[TaskRef],
    transform_tasks: list[TaskRef],
    cron,
    timezone,
    max_parallel_syncs: int,
    target: str | None,
) -> _Checked:
    """Validates a create/update request and builds its run order and deployment parameters."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("the pipeline name must be 1 to 100 characters")
    if not 1 <= max_parallel_syncs <= MAX_PARALLEL_SYNCS_LIMIT:
        raise InvalidInput(f"maxParallelSyncs must be 1 to {MAX_PARALLEL_SYNCS_LIMIT} (1: one task after the other)")
    cron, timezone = _validate_schedule(cron, timezone)
    orgtasks = _resolve_tasks(org=org, connections=connections, transform_tasks=transform_tasks)
    resolved = _pipeline_target(org=org, orgtasks=orgtasks, name=target)
    parameters = deployment_parameters(
        org=org, orgtasks=orgtasks, target=resolved, max_parallel_syncs=max_parallel_syncs
    )
    return _Checked(name, cron, timezone, orgtasks, resolved, parameters)


def pipeline_create(
    *,
    org: Org,
    orguser: OrgUser,
    name: str,
    connections: list[TaskRef],
    transform_tasks: list[TaskRef],
    cron: str | None,
    timezone: str | None = None,
    max_parallel_syncs: int | None = None,
    target: str | None = None,
) -> OrgDataFlowv1:
    """A pipeline whose git and dbt tasks run on `target` (a target's name; the default target when None);
    `max_parallel_syncs`: how many of its Airbyte syncs run at once (default 4; 1: every task in turn)."""
    max_parallel_syncs = max_parallel_syncs or DEFAULT_MAX_PARALLEL_SYNCS
    checked = _prepare(
        org=org,
        name=name,
        connections=connections,
        transform_tasks=transform_tasks,
        cron=cron,
        timezone=timezone,
        max_parallel_syncs=max_parallel_syncs,
        target=target,
    )
    name = checked.name
    with UndoStack(f"creating the pipeline '{name}' of {org.slug}") as undo:
        # the deployment first: if the proxy fails, nothing has been stored
        deployment = get_proxy().deployments.create(
            name=f"pipeline-{org.slug}-{slugify(name)[:40] or 'pipeline'}",
            unique_suffix=True,  # a new name every time: one Prefect call, no name check
            org_slug=org.slug,
            parameters=checked.parameters,
            cron=checked.cron,
            timezone=checked.timezone,
        )
        undo.push(f"deployment {deployment.id}", deployment.delete)  # no orphan deployment
        with transaction.atomic():
            dataflow = OrgDataFlowv1.objects.create(
                org=org,
                name=name,
                deployment_id=deployment.id,
                deployment_name=deployment.name,
                cron=checked.cron,
                timezone=checked.timezone,
                dataflow_type=OrgDataFlowv1.DataflowType.ORCHESTRATE,
                max_parallel_syncs=max_parallel_syncs,
                target=checked.target,
            )
            _store_links(dataflow, checked.orgtasks)
            audit_record(
                org=org,
                orguser=orguser,
                action=AuditAction.PIPELINE_CREATED,
                object_type="pipeline",
                object_id=deployment.id,
                details={
                    "name": name,
                    "cron": checked.cron,
                    "tasks": [t.task.slug for t in checked.orgtasks],
                    "target": checked.target.name if checked.target else None,
                },
            )
    return dataflow


def _refuse_while_running(dataflow: OrgDataFlowv1, verb: str) -> None:
    held = list(locks.locks_held_by_dataflow(dataflow=dataflow))
    if held:
        raise Conflict(
            f"the pipeline '{dataflow.name}' is running (run {held[0].flow_run_id or 'starting'}): "
            f"{verb} it when the run has finished, or cancel the run"
        )


def pipeline_update(
    *,
    org: Org,
    orguser: OrgUser,
    deployment_id: str,
    name: str,
    connections: list[TaskRef],
    transform_tasks: list[TaskRef],
    cron: str | None,
    timezone: str | None = None,
    max_parallel_syncs: int | None = None,
    target: str | None = None,
) -> OrgDataFlowv1:
    """Rebuilds the pipeline's tasks, parameters and schedule. `max_parallel_syncs` None keeps the pipeline's;
    `target` None keeps the pipeline's target (the web app's edit form knows none)."""
    dataflow = dataflow_get(org=org, deployment_id=deployment_id)
    _refuse_while_running(dataflow, "update")
    old_max_parallel_syncs = dataflow.max_parallel_syncs
    max_parallel_syncs = max_parallel_syncs or old_max_parallel_syncs
    old_target = dataflow.target
    if target is None and old_target is not None:
        target = old_target.name
    checked = _prepare(
        org=org,
        name=name,
        connections=connections,
        transform_tasks=transform_tasks,
        cron=cron,
        timezone=timezone,
        max_parallel_syncs=max_parallel_syncs,
        target=target,
    )
    deployment = get_proxy().deployment(dataflow.deployment_id)
    if deployment.get().entrypoint == Entrypoint.LEGACY_PIPELINE:
        # mid-migration: its runs still read the legacy block parameters, which an edit would drop
        raise Conflict(
            f"the pipeline '{dataflow.name}' still runs the legacy block-based flow: finish its migration "
            "(migrate_blocks_to_tasks --switch-entrypoint, docs/migration.md) before editing it"
        )
    old_parameters = deployment_parameters(
        org=org, orgtasks=dataflow_orgtasks(dataflow), target=old_target, max_parallel_syncs=old_max_parallel_syncs
    )
    old_cron, old_timezone = dataflow.cron, dataflow.timezone
    with UndoStack(f"updating the pipeline '{dataflow.name}' of {org.slug}") as undo:
        deployment.update(parameters=checked.parameters, cron=checked.cron, timezone=checked.timezone)
        undo.push(
            f"parameters and schedule of deployment {dataflow.deployment_id}",
            lambda: deployment.update(parameters=old_parameters, cron=old_cron, timezone=old_timezone),
        )
        with transaction.atomic():
            dataflow.name, dataflow.cron, dataflow.timezone = checked.name, checked.cron, checked.timezone
            dataflow.max_parallel_syncs = max_parallel_syncs
            dataflow.target = checked.target
            dataflow.save(update_fields=["name", "cron", "timezone", "max_parallel_syncs", "target", "updated_at"])
            _store_links(dataflow, checked.orgtasks)
            audit_record(
                org=org,
                orguser=orguser,
                action=AuditAction.PIPELINE_UPDATED,
                object_type="pipeline",
                object_id=dataflow.deployment_id,
                details={
                    "name": checked.name,
                    "cron": checked.cron,
                    "tasks": [t.task.slug for t in checked.orgtasks],
                    "target": checked.target.name if checked.target else None,
                },
            )
    return dataflow


def pipeline_delete(*, org: Org, orguser: OrgUser, deployment_id: str) -> None:
    dataflow = dataflow_get(org=org, deployment_id=deployment_id)
    _refuse_while_running(dataflow, "delete")
    with contextlib.suppress(ProxyNotFound):  # already gone from Prefect: finish the job on our side
        get_proxy().deployment(dataflow.deployment_id).delete()
    with transaction.atomic():
        audit_record(
            org=org,
            orguser=orguser,
            action=AuditAction.PIPELINE_DELETED,
            object_type="pipeline",
            object_id=dataflow.deployment_id,
            details={"name": dataflow.name},
        )
        dataflow.delete()


def pipeline_set_schedule(*, org: Org, orguser: OrgUser, deployment_id: str, active: bool) -> None:
    dataflow = dataflow_get(org=org, deployment_id=deployment_id)
    get_proxy().deployment(dataflow.deployment_id).set_schedule(active=active)
    audit_record(
        org=org,
        orguser=orguser,
        action=AuditAction.PIPELINE_SCHEDULE_RESUMED if active else AuditAction.PIPELINE_SCHEDULE_PAUSED,
        object_type="pipeline",
        object_id=dataflow.deployment_id,
        details={"name": dataflow.name},
    )


def _override_parameters(*, org: Org, dataflow: OrgDataFlowv1, orgtasks: list[OrgTask], flags, options) -> dict:
    if dataflow.dataflow_type != OrgDataFlowv1.DataflowType.MANUAL or not any(
        t.task.type == TaskType.DBT for t in orgtasks
    ):
        raise InvalidInput("flags and options can only be overridden on a manual dbt dataflow")
    for token in list(flags or []) + [str(k) for k in (options or {})] + [str(v) for v in (options or {}).values()]:
        if not _SAFE_TOKEN.match(token):
            raise InvalidInput(f"'{token}' is not allowed in a dbt flag or option")
    context = OrgContext(org, dataflow.target)
    tasks = []
    for seq, orgtask in enumerate(orgtasks):
        if orgtask.task.type != TaskType.DBT:
            tasks.append(context.task(orgtask, seq))
            continue
        parts = [f"dbt {orgtask.task.command}"]
        parts += [f"--{flag}" for flag in flags or []]
        parts += [f"--{key} {value}" for key, value in (options or {}).items()]
        tasks.append(context.dbt_task(orgtask, seq, command=" ".join(parts)))
    return context.parameters(tasks)


def pipeline_run(
    *,
    org: Org,
    orguser: OrgUser | None,
    deployment_id: str,
    flags: list[str] | None = None,
    options: dict | None = None,
) -> PrefectFlowRun:
    """Runs a dataflow (a pipeline, or a manual dataflow: a connection's sync, a task's own deployment):
    its tasks' locks all or none (a second trigger gets 409 naming the holder), then the flow run."""
    dataflow = dataflow_get(org=org, deployment_id=deployment_id)
    orgtasks = dataflow_orgtasks(dataflow)
    parameters = None
    if flags or options:
        parameters = _override_parameters(org=org, dataflow=dataflow, orgtasks=orgtasks, flags=flags, options=options)
    return runs.run_start(org=org, orguser=orguser, orgtasks=orgtasks, dataflow=dataflow, parameters=parameters)


def _representative_lock(held: list, dataflow_id: int):
    """Of the locks on a pipeline's tasks (on its target), the one to show: its own run's if it has one."""
    own = [lock for lock in held if lock.locking_dataflow_id == dataflow_id]
    return own[0] if own else (held[0] if held else None)


def _pipeline_lock(held_by_task: dict[int, list], task_ids: list[int], dataflow_id: int, target_id: int | None):
    """The lock to show for a pipeline: of the locks on its tasks that apply on its target (the same task on another
    target does not hold it up), its own run's if it has one."""
    relevant = locks.locks_for_target(
        [lock for task_id in task_ids for lock in held_by_task.get(task_id, [])], target_id=target_id
    )
    return _representative_lock(relevant, dataflow_id)


def _by_task(held_locks: list) -> dict[int, list]:
    held: dict[int, list] = {}
    for lock in held_locks:
        held.setdefault(lock.orgtask_id, []).append(lock)
    return held


def pipelines_list(*, org: Org) -> list[PipelineSummary]:
    """Every orchestrate pipeline with schedule, last run, lock and target: at most 4 queries and 2 proxy calls,
    whatever the count."""
    dataflows = list(
        OrgDataFlowv1.objects.filter(org=org, dataflow_type=OrgDataFlowv1.DataflowType.ORCHESTRATE)
        .order_by("name")
        .annotate(**last_successful_run_fields())  # in the same query
        .values(
            "id",
            "name",
            "deployment_id",
            "deployment_name",
            "cron",
            "timezone",
            "target_id",
            "target__name",
            *LAST_SUCCESSFUL_RUN_FIELDS,
        )
    )
    if not dataflows:
        return []
    ids = [d["deployment_id"] for d in dataflows]
    proxy = get_proxy()
    # the two proxy calls go out at once, and the database is read while they are under way
    states_call = meanwhile(proxy.deployments.schedule_states, deployment_ids=ids)
    runs_call = meanwhile(proxy.flow_runs.filter, deployment_ids=ids, limit_per_deployment=1)
    task_ids_by_dataflow = _task_ids_by_dataflow(org)
    held = _by_task(locks.locks_held_in_org(org=org))  # on the org: a thousand-id IN list costs more
    states, last_runs = states_call.result(), {r.deployment_id: r for r in runs_call.result()}
    paused, missing_ids = set(states.paused), set(states.missing)
    run_states = locks.lock_run_states(
        held=[lock for task_locks in held.values() for lock in task_locks], observed_runs=last_runs.values()
    )
    result = []
    for dataflow in dataflows:
        deployment_id = dataflow["deployment_id"]
        missing = deployment_id in missing_ids
        lock = _pipeline_lock(held, task_ids_by_dataflow.get(dataflow["id"], []), dataflow["id"], dataflow["target_id"])
        result.append(
            PipelineSummary(
                dataflow_id=dataflow["id"],
                name=dataflow["name"],
                deployment_id=deployment_id,
                deployment_name=dataflow["deployment_name"],
                cron=dataflow["cron"],
                timezone=dataflow["timezone"],
                is_schedule_active=not missing and deployment_id not in paused,
                missing_in_prefect=missing,
                last_run=last_runs.get(deployment_id),
                lock=lock
                and locks.lock_state(
                    lock, run_state=run_states.get(lock.flow_run_id or ""), viewer_dataflow_id=dataflow["id"]
                ),
                last_successful_run=last_successful_run_of(dataflow),
                target=dataflow["target__name"],
            )
        )
    return result


def _task_ids_by_dataflow(org: Org) -> dict[int, list[int]]:
    """orchestrate dataflow id -> its org task ids. The links as plain pairs: a prefetch would build a model
    instance and a queryset per link. One query."""
    task_ids: dict[int, list[int]] = {}
    for dataflow_id, orgtask_id in DataflowOrgTask.objects.filter(
        dataflow__org=org, dataflow__dataflow_type=OrgDataFlowv1.DataflowType.ORCHESTRATE
    ).values_list("dataflow_id", "orgtask_id"):
        task_ids.setdefault(dataflow_id, []).append(orgtask_id)
    return task_ids


def pipeline_detail(*, org: Org, deployment_id: str) -> PipelineDetail:
    dataflow = dataflow_get(org=org, deployment_id=deployment_id)
    orgtasks = dataflow_orgtasks(dataflow)
    deployment = get_proxy().deployment(dataflow.deployment_id).get()
    held = _by_task(locks.locks_held(orgtask_ids=[t.id for t in orgtasks]))
    lock = _pipeline_lock(held, [t.id for t in orgtasks], dataflow.id, dataflow.target_id)
    syncs = [t for t in orgtasks if t.task.type == TaskType.AIRBYTE]
    # a connection's name is its sync's manual dataflow's (kept in step with Airbyte): no Airbyte call
    manual = manual_dataflows_of(org=org, orgtask_ids=[t.id for t in syncs]) if syncs else {}
    names = {orgtask_id: dataflow.name for orgtask_id, dataflow in manual.items()}
    return PipelineDetail(
        dataflow=dataflow,
        orgtasks=orgtasks,
        connection_names={t.connection_id: names.get(t.id, t.connection_id) for t in syncs},
        is_schedule_active=deployment.is_schedule_active,
        lock=lock
        and locks.lock_state(
            lock,
            run_state=locks.lock_run_states(held=[lock]).get(lock.flow_run_id or ""),
            viewer_dataflow_id=dataflow.id,
        ),
    )


def pipelines_overview(*, org: Org, runs_per_pipeline: int = OVERVIEW_RUNS) -> list[PipelineOverview]:
    """Every orchestrate pipeline with its newest runs, its lock and its target: at most 4 queries and 1 proxy call,
    whatever the count."""
    dataflows = list(
        OrgDataFlowv1.objects.filter(org=org, dataflow_type=OrgDataFlowv1.DataflowType.ORCHESTRATE)
        .order_by("name")
        .values("id", "name", "deployment_id", "deployment_name", "cron", "target_id", "target__name")
    )
    if not dataflows:
        return []
    task_ids_by_dataflow = _task_ids_by_dataflow(org)
    ids = [d["deployment_id"] for d in dataflows]
    runs_by_deployment: dict[str, list[api.FlowRun]] = {}
    for run in get_proxy().flow_runs.filter(deployment_ids=ids, limit_per_deployment=runs_per_pipeline):
        runs_by_deployment.setdefault(str(run.deployment_id), []).append(run)
    held = _by_task(locks.locks_held_in_org(org=org))
    observed = [run for runs_of in runs_by_deployment.values() for run in runs_of[:1]]
    run_states = locks.lock_run_states(
        held=[lock for task_locks in held.values() for lock in task_locks], observed_runs=observed
    )
    result = []
    for dataflow in dataflows:
        lock = _pipeline_lock(held, task_ids_by_dataflow.get(dataflow["id"], []), dataflow["id"], dataflow["target_id"])
        result.append(
            PipelineOverview(
                name=dataflow["name"],
                deployment_id=dataflow["deployment_id"],
                deployment_name=dataflow["deployment_name"],
                cron=dataflow["cron"],
                runs=runs_by_deployment.get(dataflow["deployment_id"], []),
                lock=lock
                and locks.lock_state(
                    lock, run_state=run_states.get(lock.flow_run_id or ""), viewer_dataflow_id=dataflow["id"]
                ),
                target=dataflow["target__name"],
            )
        )
    return result
