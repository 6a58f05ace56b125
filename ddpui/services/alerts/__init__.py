"""Alerts people can trust: what happened (a run failed or crashed, dbt tests failed, a run is late or was
missed, a connection's data is stale), told once, to the people who chose to hear it, on e-mail and the
org's incoming webhook.

- `events`: which events exist, what a run's state raises, who receives what by default (pure);
- `raising`: an alert and its deliveries written in the transaction that decides the event (run_states for
  run events, the checks below for the others); the alert's unique key makes it once per event;
- `facts` / `content`: what the alert says, in words for the people who use the data;
- `delivery`: sending after the commit, each delivery claimed, retried with backoff, its last error kept;
- `preferences`: each org user's e-mail choices; `webhook`: the org's webhook (its URL in a Secret block);
- `freshness`: each connection's last successful sync and freshness limit, the pipelines' last success;
- `schedule`: missed cron slots.

`alerts_check` is what the reconciler loop runs after each pass over the locks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

logger = logging.getLogger(__name__)


def alerts_check(*, now: datetime | None = None) -> list[str]:
    """The alert checks on the reconciler's schedule: missed runs, stale connections, due deliveries. A check
    that fails is logged and reported; the others still run. Returns what they did."""
    from ddpui.services.alerts.delivery import deliveries_retry
    from ddpui.services.alerts.freshness import connections_check_stale
    from ddpui.services.alerts.schedule import runs_check_missed

    now = now or timezone.now()
    checks: list[tuple[str, Callable[..., list[str]]]] = [
        ("missed runs", runs_check_missed),
        ("stale connections", connections_check_stale),
        ("alert deliveries", deliveries_retry),
    ]
    done: list[str] = []
    for name, check in checks:
        try:
            done += check(now=now)
        except Exception as exc:  # noqa: BLE001 - one check's failure must not stop the others (or the locks)
            logger.warning("alert check '%s' failed (%s: %s)", name, type(exc).__name__, exc)
            done.append(f"alert check '{name}' failed: {type(exc).__name__}: {exc}")
    return done
