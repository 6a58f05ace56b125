"""Transform tasks: the org's git and dbt OrgTasks (the system set and custom dbt commands), and one-off runs.

Making the transform tasks makes the org's dbt CLI profile block and links it to the dbt workspace: the
dbt project's profile name, the workspace's schema, and the credentials the proxy derives from the
warehouse's credentials block (Django never holds them here). Deleting the tasks deletes the profile.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.db import transaction

from ddpui.errors import Conflict, InvalidInput
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.locks import TaskLock
from ddpui.models.org import Org, OrgDbt, OrgPrefectBlockv1, OrgUser, OrgWarehouse
from ddpui.models.tasks import OrgTask, Task, TaskType
from ddpui.prefect_client import get_proxy
from ddpui.services import locks
from ddpui.services.orgs import Rollback, block_name_for, prefect_block_delete
from ddpui.services.run_states import locks_acquire_or_heal, run_state_apply
from ddpui.services.selectors import orgtask_get
from ddpui.services.task_config import OrgContext, pipeline_order
from ddpui.services.warehouse import profile_block_get

DBT_TARGET = "default"
SYSTEM_TRANSFORM_SLUGS = ["git-pull", "dbt-clean", "dbt-deps", "dbt-run", "dbt-test", "dbt-docs-generate"]
TRANSFORM_TYPES = [TaskType.GIT, TaskType.DBT]
# dbt flags and options become words of a bash command line: only plain tokens, no shell syntax
_FLAG = re.compile(r"^[a-z][a-z0-9-]{0,49}$")
_OPTION_VALUE = re.compile(r"^[A-Za-z0-9_.:+/,@=][A-Za-z0-9_.:+/,@=\-]{0,199}$")
_PROFILE_LINE = re.compile(r"^profile:\s*[\"']?([A-Za-z0-9_\-]+)", re.MULTILINE)


def lock_view(lock: TaskLock | None, *, last_run: dict | None = None) -> dict | None:
    """How a lock is shown: who holds it, since when, and whether its run is known to be running."""
    if lock is None:
        return None
    same_run = bool(last_run and lock.flow_run_id and str(last_run.get("flow_run_id")) == lock.flow_run_id)
    if same_run and last_run.get("state_type") == "RUNNING":
        status = "running"
    elif lock.flow_run_id is None or (same_run and last_run.get("state_type") in ("SCHEDULED", "PENDING")):
        status = "queued"
    else:
        status = "locked"
    return {
        "status": status,
        "flowRunId": lock.flow_run_id,
        "lockedBy": lock.locked_by.user.email if lock.locked_by_id else None,
        "lockedAt": lock.locked_at,
        "lockingPipeline": lock.locking_dataflow.name if lock.locking_dataflow_id else None,
    }


def dbt_profile_name(project_dir: str, default: str) -> str:
    """The `profile:` the dbt project asks for (dbt looks the profile up by that name)."""
    try:
        text = (Path(project_dir) / "dbt_project.yml").read_text()
    except OSError:
        return default
    found = _PROFILE_LINE.search(text)
    return found.group(1) if found else default


def _transform_tasks(org: Org) -> list[OrgTask]:
    return list(OrgTask.objects.select_related("task").filter(org=org, task__type__in=TRANSFORM_TYPES).order_by("id"))


def transform_tasks_list(*, org: Org) -> list[dict]:
    """The org's git and dbt tasks in pipeline order, with their locks: 2 queries whatever their number."""
    ordered = pipeline_order(list(enumerate(_transform_tasks(org))))
    held = locks.locks_status(orgtask_ids=[task.id for task in ordered])
    return [
        {
            "uuid": str(task.uuid),
            "slug": task.task.slug,
            "type": task.task.type,
            "command": task.command_text(),
            "generatedBy": task.generated_by,
            "seq": seq,
            "lock": lock_view(held.get(task.id)),
        }
        for seq, task in enumerate(ordered)
    ]


def _profile_link(*, org: Org, dbt: OrgDbt, rollback: Rollback) -> None:
    """Makes (or, if one was left by an older version, rewrites) the org's dbt profile block from the
    warehouse's credentials block, and links it to the workspace."""
    warehouse = OrgWarehouse.objects.filter(org=org).first()
    if warehouse is None:
        raise InvalidInput("your organization has no warehouse: create it before the transform tasks")
    profile_fields = {
        "profile": {"name": dbt_profile_name(dbt.project_dir, org.slug), "target": DBT_TARGET},
        "wtype": warehouse.wtype,
        "target_schema": dbt.default_schema,
        "credentials_block_name": warehouse.credentials_block_name,
    }
    proxy = get_proxy()
    profile = profile_block_get(org=org)
    if profile is not None:
        proxy.blocks.dbt_cli_profile.update(cli_profile_block_name=profile.block_name, **profile_fields)
    else:
        created = proxy.blocks.dbt_cli_profile.create(
            cli_profile_block_name=block_name_for(org, "dbt-profile"), **profile_fields
        )
        rollback.add("dbt profile block", lambda: prefect_block_delete(block_id=created["block_id"]))
        profile = OrgPrefectBlockv1.objects.create(
            org=org,
            block_type=OrgPrefectBlockv1.BlockType.DBT_CLI_PROFILE,
            block_id=str(created["block_id"]),
            block_name=created["block_name"],
        )
    dbt.cli_profile_block = profile
    dbt.save(update_fields=["cli_profile_block", "updated_at"])


def transform_tasks_create(*, org: Org) -> list[dict]:
    """Makes the dbt profile block and the system tasks. A second call changes nothing and calls nothing;
    if any step fails, the profile block made here is deleted and no row is written."""
    with Rollback(f"creating the transform tasks of {org.slug}") as rollback, transaction.atomic():
        dbt = OrgDbt.objects.select_for_update().filter(org=org).first()
        if dbt is None:
            raise InvalidInput("your organization has no dbt workspace: set one up with POST /api/dbt/workspace/")
        if dbt.cli_profile_block_id is None:
            _profile_link(org=org, dbt=dbt, rollback=rollback)
        existing = set(
            OrgTask.objects.filter(
                org=org, task__slug__in=SYSTEM_TRANSFORM_SLUGS, generated_by=OrgTask.GeneratedBy.SYSTEM
            ).values_list("task__slug", flat=True)
        )
        missing = [slug for slug in SYSTEM_TRANSFORM_SLUGS if slug not in existing]
        if missing:
            tasks = {task.slug: task for task in Task.objects.filter(slug__in=missing)}
            OrgTask.objects.bulk_create(
                [OrgTask(org=org, task=tasks[slug], generated_by=OrgTask.GeneratedBy.SYSTEM) for slug in missing]
            )
    return transform_tasks_list(org=org)


def _pipelines_using(orgtasks: list[OrgTask]) -> list[str]:
    return sorted(
        set(OrgDataFlowv1.objects.filter(dataflow_orgtasks__orgtask__in=orgtasks).values_list("name", flat=True))
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


def transform_tasks_delete(*, org: Org) -> None:
    """Deletes every git and dbt task of the org (system and custom) and the dbt profile block."""
    with transaction.atomic():
        orgtasks = _transform_tasks(org)
        orgtasks_refuse_if_used(orgtasks, "the transform tasks are")
        profile = profile_block_get(org=org)
        if profile is not None:
            # inside the transaction: if the proxy refuses, no row is deleted either
            prefect_block_delete(block_id=profile.block_id)
        OrgTask.objects.filter(id__in=[task.id for task in orgtasks]).delete()
        OrgDbt.objects.filter(org=org).update(cli_profile_block=None)
        if profile is not None:
            profile.delete()


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


def orgtask_create(*, org: Org, task_slug: str, flags: list[str], options: dict) -> OrgTask:
    """A custom dbt command, e.g. `dbt run --select orders --full-refresh`."""
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
    return OrgTask.objects.create(
        org=org,
        task=task,
        parameters={"flags": list(flags), "options": checked_options},
        generated_by=OrgTask.GeneratedBy.CLIENT,
    )


def orgtask_delete(*, org: Org, orgtask_uuid: str) -> None:
    with transaction.atomic():
        orgtask = orgtask_get(org=org, orgtask_uuid=orgtask_uuid)
        if orgtask.task.type == TaskType.AIRBYTE:
            raise InvalidInput("a sync task goes with its connection: delete the connection instead")
        orgtasks_refuse_if_used([orgtask], f"the task {orgtask.task.slug} is")
        orgtask.delete()


def orgtask_run(*, org: Org, orguser: OrgUser, orgtask_uuid: str) -> dict:
    """Starts one git or dbt task on a worker; returns at once. The task stays locked until the run ends
    (the webhook and the reconciler release it); a second start meanwhile gets 409."""
    orgtask = orgtask_get(org=org, orgtask_uuid=orgtask_uuid)
    if orgtask.task.type == TaskType.AIRBYTE:
        raise InvalidInput("a sync runs through its connection's deployment, not as a single task")
    task = OrgContext(org).task(orgtask, 0)
    held = locks_acquire_or_heal(orgtasks=[orgtask], locked_by=orguser)
    try:
        run = get_proxy().task_runs.start(org_slug=org.slug, task=task)
    except Exception:
        locks.locks_release(locks=held)
        raise
    locks.locks_attach_run(locks=held, flow_run_id=run.id)
    run_state_apply(
        org=org,
        run={"flow_run_id": run.id, "name": run.name, "state_type": "SCHEDULED", "state_name": "Scheduled"},
    )
    return {"flow_run_id": run.id, "name": run.name}
