"""The tests' own Prefect client waits out a busy server the way the product's does (tests/support/prefect_rest.py)."""

import httpx
import pytest

from tests.support import prefect_rest


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(prefect_rest.time, "sleep", lambda _seconds: None)


def scripted(answers: list):
    """A transport answering each request with the next of `answers` (a status, or an exception to raise)."""
    seen = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.content))
        answer = answers[len(seen) - 1]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"n": len(seen)})

    return httpx.MockTransport(handle), seen


@pytest.mark.parametrize(
    ("answers", "status", "sent"),
    [
        ([204], 204, 1),
        ([503, 503, 204], 204, 3),
        ([429, 502, 200], 200, 3),
        ([httpx.ConnectError("refused"), 201], 201, 2),
        ([404], 404, 1),  # the caller's own mistake is not retried
        ([500], 500, 1),  # nor a server error that is not "busy"
        ([503] * 6, 503, 6),  # after the last backoff the busy answer is given back
    ],
)
def test_a_busy_answer_is_retried_and_the_first_other_answer_returned(answers, status, sent):
    transport, seen = scripted(answers)
    with httpx.Client(base_url="http://prefect.test/api", transport=prefect_rest.RetryingTransport(transport)) as api:
        response = api.patch("/block_documents/x", json={"data": {"a": 1}})
    assert response.status_code == status
    assert len(seen) == sent
    assert set(seen) == {("PATCH", "/api/block_documents/x", b'{"data":{"a":1}}')}  # the same body each time
    assert response.json() == {"n": sent}


def test_a_connection_that_never_comes_back_raises_after_the_last_backoff():
    transport, seen = scripted([httpx.ConnectError("refused")] * 6)
    with httpx.Client(transport=prefect_rest.RetryingTransport(transport)) as api, pytest.raises(httpx.ConnectError):
        api.get("http://prefect.test/api/health")
    assert len(seen) == len(prefect_rest.BACKOFF_SECONDS) + 1


def test_prefect_client_is_based_on_prefect_api_url_and_retries(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.test/api")
    client = prefect_rest.prefect_client(timeout=7)
    assert str(client.base_url) == "http://prefect.test/api/"
    assert client.timeout.read == 7
    assert isinstance(client._transport, prefect_rest.RetryingTransport)
