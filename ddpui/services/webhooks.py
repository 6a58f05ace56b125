"""Prefect's flow-run notifications: parse, confirm with the proxy, hand to run_states.

The body is only a hint: the state is always read back from Prefect through the proxy, so a forged,
duplicated or late notification cannot move a run to a state it is not in. What the state implies (record,
locks, audit, the failure e-mail) is decided by services/run_states.py, as for every other observer.
"""

from __future__ import annotations

import json
import logging
import re
import uuid

from ddpui.errors import InvalidInput
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.prefect_client import ProxyNotFound
from ddpui.services.run_states import run_read, run_state_observe

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


def webhook_handle(*, flow_run_id: str) -> str:
    """Applies what Prefect says about the run. Returns a short description of what was done."""
    try:
        run = run_read(flow_run_id=flow_run_id)
    except ProxyNotFound:
        return "unknown flow run: nothing changed"
    deployment_id = run.deployment_id or ""
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
    observed = run_state_observe(org=org, run=run, dataflow=dataflow)
    if observed.outcome:
        return observed.outcome
    record = observed.record
    return f"recorded {record.state_name or record.state_type}" if observed.changed else "no change"
