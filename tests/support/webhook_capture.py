"""A tiny HTTP server on 127.0.0.1 that records the requests it receives: a stand-in for a webhook endpoint.

with WebhookCapture() as capture:
    ...  # make something post to capture.url
    request = capture.wait_for(lambda r: r.json().get("flow_run_id") == run_id, timeout=60)

A failing endpoint: `WebhookCapture(statuses=[500, 503])` answers the first requests with those statuses, then
200; `delay_seconds` makes every answer that late (a hanging endpoint). Every request is recorded either way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class CapturedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)


class WebhookCapture:
    def __init__(self, *, statuses: list[int] | None = None, delay_seconds: float = 0) -> None:
        self.requests: list[CapturedRequest] = []
        self.statuses = list(statuses or [])
        self.delay_seconds = delay_seconds
        self._arrived = threading.Condition()
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = CapturedRequest(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
                with capture._arrived:
                    capture.requests.append(request)
                    status = capture.statuses.pop(0) if capture.statuses else 200
                    capture._arrived.notify_all()
                if capture.delay_seconds:
                    time.sleep(capture.delay_seconds)
                body = b'{"status": "ok"}' if status < 400 else b"no_service"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json" if status < 400 else "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the caller gave up waiting
                    pass

            do_POST = do_PUT = _record

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-capture", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/webhooks/v1/notification/"

    def __enter__(self) -> WebhookCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def wait_for(self, matches: Callable[[CapturedRequest], bool], *, timeout: float) -> CapturedRequest:
        """The first request (received so far or within `timeout` seconds) that `matches`."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = next((request for request in self.requests if matches(request)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [request.body[:200] for request in self.requests]
                    raise AssertionError(f"no matching request within {timeout:.0f}s; received: {seen}")
                self._arrived.wait(left)
