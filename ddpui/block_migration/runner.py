"""Running a phase for one org: plan it, then (unless a dry run) apply it all or nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q

from ddpui.block_migration.errors import MigrationBlocked
from ddpui.block_migration.legacy import LegacyOrg
from ddpui.block_migration.planner import PHASE_ROLLBACK, planner_for
from ddpui.errors import DomainError, InvalidInput
from ddpui.models.org import Org
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.undo import UndoStack


@dataclass
class OrgOutcome:
    org: Org
    status: str  # changed | unchanged | planned | failed | blocked
    changes: list[str]
    message: str = ""


def orgs_for_migration(*, slug: str | None) -> list[Org]:
    """The named org, or every org that still has legacy rows."""
    if slug is not None:
        org = Org.objects.filter(slug=slug).first()
        if org is None:
            raise InvalidInput(f"no org with slug '{slug}'")
        return [org]
    with_legacy = Q(legacy_blocks__isnull=False) | Q(legacy_dataflows__isnull=False)
    return list(Org.objects.filter(with_legacy).distinct().order_by("slug"))


def migration_run_org(*, org: Org, phase: str, dry_run: bool, report: Callable[[str], None]) -> OrgOutcome:
    """Plans the phase for one org and, unless dry_run, applies it all or nothing."""
    try:
        legacy_org = LegacyOrg(org)
        planner = planner_for(phase, legacy_org)
        if not legacy_org.has_legacy_rows:
            if phase == PHASE_ROLLBACK:
                return OrgOutcome(
                    org,
                    "unchanged",
                    [],
                    "no legacy rows left: the cleanup is done, there is no legacy flow to go back to",
                )
            return OrgOutcome(org, "unchanged", [], "no legacy rows left")
        planner.check()
        changes = planner.plan()
    except MigrationBlocked as error:
        return OrgOutcome(org, "blocked", [], error.message)
    except DomainError as error:
        return OrgOutcome(org, "failed", [], f"{error.message} (nothing was changed)")
    except Exception as error:  # noqa: BLE001 - a bug or an unexpected answer: this org stops, the others go on
        return OrgOutcome(org, "failed", [], f"{type(error).__name__}: {error} (nothing was changed)")
    if not changes:
        return OrgOutcome(org, "unchanged", [])
    if dry_run:
        for change in changes:
            report(f"  would {change.description}")
        return OrgOutcome(org, "planned", [change.description for change in changes])
    undo = UndoStack(f"migrating {org.slug} ({phase})")
    done: list[str] = []
    try:
        with transaction.atomic():
            for change in changes:
                change.apply(undo)
                done.append(change.description)
                report(f"  done: {change.description}")
            audit_record(
                org=org,
                action=AuditAction(f"migration.{phase}"),
                object_type="org",
                object_id=org.slug,
                actor="migrate_blocks_to_tasks",
                details={"changes": len(done)},
            )
    except Exception as error:  # noqa: BLE001 - whatever failed, this org is put back and the next one goes on
        failures = undo.unwind()
        message = error.message if isinstance(error, DomainError) else f"{type(error).__name__}: {error}"
        restored = "rolled back: Django and Prefect are as before" if not failures else "; ".join(failures)
        return OrgOutcome(org, "failed", [], f"{message} ({restored})")
    return OrgOutcome(org, "changed", done)
