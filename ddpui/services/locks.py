"""The single owner of TaskLock rows: acquire all-or-none, attach a run, release, report status.

The database enforces one lock per org task; acquiring inserts every lock in one statement inside a
transaction, so two concurrent acquirers can never both succeed for a shared task. How a lock is shown
(queued, running or locked; who holds it) is decided here too, once: `lock_state`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction

from ddpcontract import proxy_api as api
from ddpcontract.states import StateType
from ddpui.errors import Conflict
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
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


# who holds a lock that no user took: a scheduled run's, locked when Prefect started it (the web app shows
# "Triggered by: system"; the audit trail names the same actor)
SYSTEM_LOCKER = "system"
_WAITING_STATES = frozenset({StateType.SCHEDULED, StateType.PENDING})


@dataclass(frozen=True)
class LockState:
    """A lock as the API shows it."""

    status: str  # "queued" | "running" | "locked"
    flow_run_id: str | None
    locked_by: str  # the e-mail of the user who started the run, or SYSTEM_LOCKER; never empty
    locked_at: datetime
    locking_pipeline: str | None
    locking_dataflow_id: int | None

    def held_by(self, dataflow_id: int) -> bool:
        """The lock was taken by a run of this dataflow (the web app's `isRunning`)."""
        return self.locking_dataflow_id == dataflow_id


def lock_state(lock: TaskLock, *, run_state: str | None = None, viewer_dataflow_id: int | None = None) -> LockState:
    """The one rule for showing a lock. `run_state` is the state type of the lock's run when known; seen
    from a pipeline (`viewer_dataflow_id`), a lock another dataflow or a single-task run holds is "locked".
    Otherwise: "running" when its run is known to run; "queued" while the run has no id yet or is known to
    be scheduled or pending; "locked" when nothing more is known."""
    state = (run_state or "").upper()
    if viewer_dataflow_id is not None and lock.locking_dataflow_id != viewer_dataflow_id:
        status = "locked"
    elif lock.flow_run_id and state == StateType.RUNNING:
        status = "running"
    elif lock.flow_run_id is None or state in _WAITING_STATES:
        status = "queued"
    else:
        status = "locked"
    return LockState(
        status=status,
        flow_run_id=lock.flow_run_id,
        locked_by=lock.locked_by.user.email if lock.locked_by_id is not None else SYSTEM_LOCKER,
        locked_at=lock.locked_at,
        locking_pipeline=lock.locking_dataflow.name if lock.locking_dataflow_id is not None else None,
        locking_dataflow_id=lock.locking_dataflow_id,
    )


def lock_state_for(
    lock: TaskLock | None, *, observed_run: api.FlowRun | None = None, viewer_dataflow_id: int | None = None
) -> LockState | None:
    """`lock_state` of an optional lock, with the state of `observed_run` (a run as the proxy reports it)
    when that run is the lock's."""
    if lock is None:
        return None
    run_state = None
    if observed_run and lock.flow_run_id and observed_run.flow_run_id == lock.flow_run_id:
        run_state = observed_run.state_type
    return lock_state(lock, run_state=run_state, viewer_dataflow_id=viewer_dataflow_id)


def lock_run_states(*, held: Iterable[TaskLock], observed_runs: Iterable[api.FlowRun] = ()) -> dict[str, str]:
    """flow run id -> state type of the held locks' runs: what the caller just read from Prefect, else our
    records of the runs. At most one query."""
    run_ids = {lock.flow_run_id for lock in held if lock.flow_run_id}
    states = {run.flow_run_id: run.state_type or "" for run in observed_runs if run and run.flow_run_id in run_ids}
    unknown = run_ids - set(states)
    if unknown:
        states.update(PrefectFlowRun.objects.filter(flow_run_id__in=unknown).values_list("flow_run_id", "state_type"))
    return states
