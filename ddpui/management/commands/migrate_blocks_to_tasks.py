"""Moves orgs from persisted operation blocks to tasks, one phase at a time (runbook: docs/migration.md).

manage.py migrate_blocks_to_tasks --phase 1|2|3 (--org SLUG | --all) [--dry-run] [--confirm]
manage.py migrate_blocks_to_tasks --switch-entrypoint | --rollback-entrypoint (--org SLUG | --all) [--dry-run]
"""

from django.core.management.base import BaseCommand, CommandError

from ddpui.block_migration.planner import PHASE_1, PHASE_2, PHASE_3, PHASE_ROLLBACK, PHASE_SWITCH
from ddpui.block_migration.runner import migration_run_org, orgs_for_migration
from ddpui.errors import DomainError

TITLES = {
    PHASE_1: "phase 1 (Airbyte server block, manual syncs)",
    PHASE_2: "phase 2 (dbt profile, transform tasks, manual dbt and orchestrate pipelines)",
    PHASE_SWITCH: "entrypoint switch (to the pipeline flow)",
    PHASE_ROLLBACK: "entrypoint rollback (to the legacy flow)",
    PHASE_3: "phase 3 (cleanup of the legacy blocks and rows)",
}
STATUS_TEXT = {
    "changed": "migrated",
    "planned": "would change",
    "unchanged": "nothing to do",
    "failed": "FAILED",
    "blocked": "BLOCKED",
}


class Command(BaseCommand):
    help = "Migrate orgs from persisted Prefect operation blocks to tasks, phase by phase (see docs/migration.md)."

    def add_arguments(self, parser):
        step = parser.add_mutually_exclusive_group(required=True)
        step.add_argument("--phase", choices=[PHASE_1, PHASE_2, PHASE_3], help="the phase to run")
        step.add_argument(
            "--switch-entrypoint",
            action="store_true",
            help="point the migrated deployments at the pipeline flow (needs phase 2 and a clean verification)",
        )
        step.add_argument(
            "--rollback-entrypoint",
            action="store_true",
            help="point the migrated deployments back at the legacy flow (possible until phase 3)",
        )
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--org", metavar="SLUG", help="one org")
        which.add_argument("--all", action="store_true", help="every org that still has legacy rows")
        parser.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
        parser.add_argument("--confirm", action="store_true", help="needed by phase 3, which deletes blocks")

    def handle(self, *args, **options):
        if options["switch_entrypoint"]:
            phase = PHASE_SWITCH
        elif options["rollback_entrypoint"]:
            phase = PHASE_ROLLBACK
        else:
            phase = options["phase"]
        dry_run = options["dry_run"]
        if phase == PHASE_3 and not dry_run and not options["confirm"]:
            raise CommandError(
                "phase 3 deletes the legacy blocks from Prefect, which cannot be undone: "
                "look at the plan with --dry-run, then run again with --confirm"
            )
        try:
            orgs = orgs_for_migration(slug=options["org"])
        except DomainError as error:
            raise CommandError(error.message) from error
        mode = " (dry run: nothing is changed)" if dry_run else ""
        self.stdout.write(f"migrate_blocks_to_tasks: {TITLES[phase]}{mode}, {len(orgs)} org(s)")
        outcomes = []
        for number, org in enumerate(orgs, start=1):
            self.stdout.write(f"[{number}/{len(orgs)}] {org.slug}")
            outcome = migration_run_org(org=org, phase=phase, dry_run=dry_run, report=self._progress)
            outcomes.append(outcome)
            self.stdout.write(f"  {self._line(outcome)}")
        self.stdout.write("summary:")
        width = max((len(outcome.org.slug) for outcome in outcomes), default=0)
        for outcome in outcomes:
            self.stdout.write(f"  {outcome.org.slug.ljust(width)}  {self._line(outcome)}")
        if not outcomes:
            self.stdout.write("  no org has legacy rows: nothing to do")
        bad = [outcome for outcome in outcomes if outcome.status in ("failed", "blocked")]
        if bad:
            raise CommandError(
                f"{sum(o.status == 'failed' for o in bad)} org(s) failed, {sum(o.status == 'blocked' for o in bad)} "
                "blocked: see above; the other orgs are done"
            )
        if outcomes and all(outcome.status == "unchanged" for outcome in outcomes):
            self.stdout.write("nothing to do: every org is already through this step")

    def _progress(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    @staticmethod
    def _line(outcome) -> str:
        text = STATUS_TEXT[outcome.status]
        if outcome.changes:
            text += f", {len(outcome.changes)} change(s)"
        if outcome.message:
            text += f": {outcome.message}"
        return text
