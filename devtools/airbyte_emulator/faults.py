"""Injected failures of the emulator's HTTP API: the hiccups a real Airbyte has (test double only).

Three controls, set like the others (``POST /_emulator/config`` or ``EmulatorServer.configure``):

- ``faults``: a list; each of the next API requests (those whose route is in ``fault_routes``, or any
  route when it is empty) takes the first entry off the list and fails with it: an HTTP status 500-599
  (answered without handling the request), ``"reset"`` (the connection is dropped without an answer and
  the request not handled) or ``"lost"`` (the request is handled, then the connection is dropped: the
  caller cannot know that it worked — e.g. a sync that did start).
- ``fault_routes``: routes below ``/api/v1/`` without slashes at the ends (``"jobs/get"``,
  ``"connections/sync"``); empty means every route.
- ``restart_seconds``: from now on, for that many seconds, every request (``/health`` included) is
  dropped without an answer, as while Airbyte restarts; jobs keep running. ``0`` ends it early.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

FAULT_CONTROLS = ("faults", "fault_routes", "restart_seconds")
DROP = "reset"
LOST = "lost"


class FaultError(ValueError):
    pass


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[int | str] = []
        self._routes: list[str] = []
        self._restart_until = 0.0
        self._restart_seconds = 0.0

    def reset(self) -> None:
        with self._lock:
            self._pending, self._routes, self._restart_until, self._restart_seconds = [], [], 0.0, 0.0

    def configure(self, **controls: Any) -> dict[str, Any]:
        with self._lock:
            if "faults" in controls:
                faults = controls["faults"]
                if not isinstance(faults, list) or not all(_valid_fault(fault) for fault in faults):
                    raise FaultError('faults must be a list of HTTP statuses 500-599, "reset" or "lost"')
                self._pending = list(faults)
            if "fault_routes" in controls:
                routes = controls["fault_routes"]
                if not isinstance(routes, list) or not all(isinstance(route, str) for route in routes):
                    raise FaultError("fault_routes must be a list of routes such as 'jobs/get'")
                self._routes = [route.strip("/") for route in routes]
            if "restart_seconds" in controls:
                seconds = controls["restart_seconds"]
                if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
                    raise FaultError("restart_seconds must be a number >= 0")
                self._restart_seconds = float(seconds)
                self._restart_until = time.monotonic() + float(seconds)
            return self._controls()

    def controls(self) -> dict[str, Any]:
        with self._lock:
            return self._controls()

    def _controls(self) -> dict[str, Any]:
        restarting = max(0.0, self._restart_until - time.monotonic())
        return {
            "faults": copy.deepcopy(self._pending),
            "fault_routes": list(self._routes),
            "restart_seconds": round(restarting, 3) if restarting else 0,
        }

    def restarting(self) -> bool:
        with self._lock:
            return time.monotonic() < self._restart_until

    def take(self, route: str) -> int | str | None:
        """The fault the request to `route` (below /api/v1/) fails with, if any."""
        with self._lock:
            if not self._pending or (self._routes and route not in self._routes):
                return None
            return self._pending.pop(0)


def _valid_fault(fault: Any) -> bool:
    if fault in (DROP, LOST):
        return True
    return isinstance(fault, int) and not isinstance(fault, bool) and 500 <= fault <= 599
