"""What an alert says, in words for the people who rely on the data (a programme officer, not only the
engineer): what failed, where (org, pipeline, task), when, the last log lines with secrets redacted, and
links to the run in the web app and the admin. One text for e-mail; the same in Slack's message format
(`text` for Mattermost and Discord-compatible relays, `blocks` for Slack).

Pure: everything it needs (the alert's facts, the log lines, Airbyte's explanation) is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils.dateparse import parse_datetime

from ddpcontract.states import StateType
from ddpcontract.tasks import TaskType
from ddpui.models.alerts import AlertEvent

LOG_LINES = 20
_SLACK_SECTION_LIMIT = 2900  # Slack refuses a section text over 3,000 characters

# --------------------------------------------------------------------------------------------- redaction

_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    # credentials in URLs: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", re.I), r"\1***@"),
    # key=value / key: value for secret-looking keys (quoted or not)
    (
        re.compile(
            r"""(\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)"""
            r"""["']?\s*[=:]\s*["']?)[^\s"',}]+""",
            re.I,
        ),
        r"\1***",
    ),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.I), r"\1 ***"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"), "***"),  # GitHub tokens
    (re.compile(r"(hooks\.slack\.com/services/)\S+", re.I), r"\1***"),
    (re.compile(r"(discord(?:app)?\.com/api/webhooks/)\S+", re.I), r"\1***"),
]


def redact(text: str) -> str:
    """The text with anything that looks like a secret replaced by ***: a second line of defence, the flows
    already redact the secrets they know."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


# --------------------------------------------------------------------------------------------- Airbyte

_AIRBYTE_EXPLANATIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"no password supplied", re.I), "the {side} password is missing"),
    (
        re.compile(r"password authentication failed|28P01|access denied for user|invalid password|login failed", re.I),
        "the {side} password is wrong",
    ),
    (re.compile(r'role "[^"]*" does not exist', re.I), "the {side} user name is wrong"),
    (
        re.compile(r'database "[^"]*" does not exist|3D000', re.I),
        "the {side} database named in its settings does not exist",
    ),
    (
        re.compile(
            r"could not translate host name|name or service not known|unknown ?host|nodename nor servname", re.I
        ),
        "the {side} server's address cannot be found",
    ),
    (
        re.compile(r"connection refused|could not connect|connect timed out|connection timed out", re.I),
        "the {side} server cannot be reached",
    ),
    (re.compile(r"permission denied|insufficient privilege|42501", re.I), "the {side} account lacks a permission"),
]
_SIDES = {"source": "source", "destination": "warehouse"}


def airbyte_explanation(reason: str, origin: str | None = None) -> str:
    """Airbyte's failure reason in plain words: "Airbyte says the source password is wrong"."""
    side = _SIDES.get((origin or "").lower(), "source")
    for pattern, words in _AIRBYTE_EXPLANATIONS:
        if pattern.search(reason):
            return "Airbyte says " + words.format(side=side)
    return "Airbyte says: " + _first_line(reason, 300)


# --------------------------------------------------------------------------------------------- helpers


def _first_line(text: str, limit: int = 300) -> str:
    line = next((line.strip() for line in str(text or "").splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def when(value: str | datetime | None) -> str:
    if value is None:
        return "an unknown time"
    moment = value if isinstance(value, datetime) else parse_datetime(str(value))
    if moment is None:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _limit(hours) -> str:
    return f"{hours} hour{'' if hours == 1 else 's'}"


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    if hours < 1:
        return f"{max(1, round(seconds / 60))} minutes"
    return f"{hours:.0f} hours" if hours >= 10 else f"{hours:.1f}".removesuffix(".0") + " hours"


def _where(facts: dict) -> str:
    if facts.get("kind") == "sync":
        names = list((facts.get("connections") or {}).values())
        return f"the sync of '{names[0]}'" if names else f"the sync '{facts.get('pipeline')}'"
    if facts.get("kind") == "pipeline":
        return f"the pipeline '{facts.get('pipeline')}'"
    return "a one-off task run"


def _task_label(task: dict) -> str:
    return f"{task.get('slug')} (step {int(task.get('seq') or 0) + 1})"


def _log_lines(logs: list[dict] | None) -> list[str]:
    lines = []
    for log in (logs or [])[-LOG_LINES:]:
        moment = parse_datetime(str(log.get("timestamp") or ""))
        stamp = moment.strftime("%H:%M:%S") if moment else ""
        message = redact(" ".join(str(log.get("message") or "").split()))
        lines.append(f"{stamp} {log.get('level_name', '')} {message}"[:400].strip())
    return lines


# --------------------------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Message:
    subject: str
    headline: str  # one sentence: what happened
    details: list[str]  # more lines: what, where, when, why
    fields: list[tuple[str, str]]  # label -> value (org, pipeline, task, when)
    logs: list[str]
    links: list[tuple[str, str]]  # label -> URL

    def text(self) -> str:
        parts = [self.headline, ""]
        parts += [f"{label}: {value}" for label, value in self.fields]
        if self.details:
            parts += ["", *self.details]
        if self.logs:
            parts += ["", "Last log lines:", *self.logs]
        if self.links:
            parts += ["", *(f"{label}: {url}" for label, url in self.links)]
        return "\n".join(parts)

    def slack(self) -> dict:
        """Slack's incoming-webhook format: `text` holds the whole message (what Mattermost and Discord's
        Slack-compatible endpoint show, and Slack's notification text); `blocks` lay it out in Slack."""
        blocks: list[dict] = [
            {"type": "header", "text": {"type": "plain_text", "text": self.subject[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": self.headline[:_SLACK_SECTION_LIMIT]}},
        ]
        if self.fields:
            blocks.append(
                {
                    "type": "section",
                    "fields": [
                        {"type": "mrkdwn", "text": f"*{label}*\n{value}"[:1900]} for label, value in self.fields
                    ][:10],
                }
            )
        if self.details:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(self.details)[:_SLACK_SECTION_LIMIT]}}
            )
        if self.logs:
            tail = "\n".join(self.logs)[-(_SLACK_SECTION_LIMIT - 40) :]
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Last log lines*\n```{tail}```"}})
        if self.links:
            blocks.append(
                {
                    "type": "context",
                    "elements": [
                        {"type": "mrkdwn", "text": " · ".join(f"<{url}|{label}>" for label, url in self.links)}
                    ],
                }
            )
        return {"text": self.text(), "blocks": blocks}


def _run_fields(facts: dict, *, task: dict | None = None, when_label: str, moment) -> list[tuple[str, str]]:
    fields = [("Organization", facts.get("org") or "")]
    if facts.get("kind") == "sync":
        fields.append(
            ("Connection", ", ".join((facts.get("connections") or {}).values()) or facts.get("pipeline") or "")
        )
    elif facts.get("pipeline"):
        fields.append(("Pipeline", facts["pipeline"]))
    if task is not None:
        fields.append(("Task", _task_label(task)))
    fields.append((when_label, when(moment)))
    fields.append(("Run", f"{facts.get('flow_run_name') or ''} ({facts.get('flow_run_id')})".strip()))
    return fields


def _run_failed(facts: dict) -> tuple[str, str, list[str], dict | None]:
    where = _where(facts)
    state = (facts.get("state_name") or "Failed").lower()
    task = facts.get("failed_task")
    verb = "crashed" if facts.get("state_type") == StateType.CRASHED else "failed"
    subject = f"{where[0].upper()}{where[1:]} {verb}"
    if task is None:
        if verb == "crashed":
            headline = (
                f"{subject}: it stopped unexpectedly, usually because the worker running it (or its machine) went away."
            )
        else:
            headline = f"{subject}: {_first_line(facts.get('state_message') or state)}"
        details = (
            [f"Prefect says: {_first_line(facts.get('state_message'), 500)}"] if facts.get("state_message") else []
        )
        return subject, headline, details, None
    details = []
    if task.get("type") == TaskType.AIRBYTE_CONNECTION or "connection_id" in task:
        sync = f"the sync of '{task.get('connection_name') or task.get('connection_id')}'"
        why = task.get("explanation") or (
            airbyte_explanation(task["airbyte_reason"]) if task.get("airbyte_reason") else _first_line(task["message"])
        )
        headline = (
            f"{sync[0].upper()}{sync[1:]} failed: {why}."
            if facts.get("kind") == "sync"
            else f"{subject}: {sync} failed: {why}."
        )
        if task.get("airbyte_reason"):
            details.append(f"Airbyte's message: {_first_line(redact(task['airbyte_reason']), 500)}")
    elif task.get("type") == TaskType.DBT_CORE_OPERATION:
        headline = f"{subject}: dbt could not run step {int(task.get('seq') or 0) + 1} ({task.get('slug')})."
        details.append(f"dbt says: {_first_line(redact(task['message']), 800)}")
    elif str(task.get("slug", "")).startswith("git"):
        headline = f"{subject}: the latest dbt project could not be fetched from git ({task.get('slug')})."
        details.append(f"git says: {_first_line(redact(task['message']), 800)}")
    else:
        headline = f"{subject} at step {int(task.get('seq') or 0) + 1} ({task.get('slug')})."
        details.append(f"The task says: {_first_line(redact(task['message']), 800)}")
    done = [t for t in facts.get("tasks") or [] if t.get("status") == "success"]
    skipped = [t for t in facts.get("tasks") or [] if t.get("status") == "skipped"]
    if done or skipped:
        details.append(
            f"{len(done)} step(s) before it succeeded; {len(skipped)} step(s) after it did not run."
            if skipped
            else f"{len(done)} other step(s) succeeded."
        )
    return subject, headline, details, task


def _tests_failed(facts: dict) -> tuple[str, str, list[str]]:
    where = _where(facts)
    tests = facts.get("failed_tests") or []
    models = sorted({model for test in tests for model in test.get("models") or []})
    subject = f"dbt tests failed in {where}"
    count = f"{len(tests)} test{'s' if len(tests) != 1 else ''}" if tests else "some tests"
    on = f" in the data of {', '.join(models)}" if models else ""
    headline = f"The data checks (dbt tests) of {where} found problems: {count} failed{on}."
    details = [
        f"- {test['test']}"
        + (f" (on {', '.join(test['models'])})" if test.get("models") else "")
        + f": {_first_line(test.get('message'), 300)}"
        for test in tests[:20]
    ]
    if len(tests) > 20:
        details.append(f"- … and {len(tests) - 20} more")
    details += [
        "",
        "The run completed otherwise: the data was loaded and the models were built, but it did not pass these checks.",
    ]
    return subject, headline, details


def render(*, event: str, facts: dict, logs: list[dict] | None, links: list[tuple[str, str]]) -> Message:
    """The alert's message. `facts` as raised (services/alerts/facts.py and the checks), with Airbyte's
    explanation already added to a failed sync task (`explanation`)."""
    org = facts.get("org") or ""
    event = AlertEvent(event)
    if event == AlertEvent.RUN_FAILED:
        subject, headline, details, task = _run_failed(facts)
        fields = _run_fields(facts, task=task, when_label="Ended", moment=facts.get("end_time"))
        return Message(f"[ddpui] {org}: {subject}", headline, details, fields, _log_lines(logs), links)
    if event == AlertEvent.DBT_TEST_FAILED:
        subject, headline, details = _tests_failed(facts)
        fields = _run_fields(facts, when_label="Ended", moment=facts.get("end_time"))
        return Message(f"[ddpui] {org}: {subject}", headline, details, fields, _log_lines(logs), links)
    if event == AlertEvent.RUN_LATE:
        where = _where(facts)
        due, noticed = facts.get("expected_start_time"), facts.get("noticed_at")
        state = facts.get("state_name") or "Scheduled"
        subject = f"{where[0].upper()}{where[1:]} has not started"
        headline = (
            f"The run of {where} due at {when(due)} had not started by {when(noticed)} "
            f"(more than {facts.get('late_after_minutes', 10):g} minutes late); Prefect shows it as '{state}'."
        )
        details = [
            "Usually no worker is taking runs: the worker may be stopped, or its work pool paused. "
            "Once a worker takes it, the run goes ahead; nobody needs to start it again."
        ]
        fields = _run_fields(facts, when_label="Due", moment=due)
        return Message(f"[ddpui] {org}: {subject}", headline, details, fields, [], links)
    if event == AlertEvent.RUN_MISSED:
        subject = f"The pipeline '{facts.get('pipeline')}' did not run"
        headline = (
            f"The pipeline '{facts.get('pipeline')}' was due to run at {when(facts.get('due_at'))} "
            f"(schedule '{facts.get('cron')}'{', ' + facts['timezone'] if facts.get('timezone') else ''}), "
            "but no run happened: Prefect created no run for that time."
        )
        details = [
            "Check that Prefect's scheduler is running and that the pipeline's schedule is on; "
            "run the pipeline by hand if its data is needed now."
        ]
        fields = [("Organization", org), ("Pipeline", facts.get("pipeline") or ""), ("Due", when(facts.get("due_at")))]
        return Message(f"[ddpui] {org}: {subject}", headline, details, fields, [], links)
    # CONNECTION_STALE
    name = facts.get("connection") or facts.get("connection_id")
    limit = facts.get("limit_hours")
    last = facts.get("last_successful_sync_at")
    subject = f"The data of '{name}' is stale"
    if last:
        age = facts.get("age_seconds") or 0
        headline = (
            f"The data from the connection '{name}' is stale: its last successful sync was at {when(last)}, "
            f"{_hours(age)} ago, longer than its freshness limit of {_limit(limit)}."
        )
    else:
        headline = (
            f"The data from the connection '{name}' is stale: it has not synced successfully since its freshness "
            f"limit of {_limit(limit)} was set at {when(facts.get('limit_set_at'))}."
        )
    details = ["Reports built on it may be out of date. Check its recent syncs, then run it (or its pipeline)."]
    fields = [
        ("Organization", org),
        ("Connection", name or ""),
        ("Last successful sync", when(last) if last else "never"),
        ("Freshness limit", _limit(limit)),
    ]
    return Message(f"[ddpui] {org}: {subject}", headline, details, fields, [], links)
