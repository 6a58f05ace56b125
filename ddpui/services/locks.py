"""The single owner of TaskLock rows: acquire all-or-none, attach a run, release, report status.

The rule, in plain words: **the same task on the same target is exclusive; on different targets it is not.** A
git or dbt task runs on a dbt target (its own copy of the repository, its own schema), so it is locked per target:
`dbt run` on dev and `dbt run` on prod can run at once, two `dbt run` on prod cannot. A sync task has no target
and is locked alone. The database enforces one lock per (org task, target); acquiring inserts every lock in one
statement inside a transaction, so two concurrent acquirers can never both succeed for a shared task. How a lock
is shown (queued, running or locked; who holds it) is decided here too, once: `lock_state`.
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
from ddpui.models.org import DbtTarget, OrgUser
from ddpui.models.tasks import OrgTask, TaskType

# the tasks that run on a target (locked per target); the others (syncs) are locked alone
_TARGETED_TYPES = frozenset({TaskType.GIT, TaskType.DBT})


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
    on = f" on target {lock.target.name}" if lock.target_id is not None and lock.target is not None else ""
    return (
        f"task {lock.orgtask.task.slug} ({lock.orgtask.uuid}){on} is locked by {holder} "
        f"since {lock.locked_at.isoformat()}"
    )


# what describing a lock reads: its task, target, dataflow and who took it
_LOCK_RELATED = ("orgtask__task", "target", "locking_dataflow", "locked_by__user")


def _held(orgtask_ids: Iterable[int]) -> list[TaskLock]:
    return list(TaskLock.objects.filter(orgtask_id__in=list(orgtask_ids)).select_related(*_LOCK_RELATED))


def is_targeted(orgtask: OrgTask) -> bool:
    """Whether the task runs on a dbt target (a git or dbt task), and is therefore locked per target."""
    return orgtask.task.type in _TARGETED_TYPES


def _keys(orgtasks: list[OrgTask], target: DbtTarget | None) -> list[tuple[int, int | None]]:
    """(org task id, target id) of each lock to take: the target for git and dbt tasks (the org's default one when
    none is given), none for syncs."""
    targeted = [task for task in orgtasks if is_targeted(task)]
    if targeted and target is None:
        target = DbtTarget.objects.filter(dbt__org_id=targeted[0].org_id, is_default=True).first()
    target_id = target.id if target is not None else None
    return sorted({(task.id, target_id if is_targeted(task) else None) for task in orgtasks}, key=str)


def locks_acquire(
    *,
    orgtasks: list[OrgTask],
    target: DbtTarget | None = None,
    flow_run_id: str | None = None,
    locked_by: OrgUser | None = None,
    dataflow: OrgDataFlowv1 | None = None,
) -> list[TaskLock]:
    """Locks every org task or none: each git or dbt task on `target` (the default target when none is given), each
    sync alone. Raises TaskLocked naming the holders when any is taken."""
    keys = _keys(orgtasks, target)
    if not keys:
        return []
    try:
        with transaction.atomic():
            return TaskLock.objects.bulk_create(
                [
                    TaskLock(
                        orgtask_id=task_id,
                        target_id=target_id,
                        flow_run_id=flow_run_id,
                        locked_by=locked_by,
                        locking_dataflow=dataflow,
                    )
                    for task_id, target_id in keys
                ]
            )
    except IntegrityError:
        wanted = set(keys)
        holders = [
            lock for lock in _held({task_id for task_id, _ in keys}) if (lock.orgtask_id, lock.target_id) in wanted
        ]
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


def locks_on_target(*, target: DbtTarget) -> list[TaskLock]:
    return list(TaskLock.objects.filter(target=target).select_related(*_LOCK_RELATED))


def locks_held(*, orgtask_ids: Iterable[int]) -> list[TaskLock]:
    """Every lock on these org tasks, whatever its target. One query."""
    return _held(orgtask_ids)


def locks_held_in_org(*, org) -> list[TaskLock]:
    """Every lock on the org's tasks, whatever its target. One query."""
    return list(TaskLock.objects.filter(orgtask__org=org).select_related(*_LOCK_RELATED))


def locks_status(*, orgtask_ids: Iterable[int]) -> dict[int, TaskLock]:
    """orgtask id -> its lock, for the tasks that are locked; a task locked on several targets shows the default
    target's lock, else its oldest. One query."""
    status: dict[int, TaskLock] = {}
    for lock in sorted(
        _held(orgtask_ids), key=lambda lock: (not (lock.target is not None and lock.target.is_default), lock.locked_at)
    ):
        status.setdefault(lock.orgtask_id, lock)
    return status


def locks_for_target(held: Iterable[TaskLock], *, target_id: int | None) -> list[TaskLock]:
    """Of locks on a pipeline's tasks, the ones that matter on its target: those on the target and the syncs'. A
    pipeline without a target runs its git and dbt tasks (if any) on the default target. The locks come with their
    target (`locks_held`): no query."""
    if target_id is None:
        return [lock for lock in held if lock.target_id is None or lock.target.is_default]
    return [lock for lock in held if lock.target_id is None or lock.target_id == target_id]


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
    target: str | None  # the dbt target the locked task runs on; None for a sync

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
        target=lock.target.name if lock.target_id is not None else None,
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
