"""Releases task locks whose runs are over or unknown; safe to run at any time (e.g. every 5 minutes)."""

from django.core.management.base import BaseCommand, CommandError

from ddpui.errors import DomainError
from ddpui.services.reconcile import locks_reconcile


class Command(BaseCommand):
    help = "Release locks of terminal/unknown runs and stale run-less locks; refresh live run records."

    def add_arguments(self, parser):
        parser.add_argument(
            "--grace-seconds", type=int, default=300, help="age after which a lock without a run is stale"
        )

    def handle(self, *args, **options):
        try:
            done = locks_reconcile(grace_seconds=options["grace_seconds"])
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        for line in done:
            self.stdout.write(line)
        self.stdout.write(f"reconcile_locks: {len(done)} change(s)" if done else "reconcile_locks: nothing to do")
