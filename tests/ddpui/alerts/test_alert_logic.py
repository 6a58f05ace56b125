"""Table-driven tests of the alerts' pure logic (no database, no Prefect): what a run's state raises, who gets
what by default, redaction, Airbyte's reasons in plain words, the messages, cron slots and the backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ddpui.models.alerts import AlertEvent
from ddpui.services.alerts.content import airbyte_explanation, redact, render
from ddpui.services.alerts.delivery import retry_delay
from ddpui.services.alerts.events import default_email_events, event_key, run_alert_events
from ddpui.services.alerts.facts import _short_node_name, failing_tests
from ddpui.services.alerts.schedule import last_slot

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
TEN = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("state_type", "state_name", "expected_start", "events"),
    [
        ("FAILED", "Failed", None, [AlertEvent.RUN_FAILED]),
        ("CRASHED", "Crashed", None, [AlertEvent.RUN_FAILED]),
        ("COMPLETED", "DBT_TEST_FAILED", None, [AlertEvent.DBT_TEST_FAILED]),
        ("COMPLETED", "Completed", None, []),
        ("CANCELLED", "Cancelled", None, []),
        ("RUNNING", "Running", NOW - timedelta(hours=3), []),  # started: not late, however long it runs
        ("SCHEDULED", "Late", NOW - timedelta(minutes=10), [AlertEvent.RUN_LATE]),
        ("SCHEDULED", "Scheduled", NOW - timedelta(minutes=11), [AlertEvent.RUN_LATE]),
        ("PENDING", "Pending", NOW - timedelta(minutes=30), [AlertEvent.RUN_LATE]),
        ("SCHEDULED", "Late", NOW - timedelta(minutes=9, seconds=59), []),  # Prefect's "Late" alone is not ours
        ("SCHEDULED", "Scheduled", NOW + timedelta(hours=1), []),  # a future run
        ("SCHEDULED", "Scheduled", None, []),
        ("", "", None, []),
    ],
)
def test_the_events_a_run_state_raises(state_type, state_name, expected_start, events):
    raised = run_alert_events(
        state_type=state_type, state_name=state_name, expected_start_time=expected_start, now=NOW, late_after=TEN
    )
    assert raised == events


@pytest.mark.parametrize(
    ("role", "events"),
    [
        ("account-manager", {"run-failed", "dbt-test-failed", "run-late", "run-missed"}),
        ("pipeline-manager", {"run-failed", "dbt-test-failed", "run-late", "run-missed"}),
        ("analyst", set()),
        ("unknown-role", set()),
    ],
)
def test_default_email_events_by_role(role, events):
    assert {event.value for event in default_email_events(role)} == events


def test_event_keys_name_the_occurrence():
    assert event_key(AlertEvent.RUN_FAILED, "r1") == "run-failed:r1"
    assert (
        event_key(AlertEvent.RUN_MISSED, "d1", "2026-11-30T02:00:00+00:00") == "run-missed:d1:2026-11-30T02:00:00+00:00"
    )
    assert len(event_key(AlertEvent.CONNECTION_STALE, "x" * 300)) == 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://airbyte:s3cret@db:5432/raw", "postgresql://***@db:5432/raw"),
        ("https://oauth2:ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/x.git", "https://***@github.com/x.git"),
        ("connecting with password=hunter2 to db", "connecting with password=*** to db"),
        ('{"password": "hunter2", "user": "a"}', '{"password": "***", "user": "a"}'),
        ("API_KEY: abc123def", "API_KEY: ***"),
        ("Authorization: Bearer abcdefghijklmnop", "Authorization: Bearer ***"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123 leaked", "token *** leaked"),
        ("posted to https://hooks.slack.com/services/T0/B0/XyZ", "posted to https://hooks.slack.com/services/***"),
        ("https://discord.com/api/webhooks/123/abc", "https://discord.com/api/webhooks/***"),
        ("3 rows synced into analytics.orders", "3 rows synced into analytics.orders"),  # nothing secret
    ],
)
def test_redaction(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("reason", "origin", "expected"),
    [
        (
            'State code: 28P01; Error code: 0; Message: FATAL: password authentication failed for user "survey"',
            "source",
            "Airbyte says the source password is wrong",
        ),
        (
            "FATAL: password authentication failed for user x",
            "destination",
            "Airbyte says the warehouse password is wrong",
        ),
        (
            "State code: 28P01; Message: FATAL: no password supplied",
            "source",
            "Airbyte says the source password is missing",
        ),
        ('FATAL: role "nobody" does not exist', "source", "Airbyte says the source user name is wrong"),
        (
            'FATAL: database "surveys" does not exist',
            None,
            "Airbyte says the source database named in its settings does not exist",
        ),
        (
            'could not translate host name "db.example" to address',
            "source",
            "Airbyte says the source server's address cannot be found",
        ),
        ("Connection refused", "destination", "Airbyte says the warehouse server cannot be reached"),
        ("permission denied for schema raw", "destination", "Airbyte says the warehouse account lacks a permission"),
        ("injected failure: something odd", "source", "Airbyte says: injected failure: something odd"),
    ],
)
def test_airbyte_reasons_in_plain_words(reason, origin, expected):
    assert airbyte_explanation(reason, origin) == expected


@pytest.mark.parametrize(
    ("unique_id", "name"),
    [
        ("test.proj.not_null_orders_id.1a2b3c4d5e", "not_null_orders_id"),
        ("test.proj.assert_switchable", "assert_switchable"),
        ("model.proj.customer_orders", "customer_orders"),
        ("source.proj.raw.orders", "orders"),
        ("odd", "odd"),
    ],
)
def test_short_node_names(unique_id, name):
    assert _short_node_name(unique_id) == name


def test_failing_tests_name_the_tests_and_their_models():
    results = [
        {"slug": "dbt-run", "status": "success", "nodes": [{"unique_id": "model.p.a", "status": "success"}]},
        {
            "slug": "dbt-test",
            "status": "dbt_test_failed",
            "nodes": [
                {
                    "unique_id": "test.p.not_null_a_id.abc123",
                    "status": "fail",
                    "message": "Got 3 results",
                    "models": ["model.p.a"],
                },
                {"unique_id": "test.p.unique_a_id.def456", "status": "pass", "message": None},
                {"unique_id": "test.p.assert_b", "status": "error", "message": "syntax error"},
            ],
        },
    ]
    assert failing_tests(results) == [
        {
            "test": "not_null_a_id",
            "unique_id": "test.p.not_null_a_id.abc123",
            "models": ["a"],
            "message": "Got 3 results",
            "task": "dbt-test",
        },
        {
            "test": "assert_b",
            "unique_id": "test.p.assert_b",
            "models": [],
            "message": "syntax error",
            "task": "dbt-test",
        },
    ]


def _run_facts(**changes) -> dict:
    return {
        "org": "Acme",
        "kind": "pipeline",
        "pipeline": "Nightly",
        "connections": {},
        "flow_run_id": "run-1",
        "flow_run_name": "brave-fox",
        "state_type": "FAILED",
        "state_name": "Failed",
        "state_message": "task dbt-run (seq 2) failed: boom",
        "end_time": "2026-11-30T04:10:00+00:00",
        "expected_start_time": "2026-11-30T02:00:00+00:00",
        "failed_task": None,
        "failed_tests": [],
        "tasks": [],
        **changes,
    }


LINKS = [("The run in the web app", "http://web/pipeline/orchestrate"), ("The run in the admin", "http://admin/x")]


@pytest.mark.parametrize(
    ("event", "facts", "subject", "headline"),
    [
        (
            "run-failed",
            _run_facts(
                kind="sync",
                pipeline="Survey responses",
                connections={"c1": "Survey responses"},
                failed_task={
                    "slug": "airbyte-sync",
                    "seq": 0,
                    "type": "Airbyte Connection",
                    "message": "sync of connection c1 (job 4) failed: password authentication failed",
                    "connection_id": "c1",
                    "connection_name": "Survey responses",
                    "airbyte_reason": "FATAL: password authentication failed for user x",
                    "explanation": "Airbyte says the source password is wrong",
                },
            ),
            "[ddpui] Acme: The sync of 'Survey responses' failed",
            "The sync of 'Survey responses' failed: Airbyte says the source password is wrong.",
        ),
        (
            "run-failed",
            _run_facts(
                failed_task={
                    "slug": "airbyte-sync",
                    "seq": 0,
                    "type": "Airbyte Connection",
                    "message": "sync of connection c1 (job 4) failed: Connection refused",
                    "connection_id": "c1",
                    "connection_name": "Survey responses",
                    "airbyte_reason": "Connection refused",
                }
            ),
            "[ddpui] Acme: The pipeline 'Nightly' failed",
            "The pipeline 'Nightly' failed: the sync of 'Survey responses' failed: "
            "Airbyte says the source server cannot be reached.",
        ),
        (
            "run-failed",
            _run_facts(
                failed_task={
                    "slug": "dbt-run",
                    "seq": 2,
                    "type": "dbt Core Operation",
                    "message": "dbt run exited with code 1",
                }
            ),
            "[ddpui] Acme: The pipeline 'Nightly' failed",
            "The pipeline 'Nightly' failed: dbt could not run step 3 (dbt-run).",
        ),
        (
            "run-failed",
            _run_facts(
                failed_task={"slug": "git-pull", "seq": 1, "type": "Shell Operation", "message": "exit code 128"}
            ),
            "[ddpui] Acme: The pipeline 'Nightly' failed",
            "The pipeline 'Nightly' failed: the latest dbt project could not be fetched from git (git-pull).",
        ),
        (
            "run-failed",
            _run_facts(state_type="CRASHED", state_name="Crashed", state_message="missing heartbeats"),
            "[ddpui] Acme: The pipeline 'Nightly' crashed",
            "The pipeline 'Nightly' crashed: it stopped unexpectedly, usually because the worker running it "
            "(or its machine) went away.",
        ),
        (
            "dbt-test-failed",
            _run_facts(
                state_type="COMPLETED",
                state_name="DBT_TEST_FAILED",
                failed_tests=[{"test": "assert_switchable", "models": ["customer_orders"], "message": "Got 1 result"}],
            ),
            "[ddpui] Acme: dbt tests failed in the pipeline 'Nightly'",
            "The data checks (dbt tests) of the pipeline 'Nightly' found problems: 1 test failed in the data of "
            "customer_orders.",
        ),
        (
            "run-late",
            _run_facts(
                state_type="SCHEDULED", state_name="Late", noticed_at="2026-11-30T02:11:00+00:00", late_after_minutes=10
            ),
            "[ddpui] Acme: The pipeline 'Nightly' has not started",
            "The run of the pipeline 'Nightly' due at 2026-11-30 02:00 UTC had not started by 2026-11-30 02:11 UTC "
            "(more than 10 minutes late); Prefect shows it as 'Late'.",
        ),
        (
            "run-missed",
            {
                "org": "Acme",
                "pipeline": "Nightly",
                "due_at": "2026-11-30T02:00:00+00:00",
                "cron": "0 2 * * *",
                "timezone": None,
            },
            "[ddpui] Acme: The pipeline 'Nightly' did not run",
            "The pipeline 'Nightly' was due to run at 2026-11-30 02:00 UTC (schedule '0 2 * * *'), but no run "
            "happened: Prefect created no run for that time.",
        ),
        (
            "connection-stale",
            {
                "org": "Acme",
                "connection": "Survey responses",
                "limit_hours": 24,
                "last_successful_sync_at": "2026-11-29T01:00:00+00:00",
                "age_seconds": 27 * 3600,
            },
            "[ddpui] Acme: The data of 'Survey responses' is stale",
            "The data from the connection 'Survey responses' is stale: its last successful sync was at "
            "2026-11-29 01:00 UTC, 27 hours ago, longer than its freshness limit of 24 hours.",
        ),
        (
            "connection-stale",
            {
                "org": "Acme",
                "connection": "Survey responses",
                "limit_hours": 6,
                "limit_set_at": "2026-11-30T01:00:00+00:00",
            },
            "[ddpui] Acme: The data of 'Survey responses' is stale",
            "The data from the connection 'Survey responses' is stale: it has not synced successfully since its "
            "freshness limit of 6 hours was set at 2026-11-30 01:00 UTC.",
        ),
    ],
)
def test_messages_say_what_failed_in_plain_words(event, facts, subject, headline):
    message = render(event=event, facts=facts, logs=[], links=LINKS)
    assert message.subject == subject
    assert message.headline == headline
    text = message.text()
    assert text.startswith(headline) and "Organization: Acme" in text
    assert text.endswith("The run in the admin: http://admin/x")
    slack = message.slack()
    assert slack["text"] == text  # Mattermost and Discord-compatible relays show `text`
    assert slack["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": subject}}
    assert "<http://admin/x|The run in the admin>" in slack["blocks"][-1]["elements"][0]["text"]


def test_a_message_carries_the_last_twenty_log_lines_redacted():
    logs = [
        {"timestamp": f"2026-11-30T04:{minute:02d}:00+00:00", "level_name": "INFO", "message": f"line {minute}"}
        for minute in range(30)
    ]
    logs.append({"timestamp": "2026-11-30T04:30:00+00:00", "level_name": "ERROR", "message": "password=hunter2 failed"})
    message = render(event="run-failed", facts=_run_facts(), logs=logs, links=LINKS)
    assert len(message.logs) == 20
    assert message.logs[0] == "04:11:00 INFO line 11"
    assert message.logs[-1] == "04:30:00 ERROR password=*** failed"
    assert "hunter2" not in message.text() and "hunter2" not in str(message.slack())
    assert "Last log lines:\n04:11:00 INFO line 11" in message.text()


@pytest.mark.parametrize(
    ("cron", "tz", "before", "slot"),
    [
        ("0 2 * * *", None, datetime(2026, 11, 30, 4, 0, tzinfo=UTC), datetime(2026, 11, 30, 2, 0, tzinfo=UTC)),
        ("0 2 * * *", None, datetime(2026, 11, 30, 2, 0, tzinfo=UTC), datetime(2026, 11, 30, 2, 0, tzinfo=UTC)),
        ("0 2 * * *", None, datetime(2026, 11, 30, 1, 59, tzinfo=UTC), datetime(2026, 11, 29, 2, 0, tzinfo=UTC)),
        # 02:00 in Kolkata is 20:30 UTC the day before
        (
            "0 2 * * *",
            "Asia/Kolkata",
            datetime(2026, 11, 30, 4, 0, tzinfo=UTC),
            datetime(2026, 11, 29, 20, 30, tzinfo=UTC),
        ),
        ("*/15 * * * *", None, datetime(2026, 11, 30, 4, 7, tzinfo=UTC), datetime(2026, 11, 30, 4, 0, tzinfo=UTC)),
        ("not a cron", None, datetime(2026, 11, 30, 4, 0, tzinfo=UTC), None),
        ("0 2 * * *", "Not/AZone", datetime(2026, 11, 30, 4, 0, tzinfo=UTC), None),
    ],
)
def test_the_last_cron_slot(cron, tz, before, slot):
    assert last_slot(cron, tz, before=before) == slot


def test_retries_back_off_exponentially(settings):
    settings.ALERTS_RETRY_BASE_SECONDS = 30
    assert [retry_delay(n).total_seconds() for n in range(1, 6)] == [30, 60, 120, 240, 480]
