"""The Django side's proxy client tries a call again after a transport failure only when that is safe: a read
always, a write only when no connection was made (the proxy cannot have acted on it)."""

from __future__ import annotations

import httpx
import pytest

from ddpui.prefect_client.client import PrefectProxy, ProxyUnavailable


def _flaky(failures: list[Exception]):
    """A transport that fails with each of `failures` in turn, then answers 200; it counts what it was sent."""
    sent = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        if len(sent) <= len(failures):
            raise failures[len(sent) - 1]
        return httpx.Response(200, json={"ok": True})

    return httpx.MockTransport(handle), sent


_DROPPED = httpx.RemoteProtocolError("Server disconnected without sending a response.")
_REFUSED = httpx.ConnectError("Connection refused")


@pytest.mark.parametrize(
    ("method", "failures", "answered", "sends"),
    [
        ("GET", [_DROPPED], True, 2),  # a pooled connection closed under it: read again
        ("GET", [_DROPPED, _REFUSED, _DROPPED], True, 4),  # three pauses, then the answer
        ("GET", [_DROPPED] * 4, False, 4),  # still failing after the last pause: 503 to the caller
        ("POST", [_REFUSED], True, 2),  # never connected: the proxy did nothing, send it again
        ("POST", [_DROPPED], False, 1),  # it may have acted: never sent twice
        ("DELETE", [httpx.ReadTimeout("timed out")], False, 1),
    ],
)
def test_a_call_is_sent_again_only_when_safe(method, failures, answered, sends, monkeypatch):
    monkeypatch.setattr("ddpui.prefect_client.client.time.sleep", lambda seconds: None)
    transport, sent = _flaky(failures)
    proxy = PrefectProxy("http://proxy.test", "token", transport=transport)
    if answered:
        assert proxy.request(method, "/proxy/anything") == {"ok": True}
    else:
        with pytest.raises(ProxyUnavailable, match="unreachable"):
            proxy.request(method, "/proxy/anything")
    assert len(sent) == sends
