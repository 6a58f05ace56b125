"""Flow runs as the API sees them: state, logs, history, cancel — always through the caller's org."""

from __future__ import annotations

import contextlib
import uuid

from ddpui.errors import NotFound
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.org import Org, OrgUser
from ddpui.prefect_client import ProxyNotFound, get_proxy
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.pipelines import dataflow_get
from ddpui.services.run_states import is_terminal, run_state_apply


def _not_found(flow_run_id: str) -> NotFound:
    return NotFound(f"flow run {flow_run_id} not found")


def _fetch_for_org(*, org: Org, flow_run_id: str) -> dict:
    """Prefect's view of a run, if the run belongs to the org (by our record, or by its deployment)."""
    try:
        uuid.UUID(str(flow_run_id))
    except ValueError:
        raise _not_found(flow_run_id) from None
    record = PrefectFlowRun.objects.filter(flow_run_id=flow_run_id).only("org_id").first()
    if record is not None and record.org_id not in (None, org.id):
        raise _not_found(flow_run_id)
    try:
        run = get_proxy().flow_run(flow_run_id).state()
    except ProxyNotFound:
        raise _not_found(flow_run_id) from None
    if record is None or record.org_id is None:
        deployment_id = str(run.get("deployment_id") or "")
        if not deployment_id or not OrgDataFlowv1.objects.filter(org=org, deployment_id=deployment_id).exists():
            raise _not_found(flow_run_id)
    return run


def run_get(*, org: Org, flow_run_id: str) -> PrefectFlowRun:
    run = _fetch_for_org(org=org, flow_run_id=flow_run_id)
    record, _ = run_state_apply(org=org, run=run)
    return record


def run_logs(*, org: Org, flow_run_id: str, offset: int = 0, limit: int | None = None) -> dict:
    record = PrefectFlowRun.objects.filter(flow_run_id=flow_run_id, org=org).first()
    if record is None:
        run_get(org=org, flow_run_id=flow_run_id)  # authorizes (404 otherwise) and records the run
    return get_proxy().flow_run(flow_run_id).logs(offset=offset, limit=limit)


def run_history(*, org: Org, deployment_id: str, limit: int) -> list[PrefectFlowRun]:
    """Our records of a pipeline's runs, newest first; runs not yet finished are refreshed from Prefect."""
    dataflow = dataflow_get(org=org, deployment_id=deployment_id)
    records = list(PrefectFlowRun.objects.filter(deployment_id=dataflow.deployment_id).order_by("-created_at")[:limit])
    proxy = get_proxy()
    refreshed = []
    for record in records:
        if not is_terminal(record.state_type) or not record.task_results:
            with contextlib.suppress(ProxyNotFound):  # deleted in Prefect: keep what we know
                record, _ = run_state_apply(org=org, run=proxy.flow_run(record.flow_run_id).state())
        refreshed.append(record)
    return refreshed


def run_cancel(*, org: Org, orguser: OrgUser, flow_run_id: str) -> PrefectFlowRun:
    run = _fetch_for_org(org=org, flow_run_id=flow_run_id)
    if not is_terminal(run.get("state_type")):
        get_proxy().flow_run(flow_run_id).cancel()
        run = get_proxy().flow_run(flow_run_id).state()
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
