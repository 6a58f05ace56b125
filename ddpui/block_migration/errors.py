"""Why an org cannot be migrated, or not now."""

from __future__ import annotations

from ddpui.errors import Conflict, DomainError


class MigrationProblem(DomainError):
    """The legacy data of an org cannot be migrated as it is (the message says what to fix)."""


class MissingBlock(MigrationProblem):
    """A legacy block that a deployment names is not in Prefect (deleted, or never saved)."""


class MigrationBlocked(Conflict):
    """The org cannot go through this phase now (a held block lock, an earlier phase not done, differences)."""
