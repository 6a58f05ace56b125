"""Stopping a run that is being cancelled: what each running task must undo, and waits that end at once.

A cancelled flow run gets SIGTERM from its worker, which Prefect raises in the flow's main thread. The tasks
run in other threads (and their commands in process groups of their own, an Airbyte job in Airbyte), so
nothing stops them by itself: each running task registers how to stop what it started (cancel its Airbyte
job, kill its process group), and the flow calls `stop_everything()` when the run is interrupted. Every
wait of a task (Airbyte polls, backoff, retry delays) is `control.wait(seconds)`, which returns early when
the run is stopping, so the process can exit within seconds.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

# how long stopping the running tasks may take (killing process groups, cancelling Airbyte jobs)
STOP_TIMEOUT_SECONDS = 6


class RunControl:
    """The stop switch of one flow run and the undo actions of its running tasks (thread-safe)."""

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._actions: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def wait(self, seconds: float | None) -> bool:
        """Sleep `seconds` (None: until stopped); True when the run is stopping."""
        return self._stopping.wait(seconds if seconds is None else max(0.0, seconds))

    @contextmanager
    def on_stop(self, action: Callable[[], None]) -> Iterator[None]:
        """While the block runs, `action` undoes it when the run is stopped (at once if it already is)."""
        with self._lock:
            action_id = next(self._ids)
            self._actions[action_id] = action
            stopping = self.stopping
        if stopping:
            _run(action)
        try:
            yield
        finally:
            with self._lock:
                self._actions.pop(action_id, None)

    def stop_everything(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop every running task: wakes every wait and runs each registered undo action once, side by side,
        waiting for them at most `timeout` seconds."""
        with self._lock:
            actions = list(self._actions.values())
            self._actions.clear()
            self._stopping.set()
        threads = [threading.Thread(target=_run, args=(action,), name="stop-task", daemon=True) for action in actions]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _run(action: Callable[[], None]) -> None:
    try:
        action()
    except Exception:  # noqa: BLE001 - one failed undo must not keep the others from running
        logger.exception("could not stop a running task")


_current = RunControl()


def current() -> RunControl:
    """The control of the flow run this process is running."""
    return _current


def start_run() -> RunControl:
    """A fresh control for a new flow run (a process may run several, e.g. in tests)."""
    global _current
    _current = RunControl()
    return _current
