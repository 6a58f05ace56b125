"""A planned change, and the undo log of what applying changes did in Prefect."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class UndoLog:
    """What to do in Prefect to put things back, newest first. Failures are collected, never raised."""

    def __init__(self):
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def add(self, description: str, undo: Callable[[], object]) -> None:
        self._steps.append((description, undo))

    def run(self) -> list[str]:
        failures = []
        for description, undo in reversed(self._steps):
            try:
                undo()
            except Exception as error:  # noqa: BLE001 - keep undoing the others
                failures.append(f"could not undo '{description}' ({type(error).__name__}): fix it by hand")
        return failures


@dataclass
class Change:
    description: str
    apply: Callable[[UndoLog], object]
