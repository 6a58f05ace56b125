"""Flow-run states as Prefect reports them, and the order in which a run moves through them."""

from __future__ import annotations

from enum import StrEnum


class StateType(StrEnum):
    """Prefect's state types (a run's `state_type`); each run is in exactly one."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"


TERMINAL_STATES = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
LIVE_STATES = frozenset(
    {StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING, StateType.PAUSED}
)
# terminal states ending in failure: the org's managers are told
FAILURE_STATES = frozenset({StateType.FAILED, StateType.CRASHED})

# A state can only move forward along this rank; a report of a lower rank is a late arrival.
STATE_RANK = {
    StateType.SCHEDULED: 0,
    StateType.PAUSED: 1,
    StateType.PENDING: 1,
    StateType.RUNNING: 2,
    StateType.CANCELLING: 3,
    **{state: 10 for state in TERMINAL_STATES},
}

# The state name (not type) of a run whose dbt tests failed while everything else succeeded: it is
# Completed, so later tasks ran, but it is not a success.
DBT_TEST_FAILED_STATE_NAME = "DBT_TEST_FAILED"


def state_rank(state_type: str | None) -> int:
    """Where `state_type` stands in a run's life; unknown or missing types rank first."""
    return STATE_RANK.get((state_type or "").upper(), 0)


def is_terminal(state_type: str | None) -> bool:
    return (state_type or "").upper() in TERMINAL_STATES
