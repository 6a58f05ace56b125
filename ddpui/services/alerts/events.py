"""Which events a run's state raises, and who receives which events by default. Pure: no database, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

from ddpcontract.states import DBT_TEST_FAILED_STATE_NAME, FAILURE_STATES, StateType
from ddpui.models.alerts import AlertEvent
from ddpui.models.org import OrgUserRole

ALL_EVENTS: tuple[AlertEvent, ...] = tuple(AlertEvent)

# What an org user receives by e-mail until they choose: managers hear of failures, failing tests and late
# (or missed) runs; analysts, who cannot act on them, of nothing. Stale connections are opt-in.
DEFAULT_EMAIL_EVENTS: dict[str, frozenset[AlertEvent]] = {
    OrgUserRole.ACCOUNT_MANAGER: frozenset(
        {AlertEvent.RUN_FAILED, AlertEvent.DBT_TEST_FAILED, AlertEvent.RUN_LATE, AlertEvent.RUN_MISSED}
    ),
    OrgUserRole.PIPELINE_MANAGER: frozenset(
        {AlertEvent.RUN_FAILED, AlertEvent.DBT_TEST_FAILED, AlertEvent.RUN_LATE, AlertEvent.RUN_MISSED}
    ),
    OrgUserRole.ANALYST: frozenset(),
}

# a run that has not started yet
_NOT_STARTED = frozenset({StateType.SCHEDULED, StateType.PENDING})


def default_email_events(role: str) -> frozenset[AlertEvent]:
    return DEFAULT_EMAIL_EVENTS.get(role, frozenset())


def run_alert_events(
    *, state_type: str, state_name: str, expected_start_time: datetime | None, now: datetime, late_after: timedelta
) -> list[AlertEvent]:
    """The events a run in this state raises at `now` (each is raised once per run: see raising.py)."""
    state_type = (state_type or "").upper()
    if state_type in FAILURE_STATES:
        return [AlertEvent.RUN_FAILED]
    if state_type == StateType.COMPLETED and state_name == DBT_TEST_FAILED_STATE_NAME:
        return [AlertEvent.DBT_TEST_FAILED]
    if state_type in _NOT_STARTED and expected_start_time is not None and now - expected_start_time >= late_after:
        return [AlertEvent.RUN_LATE]
    return []


def event_key(event: AlertEvent, *parts: object) -> str:
    """The alert's unique key: the event and what identifies its occurrence (a run, a slot, an episode)."""
    return ":".join([AlertEvent(event).value, *(str(part) for part in parts)])[:200]
