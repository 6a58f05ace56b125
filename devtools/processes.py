"""Start and stop the local stack's background processes (Prefect server, worker, services).

Used by the tests, the demo command and the benchmarks. Every process is started in its own session
with default signal dispositions and stopped by PID (process group), so nothing outlives its owner.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

VENV_BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http_ok(url: str, *, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered:\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last_error = str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s ({last_error})")


class ManagedProcess:
    """A child process in its own process group, with its output in a log file."""

    def __init__(self, args: list[str], *, env: dict[str, str], log_path: Path, cwd: Path | None = None):
        self.args = args
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns the descriptor
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
            except ProcessLookupError:
                pass
        else:
            # the leader is gone; its children may not be
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None


# Prefect's embedded SQLite answers 503 when a transaction cannot get the write lock at once (a read that
# turns into a write while another writer holds the lock; its busy timeout only covers plain waits). The
# long writers are the scheduler's inserts of future runs for cron deployments (up to 100 runs each per
# pass by default): keep them short, so a busy moment stays a short wait that the clients' retries (the
# proxy's, with backoff) absorb. PostgreSQL has no such limit and keeps Prefect's defaults.
SQLITE_SERVER_SETTINGS = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "10",
    "PREFECT_SERVER_SERVICES_SCHEDULER_DEPLOYMENT_BATCH_SIZE": "20",
}
# On either database: Prefect's statement timeout (10 s by default; on PostgreSQL a slower statement is
# cancelled and answered 503) is raised so that a loaded machine makes a call slow rather than failed.
SERVER_DATABASE_TIMEOUT_SECONDS = "30"


def prefect_env(api_url: str, home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL=env.get("PREFECT_LOGGING_LEVEL", "INFO"),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        DO_NOT_TRACK="1",
    )
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


class PrefectServer(ManagedProcess):
    """`prefect server start` on 127.0.0.1 with its own PREFECT_HOME (SQLite unless a DB URL is given)."""

    def __init__(self, home: Path, port: int | None = None, *, database_url: str | None = None, ui: bool = False):
        self.port = port or free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.home = home
        extra = {
            "PREFECT_SERVER_UI_ENABLED": "true" if ui else "false",
            "PREFECT_SERVER_DATABASE_TIMEOUT": SERVER_DATABASE_TIMEOUT_SECONDS,
        }
        if database_url:
            extra["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
        else:
            extra.update(SQLITE_SERVER_SETTINGS)
        env = prefect_env(self.api_url, home, **extra)
        super().__init__(
            [
                str(VENV_BIN / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--analytics-off",
            ],
            env=env,
            log_path=home / "prefect-server.log",
        )

    def start(self, timeout: float = 120) -> None:
        super().start()
        wait_http_ok(f"{self.api_url}/health", timeout=timeout, process=self.process, log=self.log_path)


class PrefectWorker(ManagedProcess):
    """A process worker polling one work pool, running flows from the repository's path."""

    def __init__(self, api_url: str, home: Path, pool: str, *, query_seconds: int = 1, extra_env: dict | None = None):
        self.pool = pool
        env = prefect_env(
            api_url,
            home,
            PREFECT_WORKER_QUERY_SECONDS=str(query_seconds),
            PREFECT_WORKER_PREFETCH_SECONDS="5",
            PYTHONPATH=str(REPO_ROOT),
            **(extra_env or {}),
        )
        super().__init__(
            [
                str(VENV_BIN / "prefect"),
                "worker",
                "start",
                "--pool",
                pool,
                "--type",
                "process",
                "--install-policy",
                "never",
            ],
            env=env,
            log_path=home / f"prefect-worker-{pool}.log",
            cwd=REPO_ROOT,
        )

    def start(self, timeout: float = 60) -> None:
        super().start()
        # the worker creates its pool on start; wait until the pool exists so deployments can target it
        deadline = time.monotonic() + timeout
        api_url = self.env["PREFECT_API_URL"]
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_path.read_text()[-3000:]}")
            response = httpx.get(f"{api_url}/work_pools/{self.pool}", timeout=5)
            if response.status_code == 200:
                workers = httpx.post(f"{api_url}/work_pools/{self.pool}/workers/filter", json={}, timeout=5)
                if workers.status_code == 200 and workers.json():
                    return
            time.sleep(0.3)
        raise TimeoutError(f"worker for pool {self.pool} did not register within {timeout:.0f}s")
