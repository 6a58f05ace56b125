"""Run states: every Prefect state type is live or terminal, and a run only moves forward."""

from __future__ import annotations

import pytest

from ddpcontract.states import LIVE_STATES, TERMINAL_STATES, StateType, is_terminal, state_rank


def test_every_state_is_either_live_or_terminal():
    assert set(StateType) == LIVE_STATES | TERMINAL_STATES
    assert not LIVE_STATES & TERMINAL_STATES


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("SCHEDULED", "PENDING"),
        ("SCHEDULED", "PAUSED"),
        ("PENDING", "RUNNING"),
        ("PAUSED", "RUNNING"),
        ("RUNNING", "CANCELLING"),
        ("RUNNING", "COMPLETED"),
        ("RUNNING", "FAILED"),
        ("RUNNING", "CRASHED"),
        ("CANCELLING", "CANCELLED"),
        ("SCHEDULED", "CANCELLED"),
        (None, "PENDING"),
        ("", "RUNNING"),
    ],
)
def test_a_run_moves_forward_along_the_rank(earlier, later):
    assert state_rank(later) > state_rank(earlier)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("PAUSED", "PENDING"),
        ("COMPLETED", "FAILED"),
        ("FAILED", "CANCELLED"),
        ("CRASHED", "COMPLETED"),
        (None, "SCHEDULED"),  # an unknown state is taken as the earliest
        ("running", "RUNNING"),
    ],
)
def test_states_of_one_rank_do_not_overtake_each_other(first, second):
    assert state_rank(first) == state_rank(second)


@pytest.mark.parametrize(
    ("state_type", "terminal"),
    [
        ("COMPLETED", True),
        ("failed", True),
        ("Crashed", True),
        ("CANCELLED", True),
        ("CANCELLING", False),
        ("RUNNING", False),
        ("SCHEDULED", False),
        (None, False),
        ("", False),
        ("UNKNOWN", False),
    ],
)
def test_is_terminal(state_type, terminal):
    assert is_terminal(state_type) is terminal


def test_run_states_keeps_offering_the_contracts_names():
    from ddpui.services import run_states

    assert run_states.TERMINAL_STATES is TERMINAL_STATES
    assert run_states.LIVE_STATES is LIVE_STATES
    assert run_states.is_terminal is is_terminal
