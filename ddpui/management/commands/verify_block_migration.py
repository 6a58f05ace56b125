"""Compares, for every legacy deployment, what the old blocks run with what the new tasks run.

    manage.py verify_block_migration (--org SLUG | --all)

Same connections, same dbt commands, same order, same schedule; every difference is listed and the command
exits non-zero when there is one (docs/migration.md).
"""

from django.core.management.base import BaseCommand, CommandError

from ddpui.block_migration.legacy import LegacyOrg
from ddpui.block_migration.runner import orgs_for_migration
from ddpui.block_migration.verification import verify_org
from ddpui.errors import DomainError


class Command(BaseCommand):
    help = "Compare each legacy deployment's blocks with its new tasks; exit non-zero on any difference."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--org", metavar="SLUG", help="one org")
        which.add_argument("--all", action="store_true", help="every org that still has legacy rows")

    def handle(self, *args, **options):
        try:
            orgs = orgs_for_migration(slug=options["org"])
        except DomainError as error:
            raise CommandError(error.message) from error
        total = 0
        for org in orgs:
            try:
                legacy_org = LegacyOrg(org)
            except DomainError as error:
                self.stdout.write(f"org {org.slug}: cannot be read: {error.message}")
                total += 1
                continue
            if not legacy_org.deployments:
                self.stdout.write(f"org {org.slug}: no legacy deployments (cleaned up or never had any)")
                continue
            report = verify_org(legacy_org)
            self.stdout.write(f"org {org.slug}: {len(report.deployments)} deployment(s)")
            for check in report.deployments:
                status = "DIFF" if check.differences else "ok  "
                summary = f": {check.summary}" if check.summary and not check.differences else ""
                self.stdout.write(f"  {status} '{check.name}' (deployment {check.deployment_id}){summary}")
                for difference in check.differences:
                    self.stdout.write(f"       - {difference}")
            for problem in report.problems:
                self.stdout.write(f"  DIFF {problem}")
            total += report.difference_count
        if not orgs:
            self.stdout.write("no org has legacy rows: nothing to verify")
        if total:
            raise CommandError(f"verify_block_migration: {total} difference(s)")
        self.stdout.write("verify_block_migration: no differences")
