"""Work that outlives its request (cloning a dbt repository), run in a thread of the Django process with its
progress in the database (TaskProgress), which the web app polls.

Why a thread and not a Prefect run: the work is Django's own — it fills Django's copy of the repository,
which Django reads to list models and to check a set-up — it takes seconds, and it needs no worker to be
free. Why no broker: the database already is the shared, durable place for progress and for the
"one task at a time per org and resource" rule (a partial unique index on running tasks).

A thread dies with its process. A running task therefore shows a heartbeat; one whose heartbeat is older
than STALE_AFTER is reported failed (and stops blocking new tasks) by whoever looks at it next.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable

from django.db import IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone

from ddpui.errors import Conflict, DomainError, NotFound
from ddpui.models.org import Org, OrgUser
from ddpui.models.progress import TaskProgress

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
STALE_AFTER = dt.timedelta(seconds=60)
STALE_MESSAGE = (
    "ddpui stopped while this task ran (no sign of life since {since}): nothing it started was kept; start it again"
)

_threads: set[threading.Thread] = set()
_threads_guard = threading.Lock()


class Progress:
    """What a job reports: each step as it starts; the runner writes the final entry."""

    def __init__(self, task_id: uuid.UUID):
        self.task_id = task_id

    def step(self, message: str) -> None:
        with transaction.atomic():
            task = TaskProgress.objects.select_for_update().get(task_id=self.task_id)
            task.steps = [*task.steps, {"stepnum": len(task.steps) + 1, "status": "running", "message": message}]
            task.heartbeat_at = timezone.now()
            task.save(update_fields=["steps", "heartbeat_at"])


Job = Callable[[Progress], str]


def _finish(task_id: uuid.UUID, status: str, message: str) -> None:
    with transaction.atomic():
        task = TaskProgress.objects.select_for_update().filter(task_id=task_id).first()
        if task is None or task.status != TaskProgress.Status.RUNNING:
            return
        task.steps = [*task.steps, {"stepnum": len(task.steps) + 1, "status": status, "message": message}]
        task.status = status
        task.finished_at = timezone.now()
        task.save(update_fields=["steps", "status", "finished_at"])


def _expire(task: TaskProgress) -> bool:
    """Marks a running task whose thread stopped showing signs of life as failed; True if it did."""
    if task.status != TaskProgress.Status.RUNNING or timezone.now() - task.heartbeat_at < STALE_AFTER:
        return False
    message = STALE_MESSAGE.format(since=task.heartbeat_at.isoformat(timespec="seconds"))
    updated = TaskProgress.objects.filter(id=task.id, status=TaskProgress.Status.RUNNING).update(
        status=TaskProgress.Status.FAILED,
        finished_at=timezone.now(),
        steps=[*task.steps, {"stepnum": len(task.steps) + 1, "status": "failed", "message": message}],
    )
    return bool(updated)


def task_running(*, org: Org, resource: str) -> TaskProgress | None:
    """The task now running on the org's resource (a stale one is first marked failed)."""
    task = TaskProgress.objects.filter(org=org, resource=resource, status=TaskProgress.Status.RUNNING).first()
    if task is not None and _expire(task):
        return None
    return task


def task_reserve(*, org: Org, actor: OrgUser | None, kind: str, resource: str, busy: str) -> TaskProgress:
    """A running task row for the org's resource; Conflict(`busy`) if another task works on it."""
    task_running(org=org, resource=resource)
    try:
        with transaction.atomic():
            return TaskProgress.objects.create(org=org, orguser=actor, kind=kind, resource=resource)
    except IntegrityError:
        raise Conflict(busy) from None


def task_run_inline(*, task: TaskProgress, job: Job) -> str:
    """Runs a reserved task's job in the request itself; its errors reach the caller."""
    try:
        message = job(Progress(task.task_id))
    except DomainError as error:
        _finish(task.task_id, TaskProgress.Status.FAILED, error.message)
        raise
    except Exception:
        _finish(task.task_id, TaskProgress.Status.FAILED, "internal error: the server logs have the details")
        raise
    _finish(task.task_id, TaskProgress.Status.COMPLETED, message)
    return message


def task_start(*, task: TaskProgress, job: Job) -> None:
    """Runs a reserved task's job in a thread, once the transaction that reserved it has committed (so the
    thread sees the row); the job's failure becomes the task's last step."""
    transaction.on_commit(lambda: _launch(task.task_id, job))


def _launch(task_id: uuid.UUID, job: Job) -> None:
    thread = threading.Thread(target=_run, args=(task_id, job), name=f"ddpui-task-{task_id}", daemon=True)
    with _threads_guard:
        _threads.add(thread)
    thread.start()


def _heartbeat(task_id: uuid.UUID, done: threading.Event) -> None:
    try:
        while not done.wait(HEARTBEAT_SECONDS):
            TaskProgress.objects.filter(task_id=task_id, status=TaskProgress.Status.RUNNING).update(
                heartbeat_at=timezone.now()
            )
    finally:
        connection.close()


def _run(task_id: uuid.UUID, job: Job) -> None:
    close_old_connections()
    done = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(task_id, done), name=f"ddpui-heartbeat-{task_id}", daemon=True)
    beat.start()
    try:
        message = job(Progress(task_id))
    except DomainError as error:
        _finish(task_id, TaskProgress.Status.FAILED, error.message)
    except Exception:
        logger.exception("background task %s failed", task_id)
        _finish(task_id, TaskProgress.Status.FAILED, "internal error: the server logs have the details")
    else:
        _finish(task_id, TaskProgress.Status.COMPLETED, message)
    finally:
        done.set()
        beat.join(HEARTBEAT_SECONDS + 5)
        connection.close()
        with _threads_guard:
            _threads.discard(threading.current_thread())


def task_get(*, org: Org, task_id: str) -> TaskProgress:
    """The org's task (another org's, or an unknown id, is not found); a stale one is reported failed."""
    try:
        key = uuid.UUID(str(task_id))
    except ValueError:
        raise NotFound(f"task {task_id} not found") from None
    task = TaskProgress.objects.filter(org=org, task_id=key).first()
    if task is None:
        raise NotFound(f"task {task_id} not found")
    if _expire(task):
        task.refresh_from_db()
    return task


def tasks_wait(timeout: float = 60.0) -> bool:
    """Waits for every background thread of this process to end (for tests and a clean shutdown);
    True if none is left."""
    deadline = timezone.now() + dt.timedelta(seconds=timeout)
    while True:
        with _threads_guard:
            alive = [thread for thread in _threads if thread.is_alive()]
        if not alive:
            return True
        remaining = (deadline - timezone.now()).total_seconds()
        if remaining <= 0:
            return False
        alive[0].join(min(remaining, 1.0))
