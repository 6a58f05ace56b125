"""The proxy's lean HTTP client (proxy/lean_http.py) against a scripted HTTP/1.1 server: answers read whole
(by length, chunked, to the end), kept-alive connections reused and replaced once the server closed them,
Prefect's retries (503 with Retry-After, a dropped connection) and its errors (httpx's, as Prefect's client
raises them). The proxy's routes run over it against the real Prefect server in the other tests here."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, PREFECT_CLIENT_RETRY_JITTER_FACTOR, temporary_settings

from proxy.lean_http import LeanHTTP


def answer(status: int, body: bytes = b"{}", *, chunked: bool = False, close: bool = False, length=True) -> bytes:
    head = [f"HTTP/1.1 {status} X", "Content-Type: application/json"]
    if close:
        head.append("Connection: close")
    if chunked:
        head.append("Transfer-Encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:3], body[3:]) if part) + b"0\r\n\r\n"
    else:
        payload = body
        if length:
            head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


class ScriptedServer:
    """Answers each request with the next scripted bytes (None: close the connection without answering);
    records the requests and how many connections were opened."""

    def __init__(self, script: list[bytes | None], *, close_after_each: bool = False):
        self.script = list(script)
        self.requests: list[bytes] = []
        self.connections = 0
        self.close_after_each = close_after_each

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.script:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                reply = self.script.pop(0)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if (
                    self.close_after_each
                    or b"Connection: close" in reply
                    or b"Content-Length" not in reply
                    and (b"chunked" not in reply)
                ):
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/api"

    async def __aexit__(self, *exc) -> None:
        self.server.close()


def run(coroutine):
    with temporary_settings({PREFECT_CLIENT_RETRY_JITTER_FACTOR: 0, PREFECT_CLIENT_MAX_RETRIES: 3}):
        return asyncio.run(coroutine)


def test_answers_are_read_whole_and_connections_kept_alive():
    async def scenario():
        script = [answer(200, b'{"a": 1}'), answer(200, b'{"chunked": true}', chunked=True), answer(200, b"[1, 2]")]
        server = ScriptedServer(script)
        async with server as url:
            client = LeanHTTP(url, {"X-PREFECT-API-VERSION": "0.8.4", "Authorization": "Bearer k"})
            first = await client.request("GET", "/flows/x", params={"include_secrets": True})
            second = await client.request("POST", "/flow_runs/filter", json={"limit": 1})
            third = await client.request("GET", "/flows/y")
            await client.aclose()
        assert [first, second, third] == [(200, b'{"a": 1}'), (200, b'{"chunked": true}'), (200, b"[1, 2]")]
        assert server.connections == 1
        get, post = server.requests[0].decode(), server.requests[1].decode()
        assert get.startswith("GET /api/flows/x?include_secrets=true HTTP/1.1\r\n")
        assert "Authorization: Bearer k\r\n" in get and "Accept-Encoding: identity\r\n" in get
        assert post.startswith("POST /api/flow_runs/filter HTTP/1.1\r\n")
        assert post.endswith("\r\n\r\n" + json.dumps({"limit": 1}, separators=(",", ":")))

    run(scenario())


def test_a_connection_the_server_closed_is_replaced_and_busy_answers_are_retried():
    async def scenario():
        # every answer closes its connection (as a server whose keep-alive timed out), the second is a 503
        server = ScriptedServer(
            [answer(200), answer(503, b'{"detail": "busy"}'), answer(200, b'{"ok": 1}')], close_after_each=True
        )
        async with server as url:
            client = LeanHTTP(url, {})
            await client.request("GET", "/a")
            started = asyncio.get_running_loop().time()
            status, body = await client.request("GET", "/b")
            waited = asyncio.get_running_loop().time() - started
        assert (status, body) == (200, b'{"ok": 1}')
        assert server.connections == 3 and len(server.requests) == 3
        assert waited > 1.9  # Prefect's client's first back-off: 2 s

    run(scenario())


def test_errors_are_httpx_errors_as_prefects_client_raises_them():
    async def scenario():
        server = ScriptedServer([answer(404, b'{"detail": "Flow not found"}')])
        async with server as url:
            client = LeanHTTP(url, {})
            with pytest.raises(httpx.HTTPStatusError) as refused:
                await client.request("GET", "/flows/missing")
        assert refused.value.response.status_code == 404
        assert refused.value.response.json() == {"detail": "Flow not found"}
        assert str(refused.value.request.url).endswith("/api/flows/missing")

        nobody = LeanHTTP("http://127.0.0.1:9/api", {})  # never answered: no retries, a ConnectError at once
        with pytest.raises(httpx.ConnectError):
            await nobody.request("GET", "/health")

        dropping = ScriptedServer([None, None, None, None])  # every try dropped without an answer
        async with dropping as url:
            with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}), pytest.raises(httpx.ReadError):
                await LeanHTTP(url, {}).request("GET", "/flows")

    run(scenario())


def test_a_lookup_that_may_miss_gets_its_404_answered_not_raised():
    async def scenario():
        script = [answer(404, b'{"detail": "Deployment not found"}'), answer(404), answer(500, b'{"detail": "boom"}')]
        server = ScriptedServer(script)
        async with server as url:
            client = LeanHTTP(url, {})
            missing = await client.request("GET", "/deployments/name/f/d", answer_404=True)
            with pytest.raises(httpx.HTTPStatusError) as refused:
                await client.request("GET", "/deployments/name/f/d")  # without it, a 404 raises as before
            with pytest.raises(httpx.HTTPStatusError) as failed:
                await client.request("GET", "/deployments/name/f/e", answer_404=True)  # other errors still raise
            await client.aclose()
        assert missing == (404, b'{"detail": "Deployment not found"}')
        assert refused.value.response.status_code == 404 and failed.value.response.status_code == 500
        assert server.connections == 1  # a 404 answered leaves the connection usable

    run(scenario())


def test_prefects_retry_settings_are_those_current_when_the_client_was_made():
    async def scenario():
        busy = b"HTTP/1.1 503 X\r\nRetry-After: 0\r\nContent-Length: 2\r\n\r\n{}"  # try again at once
        server = ScriptedServer([busy, busy, answer(200, b"[]")])
        async with server as url:
            with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
                impatient = LeanHTTP(url, {})
            with pytest.raises(httpx.HTTPStatusError):
                await impatient.request("GET", "/flows")  # made with no retries: the first 503 is final
            with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 2, PREFECT_CLIENT_RETRY_JITTER_FACTOR: 0}):
                patient = LeanHTTP(url, {})
            assert await patient.request("GET", "/flows") == (200, b"[]")  # retried
        assert len(server.requests) == 3

    run(scenario())


def test_only_plain_http():
    with pytest.raises(ValueError, match="plain http"):
        LeanHTTP("https://prefect.example/api", {})
