"""HTTP front of the Airbyte emulator (test double only; stdlib ``http.server``)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import logging
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .core import ROUTES, ApiError, Emulator
from .faults import FAULT_CONTROLS, LOST, FaultError, Faults

log = logging.getLogger("devtools.airbyte_emulator")

API_PREFIX = "/api/v1/"
CONTROL_PREFIX = "/_emulator/"
MAX_BODY = 10 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    server_version = "ddpui-airbyte-emulator/0.1"
    protocol_version = "HTTP/1.1"

    # the owning EmulatorServer sets these on a subclass
    emulator: Emulator
    faults: Faults
    credentials: tuple[str, str] | None
    verbose: bool = False

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.verbose:
            log.info("%s - %s", self.address_string(), format % args)

    # ------------------------------------------------------------------ io
    def _send(self, status: int, payload: Any = None) -> None:
        body = b"" if payload is None else json.dumps(payload, default=str).encode("utf-8")
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="airbyte-emulator"')
        if status != 204:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204 and self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length")
        try:
            n = int(length) if length else 0
        except ValueError:
            raise ApiError(400, "invalid Content-Length") from None
        if n > MAX_BODY:
            raise ApiError(413, "request body too large")
        raw = self.rfile.read(n) if n else b""
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"malformed JSON body: {exc}", "InvalidJsonException") from None
        if not isinstance(data, dict):
            raise ApiError(422, "JSON body must be an object", "InvalidInputException")
        return data

    def _authorized(self) -> bool:
        if self.credentials is None:
            return True
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        want_user, want_password = self.credentials
        return hmac.compare_digest(user, want_user) & hmac.compare_digest(password, want_password)

    # ------------------------------------------------------------------ dispatch
    def _drop_connection(self) -> None:
        """Close the connection without an answer, with a TCP reset (as a crashing or restarting server)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.wfile = _Discard(self.wfile)  # nothing more goes out on this connection

    def _path(self) -> str:
        path = self.path.split("?", 1)[0]
        while len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        return path

    def _handle(self, method: str) -> None:
        try:
            body = self._read_body()
            if method != "POST":
                body = {}
            path = self._path()
            if (path + "/").startswith(CONTROL_PREFIX):
                self._control(method, path[len(CONTROL_PREFIX) :], body)
                return
            if self.faults.restarting():
                self._drop_connection()
                return
            if not (path + "/").startswith(API_PREFIX):
                raise ApiError(404, f"no such endpoint: {path}", "NotFoundException")
            route = path[len(API_PREFIX) :]
            fault = self.faults.take(route) if route != "health" else None
            if isinstance(fault, int):
                raise ApiError(fault, f"injected fault: HTTP {fault}", "InjectedFault")
            if fault is not None and fault != LOST:
                self._drop_connection()
                return
            if route == "health":
                if method not in ("GET", "HEAD"):
                    raise ApiError(405, "use GET for /api/v1/health")
                self._send(200, self.emulator.health())
                return
            if not self._authorized():
                self._send(401, {"message": "Unauthorized", "exceptionClassName": "AuthException"})
                return
            if self.emulator.controls["unavailable"]:
                raise ApiError(503, "Airbyte emulator is marked unavailable", "ServiceUnavailable")
            name = ROUTES.get(route)
            if name is None:
                raise ApiError(404, f"no such endpoint: {path}", "NotFoundException")
            if method != "POST":
                raise ApiError(405, f"use POST for {path}")
            result = getattr(self.emulator, name)(body)
            if fault == LOST:  # handled, but the caller never hears about it
                self._drop_connection()
                return
            if result is None:
                self._send(204)
            else:
                self._send(200, result)
        except ApiError as err:
            if err.status in (400, 413):
                self.close_connection = True  # the body may not have been consumed
            self._send(err.status, err.payload())
        except Exception as exc:  # noqa: BLE001 - report, do not kill the server
            log.exception("error handling %s %s", method, self.path)
            self._send(500, {"message": f"emulator error: {exc}", "exceptionClassName": type(exc).__name__})

    def _control(self, method: str, route: str, body: dict[str, Any]) -> None:
        if route == "state" and method in ("GET", "HEAD"):
            self._send(200, self.emulator.dump())
        elif route == "config" and method == "POST":
            self._send(200, _configure(self.emulator, self.faults, body))
        elif route == "config" and method in ("GET", "HEAD"):
            self._send(200, _configure(self.emulator, self.faults, {}))
        elif route == "reset" and method == "POST":
            self.emulator.reset()
            self.faults.reset()
            self._send(200, {"reset": True})
        else:
            raise ApiError(404, f"no such control endpoint: {method} {CONTROL_PREFIX}{route}")

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")


class _Discard:
    """The output of a dropped connection: swallows what the handler still writes."""

    closed = False

    def __init__(self, original: Any):
        self._original = original

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self._original.close()


def _configure(emulator: Emulator, faults: Faults, controls: dict[str, Any]) -> dict[str, Any]:
    """Sets the emulator's controls and the injected faults (faults.py); returns them all."""
    fault_controls = {key: value for key, value in controls.items() if key in FAULT_CONTROLS}
    others = {key: value for key, value in controls.items() if key not in FAULT_CONTROLS}
    current = emulator.configure(**others)
    try:
        return {**current, **faults.configure(**fault_controls)}
    except FaultError as error:
        raise ApiError(422, str(error)) from None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class EmulatorServer:
    """An emulated Airbyte config API on ``host:port`` (port 0 = pick a free port).

    ``username=None`` disables authentication. ``state_file`` (JSON) is loaded at
    construction when it exists and rewritten after every change.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str | None = "airbyte",
        password: str | None = "password",
        state_file: str | None = None,
        verbose: bool = False,
    ):
        self.host = host
        self.port = port
        self.credentials = None if username is None else (username, password or "")
        self.emulator = Emulator(state_file=state_file)
        self.faults = Faults()
        self.verbose = verbose
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def _make_server(self) -> _HTTPServer:
        handler = type(
            "EmulatorHandler",
            (_Handler,),
            {
                "emulator": self.emulator,
                "faults": self.faults,
                "credentials": self.credentials,
                "verbose": self.verbose,
            },
        )
        httpd = _HTTPServer((self.host, self.port), handler)  # binds and listens
        self.port = httpd.server_address[1]
        return httpd

    def start(self) -> EmulatorServer:
        """Serve in a background thread; returns once the socket is listening."""
        if self._httpd is not None:
            raise RuntimeError("emulator already started")
        self._httpd = self._make_server()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="airbyte-emulator", daemon=True
        )
        self._thread.start()
        log.info("Airbyte emulator listening on %s", self.url)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread (used by the CLI) until interrupted."""
        self._httpd = self._make_server()
        log.info("Airbyte emulator listening on %s", self.url)
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, cancel running jobs and release the port."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        if self._thread is not None:
            self._thread.join(10)
        self._close()

    def _close(self) -> None:
        if self._httpd is not None:
            self._httpd.server_close()
        self._httpd = None
        self._thread = None
        self.emulator.cancel_all_jobs()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ info
    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api/v1"

    # ------------------------------------------------------------------ test controls
    def configure(self, **controls: Any) -> dict[str, Any]:
        """Same as POST /_emulator/config: sync_seconds, fail_next_syncs, fail_connection_ids, unavailable,
        and the injected faults (faults, fault_routes, restart_seconds: faults.py). Returns the controls."""
        try:
            return _configure(self.emulator, self.faults, controls)
        except ApiError as err:
            raise ValueError(err.message) from None

    def reset(self) -> None:
        """Same as POST /_emulator/reset: forget all objects, jobs and controls."""
        self.emulator.reset()
        self.faults.reset()

    def state(self) -> dict[str, Any]:
        """Same as GET /_emulator/state."""
        return self.emulator.dump()

    def wait_for_job(self, job_id: int, timeout: float = 30.0) -> dict[str, Any]:
        """Block until a job is terminal; returns its /jobs/get payload."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            info = self.emulator.job_get({"id": job_id})
            if info["job"]["status"] in ("succeeded", "failed", "cancelled", "incomplete"):
                return info
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {info['job']['status']} after {timeout}s")
            time.sleep(0.05)
