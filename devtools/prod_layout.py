"""The documented production layout (docs/operations.md, "Production layout"), on one machine.

    python -m devtools.prod_layout start --pg-dsn postgresql://postgres:postgres@127.0.0.1:5432/postgres
                                         [--root var/prod-layout] [--name ddpui_layout]
    python -m devtools.prod_layout status [--root var/prod-layout]
    python -m devtools.prod_layout stop   [--root var/prod-layout] [--drop-databases]

`start` makes three databases on the given PostgreSQL server (<name>_django, <name>_prefect and
<name>_warehouse; kept when they exist) and starts, each on 127.0.0.1 with its own directory under the root:
the Prefect server on PostgreSQL with its services, two process workers on one work pool (flow-run
heartbeats on), the proxy, the Airbyte emulator (the test double standing in for Airbyte), Django on
PostgreSQL served by gunicorn, and the lock reconciler (`manage.py reconcile_locks --every`). It wires the
webhook (`manage.py setup_prefect_webhook`) and Prefect's crash detection
(docs/prefect/crash-zombie-flow-runs.yaml), writes what it started to <root>/layout.json and returns;
the processes keep running. `stop` ends them all by process group, with the flow-run processes the workers
started (Prefect puts each in a session of its own).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from devtools.processes import (
    REPO_ROOT,
    VENV_BIN,
    ManagedProcess,
    PrefectServer,
    PrefectWorker,
    free_port,
    wait_http_ok,
)

DEFAULT_ROOT = REPO_ROOT / "var" / "prod-layout"
WORK_POOL = "ddpui"
WORKER_NAMES = ("worker-1", "worker-2")
WORKER_LIMIT = 2  # flow runs at once per worker: about one per core (docs/operations.md)
HEARTBEAT_SECONDS = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY on the workers (Prefect's minimum)
RECONCILE_SECONDS = 60  # manage.py reconcile_locks --every
CRASH_AUTOMATION_FILE = REPO_ROOT / "docs" / "prefect" / "crash-zombie-flow-runs.yaml"
WEBHOOK_NAME = "ddpui-flow-run-notifications"
AIRBYTE_USERNAME = "airbyte"
AIRBYTE_PASSWORD = "password"
OPERATOR_EMAIL = "operator@example.org"
SAFE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class LayoutError(RuntimeError):
    """Something the operator can fix; the message says what."""


def say(message: str) -> None:
    print(f"[prod-layout] {message}", flush=True)


# ------------------------------------------------------------------------------------------ PostgreSQL


def _with_database(dsn: str, database: str, *, scheme: str | None = None) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((scheme or parts.scheme, parts.netloc, f"/{quote(database)}", parts.query, ""))


def _admin_connection(dsn: str):
    import psycopg

    return psycopg.connect(dsn, autocommit=True, connect_timeout=10)


def databases_create(dsn: str, name: str) -> dict[str, str]:
    """<name>_django, <name>_prefect and <name>_warehouse on the server of `dsn` (a superuser's), made if
    missing; returns their URLs: Django's (psycopg 3), Prefect's (asyncpg) and the warehouse's."""
    if not SAFE_NAME.match(name):
        raise LayoutError(f"--name must be lower-case letters, digits and _ (a database prefix), got {name!r}")
    with _admin_connection(dsn) as connection:
        existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
        for suffix in ("django", "prefect", "warehouse"):
            if f"{name}_{suffix}" not in existing:
                connection.execute(f'CREATE DATABASE "{name}_{suffix}"')
    return {
        "django": _with_database(dsn, f"{name}_django", scheme="postgresql"),
        "prefect": _with_database(dsn, f"{name}_prefect", scheme="postgresql+asyncpg"),
        "warehouse": _with_database(dsn, f"{name}_warehouse", scheme="postgresql"),
    }


def databases_drop(dsn: str, name: str) -> None:
    with _admin_connection(dsn) as connection:
        for suffix in ("django", "prefect", "warehouse"):
            connection.execute(f'DROP DATABASE IF EXISTS "{name}_{suffix}" WITH (FORCE)')


def warehouse_settings(warehouse_url: str) -> dict:
    """The warehouse as the API's PostgreSQL warehouse body wants it (host, port, database, user, password)."""
    parts = urlsplit(warehouse_url)
    from urllib.parse import unquote

    return {
        "host": parts.hostname,
        "port": parts.port or 5432,
        "database": parts.path.strip("/"),
        "username": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
    }


# ------------------------------------------------------------------------------------------ processes


def _processes() -> list[tuple[int, str, int, int]]:
    """(pid, state, parent pid, process group) of every process, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        found.append((int(entry.name), fields[0], int(fields[1]), int(fields[2])))
    return found


def _process_group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (a zombie waiting for its parent to reap it does not)."""
    return any(group == pgid and state != "Z" for _, state, _, group in _processes())


def descendant_groups(pid: int) -> set[int]:
    """The process groups of `pid`'s descendants: a worker's flow-run processes run in sessions of their own."""
    processes = _processes()
    children: dict[int, list[tuple[int, int]]] = {}
    for child, state, parent, group in processes:
        if state != "Z":
            children.setdefault(parent, []).append((child, group))
    groups, todo = set(), [pid]
    while todo:
        for child, group in children.get(todo.pop(), []):
            groups.add(group)
            todo.append(child)
    return groups


def kill_groups(groups: set[int], *, timeout: float = 15) -> None:
    """SIGTERM to every group, then SIGKILL to those still there after `timeout` seconds."""
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_process_group_alive(g) for g in groups):
        time.sleep(0.2)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


@dataclass
class Started:
    """One process of the layout as layout.json keeps it."""

    name: str
    pid: int
    log: str
    url: str = ""


@dataclass
class LayoutState:
    root: str
    name: str
    pg_dsn_host: str
    prefect_api_url: str
    proxy_url: str
    django_url: str
    airbyte_url: str
    work_pool: str
    databases: dict[str, str]
    processes: list[Started] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)  # the database URLs carry the password

    @classmethod
    def load(cls, path: Path) -> LayoutState:
        data = json.loads(path.read_text())
        data["processes"] = [Started(**p) for p in data["processes"]]
        return cls(**data)


class ProductionLayout:
    """Starts and stops the layout. In-process users (the tests, bench/scale.py) keep the object; the
    command line keeps layout.json and stops from it."""

    def __init__(
        self,
        root: Path,
        pg_dsn: str,
        *,
        name: str = "ddpui_layout",
        heartbeat_seconds: int = HEARTBEAT_SECONDS,
        reconcile_seconds: float = RECONCILE_SECONDS,
        worker_query_seconds: int = 2,
        worker_limit: int = WORKER_LIMIT,
        django_workers: int = 2,
        django_threads: int = 4,
        sync_seconds: float = 0.5,
    ):
        self.root = Path(root).resolve()
        self.pg_dsn = pg_dsn
        self.name = name
        self.heartbeat_seconds = heartbeat_seconds
        self.reconcile_seconds = reconcile_seconds
        self.worker_query_seconds = worker_query_seconds
        self.worker_limit = worker_limit
        self.django_workers = django_workers
        self.django_threads = django_threads
        self.sync_seconds = sync_seconds
        self.processes: dict[str, ManagedProcess] = {}
        self.keys: dict[str, str] = {}
        self.state: LayoutState | None = None

    # ---------------------------------------------------------------- paths
    @property
    def state_file(self) -> Path:
        return self.root / "layout.json"

    def dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _secrets(self) -> dict[str, str]:
        path = self.root / "secrets.json"
        known = json.loads(path.read_text()) if path.exists() else {}
        for key in ("proxy_token", "webhook_secret", "django_secret_key", "operator_password"):
            known.setdefault(key, secrets.token_urlsafe(24))
        path.write_text(json.dumps(known, indent=2))
        path.chmod(0o600)
        return known

    # ---------------------------------------------------------------- environments
    def django_env(self) -> dict[str, str]:
        state = self.state
        env = dict(os.environ)
        env.update(
            DATABASE_URL=state.databases["django"],
            DDPUI_DATA_DIR=str(self.dir("django")),
            DJANGO_SECRET_KEY=self.keys["django_secret_key"],
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            PROXY_URL=state.proxy_url,
            PROXY_TOKEN=self.keys["proxy_token"],
            PREFECT_WORK_POOL=WORK_POOL,
            PREFECT_API_URL=state.prefect_api_url,
            PREFECT_HOME=str(self.dir("django") / "prefect-home"),
            AIRBYTE_SERVER_HOST="127.0.0.1",
            AIRBYTE_SERVER_PORT=str(urlsplit(state.airbyte_url).port),
            AIRBYTE_USERNAME=AIRBYTE_USERNAME,
            AIRBYTE_PASSWORD=AIRBYTE_PASSWORD,
            CLIENT_DBT_ROOT=str(self.dir("django") / "clients"),
            WEBHOOK_SECRET=self.keys["webhook_secret"],
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
            DDPUI_LOG_LEVEL="WARNING",
            PYTHONPATH=str(REPO_ROOT),
        )
        return env

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(REPO_ROOT / "manage.py"), *args],
            env=self.django_env(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise LayoutError(f"manage.py {args[0]} failed:\n{(done.stdout + done.stderr)[-3000:]}")
        return done.stdout

    # ---------------------------------------------------------------- start
    def start(self) -> LayoutState:
        if self.state_file.exists():
            old = LayoutState.load(self.state_file)
            if any(_process_group_alive(p.pid) for p in old.processes):
                raise LayoutError(f"a layout is already running from {self.root}: stop it first (stop --root ...)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.keys = self._secrets()
        say(f"databases {self.name}_django, {self.name}_prefect, {self.name}_warehouse on {self._pg_host()}")
        databases = databases_create(self.pg_dsn, self.name)
        ports = {key: free_port() for key in ("prefect", "proxy", "django", "airbyte")}
        self.state = LayoutState(
            root=str(self.root),
            name=self.name,
            pg_dsn_host=self._pg_host(),
            prefect_api_url=f"http://127.0.0.1:{ports['prefect']}/api",
            proxy_url=f"http://127.0.0.1:{ports['proxy']}",
            django_url=f"http://127.0.0.1:{ports['django']}",
            airbyte_url=f"http://127.0.0.1:{ports['airbyte']}",
            work_pool=WORK_POOL,
            databases=databases,
        )
        try:
            self._start_all(ports)
        except BaseException:
            self.stop()
            raise
        return self.state

    def _pg_host(self) -> str:
        parts = urlsplit(self.pg_dsn)
        return f"{parts.hostname}:{parts.port or 5432}"

    def _track(self, name: str, process: ManagedProcess, url: str = "") -> None:
        self.processes[name] = process
        self.state.processes.append(Started(name=name, pid=process.process.pid, log=str(process.log_path), url=url))
        self.state.save(self.state_file)

    def _start_all(self, ports: dict[str, int]) -> None:
        state = self.state
        say(f"Prefect server on {state.prefect_api_url} (PostgreSQL database {self.name}_prefect)")
        server = PrefectServer(self.dir("prefect-server"), ports["prefect"], database_url=state.databases["prefect"])
        ManagedProcess.start(server)  # waited for below, after the work that does not need it
        self._track("prefect-server", server, state.prefect_api_url)

        say(f"Airbyte emulator (the test double standing in for Airbyte) on {state.airbyte_url}")
        emulator = ManagedProcess(
            [
                sys.executable,
                "-m",
                "devtools.airbyte_emulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["airbyte"]),
                "--username",
                AIRBYTE_USERNAME,
                "--password",
                AIRBYTE_PASSWORD,
                "--sync-seconds",
                str(self.sync_seconds),
                "--state-file",
                str(self.dir("airbyte-emulator") / "state.json"),
            ],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            log_path=self.dir("airbyte-emulator") / "emulator.log",
            cwd=REPO_ROOT,
        )
        emulator.start()
        self._track("airbyte-emulator", emulator, state.airbyte_url)

        say("Django migrations on PostgreSQL")
        self.manage("migrate", "--noinput")
        self.manage(
            "createorganduser", "--email", OPERATOR_EMAIL, "--password", self.keys["operator_password"], "--staff"
        )

        wait_http_ok(f"{state.prefect_api_url}/health", timeout=180, process=server.process, log=server.log_path)
        say("Prefect server is up")
        created = httpx.post(f"{state.prefect_api_url}/work_pools/", json={"name": WORK_POOL, "type": "process"})
        if created.status_code not in (201, 409):
            raise LayoutError(f"could not create the work pool {WORK_POOL}: {created.text[:300]}")
        self.apply_crash_detection()

        for name in WORKER_NAMES:
            self.start_worker(name)

        say(f"proxy on {state.proxy_url}")
        proxy = ManagedProcess(
            [sys.executable, "-m", "proxy", "--host", "127.0.0.1", "--port", str(ports["proxy"])],
            env={
                **os.environ,
                "PREFECT_API_URL": state.prefect_api_url,
                "PREFECT_HOME": str(self.dir("proxy") / "prefect-home"),
                "PROXY_TOKEN": self.keys["proxy_token"],
                "PROXY_WORK_POOL": WORK_POOL,
                "PYTHONPATH": str(REPO_ROOT),
            },
            log_path=self.dir("proxy") / "proxy.log",
            cwd=REPO_ROOT,
        )
        proxy.start()
        self._track("proxy", proxy, state.proxy_url)

        say(f"Django (gunicorn, {self.django_workers} processes x {self.django_threads} threads) on {state.django_url}")
        django = ManagedProcess(
            [
                str(VENV_BIN / "gunicorn"),
                "ddpui.wsgi:application",
                "--bind",
                f"127.0.0.1:{ports['django']}",
                "--workers",
                str(self.django_workers),
                "--threads",
                str(self.django_threads),
                "--timeout",
                "120",
                "--access-logfile",
                "-",
            ],
            env=self.django_env(),
            log_path=self.dir("django") / "gunicorn.log",
            cwd=REPO_ROOT,
        )
        django.start()
        self._track("django", django, state.django_url)

        wait_http_ok(f"{state.proxy_url}/proxy/health", timeout=60, process=proxy.process, log=proxy.log_path)
        wait_http_ok(f"{state.django_url}/admin/login/", timeout=60, process=django.process, log=django.log_path)
        wait_http_ok(f"{state.airbyte_url}/api/v1/health", timeout=30, process=emulator.process)

        say("webhook: manage.py setup_prefect_webhook")
        for line in self.manage(
            "setup_prefect_webhook", "--url", f"{state.django_url}/webhooks/v1/notification/", "--name", WEBHOOK_NAME
        ).splitlines():
            say(f"  {line}")

        say(f"lock reconciler: manage.py reconcile_locks --every {self.reconcile_seconds:g}")
        reconciler = ManagedProcess(
            [sys.executable, str(REPO_ROOT / "manage.py"), "reconcile_locks", "--every", f"{self.reconcile_seconds:g}"],
            env=self.django_env(),
            log_path=self.dir("reconciler") / "reconciler.log",
            cwd=REPO_ROOT,
        )
        reconciler.start()
        self._track("reconciler", reconciler)
        say(f"up: Django {state.django_url}  (operator {OPERATOR_EMAIL}, password in {self.root / 'secrets.json'})")

    def start_worker(self, name: str) -> PrefectWorker:
        """A process worker named `name` on the pool (also to replace one that died)."""
        worker = PrefectWorker(
            self.state.prefect_api_url,
            self.dir(name),
            WORK_POOL,
            query_seconds=self.worker_query_seconds,
            # each worker keeps its own copies of the orgs' repositories: no disk is shared with Django
            extra_env={
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(self.heartbeat_seconds),
                "DDPUI_WORKER_CACHE_DIR": str(self.dir(name) / "cache"),
            },
        )
        worker.args += ["--name", name, "--limit", str(self.worker_limit)]
        worker.log_path = self.dir(name) / "worker.log"
        say(f"Prefect worker '{name}' on pool '{WORK_POOL}' (heartbeats every {self.heartbeat_seconds} s)")
        ManagedProcess.start(worker)
        self.state.processes = [p for p in self.state.processes if p.name != name]
        self._track(name, worker)
        deadline = time.monotonic() + 60
        while not self._worker_online(name):
            if not worker.running:
                raise LayoutError(f"worker {name} exited early:\n{worker.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise LayoutError(f"worker {name} did not register within 60 s: see {worker.log_path}")
            time.sleep(0.3)
        return worker

    def _worker_online(self, name: str) -> bool:
        response = httpx.post(
            f"{self.state.prefect_api_url}/work_pools/{WORK_POOL}/workers/filter",
            json={"limit": 200},
            timeout=10,
        )
        return response.status_code == 200 and any(
            w["name"] == name and w.get("status") == "ONLINE" for w in response.json()
        )

    def apply_crash_detection(self) -> str:
        """Creates Prefect's automation that marks runs whose heartbeats stopped Crashed, replacing any
        automation of the same name (so applying it twice leaves one). Returns its id."""
        import yaml

        definition = yaml.safe_load(CRASH_AUTOMATION_FILE.read_text())
        api = self.state.prefect_api_url
        found = httpx.post(
            f"{api}/automations/filter", json={"automations": {"name": {"any_": [definition["name"]]}}}, timeout=30
        )
        found.raise_for_status()
        for existing in found.json():
            httpx.delete(f"{api}/automations/{existing['id']}", timeout=30).raise_for_status()
        created = httpx.post(f"{api}/automations/", json=definition, timeout=30)
        if created.status_code != 201:
            raise LayoutError(f"Prefect refused the crash-detection automation: {created.text[:500]}")
        say(f"crash detection: automation '{definition['name']}' ({created.json()['id']})")
        return created.json()["id"]

    # ---------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stops every process of the layout (newest first), with the flow-run processes of the workers."""
        if self.state is None:
            return
        layout_stop(self.state, say_stopping=False)
        for process in self.processes.values():
            if process.process is not None:
                with contextlib.suppress(Exception):
                    process.process.wait(timeout=5)  # reap: they are our children
                process.process = None
        self.processes.clear()


def layout_stop(state: LayoutState, *, say_stopping: bool = True) -> None:
    """Stop by process group from what layout.json recorded, newest first. A worker's flow-run processes live
    in sessions of their own: their groups are found from the process tree and stopped with the worker."""
    for started in reversed(state.processes):
        if not _process_group_alive(started.pid):
            continue
        groups = {started.pid, *descendant_groups(started.pid)}
        if say_stopping:
            say(f"stopping {started.name} (process group {started.pid})")
        kill_groups(groups)


def layout_status(state: LayoutState) -> list[str]:
    lines = []
    for started in state.processes:
        alive = "running" if _process_group_alive(started.pid) else "stopped"
        lines.append(f"{started.name:<17} {alive:<8} pid {started.pid:<8} {started.url or ''}  log {started.log}")
    return lines


# ------------------------------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.prod_layout", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"data directory (default {DEFAULT_ROOT})")
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("DDPUI_TEST_PG_DSN", ""),
        help="a PostgreSQL superuser's DSN (default $DDPUI_TEST_PG_DSN); start it with scripts/postgres.sh",
    )
    parser.add_argument("--name", default="ddpui_layout", help="prefix of the three databases (default ddpui_layout)")
    parser.add_argument("--drop-databases", action="store_true", help="stop: also drop the three databases")
    args = parser.parse_args(argv)
    state_file = args.root.resolve() / "layout.json"
    try:
        if args.command == "start":
            if not args.pg_dsn:
                raise LayoutError("--pg-dsn (or DDPUI_TEST_PG_DSN) is required: see scripts/postgres.sh start")
            state = ProductionLayout(args.root, args.pg_dsn, name=args.name).start()
            for line in layout_status(state):
                say(line)
            return 0
        if not state_file.exists():
            raise LayoutError(f"no layout recorded in {state_file}")
        state = LayoutState.load(state_file)
        if args.command == "status":
            for line in layout_status(state):
                print(line)
            return 0 if all(_process_group_alive(p.pid) for p in state.processes) else 1
        layout_stop(state)
        if args.drop_databases:
            if not args.pg_dsn:
                raise LayoutError("--drop-databases needs --pg-dsn (or DDPUI_TEST_PG_DSN)")
            databases_drop(args.pg_dsn, state.name)
            say(f"dropped {state.name}_django, {state.name}_prefect, {state.name}_warehouse")
        say("stopped")
        return 0
    except LayoutError as exc:
        print(f"[prod-layout] {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
