"""What a flow run's state means for our records and locks — decided here, once.

The trigger, run reads, the webhook and the reconciler all report what Prefect says through
`run_state_apply`; it is idempotent and ignores reports older than what we already know, so duplicate
and out-of-order deliveries change nothing wrongly.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils.dateparse import parse_datetime

from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.org import Org
from ddpui.services import locks
from ddpui.services.audit import AuditAction, audit_record

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
LIVE_STATES = frozenset({"SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED"})
# a state can only move forward along this rank; a report of a lower rank is a late arrival
_RANK = {"SCHEDULED": 0, "PAUSED": 1, "PENDING": 1, "RUNNING": 2, "CANCELLING": 3}


def _rank(state_type: str) -> int:
    return 10 if state_type in TERMINAL_STATES else _RANK.get(state_type, 0)


def _when(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_datetime(str(value))


def is_terminal(state_type: str | None) -> bool:
    return (state_type or "").upper() in TERMINAL_STATES


def run_state_apply(*, org: Org | None, run: dict) -> tuple[PrefectFlowRun, bool]:
    """Records what the proxy reports for one run. Returns (record, changed). Releases the run's locks
    on a terminal state."""
    flow_run_id = str(run["flow_run_id"])
    state_type = (run.get("state_type") or "").upper()
    with transaction.atomic():
        record, created = PrefectFlowRun.objects.select_for_update().get_or_create(
            flow_run_id=flow_run_id,
            defaults={"org": org, "deployment_id": str(run.get("deployment_id") or "") or None},
        )
        already_terminal = is_terminal(record.state_type)
        changed = created
        if (
            created
            or _rank(state_type) > _rank(record.state_type)
            or (state_type == record.state_type and not already_terminal)
        ):
            fields = {
                "name": run.get("name") or record.name,
                "state_type": state_type,
                "state_name": run.get("state_name") or record.state_name,
                "state_message": (run.get("state_message") or "")[:2000],
                "expected_start_time": _when(run.get("expected_start_time")) or record.expected_start_time,
                "start_time": _when(run.get("start_time")) or record.start_time,
                "end_time": _when(run.get("end_time")) or record.end_time,
                "total_run_time": run.get("total_run_time") or record.total_run_time or 0,
            }
            if run.get("task_results") is not None:
                fields["task_results"] = run["task_results"]
            if org is not None and record.org_id is None:
                fields["org"] = org
            for key, value in fields.items():
                if getattr(record, key) != value:
                    setattr(record, key, value)
                    changed = True
            if changed:
                record.save()
        elif already_terminal and run.get("task_results") and not record.task_results:
            # a terminal report may come before the run's results artifact is readable
            record.task_results = run["task_results"]
            record.save(update_fields=["task_results", "updated_at"])
            changed = True
        released = 0
        if is_terminal(record.state_type):
            released = locks.locks_release_for_run(flow_run_id=flow_run_id)
        if released:
            audit_record(
                org=record.org,
                action=AuditAction.LOCKS_RELEASED,
                object_type="flow_run",
                object_id=flow_run_id,
                actor=f"run {flow_run_id}",
                details={"count": released, "state": record.state_name or record.state_type},
            )
    return record, changed
