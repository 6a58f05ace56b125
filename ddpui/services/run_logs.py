"""Reading an ended run's log lines once Prefect has them all.

A flow run's process ships its log lines to Prefect in batches; the run's final state is recorded before the
last batch arrives (seconds later on a busy machine). The engine's own last line, the flow's "Finished in
state …" (a line with no task run), is logged after the final state and shipped in order with the rest, so
once it is stored every earlier line is too. A reader that needs the whole output of an ended run (a one-off
task run's answer, an alert's last lines) reads until that line is there, or for `settle_seconds` (a crashed run
never logs it). Given the run's end, the reader counts them from there: a run that ended longer ago has shipped
all it ever will, so its lines are read once, without waiting (an alert for a notification repaired by the
reconciler). A one-off task run's answer, read the moment its run is seen ended, counts from the read.
"""

from __future__ import annotations

import time
from datetime import datetime

from django.utils import timezone

from ddpcontract import proxy_api as api
from ddpui.prefect_client import LOG_PAGE_LIMIT, get_proxy

LOG_SETTLE_SECONDS = 10.0
FINISHED_PREFIX = "Finished in state"


def is_flow_finished_line(line: api.LogLine) -> bool:
    """The engine's last line about the flow run itself (not one of its task runs)."""
    return line.task_run_id is None and line.message.startswith(FINISHED_PREFIX)


def settle_wait(*, ended_at: datetime | None, now: datetime, settle_seconds: float) -> float:
    """Seconds still worth waiting for an ended run's last lines: until `settle_seconds` after its end (Prefect's
    end time); all of them when the end is unknown, and never more (Prefect's clock may run ahead of ours)."""
    settle = max(settle_seconds, 0.0)
    if ended_at is None:
        return settle
    since_end = (now - ended_at).total_seconds()
    return min(settle, max(settle - since_end, 0.0))


def ended_run_log_lines(
    flow_run_id: str,
    *,
    max_lines: int,
    ended_at: datetime | None = None,
    settle_seconds: float | None = None,
    poll_seconds: float = 0.5,
) -> list[api.LogLine]:
    """The first `max_lines` log lines of a run that has ended (at `ended_at`, if known), read once its last line
    is stored, or once `settle_seconds` have passed since its end (`settle_wait`), or at once when `max_lines`
    are read: the last line lies beyond them anyway."""
    run = get_proxy().flow_run(flow_run_id)
    settle = LOG_SETTLE_SECONDS if settle_seconds is None else settle_seconds
    wait = settle_wait(ended_at=ended_at, now=timezone.now(), settle_seconds=settle)
    deadline = time.monotonic() + wait
    while True:
        lines: list[api.LogLine] = []
        while len(lines) < max_lines:
            batch = run.logs(offset=len(lines), limit=LOG_PAGE_LIMIT).logs
            lines.extend(batch)
            if len(batch) < LOG_PAGE_LIMIT:
                break
        if len(lines) >= max_lines or any(is_flow_finished_line(line) for line in lines):
            return lines[:max_lines]
        if time.monotonic() >= deadline:
            return lines
        time.sleep(poll_seconds)
