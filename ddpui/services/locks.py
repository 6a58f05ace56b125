"""The single owner of TaskLock rows: acquire all-or-none, attach a run, release, report status.

The database enforces one lock per org task; acquiring inserts every lock in one statement inside a
transaction, so two concurrent acquirers can never both succeed for a shared task.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction

from ddpui.errors import Conflict
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.locks import TaskLock
from ddpui.models.org import OrgUser
from ddpui.models.tasks import OrgTask


class TaskLocked(Conflict):
    def __init__(self, message: str, holders: list[TaskLock]):
        super().__init__(message)
        self.holders = holders


def describe_lock(lock: TaskLock) -> str:
    holder = f"run {lock.flow_run_id}" if lock.flow_run_id else "a run that is starting"
    if lock.locking_dataflow_id is not None and lock.locking_dataflow is not None:
        holder += f" of pipeline '{lock.locking_dataflow.name}'"
    if lock.locked_by_id is not None and lock.locked_by is not None:
        holder += f" started by {lock.locked_by.user.email}"
    return (
        f"task {lock.orgtask.task.slug} ({lock.orgtask.uuid}) is locked by {holder} since {lock.locked_at.isoformat()}"
    )


def _holders(orgtask_ids: Iterable[int]) -> list[TaskLock]:
    return list(
        TaskLock.objects.filter(orgtask_id__in=list(orgtask_ids)).select_related(
            "orgtask__task", "locking_dataflow", "locked_by__user"
        )
    )


def locks_acquire(
    *,
    orgtasks: list[OrgTask],
    flow_run_id: str | None = None,
    locked_by: OrgUser | None = None,
    dataflow: OrgDataFlowv1 | None = None,
) -> list[TaskLock]:
    """Locks every org task or none. Raises TaskLocked naming the holders when any is taken."""
    ids = sorted({task.id for task in orgtasks})
    if not ids:
        return []
    try:
        with transaction.atomic():
            return TaskLock.objects.bulk_create(
                [
                    TaskLock(
                        orgtask_id=task_id, flow_run_id=flow_run_id, locked_by=locked_by, locking_dataflow=dataflow
                    )
                    for task_id in ids
                ]
            )
    except IntegrityError:
        holders = _holders(ids)
        if not holders:
            # the holder released between our insert and our read: report a retryable conflict
            raise TaskLocked("the tasks were locked a moment ago; try again", []) from None
        raise TaskLocked("; ".join(describe_lock(lock) for lock in holders), holders) from None


def locks_attach_run(*, locks: list[TaskLock], flow_run_id: str) -> None:
    TaskLock.objects.filter(id__in=[lock.id for lock in locks]).update(flow_run_id=flow_run_id)


def locks_release(*, locks: list[TaskLock]) -> int:
    deleted, _ = TaskLock.objects.filter(id__in=[lock.id for lock in locks]).delete()
    return deleted


def locks_release_by_ids(*, lock_ids: Iterable[int]) -> int:
    deleted, _ = TaskLock.objects.filter(id__in=list(lock_ids)).delete()
    return deleted


def locks_release_for_run(*, flow_run_id: str) -> int:
    deleted, _ = TaskLock.objects.filter(flow_run_id=flow_run_id).delete()
    return deleted


def locks_held_by_dataflow(*, dataflow: OrgDataFlowv1) -> list[TaskLock]:
    return list(TaskLock.objects.filter(locking_dataflow=dataflow))


def locks_status(*, orgtask_ids: Iterable[int]) -> dict[int, TaskLock]:
    """orgtask id -> its lock, for the tasks that are locked. One query."""
    return {lock.orgtask_id: lock for lock in _holders(orgtask_ids)}
