"""Table-driven tests of pure logic (no database, no Prefect): notification parsing, the order of states.
What a run's state raises is in tests/ddpui/alerts/test_alert_logic.py, the task config and state names in
tests/ddpcontract/, dbt command parsing in tests/migration/test_dbt_commands_and_steps.py (all fast tier)."""

from __future__ import annotations

import pytest

from ddpui.errors import InvalidInput
from ddpui.services.run_states import state_rank
from ddpui.services.webhooks import webhook_parse

RUN = "0b7f3c1e-5d2a-4c89-9f3e-2a1b4c5d6e7f"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (f'{{"flow_run_id": "{RUN}"}}', RUN),
        (f'{{"flowRunId": "{RUN.upper()}"}}', RUN),  # normalised
        (f'{{"id": "{RUN}"}}', RUN),
        (f'{{"flow_run": {{"id": "{RUN}"}}, "state": {{"type": "COMPLETED"}}}}', RUN),
        (f'{{"flowRun": {{"id": "{RUN}"}}}}', RUN),
        (f'{{"message": "Flow run brave-fox with id {RUN} entered state Completed"}}', RUN),
        (f'{{"body": "Flow run a b c with id {RUN} entered state Failed"}}', RUN),
        (f'{{"text": "Flow run x with id {RUN} entered state Running"}}', RUN),
        (f"Flow run brave-fox with id {RUN} entered state Crashed", RUN),  # the plain-text form
        (f'{{"flow_run_id": "not-a-uuid", "id": "{RUN}"}}', RUN),  # the first valid candidate wins
    ],
)
def test_webhook_parse_finds_the_flow_run_id(body, expected):
    assert webhook_parse(body.encode()) == expected


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   ",
        "{}",
        "[]",
        '{"flow_run_id": "not-a-uuid"}',
        '{"flow_run_id": 42}',
        "Flow run x entered state Completed",
        '{"message": "nothing here"}',
        "\xff\xfe",
    ],
)
def test_webhook_parse_refuses_a_body_without_a_run_id(body):
    with pytest.raises(InvalidInput):
        webhook_parse(body.encode("utf-8", errors="surrogateescape") if isinstance(body, str) else body)


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("SCHEDULED", "PENDING"),
        ("PENDING", "RUNNING"),
        ("RUNNING", "CANCELLING"),
        ("RUNNING", "COMPLETED"),
        ("CANCELLING", "CANCELLED"),
        ("SCHEDULED", "FAILED"),
        ("unknown", "RUNNING"),
    ],
)
def test_a_later_state_outranks_an_earlier_one(older, newer):
    assert state_rank(newer) > state_rank(older)
