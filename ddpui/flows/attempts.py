"""One attempt of a pipeline task: how long it may take, how its process is run, and how it fails."""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from prefect.context import TaskRunContext
from prefect_shell import ShellOperation

from ddpui.flows import control
from ddpui.flows.redaction import redact

_OUTPUT_TAIL_LINES = 8
_MESSAGE_MAX_CHARS = 2000
# how long a stopped command's process group gets between SIGTERM and SIGKILL
_KILL_GRACE_SECONDS = 3


class TaskFailed(Exception):
    """One attempt of a pipeline task failed; the message is already free of secrets."""

    def __init__(self, message: str, *, details: dict | None = None, permanent: bool = False):
        self.message = redact(message)[:_MESSAGE_MAX_CHARS]
        self.details = redact(details or {})
        self.permanent = permanent
        self.attempts = current_attempt()
        super().__init__(self.message)


class TaskTimedOut(TaskFailed):
    pass


class TaskCancelled(TaskFailed):
    """The flow run was cancelled while this task ran; never retried."""

    def __init__(self, message: str = "stopped: the flow run was cancelled", *, details: dict | None = None):
        super().__init__(message, details=details, permanent=True)


def raise_if_cancelled() -> None:
    if control.current().stopping:
        raise TaskCancelled()


class PipelineFailed(Exception):
    """The exception of a failed pipeline run's state; `results` holds the per-task results."""

    def __init__(self, message: str, results: list[dict]):
        super().__init__(message)
        self.results = results


def current_attempt() -> int:
    context = TaskRunContext.get()
    return context.task_run.run_count if context else 1


def retry_unless_permanent(task_, task_run, state) -> bool:
    """Prefect's retry condition: retry any failure except a TaskFailed marked permanent."""
    try:
        state.result()
    except TaskFailed as error:
        return not error.permanent
    except Exception:
        return True
    return False


def output_tail(lines: list[str]) -> str:
    kept = [line for line in lines if line.strip()][-_OUTPUT_TAIL_LINES:]
    return "\n".join(kept)


@dataclass
class Deadline:
    """The time an attempt may still use; `None` seconds means no limit."""

    seconds: float | None
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float | None:
        if self.seconds is None:
            return None
        return max(0.0, self.seconds - (time.monotonic() - self.started))


def kill_process_group(pgid: int, grace_seconds: float = _KILL_GRACE_SECONDS) -> None:
    """SIGTERM to the process group, then SIGKILL to what is left of it after `grace_seconds`; returns when
    the group is gone."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def run_process(operation: ShellOperation, deadline: Deadline, timeout_label: str) -> tuple[int, list[str]]:
    """Run `operation` until it ends or the deadline passes (then its whole process tree is killed). When the
    flow run is cancelled meanwhile, its process group is killed and TaskCancelled raised.

    Returns the exit code and the captured output lines.
    """
    run_control = control.current()
    raise_if_cancelled()
    outcome: dict[str, BaseException] = {}
    try:
        process = operation.trigger()

        def wait() -> None:
            try:
                process.wait_for_completion()
            except RuntimeError:
                pass  # a non-zero exit code: the caller reads it from the process
            except BaseException as error:  # noqa: BLE001 - reported to the waiting thread
                outcome["error"] = error

        # the run logger lives in context variables, which a new thread does not inherit
        waiter = threading.Thread(target=contextvars.copy_context().run, args=(wait,), daemon=True)
        waiter.start()
        # the commands run in a session of their own (prefect-shell), out of reach of the worker's signals
        with run_control.on_stop(lambda: kill_process_group(process.pid)):
            waiter.join(timeout=deadline.remaining())
        timed_out = waiter.is_alive()
    finally:
        operation.close()  # terminates the process group: on a timeout this stops the commands
    waiter.join()
    if run_control.stopping:
        raise TaskCancelled(f"{timeout_label} stopped: the flow run was cancelled")
    if timed_out:
        raise TaskTimedOut(f"{timeout_label} timed out after {deadline.seconds:g} seconds")
    if "error" in outcome:
        raise outcome["error"]
    return process.return_code, process.fetch_result()
