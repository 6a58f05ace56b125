"""Tests that call Prefect's REST API directly do it through `prefect_request`: it checks the answer and,
like the product (the proxy's Prefect client retries 429/502/503 and dropped connections with backoff),
waits out a moment when the Prefect server is busy instead of failing or silently ignoring a 503."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

import httpx

RETRIED_STATUSES = frozenset({429, 502, 503})
BACKOFF_SECONDS = (0.5, 1, 2, 4, 8)  # about 15 s in all, as the proxy's own retries


def prefect_request(
    method: str,
    path: str,
    *,
    expect: Iterable[int] = (200, 201, 204),
    api_url: str | None = None,
    timeout: float = 30,
    **request,
) -> httpx.Response:
    """One call to Prefect's REST API (`path` relative to PREFECT_API_URL, or a full URL). Retries a busy or
    unreachable server; then asserts the status is one of `expect` and returns the response."""
    url = (
        path
        if path.startswith("http")
        else f"{(api_url or os.environ['PREFECT_API_URL']).rstrip('/')}/{path.lstrip('/')}"
    )
    expected = set(expect)
    for delay in (*BACKOFF_SECONDS, None):
        try:
            response = httpx.request(method, url, timeout=timeout, **request)
        except httpx.TransportError:
            if delay is None:
                raise
        else:
            if response.status_code not in RETRIED_STATUSES or response.status_code in expected or delay is None:
                break
        time.sleep(delay)
    assert response.status_code in expected, f"{method} {url} -> {response.status_code}: {response.text[:500]}"
    return response


def prefect_set_state(flow_run_id: str, state_type: str, *, api_url: str | None = None) -> None:
    """Forces a flow run into a state, as a worker or the scheduler would move it."""
    prefect_request(
        "POST",
        f"flow_runs/{flow_run_id}/set_state",
        json={"state": {"type": state_type, "name": state_type.title()}, "force": True},
        api_url=api_url,
    )
