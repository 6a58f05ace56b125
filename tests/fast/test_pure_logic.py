"""Table-driven tests of pure logic (no database, no Prefect): notification parsing, the order of states, the
worker's copy of a repository, how long to await an ended run's last log lines. What a run's state raises is in
tests/ddpui/alerts/test_alert_logic.py, the task config and state names in tests/ddpcontract/, dbt command
parsing in tests/migration/test_dbt_commands_and_steps.py (all fast tier)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ddpui.errors import InvalidInput
from ddpui.flows.dbt import with_target
from ddpui.flows.workspace import packages_digest, packages_needed, plain_url
from ddpui.services.run_logs import settle_wait
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


# ------------------------------------------------------------------ the worker's copy of an org's repository


@pytest.mark.parametrize(
    ("url", "plain"),
    [
        ("https://oauth2:s3cret@git.example.org/acme/dbt.git", "https://git.example.org/acme/dbt.git"),
        ("https://user@git.example.org:8443/acme/dbt.git", "https://git.example.org:8443/acme/dbt.git"),
        ("https://git.example.org/acme/dbt.git", "https://git.example.org/acme/dbt.git"),
        ("file:///srv/git/dbt.git", "file:///srv/git/dbt.git"),
        ("/srv/git/dbt.git", "/srv/git/dbt.git"),
    ],
)
def test_a_copys_origin_is_the_url_without_credentials(url, plain):
    assert plain_url(url) == plain


@pytest.mark.parametrize(
    ("command", "target", "expected"),
    [
        ("dbt run", "dev", "dbt run --target dev"),
        ("dbt run --select tag:daily", "prod", "dbt run --select tag:daily --target prod"),
        ("dbt run --target prod", "dev", "dbt run --target prod"),  # a command naming its target keeps it
        ("dbt test -t prod", "dev", "dbt test -t prod"),
        ("dbt run", None, "dbt run"),
        ("git pull", "dev", "git pull"),
    ],
)
def test_a_dbt_command_runs_on_its_target(command, target, expected):
    assert with_target(command, target) == expected


@pytest.mark.parametrize(
    ("files", "installed", "has_packages_dir", "needed"),
    [
        ({}, None, False, False),  # no packages declared: no dbt deps
        ({"packages.yml": "packages: [a]"}, None, False, True),
        ({"packages.yml": "packages: [a]"}, "same", True, False),  # installed for these declarations
        ({"packages.yml": "packages: [a]"}, "same", False, True),  # the packages directory went missing
        ({"packages.yml": "packages: [a]"}, "other", True, True),  # the declarations changed
        ({"dependencies.yml": "packages: [b]"}, None, False, True),
    ],
)
def test_dbt_deps_runs_when_the_declared_packages_are_not_installed(
    tmp_path, files, installed, has_packages_dir, needed
):
    (tmp_path / "dbt_project.yml").write_text("name: x\n")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    if has_packages_dir:
        (tmp_path / "dbt_packages").mkdir()
    if installed == "same":
        installed = packages_digest(tmp_path)
    assert (packages_needed(tmp_path, installed) is not None) == needed


T_END = datetime(2026, 12, 1, 3, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ended_at", "now", "settle", "expected"),
    [
        (None, T_END, 8.0, 8.0),  # end unknown: the whole settle time
        (T_END, T_END, 8.0, 8.0),  # just ended
        (T_END, T_END + timedelta(seconds=3), 8.0, 5.0),  # the rest of it
        (T_END, T_END + timedelta(seconds=8), 8.0, 0.0),  # it has had its time
        (T_END, T_END + timedelta(hours=2), 8.0, 0.0),  # a notification repaired long after: read once
        (T_END, T_END - timedelta(seconds=30), 8.0, 8.0),  # Prefect's clock ahead of ours: never more than settle
        (T_END, T_END, 0.0, 0.0),
        (None, T_END, -1.0, 0.0),  # a negative setting waits not at all
    ],
)
def test_an_ended_runs_last_lines_are_awaited_until_settle_seconds_after_its_end(ended_at, now, settle, expected):
    assert settle_wait(ended_at=ended_at, now=now, settle_seconds=settle) == pytest.approx(expected)
