"""End-to-end tests: the local demo (`python -m devtools.demo`) started as a subprocess, as the main command
starts it, on free ports in a temporary data directory; and a way to prove it left no process behind.

In the PostgreSQL run of the suite (DATABASE_URL set by scripts/test.sh) the demo gets a database of its own
for Django and a PostgreSQL warehouse, so the same command is tested on both.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from devtools.processes import REPO_ROOT, free_port

DEMO_EMAIL = "e2e-admin@example.org"
DEMO_PASSWORD = "e2e-demo-password"


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: starts the whole local stack (devtools.demo) as a subprocess")


def processes_using(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose command line or environment mentions marker."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in cmdline or needle in environ:
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]))
    return found


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class PostgresForDemo:
    """A database for the demo's Django and one for its warehouse, owned by a fresh role; dropped afterwards."""

    admin_dsn: str
    suffix: str = field(default_factory=lambda: secrets.token_hex(4))
    password: str = field(default_factory=lambda: f"pw-{secrets.token_hex(8)}")

    @property
    def role(self) -> str:
        return f"demo_{self.suffix}"

    def dsn(self, database: str) -> str:
        parts = urlsplit(self.admin_dsn)
        netloc = f"{self.role}:{self.password}@{parts.hostname}:{parts.port or 5432}"
        return urlunsplit((parts.scheme, netloc, f"/{database}", "", ""))

    @property
    def django_db(self) -> str:
        return f"demo_django_{self.suffix}"

    @property
    def warehouse_db(self) -> str:
        return f"demo_wh_{self.suffix}"

    def create(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(f"create role {self.role} login password '{self.password}'")
            for database in (self.django_db, self.warehouse_db):
                admin.execute(f"create database {database} owner {self.role}")

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            for database in (self.django_db, self.warehouse_db):
                admin.execute(f"drop database if exists {database} with (force)")
            admin.execute(f"drop role if exists {self.role}")

    def tables(self, schema: str) -> set[str]:
        import psycopg

        with psycopg.connect(self.dsn(self.warehouse_db)) as connection:
            rows = connection.execute(
                "select table_name from information_schema.tables where table_schema = %s", (schema,)
            ).fetchall()
        return {row[0] for row in rows}


class Demo:
    """One `python -m devtools.demo` subprocess with its own data directory and free ports."""

    def __init__(self, data_dir: Path, postgres: PostgresForDemo | None):
        self.data_dir = data_dir
        self.postgres = postgres
        self.ports = {name: free_port() for name in ("django", "proxy", "airbyte", "prefect")}
        self.output_path = data_dir.parent / f"{data_dir.name}-output.txt"
        self.process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            # the test session's own Prefect server and data directory are not the demo's
            if not key.startswith(("PREFECT_", "DDPUI_", "DJANGO_")) and key != "DATABASE_URL"
        }
        env.update(DDPUI_DEMO_EMAIL=DEMO_EMAIL, DDPUI_DEMO_PASSWORD=DEMO_PASSWORD, PYTHONUNBUFFERED="1")
        if self.postgres is not None:
            env["DATABASE_URL"] = self.postgres.dsn(self.postgres.django_db)
            env["DDPUI_DEMO_WAREHOUSE_DSN"] = self.postgres.dsn(self.postgres.warehouse_db)
        return env

    def args(self, *extra: str) -> list[str]:
        ports = [arg for name, port in self.ports.items() for arg in (f"--{name}-port", str(port))]
        return [sys.executable, "-m", "devtools.demo", "--data-dir", str(self.data_dir), *ports, *extra]

    def run(self, *extra: str, timeout: float) -> tuple[int, str]:
        """Runs the demo to its end (it must be given --exit-after-run); returns (exit code, output)."""
        self.start(*extra)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"the demo did not finish within {timeout:.0f}s:\n{self.output()[-6000:]}")
        self.process = None
        return code, self.output()

    def start(self, *extra: str) -> None:
        with open(self.output_path, "ab") as output:
            self.process = subprocess.Popen(
                self.args(*extra),
                env=self.env(),
                cwd=REPO_ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.output_path.read_text() if self.output_path.exists() else ""

    def wait_ready(self, timeout: float) -> dict:
        """Waits until the demo has set everything up (it writes ready.json); returns what it wrote."""
        ready = self.data_dir / "ready.json"
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.process.poll() is not None:
                pytest.fail(f"the demo exited with {self.process.returncode}:\n{self.output()[-6000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the demo was not ready within {timeout:.0f}s:\n{self.output()[-6000:]}")
            time.sleep(0.5)
        return json.loads(ready.read_text())

    def stop(self, timeout: float = 90) -> int | None:
        """Ctrl-C, as a person would; the demo stops everything it started."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        code, self.process = self.process.returncode, None
        return code

    def leftovers(self, wait: float = 10) -> list[tuple[int, str]]:
        """Processes of this demo still alive (a moment is allowed for the last ones to exit)."""
        deadline = time.monotonic() + wait
        while (left := processes_using(str(self.data_dir))) and time.monotonic() < deadline:
            time.sleep(0.5)
        return left

    def busy_ports(self) -> list[int]:
        return [port for port in self.ports.values() if not port_is_free(port)]

    def kill_leftovers(self) -> None:
        """Last resort after a failed test: end this demo's processes (found by its unique data dir)."""
        for pid, _ in processes_using(str(self.data_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def demo(tmp_path):
    postgres = None
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        admin_dsn = os.environ.get("DDPUI_TEST_PG_DSN", "").strip()
        if not admin_dsn:
            pytest.fail("DATABASE_URL is PostgreSQL but DDPUI_TEST_PG_DSN is not set (scripts/test.sh sets both)")
        postgres = PostgresForDemo(admin_dsn)
        postgres.create()
    instance = Demo(tmp_path / "demo", postgres)
    try:
        yield instance
    finally:
        instance.stop()
        instance.kill_leftovers()
        if postgres is not None:
            postgres.drop()


def outcome_number(output: str, label: str) -> int:
    match = re.search(rf"{label}:\s+(\d+)", output)
    assert match, f"'{label}' not in the demo's output:\n{output[-4000:]}"
    return int(match.group(1))
