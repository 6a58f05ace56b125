"""A planned change: what it does, and how it is applied (registering its undo on the operation's UndoStack)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ddpui.services.undo import UndoStack


@dataclass
class Change:
    description: str
    apply: Callable[[UndoStack], object]
