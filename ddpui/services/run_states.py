"""What a flow run's state means — decided here, once: our record of the run, its task locks (taken by a
run we did not trigger, released at its end), the audit rows, and the events people are told about.

The trigger, API reads of runs, the webhook and the reconciler all report what Prefect says through
`run_state_observe` / `run_state_apply`; it is idempotent and ignores reports older than what we already
know, so duplicate and out-of-order deliveries change nothing wrongly, and an alert (failed, tests failed,
late) is raised exactly once per run whoever saw the state first: claimed on the run's record and written
with its deliveries in the same transaction, sent after it commits (services/alerts). The syncs a run
completed move their connections' last successful sync (services/alerts/freshness.py). Locks are taken
through `locks_acquire_or_heal`, which first repairs locks held by runs Prefect says are over (a lost
notification) before refusing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_datetime

from ddpcontract import proxy_api as api

# the state names and their order are the contract's; re-exported here for the services that import them
from ddpcontract.states import LIVE_STATES as LIVE_STATES
from ddpcontract.states import TERMINAL_STATES as TERMINAL_STATES
from ddpcontract.states import StateType, state_rank
from ddpcontract.states import is_terminal as is_terminal
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.locks import TaskLock
from ddpui.models.org import DbtTarget, Org, OrgUser
from ddpui.models.tasks import OrgTask
from ddpui.prefect_client import ProxyError, ProxyNotFound, ProxyUnavailable, get_proxy
from ddpui.services import locks
from ddpui.services.alerts.freshness import freshness_record_run
from ddpui.services.alerts.raising import run_alerts_due, run_alerts_raise
from ddpui.services.audit import AuditAction, audit_record

logger = logging.getLogger(__name__)


def _when(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_datetime(str(value))


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


@dataclass
class Observation:
    record: PrefectFlowRun
    changed: bool
    outcome: str = ""  # what the scheduled-run lock rule did, if anything


def _reported(run: api.FlowRun | Mapping[str, Any]) -> dict[str, Any]:
    """A report of a run as a dict: the proxy's FlowRun, or the fields a caller knows (a run it just created)."""
    return run.model_dump() if isinstance(run, api.FlowRun) else dict(run)


def _dataflow_target_name(deployment_id: str) -> str:
    name = OrgDataFlowv1.objects.filter(deployment_id=deployment_id).values_list("target__name", flat=True).first()
    return name or ""


def _record(*, org: Org | None, run: api.FlowRun | Mapping[str, Any]) -> tuple[PrefectFlowRun, bool]:
    """Records the report in one transaction: the run's row, lock release at its end, audit, alerts, freshness.
    A run's first report inserts its row once, complete; when another report of the same run inserted it first
    (the unique flow_run_id refuses the second row), this one is applied again, to that row."""
    try:
        return _record_once(org=org, run=run)
    except IntegrityError:
        return _record_once(org=org, run=run)


def _record_once(*, org: Org | None, run: api.FlowRun | Mapping[str, Any]) -> tuple[PrefectFlowRun, bool]:
    run = _reported(run)
    flow_run_id = str(run["flow_run_id"])
    state_type = (run.get("state_type") or "").upper()
    with transaction.atomic():
        record = PrefectFlowRun.objects.select_for_update().filter(flow_run_id=flow_run_id).first()
        created = record is None
        if created:
            deployment_id = str(run.get("deployment_id") or "") or None
            record = PrefectFlowRun(
                flow_run_id=flow_run_id,
                org=org,
                deployment_id=deployment_id,
                # a run of a deployment (e.g. a scheduled one) ran on its dataflow's target
                target_name=_dataflow_target_name(deployment_id) if deployment_id else "",
            )
        already_terminal = is_terminal(record.state_type)
        changed = created
        if (
            created
            or state_rank(state_type) > state_rank(record.state_type)
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
        elif already_terminal and run.get("task_results") and not record.task_results:
            # a terminal report may come before the run's results artifact is readable
            record.task_results = run["task_results"]
            changed = True
        # the run's alerts not raised yet: claimed on the record, raised (and sent after the commit) below
        events = run_alerts_due(record)
        if events:
            record.notified_events = [*(record.notified_events or []), *(event.value for event in events)]
            changed = True
        if changed:
            record.save(force_insert=created)  # a new row: one INSERT, no UPDATE after it
            if is_terminal(record.state_type) and record.task_results:
                freshness_record_run(record)
        run_alerts_raise(record, events)
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


def run_read(*, flow_run_id: str, have_results: bool = False) -> api.FlowRun:
    """Prefect's view of a run (ProxyNotFound when it has none). Its task results are asked for only once the
    run has finished and the caller does not have them yet: they cost the proxy one more Prefect call, which the
    frequent reads of an unfinished run (the web app polls every few seconds) need not pay."""
    flow_run = get_proxy().flow_run(flow_run_id)
    run = flow_run.state()
    if not have_results and is_terminal(run.state_type):
        run = flow_run.state(include_task_results=True)
    return run


def run_state_forget(*, flow_run_id: str) -> int:
    """The run no longer exists in Prefect: its locks go, and a live record of it ends as Deleted."""
    with transaction.atomic():
        released = locks.locks_release_for_run(flow_run_id=flow_run_id)
        PrefectFlowRun.objects.filter(flow_run_id=flow_run_id, state_type__in=LIVE_STATES).update(
            state_type=StateType.CANCELLED, state_name="Deleted", state_message="the run no longer exists in Prefect"
        )
    return released


def runs_refresh(*, flow_run_ids: list[str]) -> dict[str, PrefectFlowRun | None]:
    """Reads these runs from Prefect in one batch and records what it says; a run Prefect no longer knows
    is forgotten (None). Returns flow run id -> its record."""
    flow_run_ids = sorted(set(flow_run_ids))
    if not flow_run_ids:
        return {}
    found: dict[str, api.FlowRun] = {}
    known = [flow_run_id for flow_run_id in flow_run_ids if _is_uuid(flow_run_id)]  # Prefect's ids are UUIDs
    for start in range(0, len(known), 200):
        chunk = known[start : start + 200]
        for run in get_proxy().flow_runs.filter(
            flow_run_ids=chunk, include_future=True, include_task_results=True, limit=200
        ):
            found[run.flow_run_id] = run
    orgs = dict(PrefectFlowRun.objects.filter(flow_run_id__in=flow_run_ids).values_list("flow_run_id", "org_id"))
    org_by_id = Org.objects.in_bulk({org_id for org_id in orgs.values() if org_id})
    refreshed: dict[str, PrefectFlowRun | None] = {}
    for flow_run_id in flow_run_ids:
        run = found.get(flow_run_id)
        if run is None:
            run_state_forget(flow_run_id=flow_run_id)
            refreshed[flow_run_id] = None
        else:
            refreshed[flow_run_id] = run_state_apply(org=org_by_id.get(orgs.get(flow_run_id)), run=run)[0]
    return refreshed


def locks_acquire_or_heal(
    *,
    orgtasks: list[OrgTask],
    target: DbtTarget | None = None,
    flow_run_id: str | None = None,
    locked_by: OrgUser | None = None,
    dataflow: OrgDataFlowv1 | None = None,
) -> list[TaskLock]:
    """`locks.locks_acquire`, except that a conflict with runs Prefect says are over (or no longer has) —
    their end notification was lost — is repaired on the spot and the locks taken. Raises TaskLocked when a
    live run holds them (or a run that is still starting)."""
    acquire = {
        "orgtasks": orgtasks,
        "target": target,
        "flow_run_id": flow_run_id,
        "locked_by": locked_by,
        "dataflow": dataflow,
    }
    try:
        return locks.locks_acquire(**acquire)
    except locks.TaskLocked as conflict:
        holder_runs = sorted({lock.flow_run_id for lock in conflict.holders if lock.flow_run_id})
        if not holder_runs:
            raise
        try:
            refreshed = runs_refresh(flow_run_ids=holder_runs)
        except (ProxyError, ProxyUnavailable):  # Prefect cannot be asked: nothing is released on a guess
            raise conflict from None
        if all(record is not None and not is_terminal(record.state_type) for record in refreshed.values()):
            raise
        logger.info("released locks of finished run(s) %s whose end was not notified", holder_runs)
    return locks.locks_acquire(**acquire)


def _lock_live_run(*, dataflow: OrgDataFlowv1, run: dict) -> tuple[api.FlowRun | dict, str]:
    """A live run we did not trigger (a scheduled one) takes its dataflow's locks, or is cancelled when
    they are held by another live run. Returns the run as it now is, and what was done."""
    from ddpui.services.pipelines import dataflow_orgtasks  # pipelines imports this module

    flow_run_id = str(run["flow_run_id"])
    if TaskLock.objects.filter(flow_run_id=flow_run_id).exists():
        return run, ""
    with transaction.atomic():
        # our own trigger holds the locks without a run id for a moment: that run is this one
        starting = list(
            TaskLock.objects.select_for_update().filter(locking_dataflow=dataflow, flow_run_id__isnull=True)
        )
        if starting:
            locks.locks_attach_run(locks=starting, flow_run_id=flow_run_id)
            return run, "attached to the trigger's locks"
    orgtasks = dataflow_orgtasks(dataflow)
    try:
        locks_acquire_or_heal(orgtasks=orgtasks, target=dataflow.target, flow_run_id=flow_run_id, dataflow=dataflow)
    except locks.TaskLocked as exc:
        message = f"cancelled: it would overlap a running task ({exc.message})"
        try:
            get_proxy().flow_run(flow_run_id).cancel()
            run = {**run, "state_type": StateType.CANCELLING, "state_name": "Cancelling", "state_message": message}
        except ProxyError:  # it ended before we could cancel it: record how it ended
            try:
                run = get_proxy().flow_run(flow_run_id).state()
            except ProxyNotFound:
                run_state_forget(flow_run_id=flow_run_id)
            return run, "ended before it could be cancelled for overlapping a running task"
        audit_record(
            org=dataflow.org,
            action=AuditAction.RUN_CANCELLED_OVERLAP,
            object_type="flow_run",
            object_id=flow_run_id,
            actor="system",
            details={"pipeline": dataflow.name, "holders": [lock.flow_run_id for lock in exc.holders]},
        )
        return run, message
    audit_record(
        org=dataflow.org,
        action=AuditAction.LOCKS_TAKEN,
        object_type="flow_run",
        object_id=flow_run_id,
        actor=f"run {flow_run_id}",
        details={"pipeline": dataflow.name, "count": len(orgtasks)},
    )
    return run, "locked for the scheduled run"


def run_state_observe(
    *, org: Org | None, run: api.FlowRun | Mapping[str, Any], dataflow: OrgDataFlowv1 | None = None
) -> Observation:
    """Applies what Prefect reports for one run, with everything it implies. `dataflow` is the run's
    pipeline when the caller already has it (looked up by the run's deployment otherwise)."""
    run = _reported(run)
    state_type = (run.get("state_type") or "").upper()
    outcome = ""
    if state_type in LIVE_STATES - {StateType.SCHEDULED}:
        deployment_id = str(run.get("deployment_id") or "")
        if dataflow is None and deployment_id:
            dataflow = OrgDataFlowv1.objects.select_related("org", "target").filter(deployment_id=deployment_id).first()
        previous = (
            PrefectFlowRun.objects.filter(flow_run_id=str(run["flow_run_id"]))
            .values_list("state_type", flat=True)
            .first()
        )
        if dataflow is not None and not is_terminal(previous):
            run, outcome = _lock_live_run(dataflow=dataflow, run=run)
    record, changed = _record(org=org, run=run)
    return Observation(record=record, changed=changed, outcome=outcome)


def run_state_apply(*, org: Org | None, run: api.FlowRun | Mapping[str, Any]) -> tuple[PrefectFlowRun, bool]:
    """Records what the proxy reports for one run (see run_state_observe). Returns (record, changed)."""
    observation = run_state_observe(org=org, run=run)
    return observation.record, observation.changed
