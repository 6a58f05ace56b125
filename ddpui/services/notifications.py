"""What we tell people about runs: the events, who hears of them, and the channels that carry them.

`services/run_states.py` decides which events a state change raises and claims each one on the run's
record inside the transaction that records the state (`PrefectFlowRun.notified_events`), so an event is
announced exactly once per run, whoever observed the state first (the webhook, an API read, the trigger,
the reconciler). It asks for `run_events_announce` to run after that transaction commits.

To add an event (say, dbt tests failed, or a late run): a `RunEvent` member, a rule in
`run_states.run_events_for`, and a message in `_MESSAGES`. To add a channel (say, a chat webhook): a
function with the signature of `_email` in `CHANNELS`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail

from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.org import OrgUser, OrgUserRole
from ddpui.prefect_client import LOG_PAGE_LIMIT, get_proxy

logger = logging.getLogger(__name__)


class RunEvent(enum.StrEnum):
    RUN_FAILED = "run-failed"  # Failed or Crashed


@dataclass(frozen=True)
class Message:
    subject: str
    body: str


def _last_log_lines(flow_run_id: str, *, count: int, max_pages: int = 50) -> list[dict]:
    """The run's last `count` log lines, read page by page (the proxy serves at most LOG_PAGE_LIMIT a page)."""
    run, offset, tail = get_proxy().flow_run(flow_run_id), 0, []
    for _ in range(max_pages):
        page = run.logs(offset=offset, limit=LOG_PAGE_LIMIT)
        lines = [line.model_dump(mode="json") for line in page.logs]  # the e-mail quotes them as Prefect wrote them
        tail = (tail + lines)[-count:]
        if not lines or len(lines) < LOG_PAGE_LIMIT:
            break
        offset += len(lines)
    return tail


def _pipeline_name(record: PrefectFlowRun) -> str:
    from ddpui.models.dataflows import OrgDataFlowv1

    name = OrgDataFlowv1.objects.filter(deployment_id=record.deployment_id).values_list("name", flat=True).first()
    return name or record.deployment_id or record.name


def _run_failed_message(record: PrefectFlowRun) -> Message:
    """Which task failed and the last log lines."""
    org, pipeline_name = record.org, _pipeline_name(record)
    failing = next((r for r in record.task_results or [] if r.get("status") == "failed"), None)
    try:
        logs = _last_log_lines(record.flow_run_id, count=20)
    except Exception:  # noqa: BLE001 - the message still goes out without logs
        logger.warning("could not read logs of run %s for the failure message", record.flow_run_id)
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
    return Message(subject=subject, body="\n".join(lines))


_MESSAGES: dict[RunEvent, Callable[[PrefectFlowRun], Message]] = {RunEvent.RUN_FAILED: _run_failed_message}


def _recipients(record: PrefectFlowRun, event: RunEvent) -> list[str]:
    """The org's account and pipeline managers (per-user preferences would filter here)."""
    return sorted(
        set(
            OrgUser.objects.filter(
                org=record.org, role__in=[OrgUserRole.ACCOUNT_MANAGER, OrgUserRole.PIPELINE_MANAGER]
            ).values_list("user__email", flat=True)
        )
        - {""}
    )


def _email(record: PrefectFlowRun, event: RunEvent, message: Message, recipients: list[str]) -> int:
    return send_mail(message.subject, message.body, settings.DEFAULT_FROM_EMAIL, recipients)


CHANNELS: dict[str, Callable[[PrefectFlowRun, RunEvent, Message, list[str]], int]] = {"email": _email}


def run_events_announce(*, flow_run_id: str, events: list[RunEvent]) -> int:
    """Sends each event on every channel. Called once per claimed event, after the claiming transaction
    committed; a channel that fails is logged and does not stop the others. Returns the messages sent."""
    record = PrefectFlowRun.objects.select_related("org").filter(flow_run_id=flow_run_id).first()
    if record is None or record.org is None:
        return 0
    sent = 0
    for event in events:
        recipients = _recipients(record, event)
        if not recipients:
            continue
        message = _MESSAGES[event](record)
        for name, channel in CHANNELS.items():
            try:
                sent += channel(record, event, message, recipients)
            except Exception:  # noqa: BLE001 - one channel's failure must not lose the others
                logger.exception("could not send %s of run %s on channel %s", event.value, flow_run_id, name)
    return sent
