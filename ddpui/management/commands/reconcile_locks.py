"""Releases task locks whose runs are over or unknown, and records run ends a lost notification missed.

Safe to run at any time. `--every SECONDS` keeps running and reconciles every SECONDS (the local stack and
the documented production layout run it so, every 60 s: Prefect does not deliver a notification again after
a failure, so this loop is what repairs a lost run end within two minutes, without an operator). A pass with
nothing locked or live costs three queries and no call to Prefect. Each pass also runs the alert checks
(missed runs, stale connections, alert deliveries due for a retry: three more queries when nothing is due).
"""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from ddpui.errors import DomainError
from ddpui.services.alerts import alerts_check
from ddpui.services.reconcile import locks_reconcile, reconcile_every


class Command(BaseCommand):
    help = (
        "Release locks of terminal/unknown runs and stale run-less locks; refresh live run records; "
        "raise missed-run and stale-connection alerts and retry alert deliveries."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--grace-seconds", type=int, default=300, help="age after which a lock without a run is stale"
        )
        parser.add_argument(
            "--every",
            type=float,
            default=None,
            metavar="SECONDS",
            help="keep running: one pass every SECONDS (a failing pass is logged and the loop goes on)",
        )

    def _pass(self, grace_seconds: int) -> None:
        done = locks_reconcile(grace_seconds=grace_seconds) + alerts_check()
        for line in done:
            self.stdout.write(line)
        self.stdout.write(f"reconcile_locks: {len(done)} change(s)" if done else "reconcile_locks: nothing to do")

    def handle(self, *args, **options):
        every = options["every"]
        if every is None:
            try:
                self._pass(options["grace_seconds"])
            except DomainError as exc:
                raise CommandError(exc.message) from exc
            return
        if every <= 0:
            raise CommandError("--every must be a positive number of seconds")
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(f"reconcile_locks: one pass every {every:g} s until stopped")
        self.stdout.flush()

        def report(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        reconcile_every(seconds=every, stop=stop, grace_seconds=options["grace_seconds"], report=report)
        self.stdout.write("reconcile_locks: stopped")
