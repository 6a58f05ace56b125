"""A lean HTTP/1.1 keep-alive client for the proxy's JSON calls to a Prefect server over plain http.

Per call it costs a small fraction of the CPU of httpx (Prefect's client): measured on the development machine,
0.17 ms against 1.5-1.7 ms per call, and 2 ms less wall time per call on a loaded machine. Every proxy call
pays that once or twice, so it is most of what the proxy adds to calling Prefect directly.

It behaves as Prefect's client does where it matters (`proxy.prefect_api.prefect_json` uses it): the same headers
(API version, API key or auth string), the same retries (408, 429, 502, 503 and PREFECT_CLIENT_RETRY_EXTRA_CODES,
backing off 2, 4, 8 ... s with Prefect's jitter, or as Retry-After says; a dropped connection likewise, and a
refused connection once the server has answered before), up to PREFECT_CLIENT_MAX_RETRIES, and the same errors
(httpx.HTTPStatusError with Prefect's answer, httpx.TransportError subclasses), so the proxy's error answers do
not change. A kept-alive connection the server has closed meanwhile is replaced without counting as a retry.
Only plain http: an https Prefect goes through Prefect's client (its TLS settings).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import orjson
from prefect.settings import (
    PREFECT_API_REQUEST_TIMEOUT,
    PREFECT_CLIENT_MAX_RETRIES,
    PREFECT_CLIENT_RETRY_EXTRA_CODES,
    PREFECT_CLIENT_RETRY_JITTER_FACTOR,
)
from prefect.utilities.math import bounded_poisson_interval, clamped_poisson_interval

RETRIED_STATUSES = frozenset({408, 429, 502, 503})
MAX_CONNECTIONS = 16  # as Prefect's client
_SKIPPED_HEADERS = {"host", "content-length", "content-type", "connection", "transfer-encoding", "accept-encoding"}


class _Dropped(Exception):
    """The connection failed: while connecting (`connecting`), or during the exchange."""

    def __init__(self, cause: BaseException, *, connecting: bool):
        super().__init__(str(cause))
        self.cause = cause
        self.connecting = connecting


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @property
    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class LeanHTTP:
    def __init__(self, base_url: str, headers: dict[str, str], *, max_connections: int = MAX_CONNECTIONS):
        parts = urlsplit(base_url)
        if parts.scheme != "http":
            raise ValueError("the lean client speaks plain http only")
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.base_path = parts.path.rstrip("/")
        authority = parts.netloc.rsplit("@", 1)[-1]
        fixed = {key: value for key, value in headers.items() if key.lower() not in _SKIPPED_HEADERS}
        lines = [
            f"Host: {authority}",
            "Accept-Encoding: identity",
            *(f"{key}: {value}" for key, value in fixed.items()),
        ]
        self._header_block = "".join(f"{line}\r\n" for line in lines)
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._has_connected = False
        self._csrf_protected = False
        # Prefect's client settings, read once: they are fixed for the life of the client that made this one
        self._max_retries = PREFECT_CLIENT_MAX_RETRIES.value()
        self._retried_statuses = RETRIED_STATUSES | set(PREFECT_CLIENT_RETRY_EXTRA_CODES.value())
        self._timeout = PREFECT_API_REQUEST_TIMEOUT.value()

    def usable_for(self, method: str) -> bool:
        """Writes go through Prefect's client once Prefect has refused one for lack of a CSRF token."""
        return not self._csrf_protected or method in ("GET", "HEAD", "OPTIONS")

    def csrf_refusal(self, response: httpx.Response) -> bool:
        """Whether Prefect refused a write for lack of a CSRF token (its server has CSRF protection on)."""
        if response.status_code == 403 and "CSRF" in response.text:
            self._csrf_protected = True
            return True
        return False

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()

    # ------------------------------------------------------------------ one request, with Prefect's retries

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        answer_404: bool = False,
    ) -> tuple[int, bytes]:
        """(status, body) of a 2xx-3xx answer (and of a 404 with `answer_404`: a lookup that may miss costs no
        exception); otherwise raises as Prefect's client would."""
        target = self.base_path + quote(path, safe="/:@-._~!$&'()*+,;=")
        if params:
            target += "?" + urlencode({key: _query_value(value) for key, value in params.items()}, doseq=True)
        body = orjson.dumps(json) if json is not None else b""
        head = f"{method} {target} HTTP/1.1\r\n{self._header_block}"
        if json is not None:
            head += "Content-Type: application/json\r\n"
        if json is not None or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body)}\r\n"
        message = head.encode("latin-1") + b"\r\n" + body

        max_retries, retried_statuses, timeout = self._max_retries, self._retried_statuses, self._timeout
        tries = 0
        while True:
            tries += 1
            try:
                status, headers, answer = await self._exchange(message, timeout)
            except (_Dropped, TimeoutError) as failure:
                if tries > max_retries or not self._retryable(failure):
                    raise self._transport_error(failure, method, target) from None
                delay, from_header = None, False
            else:
                if status not in retried_statuses or tries > max_retries:
                    if status >= 400 and not (status == 404 and answer_404):
                        raise self._status_error(method, target, status, headers, answer)
                    return status, answer
                delay = _retry_after(headers.get("retry-after"))
                from_header = delay is not None
            await asyncio.sleep(_backoff(delay, from_header, tries))

    def _retryable(self, failure: BaseException) -> bool:
        # a failed connect is retried only once the server has answered before (as Prefect's client: a wrong URL
        # fails at once, a restarting server is waited for)
        return not (isinstance(failure, _Dropped) and failure.connecting and not self._has_connected)

    async def _exchange(self, message: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
        async with self._slots:
            while True:
                connection, reused = await self._connection(timeout)
                try:
                    async with asyncio.timeout(timeout):
                        connection.writer.write(message)
                        status, headers, answer, keep = await _read_response(connection.reader)
                except TimeoutError:
                    connection.close()
                    raise
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    connection.close()
                    answered_nothing = isinstance(exc, asyncio.IncompleteReadError) and not exc.partial
                    if reused and (answered_nothing or isinstance(exc, ConnectionResetError | BrokenPipeError)):
                        continue  # the server closed the idle connection meanwhile: a fresh one, not a retry
                    raise _Dropped(exc, connecting=False) from exc
                self._has_connected = True
                if keep:
                    self._idle.append(connection)
                else:
                    connection.close()
                return status, headers, answer

    async def _connection(self, timeout: float) -> tuple[_Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable:
                return connection, True
            connection.close()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=2**20)
        except OSError as exc:
            raise _Dropped(exc, connecting=True) from exc
        return _Connection(reader, writer), False

    # ------------------------------------------------------------------ errors as httpx raises them

    def _request(self, method: str, target: str) -> httpx.Request:
        return httpx.Request(method, f"http://{self.host}:{self.port}{target}")

    def _status_error(
        self, method: str, target: str, status: int, headers: dict[str, str], answer: bytes
    ) -> httpx.HTTPStatusError:
        request = self._request(method, target)
        response = httpx.Response(status, headers=headers, content=answer, request=request)
        return httpx.HTTPStatusError(
            f"Client error '{status}' for url '{request.url}'", request=request, response=response
        )

    def _transport_error(self, failure: BaseException, method: str, target: str) -> httpx.TransportError:
        request = self._request(method, target)
        if isinstance(failure, TimeoutError):
            return httpx.ReadTimeout("no answer from Prefect within PREFECT_API_REQUEST_TIMEOUT", request=request)
        cause = failure.cause if isinstance(failure, _Dropped) else failure
        reason = str(cause) or type(cause).__name__
        if isinstance(failure, _Dropped) and failure.connecting:
            return httpx.ConnectError(reason, request=request)
        return httpx.ReadError(reason, request=request)


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: back off as usual


def _backoff(delay: float | None, from_header: bool, tries: int) -> float:
    """Prefect's client's wait before another try (prefect.client.base)."""
    seconds = delay if delay is not None else 2**tries
    jitter = PREFECT_CLIENT_RETRY_JITTER_FACTOR.value()
    if seconds > 0 and jitter > 0:
        if from_header:
            return bounded_poisson_interval(seconds, seconds * (1 + jitter))
        return clamped_poisson_interval(seconds, jitter)
    return seconds


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes, bool]:
    """(status, headers, body, whether the connection can be used again) of one HTTP/1.1 answer."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status_text = lines[0].split(" ", 2)[:2]
        status = int(status_text)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        if status >= 200:
            break  # 1xx (e.g. 100 Continue): an interim answer, the real one follows
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return status, headers, b"".join(chunks), keep
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"])), keep
    if status in (204, 304):
        return status, headers, b"", keep
    return status, headers, await reader.read(), False  # delimited by the server closing the connection
