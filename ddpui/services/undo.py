"""The one way services undo external steps (Airbyte objects, Prefect blocks and deployments, files) when a
later step of the same operation fails.

    with UndoStack("creating the warehouse of acme") as undo:
        destination = airbyte.destination_create(...)
        undo.push("Airbyte destination", lambda: delete_destination(destination["destinationId"]))
        with transaction.atomic():
            ...                                   # rows last: a failure rolls them back, then the stack unwinds

Each external step registers its undo as soon as it has succeeded; on an exception the undos run newest
first, a failing undo is logged (never with secrets) and the original error is what the caller sees.

A caller that must report what could not be undone (the block migration, which goes on with the next org)
unwinds the stack itself: `failures = undo.unwind()`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


class UndoStack:
    def __init__(self, operation: str):
        self.operation = operation
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, description: str, undo: Callable[[], object]) -> None:
        self._steps.append((description, undo))

    def __enter__(self) -> UndoStack:
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if exc_type is not None:
            self.unwind()
        return False

    def unwind(self) -> list[str]:
        """Runs the undos newest first, each once, and empties the stack; returns what could not be undone
        (each also logged), never raising."""
        failures = []
        while self._steps:
            description, undo = self._steps.pop()
            try:
                undo()
            except Exception as error:  # noqa: BLE001 - keep undoing the other steps
                logger.error(
                    "%s failed and undoing '%s' failed too (%s): clean it up by hand",
                    self.operation,
                    description,
                    error.__class__.__name__,
                )
                failures.append(f"could not undo '{description}' ({error.__class__.__name__}): fix it by hand")
        return failures
