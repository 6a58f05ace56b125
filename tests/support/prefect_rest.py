"""Tests that call Prefect's REST API directly do it through `prefect_request` (one call, answer checked) or
a `prefect_client()` (an httpx client for a test's own reads and writes). Like the product (the proxy's
Prefect client retries 429/502/503 and dropped connections with backoff), both wait out a moment when the
Prefect server is busy (its embedded SQLite answers 503 when it cannot get the write lock at once) instead
of failing or silently ignoring a 503."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

import httpx

RETRIED_STATUSES = frozenset({429, 502, 503})
BACKOFF_SECONDS = (0.5, 1, 2, 4, 8)  # about 15 s in all, as the proxy's own retries


def with_retries(send: Callable[[], httpx.Response], *, expected: Iterable[int] = ()) -> httpx.Response:
    """send() again after a busy answer (429/502/503, unless `expected`) or a dropped connection, with
    backoff; the last answer (or transport error) after BACKOFF_SECONDS is given back as it is."""
    expected = set(expected)
    for delay in (*BACKOFF_SECONDS, None):
        try:
            response = send()
        except httpx.TransportError:
            if delay is None:
                raise
        else:
            if response.status_code not in RETRIED_STATUSES or response.status_code in expected or delay is None:
                return response
            response.close()
        time.sleep(delay)
    raise AssertionError("unreachable")  # the last delay is None: the loop returns or raises


class RetryingTransport(httpx.BaseTransport):
    """An httpx transport that resends a request the Prefect server answered busy (see `with_retries`)."""

    def __init__(self, inner: httpx.BaseTransport | None = None):
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return with_retries(lambda: self.inner.handle_request(request))

    def close(self) -> None:
        self.inner.close()


def prefect_client(api_url: str | None = None, *, timeout: float = 30, **client) -> httpx.Client:
    """An httpx client on Prefect's REST API (PREFECT_API_URL unless `api_url`) that waits out a busy server."""
    return httpx.Client(
        base_url=api_url or os.environ["PREFECT_API_URL"], timeout=timeout, transport=RetryingTransport(), **client
    )


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
    response = with_retries(lambda: httpx.request(method, url, timeout=timeout, **request), expected=expected)
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
