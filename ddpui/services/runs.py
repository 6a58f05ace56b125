"""Flow runs: starting one (a pipeline's, a manual dataflow's or a single task's — one function for all), and
reading them as the API sees them: state, logs, history, cancel — always through the caller's org."""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass

from django.db import transaction

from ddpcontract import proxy_api as api
from ddpcontract.states import StateType
from ddpui.errors import NotFound
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.org import DbtTarget, Org, OrgUser
from ddpui.models.tasks import OrgTask
from ddpui.prefect_client import ProxyNotFound, get_proxy
from ddpui.services import locks
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.run_logs import ended_run_log_lines
from ddpui.services.run_states import is_terminal, locks_acquire_or_heal, run_read, run_state_apply
from ddpui.services.selectors import dataflow_get


@dataclass(frozen=True)
class LogPage:
    """One page of a run's logs, oldest first; `next_offset` is None once the run is over and all was read."""

    lines: list[api.LogLine]
    offset: int
    next_offset: int | None


def run_start(
    *,
    org: Org,
    orguser: OrgUser | None,
    orgtasks: list[OrgTask],
    dataflow: OrgDataFlowv1 | None = None,
    adhoc_task: dict | None = None,
    parameters: dict | None = None,
    target: DbtTarget | None = None,
) -> PrefectFlowRun:
    """Starts a run: of `dataflow`'s deployment (a pipeline, a connection's sync, a task's own deployment),
    or — without a dataflow — of the single task `adhoc_task` (its task config) through the proxy's ad-hoc
    route. Its git and dbt tasks run on `target` (by default the dataflow's, else the default target). The locks
    of every org task in `orgtasks` on that target are taken first, all or none (TaskLocked, a 409, naming the
    holders; locks of runs that are over are healed first); if the run cannot be created they are released. The
    run is recorded as scheduled, with its target, and the audit row written in one transaction with the locks'
    run id."""
    if (dataflow is None) == (adhoc_task is None):
        raise ValueError("run_start needs a dataflow or an ad-hoc task, not both")
    if target is None and dataflow is not None:
        target = dataflow.target
    if target is None and any(locks.is_targeted(task) for task in orgtasks):
        target = DbtTarget.objects.filter(dbt__org=org, is_default=True).first()
    held = locks_acquire_or_heal(orgtasks=orgtasks, target=target, locked_by=orguser, dataflow=dataflow)
    try:
        if dataflow is not None:
            run = get_proxy().deployment(dataflow.deployment_id).create_run(parameters=parameters)
        else:
            run = get_proxy().task_runs.start(org_slug=org.slug, task=adhoc_task)
    except Exception:
        locks.locks_release(locks=held)
        raise
    with transaction.atomic():
        locks.locks_attach_run(locks=held, flow_run_id=run.id)
        record, _ = run_state_apply(
            org=org,
            run={
                "flow_run_id": run.id,
                "name": run.name,
                "deployment_id": dataflow.deployment_id if dataflow is not None else None,
                "state_type": StateType.SCHEDULED,
                "state_name": "Scheduled",
            },
        )
        target_name = target.name if target is not None and any(locks.is_targeted(t) for t in orgtasks) else ""
        if record.target_name != target_name:
            record.target_name = target_name
            record.save(update_fields=["target_name", "updated_at"])
        if dataflow is not None:
            audit_record(
                org=org,
                orguser=orguser,
                action=AuditAction.PIPELINE_RUN_TRIGGERED,
                object_type="pipeline",
                object_id=dataflow.deployment_id,
                details={
                    "flow_run_id": run.id,
                    "name": dataflow.name,
                    "locked_tasks": len(held),
                    "target": target_name or None,
                },
            )
        else:
            audit_record(
                org=org,
                orguser=orguser,
                action=AuditAction.TASK_RUN_TRIGGERED,
                object_type="task",
                object_id=str(orgtasks[0].uuid),
                details={"flow_run_id": run.id, "slug": orgtasks[0].task.slug, "target": target_name or None},
            )
    return record


def _not_found(flow_run_id: str) -> NotFound:
    return NotFound(f"flow run {flow_run_id} not found")


def _fetch_for_org(*, org: Org, flow_run_id: str) -> api.FlowRun:
    """Prefect's view of a run, if the run belongs to the org (by our record, or by its deployment)."""
    try:
        uuid.UUID(str(flow_run_id))
    except ValueError:
        raise _not_found(flow_run_id) from None
    record = PrefectFlowRun.objects.filter(flow_run_id=flow_run_id).only("org_id", "task_results").first()
    if record is not None and record.org_id not in (None, org.id):
        raise _not_found(flow_run_id)
    try:
        run = run_read(flow_run_id=flow_run_id, have_results=bool(record is not None and record.task_results))
    except ProxyNotFound:
        raise _not_found(flow_run_id) from None
    if record is None or record.org_id is None:
        deployment_id = run.deployment_id or ""
        if not deployment_id or not OrgDataFlowv1.objects.filter(org=org, deployment_id=deployment_id).exists():
            raise _not_found(flow_run_id)
    return run


def run_get(*, org: Org, flow_run_id: str) -> PrefectFlowRun:
    run = _fetch_for_org(org=org, flow_run_id=flow_run_id)
    record, _ = run_state_apply(org=org, run=run)
    return record


def run_logs(*, org: Org, flow_run_id: str, offset: int = 0, limit: int | None = None) -> LogPage:
    record = PrefectFlowRun.objects.filter(flow_run_id=flow_run_id, org=org).first()
    if record is None:
        run_get(org=org, flow_run_id=flow_run_id)  # authorizes (404 otherwise) and records the run
    page = get_proxy().flow_run(flow_run_id).logs(offset=offset, limit=limit)
    return LogPage(lines=page.logs, offset=page.offset, next_offset=page.next_offset)


def run_wait(
    *, org: Org, flow_run_id: str, timeout_seconds: float, poll_seconds: float = 0.5, max_log_lines: int = 1000
) -> tuple[PrefectFlowRun, list[api.LogLine]]:
    """Waits (at most `timeout_seconds`) for a run of the org to end, recording each state it is seen in (a
    terminal one releases its locks). Returns the record and, once the run has ended, its log lines (the
    first `max_log_lines`); while it still runs, no lines."""
    deadline = time.monotonic() + max(timeout_seconds, 0)
    while True:
        record, _ = run_state_apply(org=org, run=run_read(flow_run_id=flow_run_id))
        if is_terminal(record.state_type) or time.monotonic() >= deadline:
            break
        time.sleep(min(poll_seconds, max(deadline - time.monotonic(), 0)))
    if not is_terminal(record.state_type):
        return record, []
    # the run's last lines reach Prefect a moment after its final state: read once they are all there
    return record, ended_run_log_lines(flow_run_id, max_lines=max_log_lines)


def run_history(*, org: Org, deployment_id: str, limit: int, offset: int = 0) -> list[PrefectFlowRun]:
    """Our records of a pipeline's runs, newest first; runs not yet finished are refreshed from Prefect."""
    dataflow = dataflow_get(org=org, deployment_id=deployment_id)
    records = list(
        PrefectFlowRun.objects.filter(deployment_id=dataflow.deployment_id).order_by("-created_at")[
            offset : offset + limit
        ]
    )
    refreshed = []
    for record in records:
        if not is_terminal(record.state_type) or not record.task_results:
            with contextlib.suppress(ProxyNotFound):  # deleted in Prefect: keep what we know
                run = run_read(flow_run_id=record.flow_run_id, have_results=bool(record.task_results))
                record, _ = run_state_apply(org=org, run=run)
        refreshed.append(record)
    return refreshed


def run_cancel(*, org: Org, orguser: OrgUser, flow_run_id: str) -> PrefectFlowRun:
    run = _fetch_for_org(org=org, flow_run_id=flow_run_id)
    if not is_terminal(run.state_type):
        get_proxy().flow_run(flow_run_id).cancel()
        run = get_proxy().flow_run(flow_run_id).state()
    with transaction.atomic():
        record, _ = run_state_apply(org=org, run=run)
        audit_record(
            org=org,
            orguser=orguser,
            action=AuditAction.RUN_CANCELLED,
            object_type="flow_run",
            object_id=flow_run_id,
            details={"state": record.state_name or record.state_type},
        )
    return record
