"""The lock reconciler: nothing stays locked forever. Idempotent; safe beside the webhook.

Each pass of the loop also runs the alert checks (services/alerts): missed runs, stale connections and the
alert deliveries due for another attempt."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import timedelta

from django.db import close_old_connections
from django.utils import timezone

from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.locks import TaskLock
from ddpui.services import locks
from ddpui.services.alerts import alerts_check
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.run_states import LIVE_STATES, runs_refresh

logger = logging.getLogger(__name__)


def locks_reconcile(*, grace_seconds: int = 300) -> list[str]:
    """Releases locks whose run is terminal or unknown to Prefect, and run-less locks older than the
    grace period; refreshes run records that are still live in our books. Returns what it did.

    Cheap enough to run every minute: with nothing locked or live it makes three queries and no proxy call;
    otherwise one batch read of all those runs through the proxy."""
    done: list[str] = []
    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    orphans = list(
        TaskLock.objects.filter(flow_run_id__isnull=True, locked_at__lt=cutoff).select_related("orgtask__org")
    )
    if orphans:
        locks.locks_release(locks=orphans)
        for lock in orphans:
            audit_record(
                org=lock.orgtask.org,
                action=AuditAction.LOCKS_RELEASED,
                object_type="orgtask",
                object_id=str(lock.orgtask.uuid),
                actor="reconciler",
                details={"reason": "no flow run"},
            )
        done.append(f"released {len(orphans)} lock(s) that never got a flow run (older than {grace_seconds}s)")

    run_ids = set(TaskLock.objects.exclude(flow_run_id__isnull=True).values_list("flow_run_id", flat=True))
    run_ids |= set(PrefectFlowRun.objects.filter(state_type__in=LIVE_STATES).values_list("flow_run_id", flat=True))
    if not run_ids:
        return done  # nothing locked or live: no call to the proxy at all
    held_before = Counter(TaskLock.objects.filter(flow_run_id__in=run_ids).values_list("flow_run_id", flat=True))
    states_before = dict(
        PrefectFlowRun.objects.filter(flow_run_id__in=run_ids).values_list("flow_run_id", "state_type")
    )
    refreshed = runs_refresh(flow_run_ids=sorted(run_ids))  # one proxy call per 200 runs
    held_after = Counter(TaskLock.objects.filter(flow_run_id__in=run_ids).values_list("flow_run_id", flat=True))
    for flow_run_id, record in refreshed.items():
        released = held_before[flow_run_id] - held_after[flow_run_id]
        if record is None:
            done.append(f"run {flow_run_id} is unknown to Prefect: released {released} lock(s)")
        elif released or record.state_type != states_before.get(flow_run_id):
            done.append(f"run {flow_run_id} is {record.state_name or record.state_type}: released {released} lock(s)")
    return done


def reconcile_every(*, seconds: float, stop: threading.Event, grace_seconds: int = 300, report=None) -> None:
    """Reconciles every `seconds` until `stop` is set. A pass that fails (Prefect or the database away for a
    moment) is logged and the next one runs as planned. `report(line)` receives what each pass did."""
    while not stop.is_set():
        close_old_connections()
        done: list[str] = []
        try:
            done += locks_reconcile(grace_seconds=grace_seconds)
        except Exception as exc:  # noqa: BLE001 - keep the loop alive; the next pass repairs what this one could not
            logger.warning("lock reconciliation failed (%s: %s); next pass in %g s", type(exc).__name__, exc, seconds)
        done += alerts_check()  # catches its own failures: alerts never stop the locks' repair, nor the reverse
        for line in done:
            if report is not None:
                report(line)
        stop.wait(seconds)
    close_old_connections()
