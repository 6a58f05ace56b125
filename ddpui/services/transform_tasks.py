"""Transform tasks: the org's git and dbt OrgTasks (the system set and custom dbt commands), and one-off runs.

Making the transform tasks makes the dbt CLI profile block of every target of the workspace that lacks one
(services/targets.py: the dbt project's profile name, the target's name and schema, and the credentials the proxy
derives from the warehouse's credentials block — Django never holds them here). Deleting the tasks deletes the
profiles. Each dbt-run task has a deployment of its own (a manual dataflow, as a connection's sync has, on the
default target), made and deleted with the task. A one-off run may name another target.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import OperationalError, transaction
from django.utils import timezone

from ddpcontract import proxy_api as api
from ddpcontract.tasks import TaskSlug
from ddpui.errors import Conflict, InvalidInput, NotFound
from ddpui.models.dataflows import DataflowOrgTask, OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.org import DbtTarget, Org, OrgDbt, OrgPrefectBlockv1, OrgUser
from ddpui.models.tasks import OrgTask, Task, TaskType
from ddpui.prefect_client import ProxyNotFound, get_proxy
from ddpui.services import locks, runs
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.orgs import prefect_block_delete
from ddpui.services.run_states import is_terminal
from ddpui.services.selectors import manual_dataflows_of, orgtask_get
from ddpui.services.targets import target_default, target_profile_make, target_profile_rewrite, target_resolve
from ddpui.services.task_config import OrgContext, deployment_parameters, pipeline_order
from ddpui.services.undo import UndoStack

SYSTEM_TRANSFORM_SLUGS = [
    TaskSlug.GIT_PULL,
    TaskSlug.DBT_CLEAN,
    TaskSlug.DBT_DEPS,
    TaskSlug.DBT_RUN,
    TaskSlug.DBT_TEST,
    TaskSlug.DBT_DOCS_GENERATE,
]
TRANSFORM_TYPES = [TaskType.GIT, TaskType.DBT]
# the long-running tasks, which get a deployment of their own (the web app runs them through it, like Dalgo)
DEPLOYED_TASK_SLUGS = [TaskSlug.DBT_RUN]
# the flags and options the custom-task form offers for each task (Dalgo's list); others take none
TASK_PARAMETERS: dict[str, tuple[list[str], list[str]]] = {
    TaskSlug.DBT_DEPS: (["upgrade"], ["add-package"]),
    TaskSlug.DBT_RUN: (["full-refresh"], ["select", "exclude"]),
    TaskSlug.DBT_TEST: ([], ["select", "exclude"]),
    TaskSlug.DBT_SEED: ([], ["select"]),
}
# dbt flags and options become words of a bash command line: only plain tokens, no shell syntax
_FLAG = re.compile(r"^[a-z][a-z0-9-]{0,49}$")
_OPTION_VALUE = re.compile(r"^[A-Za-z0-9_.:+/,@=][A-Za-z0-9_.:+/,@=\-]{0,199}$")


def _transform_tasks(org: Org) -> list[OrgTask]:
    return list(OrgTask.objects.select_related("task").filter(org=org, task__type__in=TRANSFORM_TYPES).order_by("id"))


@dataclass(frozen=True)
class TransformTaskView:
    """A git or dbt task of the org as the transform page lists it."""

    orgtask: OrgTask
    seq: int  # its place in pipeline order, from 0
    deployment_id: str | None  # its own (manual) deployment, for the tasks that have one
    lock: locks.LockState | None


def transform_tasks_list(*, org: Org) -> list[TransformTaskView]:
    """The org's git and dbt tasks in pipeline order, with their locks: at most 4 queries whatever their number."""
    ordered = pipeline_order(list(enumerate(_transform_tasks(org))))
    ids = [task.id for task in ordered]
    held = locks.locks_status(orgtask_ids=ids)
    run_states = locks.lock_run_states(held=held.values())
    deployments = manual_dataflows_of(org=org, orgtask_ids=ids)
    views = []
    for seq, task in enumerate(ordered):
        lock = held.get(task.id)
        manual = deployments.get(task.id)
        views.append(
            TransformTaskView(
                orgtask=task,
                seq=seq,
                deployment_id=manual.deployment_id if manual else None,
                lock=lock and locks.lock_state(lock, run_state=run_states.get(lock.flow_run_id or "")),
            )
        )
    return views


def _profiles_make(*, org: Org, dbt: OrgDbt, undo: UndoStack) -> list[str]:
    """Makes the dbt profile block of every target that lacks one; the default target takes over a profile block
    an older version recorded without linking it (rewritten). Returns the targets whose profile was made."""
    made = []
    targets = list(DbtTarget.objects.filter(dbt=dbt, profile_block__isnull=True).select_related("warehouse"))
    for target in targets:
        if target.warehouse is None:
            raise InvalidInput(
                f"target '{target.name}' has no warehouse: create the warehouse first, or give the target one "
                f"with PUT /api/v1/dbt/targets/{target.name}/"
            )
        leftover = (
            OrgPrefectBlockv1.objects.filter(org=org, block_type=OrgPrefectBlockv1.BlockType.DBT_CLI_PROFILE)
            .exclude(id__in=DbtTarget.objects.filter(profile_block__isnull=False).values("profile_block_id"))
            .first()
            if target.is_default
            else None
        )
        if leftover is not None:
            target.profile_block = leftover
            target.save(update_fields=["profile_block", "updated_at"])
            target_profile_rewrite(dbt=dbt, target=target)
        else:
            target_profile_make(dbt=dbt, target=target, undo=undo)
        made.append(target.name)
    return made


def _task_deployment_create(*, org: Org, orgtask: OrgTask, undo: UndoStack) -> OrgDataFlowv1:
    """The task's own manual deployment (one run of exactly this task) and its dataflow row. The deployment is
    undone by `undo` if the operation fails later; the rows are the caller's transaction's."""
    target = target_default(org=org)  # the web app runs the task through it: on the default target
    deployment = get_proxy().deployments.create(
        name=f"manual-{org.slug}-{orgtask.task.slug}",
        unique_suffix=True,  # a new name every time: one Prefect call, no name check
        org_slug=org.slug,
        parameters=deployment_parameters(org=org, orgtasks=[orgtask], target=target),
        work_pool_name=settings.PREFECT_WORK_POOL,
    )
    undo.push(f"deployment {deployment.id}", lambda: _deployment_delete(deployment.id))
    dataflow = OrgDataFlowv1.objects.create(
        org=org,
        name=f"{orgtask.task.label} ({orgtask.command_text()})"[:100],
        deployment_id=deployment.id,
        deployment_name=deployment.name,
        dataflow_type=OrgDataFlowv1.DataflowType.MANUAL,
        target=target,
    )
    DataflowOrgTask.objects.create(dataflow=dataflow, orgtask=orgtask, seq=0)
    return dataflow


def _deployment_delete(deployment_id: str) -> None:
    with contextlib.suppress(ProxyNotFound):  # already gone from Prefect: nothing to undo
        get_proxy().deployment(deployment_id).delete()


def task_deployments_delete(*, org: Org, orgtasks: list[OrgTask]) -> None:
    """Deletes the tasks' own deployments (in Prefect, then their dataflow rows). Deployments already gone are
    skipped, so a delete that failed half-way can be sent again."""
    manual = manual_dataflows_of(org=org, orgtask_ids=[task.id for task in orgtasks])
    for dataflow in manual.values():
        _deployment_delete(dataflow.deployment_id)
    OrgDataFlowv1.objects.filter(id__in=[dataflow.id for dataflow in manual.values()]).delete()


def transform_tasks_create(*, org: Org, orguser: OrgUser | None) -> list[TransformTaskView]:
    """Makes the dbt profile blocks (of the targets that lack one), the system tasks, and the own deployment of
    each dbt-run task that lacks one. A second call changes nothing and calls nothing; two calls at once are
    serialized (the second finds the first's work). If any step fails, the blocks and deployments made here are
    deleted and no row is written."""
    with UndoStack(f"creating the transform tasks of {org.slug}") as undo, transaction.atomic():
        # a write first: it serializes concurrent calls on every database (a row lock on PostgreSQL, the
        # write lock on SQLite), so the second one reads what the first one made
        try:
            claimed = OrgDbt.objects.filter(org=org).update(updated_at=timezone.now())
        except OperationalError as error:
            # SQLite when it cannot wait for the write lock (a shared-cache database answers "locked" at once)
            if "locked" not in str(error):
                raise
            raise Conflict("the transform tasks are being created by another request: try again") from None
        if not claimed:
            raise InvalidInput("your organization has no dbt workspace: set one up with POST /api/dbt/workspace/")
        dbt = OrgDbt.objects.select_for_update().select_related("org").get(org=org)
        made_profiles = _profiles_make(org=org, dbt=dbt, undo=undo)
        existing = set(
            OrgTask.objects.filter(
                org=org, task__slug__in=SYSTEM_TRANSFORM_SLUGS, generated_by=OrgTask.GeneratedBy.SYSTEM
            ).values_list("task__slug", flat=True)
        )
        missing = [slug for slug in SYSTEM_TRANSFORM_SLUGS if slug not in existing]
        created = []
        if missing:
            tasks = {task.slug: task for task in Task.objects.filter(slug__in=missing)}
            created = OrgTask.objects.bulk_create(
                [OrgTask(org=org, task=tasks[slug], generated_by=OrgTask.GeneratedBy.SYSTEM) for slug in missing]
            )
        deployed = OrgTask.objects.select_related("task", "org").filter(org=org, task__slug__in=DEPLOYED_TASK_SLUGS)
        have_deployment = manual_dataflows_of(org=org, orgtask_ids=[task.id for task in deployed])
        for orgtask in deployed:
            if orgtask.id not in have_deployment:
                _task_deployment_create(org=org, orgtask=orgtask, undo=undo)
        if made_profiles or created:
            audit_record(
                org=org,
                orguser=orguser,
                action=AuditAction.TRANSFORM_TASKS_CREATED,
                object_type="org",
                object_id=org.slug,
                details={"tasks": missing, "profile_block": bool(made_profiles), "profiles_of": made_profiles},
            )
    return transform_tasks_list(org=org)


def _pipelines_using(orgtasks: list[OrgTask]) -> list[str]:
    """The pipelines that run any of the tasks (their own manual deployments do not count)."""
    return sorted(
        set(
            OrgDataFlowv1.objects.filter(
                dataflow_orgtasks__orgtask__in=orgtasks, dataflow_type=OrgDataFlowv1.DataflowType.ORCHESTRATE
            ).values_list("name", flat=True)
        )
    )


def orgtasks_refuse_if_used(orgtasks: list[OrgTask], what: str) -> None:
    """Conflict if a pipeline runs any of the tasks or any of them is locked by a run."""
    if not orgtasks:
        return
    pipelines = _pipelines_using(orgtasks)
    if pipelines:
        raise Conflict(f"{what} used by the pipeline(s) {', '.join(pipelines)}: remove them from the pipelines first")
    held = list(locks.locks_status(orgtask_ids=[task.id for task in orgtasks]).values())
    if held:
        raise locks.TaskLocked(f"{what} running: {'; '.join(locks.describe_lock(lock) for lock in held)}", held)


def transform_tasks_delete(*, org: Org, orguser: OrgUser | None) -> None:
    """Deletes every git and dbt task of the org (system and custom), their own deployments and the dbt
    profile blocks of the targets."""
    with transaction.atomic():
        orgtasks = _transform_tasks(org)
        orgtasks_refuse_if_used(orgtasks, "the transform tasks are")
        profiles = list(
            OrgPrefectBlockv1.objects.filter(id__in=DbtTarget.objects.filter(dbt__org=org).values("profile_block_id"))
        )
        # inside the transaction: if the proxy refuses, no row is deleted either
        task_deployments_delete(org=org, orgtasks=orgtasks)
        for profile in profiles:
            prefect_block_delete(block_id=profile.block_id)
        OrgTask.objects.filter(id__in=[task.id for task in orgtasks]).delete()
        OrgPrefectBlockv1.objects.filter(id__in=[profile.id for profile in profiles]).delete()
        audit_record(
            org=org,
            orguser=orguser,
            action=AuditAction.TRANSFORM_TASKS_DELETED,
            object_type="org",
            object_id=org.slug,
            details={"tasks": [task.task.slug for task in orgtasks]},
        )


def _option_values(key: str, value) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise InvalidInput(f"option '{key}' needs a value")
    checked = []
    for item in values:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise InvalidInput(f"option '{key}': values must be plain words or numbers")
        text = str(item)
        if not _OPTION_VALUE.match(text):
            raise InvalidInput(
                f"option '{key}': '{text}' is not allowed: use letters, digits and _ . : + / , @ = - only "
                "(no spaces or shell characters)"
            )
        checked.append(text)
    return checked


def orgtask_create(*, org: Org, task_slug: str, flags: list[str], options: dict, orguser: OrgUser | None) -> OrgTask:
    """A custom dbt command, e.g. `dbt run --select orders --full-refresh`; a dbt-run one gets its own
    deployment (the deployment first: if the proxy fails, nothing is stored)."""
    task = Task.objects.filter(slug=task_slug).first()
    if task is None:
        raise InvalidInput(f"unknown task '{task_slug}'")
    if task.type != TaskType.DBT:
        raise InvalidInput(f"only dbt tasks can be customised; '{task_slug}' is a {task.type} task")
    if not OrgDbt.objects.filter(org=org).exists():
        raise InvalidInput("your organization has no dbt workspace: set one up with POST /api/dbt/workspace/")
    for flag in flags:
        if not isinstance(flag, str) or not _FLAG.match(flag):
            raise InvalidInput(f"flag '{flag}' is not allowed: use a dbt flag name such as full-refresh, without '--'")
    checked_options = {}
    for key, value in options.items():
        if not _FLAG.match(key):
            raise InvalidInput(f"option '{key}' is not allowed: use a dbt option name such as select, without '--'")
        values = _option_values(key, value)
        checked_options[key] = values if isinstance(value, list) else values[0]
    with UndoStack(f"creating the task {task_slug} of {org.slug}") as undo, transaction.atomic():
        orgtask = OrgTask.objects.create(
            org=org,
            task=task,
            parameters={"flags": list(flags), "options": checked_options},
            generated_by=OrgTask.GeneratedBy.CLIENT,
        )
        if task.slug in DEPLOYED_TASK_SLUGS:
            _task_deployment_create(org=org, orgtask=orgtask, undo=undo)
        audit_record(
            org=org,
            orguser=orguser,
            action=AuditAction.TASK_CREATED,
            object_type="task",
            object_id=str(orgtask.uuid),
            details={"slug": task.slug, "command": orgtask.command_text()},
        )
    return orgtask


def orgtask_delete(*, org: Org, orgtask_uuid: str, orguser: OrgUser | None) -> None:
    """Deletes a git or dbt task and its own deployment. Refused while a pipeline uses it or it runs."""
    with transaction.atomic():
        orgtask = orgtask_get(org=org, orgtask_uuid=orgtask_uuid)
        if orgtask.task.type == TaskType.AIRBYTE:
            raise InvalidInput("a sync task goes with its connection: delete the connection instead")
        orgtasks_refuse_if_used([orgtask], f"the task {orgtask.task.slug} is")
        # inside the transaction: if the proxy refuses, the task stays
        task_deployments_delete(org=org, orgtasks=[orgtask])
        audit_record(
            org=org,
            orguser=orguser,
            action=AuditAction.TASK_DELETED,
            object_type="task",
            object_id=str(orgtask.uuid),
            details={"slug": orgtask.task.slug, "command": orgtask.command_text()},
        )
        orgtask.delete()


@dataclass(frozen=True)
class TaskRunResult:
    """A one-off task run: its record, and — when it ended within the wait — its log lines."""

    run: PrefectFlowRun
    ended: bool
    log_lines: list[api.LogLine]


def orgtask_run(
    *,
    org: Org,
    orguser: OrgUser,
    orgtask_uuid: str,
    wait_seconds: float = 0,
    target: str | None = None,
) -> TaskRunResult:
    """Starts one git or dbt task on a worker, on `target` (a target's name; the default target when None) —
    through its own deployment when it has one on that target, else through the proxy's ad-hoc route — then waits
    up to `wait_seconds` for it to end (the web app shows the task's output from the answer). The task stays
    locked on that target until the run ends; a second start there meanwhile gets 409."""
    orgtask = orgtask_get(org=org, orgtask_uuid=orgtask_uuid)
    if orgtask.task.type == TaskType.AIRBYTE:
        raise InvalidInput("a sync runs through its connection's deployment, not as a single task")
    resolved = target_resolve(org=org, name=target)
    # the task config checks the prerequisites (dbt workspace, profile, warehouse) before anything is locked
    task = OrgContext(org, resolved).task(orgtask, 0)
    manual = manual_dataflows_of(org=org, orgtask_ids=[orgtask.id]).get(orgtask.id)
    if manual is not None and manual.target_id in (None, resolved.id) and resolved.is_default:
        record = runs.run_start(org=org, orguser=orguser, orgtasks=[orgtask], dataflow=manual, target=resolved)
    else:
        record = runs.run_start(org=org, orguser=orguser, orgtasks=[orgtask], adhoc_task=task, target=resolved)
    if wait_seconds <= 0:
        return TaskRunResult(run=record, ended=False, log_lines=[])
    record, lines = runs.run_wait(org=org, flow_run_id=record.flow_run_id, timeout_seconds=wait_seconds)
    return TaskRunResult(run=record, ended=is_terminal(record.state_type), log_lines=lines)


def transform_task_templates() -> list[Task]:
    """The master list's git and dbt tasks (what a custom task can be made from)."""
    return list(Task.objects.filter(type__in=TRANSFORM_TYPES).order_by("id"))


def transform_task_parameters(*, slug: str) -> tuple[list[str], list[str]]:
    """(flags, options) a task of the master list takes: what the custom-task form offers. NotFound for a slug
    that is not a git or dbt task."""
    if not Task.objects.filter(slug=slug, type__in=TRANSFORM_TYPES).exists():
        raise NotFound(f"task {slug} not found: see GET /api/data/tasks/")
    return TASK_PARAMETERS.get(slug, ([], []))
