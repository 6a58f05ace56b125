"""What a flow run's state means for our records and locks — decided here, once.

The trigger, run reads, the webhook and the reconciler all report what Prefect says through
`run_state_apply`; it is idempotent and ignores reports older than what we already know, so duplicate
and out-of-order deliveries change nothing wrongly.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils.dateparse import parse_datetime

# the state names and their order are the contract's; re-exported here for the services that import them
from ddpcontract.states import LIVE_STATES as LIVE_STATES
from ddpcontract.states import TERMINAL_STATES as TERMINAL_STATES
from ddpcontract.states import is_terminal as is_terminal
from ddpcontract.states import state_rank as _rank
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.org import Org
from ddpui.services import locks
from ddpui.services.audit import AuditAction, audit_record


def _when(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_datetime(str(value))


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
