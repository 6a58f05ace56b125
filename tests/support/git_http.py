"""A git "dumb HTTP" server on 127.0.0.1 that serves bare repositories only to one OAuth-style token, as a
hosted git service would: a clone or pull that works proves the token was sent."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _TokenOnlyFiles(SimpleHTTPRequestHandler):
    """Files to Basic auth oauth2:<token> only; 401 with a Basic challenge (so git sends it) otherwise."""

    authorization = ""

    def do_GET(self) -> None:  # noqa: N802
        if self.headers.get("Authorization") != self.authorization:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


@contextmanager
def serve_git_with_token(directory: Path, token: str) -> Iterator[str]:
    """Serves the bare repositories under `directory` (run `git update-server-info` in each) only to Basic
    auth oauth2:<token>; yields the base URL (no credentials in it)."""
    authorization = "Basic " + base64.b64encode(f"oauth2:{token}".encode()).decode()
    handler = type("Handler", (_TokenOnlyFiles,), {"authorization": authorization})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
