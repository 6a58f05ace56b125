"""The lock reconciler: nothing stays locked forever. Idempotent; safe beside the webhook."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.locks import TaskLock
from ddpui.models.org import Org
from ddpui.prefect_client import ProxyNotFound, get_proxy
from ddpui.services import locks
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.run_states import LIVE_STATES, run_state_apply


def locks_reconcile(*, grace_seconds: int = 300) -> list[str]:
    """Releases locks whose run is terminal or unknown to Prefect, and run-less locks older than the
    grace period; refreshes run records that are still live in our books. Returns what it did."""
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
    proxy = get_proxy()
    for flow_run_id in sorted(run_ids):
        org = PrefectFlowRun.objects.filter(flow_run_id=flow_run_id).values_list("org", flat=True).first()
        try:
            run = proxy.flow_run(flow_run_id).state()
        except ProxyNotFound:
            released = locks.locks_release_for_run(flow_run_id=flow_run_id)
            PrefectFlowRun.objects.filter(flow_run_id=flow_run_id, state_type__in=LIVE_STATES).update(
                state_type="CANCELLED", state_name="Deleted", state_message="the run no longer exists in Prefect"
            )
            done.append(f"run {flow_run_id} is unknown to Prefect: released {released} lock(s)")
            continue
        held_before = TaskLock.objects.filter(flow_run_id=flow_run_id).count()
        record, changed = run_state_apply(org=Org.objects.filter(id=org).first() if org else None, run=run)
        held_after = TaskLock.objects.filter(flow_run_id=flow_run_id).count()
        if changed or held_before != held_after:
            done.append(
                f"run {flow_run_id} is {record.state_name or record.state_type}: "
                f"released {held_before - held_after} lock(s)"
            )
    return done
