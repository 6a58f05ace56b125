"""Reading an ended run's log lines once Prefect has them all.

A flow run's process ships its log lines to Prefect in batches; the run's final state is recorded before the
last batch arrives (seconds later on a busy machine). The engine's own last line, the flow's "Finished in
state …" (a line with no task run), is logged after the final state and shipped in order with the rest, so
once it is stored every earlier line is too. A reader that needs the whole output of an ended run (a one-off
task run's answer, an alert's last lines) reads until that line is there, or `settle_seconds` have passed
(a crashed run never logs it).
"""

from __future__ import annotations

import time

from ddpcontract import proxy_api as api
from ddpui.prefect_client import LOG_PAGE_LIMIT, get_proxy

LOG_SETTLE_SECONDS = 8.0
FINISHED_PREFIX = "Finished in state"


def is_flow_finished_line(line: api.LogLine) -> bool:
    """The engine's last line about the flow run itself (not one of its task runs)."""
    return line.task_run_id is None and line.message.startswith(FINISHED_PREFIX)


def ended_run_log_lines(
    flow_run_id: str, *, max_lines: int, settle_seconds: float = LOG_SETTLE_SECONDS, poll_seconds: float = 0.5
) -> list[api.LogLine]:
    """The first `max_lines` log lines of a run that has ended, read once its last line is stored (or after
    `settle_seconds`, or at once when `max_lines` are read: the last line lies beyond them anyway)."""
    run = get_proxy().flow_run(flow_run_id)
    deadline = time.monotonic() + max(settle_seconds, 0)
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
