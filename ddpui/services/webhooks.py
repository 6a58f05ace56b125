"""Prefect's flow-run notifications: parse, confirm with the proxy, apply.

The body is only a hint: the state is always read back from Prefect through the proxy, so a forged,
duplicated or late notification cannot move a run to a state it is not in.
"""

from __future__ import annotations

import json
import logging
import re
import uuid

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from ddpui.errors import InvalidInput
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.locks import TaskLock
from ddpui.models.org import OrgUser, OrgUserRole
from ddpui.prefect_client import LOG_PAGE_LIMIT, ProxyNotFound, get_proxy
from ddpui.services import locks
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.pipelines import dataflow_orgtasks
from ddpui.services.run_states import LIVE_STATES, is_terminal, run_state_apply

logger = logging.getLogger(__name__)

_MESSAGE = re.compile(r"Flow run (?P<name>.+?) with id (?P<id>[0-9a-fA-F-]{36}) entered state (?P<state>\w+)")
_ID_KEYS = ("flow_run_id", "flowRunId", "id")


def webhook_parse(body: bytes) -> str:
    """The flow run id named by a notification: a JSON body with the id, or the message form
    'Flow run {name} with id {id} entered state {state}' (as text, or as a JSON "message"/"body")."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        raise InvalidInput("empty notification body")
    candidates: list[str] = []
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        for key in _ID_KEYS:
            if isinstance(payload.get(key), str):
                candidates.append(payload[key])
        for nested in ("flow_run", "flowRun"):
            if isinstance(payload.get(nested), dict) and isinstance(payload[nested].get("id"), str):
                candidates.append(payload[nested]["id"])
        for key in ("message", "body", "text"):
            if isinstance(payload.get(key), str) and (match := _MESSAGE.search(payload[key])):
                candidates.append(match.group("id"))
    elif payload is None and (match := _MESSAGE.search(text)):
        candidates.append(match.group("id"))
    for candidate in candidates:
        try:
            return str(uuid.UUID(candidate))
        except ValueError:
            continue
    raise InvalidInput("the notification names no flow run id: send {'flow_run_id': ...} or the Prefect message form")


def _lock_scheduled_run(*, dataflow: OrgDataFlowv1, run: dict) -> str:
    """A live run we did not trigger (a scheduled one) takes its dataflow's locks, or is cancelled."""
    flow_run_id = str(run["flow_run_id"])
    if TaskLock.objects.filter(flow_run_id=flow_run_id).exists():
        return "already locked"
    orgtasks = dataflow_orgtasks(dataflow)
    with transaction.atomic():
        # our own trigger holds the locks without a run id for a moment: that run is this one
        starting = list(
            TaskLock.objects.select_for_update().filter(locking_dataflow=dataflow, flow_run_id__isnull=True)
        )
        if starting:
            locks.locks_attach_run(locks=starting, flow_run_id=flow_run_id)
            return "attached to the trigger's locks"
    try:
        locks.locks_acquire(orgtasks=orgtasks, flow_run_id=flow_run_id, dataflow=dataflow)
    except locks.TaskLocked as exc:
        message = f"cancelled: it would overlap a running task ({exc.message})"
        get_proxy().flow_run(flow_run_id).cancel()
        record, _ = run_state_apply(
            org=dataflow.org, run={**run, "state_type": "CANCELLING", "state_name": "Cancelling"}
        )
        PrefectFlowRun.objects.filter(pk=record.pk).update(state_message=message[:2000])
        audit_record(
            org=dataflow.org,
            action=AuditAction.RUN_CANCELLED_OVERLAP,
            object_type="flow_run",
            object_id=flow_run_id,
            actor="system",
            details={"pipeline": dataflow.name, "holders": [lock.flow_run_id for lock in exc.holders]},
        )
        return message
    audit_record(
        org=dataflow.org,
        action=AuditAction.LOCKS_TAKEN,
        object_type="flow_run",
        object_id=flow_run_id,
        actor=f"run {flow_run_id}",
        details={"pipeline": dataflow.name, "count": len(orgtasks)},
    )
    return "locked for the scheduled run"


def webhook_handle(*, flow_run_id: str) -> str:
    """Applies what Prefect says about the run. Returns a short description of what was done."""
    try:
        run = get_proxy().flow_run(flow_run_id).state()
    except ProxyNotFound:
        return "unknown flow run: nothing changed"
    deployment_id = str(run.get("deployment_id") or "")
    if not deployment_id:
        return "run without a deployment (a subflow): ignored"
    dataflow = OrgDataFlowv1.objects.select_related("org").filter(deployment_id=deployment_id).first()
    if dataflow is None:
        known = PrefectFlowRun.objects.filter(flow_run_id=flow_run_id).select_related("org").first()
        if known is None:
            return "run of a deployment we do not manage: ignored"
        org = known.org
    else:
        org = dataflow.org
    state_type = (run.get("state_type") or "").upper()
    previous = PrefectFlowRun.objects.filter(flow_run_id=flow_run_id).values_list("state_type", flat=True).first()
    outcome = ""
    if dataflow is not None and state_type in LIVE_STATES - {"SCHEDULED"} and not is_terminal(previous):
        outcome = _lock_scheduled_run(dataflow=dataflow, run=run)
    record, changed = run_state_apply(org=org, run=run)
    if changed and state_type in {"FAILED", "CRASHED"} and not is_terminal(previous):
        notify_failure(record=record, pipeline_name=dataflow.name if dataflow else record.deployment_id or "")
    return outcome or (f"recorded {record.state_name or record.state_type}" if changed else "no change")


def _last_log_lines(flow_run_id: str, *, count: int, max_pages: int = 50) -> list[dict]:
    """The run's last `count` log lines, read page by page (the proxy serves at most LOG_PAGE_LIMIT a page)."""
    run, offset, tail = get_proxy().flow_run(flow_run_id), 0, []
    for _ in range(max_pages):
        page = run.logs(offset=offset, limit=LOG_PAGE_LIMIT)
        lines = page.get("logs", [])
        tail = (tail + lines)[-count:]
        if not lines or len(lines) < LOG_PAGE_LIMIT:
            break
        offset += len(lines)
    return tail


def notify_failure(*, record: PrefectFlowRun, pipeline_name: str) -> int:
    """E-mails the org's account and pipeline managers: which task failed and the last log lines."""
    org = record.org
    if org is None:
        return 0
    recipients = sorted(
        set(
            OrgUser.objects.filter(
                org=org, role__in=[OrgUserRole.ACCOUNT_MANAGER, OrgUserRole.PIPELINE_MANAGER]
            ).values_list("user__email", flat=True)
        )
    )
    if not recipients:
        return 0
    failing = next((r for r in record.task_results or [] if r.get("status") == "failed"), None)
    try:
        logs = _last_log_lines(record.flow_run_id, count=20)
    except Exception:  # the e-mail still goes out without logs
        logger.warning("could not read logs of run %s for the failure e-mail", record.flow_run_id)
        logs = []
    tail = [f"{line.get('timestamp', '')} {line.get('level_name', '')} {line.get('message', '')}" for line in logs]
    lines = [
        f"The pipeline '{pipeline_name}' of {org.name} ended {record.state_name or record.state_type}.",
        f"Flow run: {record.name} ({record.flow_run_id})",
        "",
        f"Failing task: {failing.get('slug')} (seq {failing.get('seq')}): {failing.get('message', '')}"
        if failing
        else f"Reason: {record.state_message}",
        "",
        "Last log lines:",
        *(tail or ["(no logs available)"]),
    ]
    subject = f"[ddpui] {org.name}: pipeline '{pipeline_name}' {(record.state_name or record.state_type).lower()}"
    return send_mail(subject, "\n".join(lines), settings.DEFAULT_FROM_EMAIL, recipients)
