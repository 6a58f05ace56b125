"""Table-driven tests of pure logic (no database, no Prefect): notification parsing, dbt command parsing,
what a run's state raises. State ranking and the task config have theirs in tests/ddpcontract/."""

from __future__ import annotations

import pytest

from ddpui.errors import InvalidInput
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.services.block_migration import MigrationProblem, parse_dbt_command
from ddpui.services.notifications import RunEvent
from ddpui.services.run_states import run_events_for, state_rank
from ddpui.services.webhooks import webhook_parse

RUN = "0b7f3c1e-5d2a-4c89-9f3e-2a1b4c5d6e7f"

# the master task list's dbt commands (ddpui/fixtures/tasks.json), as the migration reads them
SUBCOMMANDS = {
    ("clean",): "dbt-clean",
    ("deps",): "dbt-deps",
    ("run",): "dbt-run",
    ("test",): "dbt-test",
    ("docs", "generate"): "dbt-docs-generate",
    ("seed",): "dbt-seed",
}


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
    ("command", "slug", "canonical", "flags", "options"),
    [
        ("dbt run", "dbt-run", "dbt run", [], {}),
        ("dbt run --full-refresh", "dbt-run", "dbt run --full-refresh", ["full-refresh"], {}),
        ("dbt run -s tag:daily", "dbt-run", "dbt run --select tag:daily", [], {"select": "tag:daily"}),
        ("dbt run --select a b", "dbt-run", "dbt run --select a --select b", [], {"select": ["a", "b"]}),
        ("dbt run --select=a", "dbt-run", "dbt run --select a", [], {"select": "a"}),
        (
            "dbt test -x --target prod",
            "dbt-test",
            "dbt test --fail-fast --target prod",
            ["fail-fast"],
            {"target": "prod"},
        ),
        ("dbt docs generate", "dbt-docs-generate", "dbt docs generate", [], {}),
        (
            "dbt seed --full-refresh -t dev",
            "dbt-seed",
            "dbt seed --full-refresh --target dev",
            ["full-refresh"],
            {"target": "dev"},
        ),
        ("dbt run --vars '{\"a\": 1}'", "dbt-run", 'dbt run --vars {"a": 1}', [], {"vars": '{"a": 1}'}),
        ("dbt deps --b --a", "dbt-deps", "dbt deps --a --b", ["a", "b"], {}),  # flags sorted
    ],
)
def test_parse_dbt_command(command, slug, canonical, flags, options):
    parsed = parse_dbt_command(command, SUBCOMMANDS)
    assert parsed.task_slug == slug
    assert parsed.canonical == canonical
    assert parsed.parameters() == (flags, options)
    assert parsed.is_plain == (not flags and not options)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("", "is not a dbt command"),
        ("git pull", "is not a dbt command"),
        ("dbt", "no task in the master task list runs it"),
        ("dbt compile", "no task in the master task list runs it"),
        ("dbt run extra", "unexpected argument"),
        ("dbt run -s", "needs a value"),
        ("dbt run --select 'unclosed", "cannot parse"),
    ],
)
def test_parse_dbt_command_refuses_what_no_task_runs(command, message):
    with pytest.raises(MigrationProblem, match=message):
        parse_dbt_command(command, SUBCOMMANDS)


@pytest.mark.parametrize(
    ("state_type", "events"),
    [
        ("FAILED", [RunEvent.RUN_FAILED]),
        ("CRASHED", [RunEvent.RUN_FAILED]),
        ("COMPLETED", []),
        ("CANCELLED", []),
        ("RUNNING", []),
        ("SCHEDULED", []),
        ("", []),
    ],
)
def test_the_events_a_state_raises(state_type, events):
    assert run_events_for(PrefectFlowRun(flow_run_id=RUN, state_type=state_type)) == events


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
