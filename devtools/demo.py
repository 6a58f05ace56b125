"""The local demo: the whole stack on 127.0.0.1, a demo org set up through the project's own API, one
pipeline run followed to its end.

    python -m devtools.demo [--data-dir var/demo] [--exit-after-run | --no-run]
                            [--django-port 8000] [--proxy-port 8085] [--airbyte-port 8001] [--prefect-port 4200]

Everything it keeps is under the data directory, so running it again reuses what the last run made.
Ctrl-C (or SIGTERM) stops every process it started, newest first. `scripts/run.sh` calls it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from ddpcontract.states import DBT_TEST_FAILED_STATE_NAME, TERMINAL_STATES, StateType
from ddpcontract.tasks import TaskSlug, TaskType
from ddpcontract.warehouses import WarehouseType
from devtools.airbyte_emulator import SAMPLE_SOURCE_DEFINITION_ID
from devtools.processes import REPO_ROOT, ManagedProcess, PrefectServer, PrefectWorker, wait_http_ok

SAMPLE_DBT_PROJECT = REPO_ROOT / "devtools" / "sample_dbt_project"
# the schema the sample dbt project reads its sources from (docs/devtools.md): the sync must write there
SOURCE_SCHEMA = "airbyte_raw"
DBT_SCHEMA = "analytics"
ORG_NAME = "Demo Org"
SOURCE_NAME = "Sample data"
SOURCE_ROWS = 20
CONNECTION_NAME = "Sample data to warehouse"
PIPELINE_NAME = "Demo nightly"
PIPELINE_CRON = "0 2 * * *"
TRANSFORM_SLUGS = [TaskSlug.GIT_PULL, TaskSlug.DBT_DEPS, TaskSlug.DBT_RUN, TaskSlug.DBT_TEST]
WORK_POOL = "ddpui"  # Django's PREFECT_WORK_POOL default
AIRBYTE_USERNAME = "airbyte"
AIRBYTE_PASSWORD = "password"
WEBHOOK_NAME = "ddpui-demo-flow-run-notifications"  # the automation's and its Webhook block's
OLD_WEBHOOK_AUTOMATION = "ddpui-demo: flow-run states to the ddpui webhook"  # what older demos made
RECONCILE_SECONDS = 60  # a lost run end is repaired within two minutes (docs/reliability.md)
STREAM_HEADER = re.compile(r"^PID \d+ stream output:$")
PORT_OPTIONS = [
    ("django", "DDPUI_PORT", 8000),
    ("proxy", "DDPUI_PROXY_PORT", 8085),
    ("airbyte", "DDPUI_AIRBYTE_PORT", 8001),
    ("prefect", "DDPUI_PREFECT_PORT", 4200),
]
TERMINAL = TERMINAL_STATES
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "ddpui demo",
    "GIT_AUTHOR_EMAIL": "demo@ddpui.invalid",
    "GIT_COMMITTER_NAME": "ddpui demo",
    "GIT_COMMITTER_EMAIL": "demo@ddpui.invalid",
}


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: stop what was started, then leave."""


class DemoError(RuntimeError):
    """Something the operator can fix; the message says what."""


def say(message: str = "") -> None:
    print(f"[demo] {message}" if message else "", flush=True)


# ------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Ports:
    django: int
    proxy: int
    airbyte: int
    prefect: int

    def named(self) -> list[tuple[str, int, str]]:
        return [
            ("Django", self.django, "--django-port / DDPUI_PORT"),
            ("proxy", self.proxy, "--proxy-port / DDPUI_PROXY_PORT"),
            ("Airbyte emulator", self.airbyte, "--airbyte-port / DDPUI_AIRBYTE_PORT"),
            ("Prefect server", self.prefect, "--prefect-port / DDPUI_PREFECT_PORT"),
        ]


@dataclass(frozen=True)
class Layout:
    """Where the demo keeps its state, all under one data directory."""

    root: Path

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def django_data(self) -> Path:
        return self.root / "django"

    @property
    def clients(self) -> Path:
        return self.root / "clients"

    @property
    def emulator_state(self) -> Path:
        return self.root / "airbyte-emulator.json"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse" / "demo.duckdb"

    @property
    def git_remote(self) -> Path:
        return self.root / "git" / "sample-dbt.git"

    @property
    def git_author(self) -> Path:
        return self.root / "git" / "sample-dbt-author"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def ready_file(self) -> Path:
        return self.root / "ready.json"


def load_secrets(layout: Layout) -> dict[str, str]:
    """The proxy token, webhook secret and Django key: made once, kept (mode 0600) so re-runs agree."""
    wanted = ("proxy_token", "webhook_secret", "django_secret_key")
    known: dict[str, str] = {}
    if layout.secrets_file.exists():
        known = json.loads(layout.secrets_file.read_text())
    if all(known.get(key) for key in wanted):
        return known
    for key in wanted:
        known.setdefault(key, secrets.token_urlsafe(32))
    layout.secrets_file.write_text(json.dumps(known, indent=2))
    layout.secrets_file.chmod(0o600)
    return known


def postgres_warehouse(dsn: str) -> dict:
    """The Airbyte destination settings of a PostgreSQL warehouse given as postgresql://user:pass@host:port/db."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path.strip("/"):
        raise DemoError(f"DDPUI_DEMO_WAREHOUSE_DSN must look like postgresql://user:pass@host:port/db, got {dsn!r}")
    return {
        "host": parts.hostname,
        "port": parts.port or 5432,
        "database": parts.path.strip("/"),
        "username": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
    }


def check_ports_free(ports: Ports) -> None:
    for name, port, how in ports.named():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise DemoError(
                    f"port {port} on 127.0.0.1 (for the {name}) is busy: stop what listens there, "
                    f"or choose another port with {how}"
                ) from None


# ------------------------------------------------------------------------------------------ git


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_IDENTITY}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise DemoError(f"git {' '.join(args)} failed in {cwd}: {done.stderr.strip()}")
    return done.stdout.strip()


def sample_git_repo(layout: Layout) -> str:
    """A local bare repository holding devtools/sample_dbt_project on branch main; returns its file:// URL.
    On a re-run the sample project's current files are committed and pushed if they changed."""
    bare, author = layout.git_remote, layout.git_author
    if not (bare / "HEAD").exists():
        bare.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(author, ignore_errors=True)
        _git("init", "-q", "--bare", "-b", "main", str(bare), cwd=bare.parent)
        _git("init", "-q", "-b", "main", str(author), cwd=bare.parent)
        _git("remote", "add", "origin", str(bare), cwd=author)
    for child in author.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    shutil.copytree(
        SAMPLE_DBT_PROJECT,
        author,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb*", "__pycache__"),
    )
    _git("add", "-A", cwd=author)
    if _git("status", "--porcelain", cwd=author):
        _git("commit", "-q", "-m", "sample dbt project", cwd=author)
        _git("push", "-q", "origin", "main", cwd=author)
    return bare.as_uri()


# ------------------------------------------------------------------------------------------ processes


@dataclass
class Stack:
    """The processes the demo started, stopped newest first."""

    started: list[tuple[str, ManagedProcess]] = field(default_factory=list)

    def add(self, name: str, process: ManagedProcess) -> ManagedProcess:
        self.started.append((name, process))
        return process

    def check_alive(self) -> None:
        for name, process in self.started:
            if not process.running:
                raise DemoError(f"the {name} stopped unexpectedly: see {process.log_path}")

    def stop(self) -> None:
        for name, process in reversed(self.started):
            if process.process is not None:
                say(f"stopping the {name}")
                process.stop()
        self.started.clear()


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def django_env(layout: Layout, ports: Ports, keys: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DDPUI_DATA_DIR=str(layout.django_data),
        DJANGO_SECRET_KEY=keys["django_secret_key"],
        PROXY_URL=f"http://127.0.0.1:{ports.proxy}",
        PROXY_TOKEN=keys["proxy_token"],
        PREFECT_WORK_POOL=WORK_POOL,
        PREFECT_API_URL=f"http://127.0.0.1:{ports.prefect}/api",
        PREFECT_HOME=str(layout.prefect_home),
        AIRBYTE_SERVER_HOST="127.0.0.1",
        AIRBYTE_SERVER_PORT=str(ports.airbyte),
        AIRBYTE_USERNAME=AIRBYTE_USERNAME,
        AIRBYTE_PASSWORD=AIRBYTE_PASSWORD,
        CLIENT_DBT_ROOT=str(layout.clients),
        WEBHOOK_SECRET=keys["webhook_secret"],
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    return env  # DATABASE_URL, when set, passes through


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        _python(str(REPO_ROOT / "manage.py"), *args), env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise DemoError(f"manage.py {args[0]} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


def start_stack(stack: Stack, layout: Layout, ports: Ports, keys: dict[str, str], account: tuple[str, str]) -> None:
    prefect_api = f"http://127.0.0.1:{ports.prefect}/api"
    say(f"starting the Prefect server on 127.0.0.1:{ports.prefect} (SQLite in {layout.prefect_home})")
    server = PrefectServer(layout.prefect_home, ports.prefect, ui=True)
    server.log_path = layout.logs / "prefect-server.log"
    stack.add("Prefect server", server)
    ManagedProcess.start(server)  # waited for below, after the work that does not need it

    say(f"starting the Airbyte emulator (a test double) on 127.0.0.1:{ports.airbyte}")
    emulator = stack.add(
        "Airbyte emulator",
        ManagedProcess(
            _python(
                "-m",
                "devtools.airbyte_emulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports.airbyte),
                "--username",
                AIRBYTE_USERNAME,
                "--password",
                AIRBYTE_PASSWORD,
                "--state-file",
                str(layout.emulator_state),
            ),
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            log_path=layout.logs / "airbyte-emulator.log",
            cwd=REPO_ROOT,
        ),
    )
    emulator.start()

    env = django_env(layout, ports, keys)
    say("applying Django migrations" + (" (DATABASE_URL)" if os.environ.get("DATABASE_URL") else ""))
    manage(env, "migrate", "--noinput")
    email, password = account
    for line in manage(env, "createorganduser", "--email", email, "--password", password, "--staff").splitlines():
        say(f"  {line}")

    wait_http_ok(f"{prefect_api}/health", timeout=180, process=server.process, log=server.log_path)
    wait_http_ok(f"http://127.0.0.1:{ports.airbyte}/api/v1/health", timeout=30, process=emulator.process)
    say("Prefect server is up")

    say(f"starting a Prefect process worker on pool '{WORK_POOL}'")
    worker = PrefectWorker(
        prefect_api,
        layout.prefect_home,
        WORK_POOL,
        query_seconds=1,
        extra_env={"DDPUI_WORKER_CACHE_DIR": str(layout.root / "worker-cache")},
    )
    worker.log_path = layout.logs / "prefect-worker.log"
    # flow runs forked from a warm Python start in a fraction of a second (docs/operations.md, fast starts)
    warm_start = stack.add(
        "warm start",
        ManagedProcess(
            _python("-m", "ddpui.flows.warm_start", "serve"),
            env=dict(worker.env),
            log_path=layout.logs / "warm-start.log",
            cwd=REPO_ROOT,
        ),
    )
    warm_start.start()
    stack.add("Prefect worker", worker)
    worker.start()
    subprocess.run(
        _python("-m", "ddpui.flows.warm_start", "configure-pool", WORK_POOL),
        env=dict(worker.env),
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )

    say(f"starting the proxy on 127.0.0.1:{ports.proxy}")
    proxy = stack.add(
        "proxy",
        ManagedProcess(
            _python("-m", "proxy", "--host", "127.0.0.1", "--port", str(ports.proxy)),
            env={
                **os.environ,
                "PREFECT_API_URL": prefect_api,
                "PREFECT_HOME": str(layout.prefect_home),
                "PROXY_TOKEN": keys["proxy_token"],
                "PROXY_WORK_POOL": WORK_POOL,
                "PYTHONPATH": str(REPO_ROOT),
            },
            log_path=layout.logs / "proxy.log",
            cwd=REPO_ROOT,
        ),
    )
    proxy.start()

    say(f"starting Django on 127.0.0.1:{ports.django}")
    django = stack.add(
        "Django server",
        ManagedProcess(
            # --insecure: serve the admin's static files although DEBUG is off (local demo only)
            _python(str(REPO_ROOT / "manage.py"), "runserver", f"127.0.0.1:{ports.django}", "--noreload", "--insecure"),
            env=env,
            log_path=layout.logs / "django.log",
            cwd=REPO_ROOT,
        ),
    )
    django.start()

    # Prefect does not deliver a notification again after a failure: this loop repairs a lost run end
    say(f"starting the lock reconciler (manage.py reconcile_locks --every {RECONCILE_SECONDS})")
    reconciler = stack.add(
        "lock reconciler",
        ManagedProcess(
            _python(str(REPO_ROOT / "manage.py"), "reconcile_locks", "--every", str(RECONCILE_SECONDS)),
            env=env,
            log_path=layout.logs / "reconciler.log",
            cwd=REPO_ROOT,
        ),
    )
    reconciler.start()
    wait_http_ok(f"http://127.0.0.1:{ports.proxy}/proxy/health", timeout=60, process=proxy.process, log=proxy.log_path)
    wait_http_ok(
        f"http://127.0.0.1:{ports.django}/admin/login/", timeout=60, process=django.process, log=django.log_path
    )
    say("every service is up")


def wire_webhook(ports: Ports, env: dict[str, str]) -> None:
    """Prefect tells Django about every flow-run state change, set up by the command production runs
    (`manage.py setup_prefect_webhook`, through the proxy): a Webhook block (the secret header is a SecretDict,
    masked in the UI) and an automation calling it. Updated on every start (ports may change)."""
    url = f"http://127.0.0.1:{ports.django}/webhooks/v1/notification/"
    manage(env, "setup_prefect_webhook", "--url", url, "--name", WEBHOOK_NAME)
    # a demo made by an older ddpui wired its own automation: it would post every change twice
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(OLD_WEBHOOK_AUTOMATION):
            client.delete_automation(existing.id)


# ------------------------------------------------------------------------------------------ the API


class Api:
    """The project's HTTP API, called as a web UI would."""

    def __init__(self, base_url: str):
        self.http = httpx.Client(base_url=base_url, timeout=120)
        self.headers: dict[str, str] = {}

    def call(self, method: str, path: str, body: dict | None = None, *, ok=(200,)) -> httpx.Response:
        response = self.http.request(method, path, json=body, headers=self.headers)
        if response.status_code not in ok:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:500]
            raise DemoError(f"{method} {path} answered {response.status_code}: {detail}")
        return response

    def get(self, path: str, **kwargs):
        return self.call("GET", path, **kwargs).json()

    def post(self, path: str, body: dict | None = None, **kwargs):
        return self.call("POST", path, body, **kwargs).json()

    def close(self) -> None:
        self.http.close()


@dataclass
class DemoOrg:
    slug: str
    connection_id: str
    deployment_id: str
    project_dir: str


def _step(created: bool, what: str) -> None:
    say(f"  {'created' if created else 'reused '} {what}")


def bootstrap(api: Api, *, account: tuple[str, str], warehouse: dict, git_url: str) -> DemoOrg:
    """Login, org, warehouse, source, connection, dbt workspace, transform tasks and the pipeline,
    each through its endpoint; every step looks before it creates, so a re-run changes nothing."""
    email, password = account
    say(f"setting up '{ORG_NAME}' through the API as {email}")
    token = api.post("/api/v1/login/", {"email": email, "password": password}, ok=(200,))["token"]
    api.headers = {"Authorization": f"Bearer {token}"}

    memberships = api.get("/api/v1/currentuser")["orgs"]
    org = next((m for m in memberships if m["name"].lower() == ORG_NAME.lower()), None)
    created = org is None
    if created:
        org = api.post("/api/v1/organizations/", {"name": ORG_NAME})
    _step(created, f"organization '{org['name']}' (slug {org['slug']})")
    api.headers["x-dalgo-org"] = org["slug"]

    existing = api.get("/api/v1/organizations/warehouses")["warehouses"]
    if not existing:
        api.post("/api/v1/organizations/warehouse/", warehouse)
    _step(not existing, f"{warehouse['wtype']} warehouse '{warehouse['name']}'")

    sources = [s for s in api.get("/api/airbyte/sources/") if s["name"] == SOURCE_NAME]
    source = (
        sources[0]
        if sources
        else api.post(
            "/api/airbyte/sources/",
            {
                "name": SOURCE_NAME,
                "sourceDefId": SAMPLE_SOURCE_DEFINITION_ID,
                "config": {"count": SOURCE_ROWS, "seed": 7},
            },
        )
    )
    _step(not sources, f"source '{SOURCE_NAME}' ({SOURCE_ROWS} rows per stream)")

    connections = [c for c in api.get("/api/airbyte/v1/connections") if c["name"] == CONNECTION_NAME]
    connection = (
        connections[0]
        if connections
        else api.post(
            "/api/airbyte/v1/connections/",
            {"name": CONNECTION_NAME, "sourceId": source["sourceId"], "destinationSchema": SOURCE_SCHEMA},
        )
    )
    _step(not connections, f"connection '{CONNECTION_NAME}' into schema {SOURCE_SCHEMA}")

    workspace = api.get("/api/dbt/dbt_workspace")  # {"error": ...} while there is none (the web app's contract)
    missing = "error" in workspace
    body = {"gitrepoUrl": git_url, "defaultSchema": DBT_SCHEMA}
    dbt = api.post("/api/dbt/workspace/", body) if missing else workspace
    _step(missing, f"dbt workspace from {git_url} (schema {DBT_SCHEMA})")

    tasks = api.get("/api/prefect/tasks/transform/")
    # posting again is idempotent and also gives each dbt-run task its own deployment if a demo made by an
    # older ddpui lacks one (the web app runs dbt-run through it)
    lacking = any(t["slug"] == TaskSlug.DBT_RUN and not t.get("deploymentId") for t in tasks)
    if lacking or not all(any(t["slug"] == slug for t in tasks) for slug in TRANSFORM_SLUGS):
        tasks = api.post("/api/prefect/tasks/transform/")
        _step(True, "transform tasks")
    else:
        _step(False, "transform tasks")
    by_slug = {t["slug"]: t["uuid"] for t in tasks}

    pipelines = [p for p in api.get("/api/prefect/v1/flows/") if p["name"] == PIPELINE_NAME]
    for stale in [p for p in pipelines if p["missingInPrefect"]]:
        # the Prefect state was wiped while Django kept the pipeline: make it again
        api.call("DELETE", f"/api/prefect/v1/flows/{stale['deploymentId']}")
    pipelines = [p for p in pipelines if not p["missingInPrefect"]]
    if pipelines:
        deployment_id = pipelines[0]["deploymentId"]
    else:
        body = {
            "name": PIPELINE_NAME,
            "connections": [{"id": connection["connectionId"], "seq": 0}],
            "transformTasks": [{"uuid": by_slug[slug], "seq": seq} for seq, slug in enumerate(TRANSFORM_SLUGS, 1)],
            "cron": PIPELINE_CRON,
        }
        deployment_id = api.post("/api/prefect/v1/flows/", body)["deploymentId"]
    _step(
        not pipelines,
        f"pipeline '{PIPELINE_NAME}' (cron '{PIPELINE_CRON}': {', '.join(['airbyte-sync', *TRANSFORM_SLUGS])})",
    )
    return DemoOrg(
        slug=org["slug"],
        connection_id=connection["connectionId"],
        deployment_id=deployment_id,
        project_dir=dbt["project_dir"],
    )


# ------------------------------------------------------------------------------------------ the run


class Progress:
    """Log lines scroll; on a terminal, one status line (elapsed time, state, current task) stays below them."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.status_text = ""

    def line(self, text: str) -> None:
        if self.tty and self.status_text:
            sys.stdout.write("\r\033[K")
        print(text, flush=True)
        if self.tty and self.status_text:
            sys.stdout.write(self.status_text)
            sys.stdout.flush()

    def status(self, text: str) -> None:
        if self.tty:
            self.status_text = f"  ⏱ {text}"
            sys.stdout.write("\r\033[K" + self.status_text)
            sys.stdout.flush()

    def done(self) -> None:
        if self.tty and self.status_text:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()
        self.status_text = ""


def cancel_run(api: Api, flow_run_id: str, *, timeout: float) -> str:
    """Cancels a run through the API and waits (bounded) until it is over; returns its last state type."""
    api.call("POST", f"/api/prefect/flow_runs/{flow_run_id}/cancel", ok=(200, 404, 409))
    deadline = time.monotonic() + timeout
    state_type = ""
    while time.monotonic() < deadline:
        response = api.call("GET", f"/api/prefect/flow_runs/{flow_run_id}", ok=(200, 404))
        if response.status_code == 404:
            return "DELETED"
        state_type = response.json()["stateType"]
        if state_type in TERMINAL:
            break
        time.sleep(1)
    return state_type


def force_cancelled(flow_run_id: str) -> None:
    """Marks a run Cancelled in Prefect. Only for a run of this data directory whose process is gone (the demo
    stopped every process when it was interrupted), which Prefect would otherwise show Cancelling forever."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(
            flow_run_id, Cancelled(message="the demo that started this run was stopped"), force=True
        )


def trigger(api: Api, demo: DemoOrg, manage_env: dict[str, str]) -> dict:
    """Starts the pipeline. A run left over from an interrupted demo that still holds the locks is
    cancelled first (once), and the locks reconciled."""
    path = f"/api/prefect/v1/flows/{demo.deployment_id}/flow_run/"
    response = api.call("POST", path, ok=(200, 409))
    if response.status_code == 200:
        return response.json()
    pipeline = next((p for p in api.get("/api/prefect/v1/flows/") if p["deploymentId"] == demo.deployment_id), {})
    holder = (pipeline.get("lock") or {}).get("flowRunId")
    say(f"the pipeline is still locked by an earlier run ({holder or 'no run id'}): cancelling it")
    if holder and cancel_run(api, holder, timeout=20) not in TERMINAL | {"DELETED"}:
        force_cancelled(holder)
        cancel_run(api, holder, timeout=5)  # reads the new state back, so our record and locks follow
    say(manage(manage_env, "reconcile_locks", "--grace-seconds", "0").strip().splitlines()[-1])
    return api.post(path)


def follow(api: Api, flow_run_id: str, *, task_count: int, timeout: float) -> dict:
    """Polls the run and its logs every second until the run is over and its logs are read; returns the run."""
    progress = Progress()
    try:
        return _follow(api, flow_run_id, progress=progress, task_count=task_count, timeout=timeout)
    finally:
        progress.done()


def _follow(api: Api, flow_run_id: str, *, progress: Progress, task_count: int, timeout: float) -> dict:
    started = time.monotonic()
    offset, last_state, current_task, run = 0, None, "", {}
    finished_at = None
    while True:
        elapsed = time.monotonic() - started
        run = api.get(f"/api/prefect/flow_runs/{flow_run_id}")
        state = run["stateName"] or run["stateType"]
        if state != last_state:
            progress.line(f"  [{elapsed:6.1f}s] state: {state}")
            last_state = state
        logs = api.get(f"/api/prefect/flow_runs/{flow_run_id}/logs?offset={offset}")
        lines_read = logs["logs"]["logs"]  # nested as the web app reads them
        for entry in lines_read:
            message = entry["message"].rstrip()
            if message.startswith("task ") and ": attempt " in message:
                current_task = message.split(" (")[0].removeprefix("task ")
            lines = message.splitlines() or [""]
            if len(lines) > 1 and STREAM_HEADER.match(lines[0]):
                lines = lines[1:]  # prefect-shell's "PID n stream output:" before each line of output
            for text in lines:
                progress.line(f"  [{elapsed:6.1f}s] {entry['level_name']:<7} {text}")
        offset = logs["next_offset"] if logs["next_offset"] is not None else offset + len(lines_read)
        terminal = run["stateType"] in TERMINAL
        if terminal and finished_at is None:
            finished_at = time.monotonic()
        # once terminal: until every log line is read and the task results are in (bounded)
        logs_done = logs["next_offset"] is None or not lines_read
        if terminal and ((logs_done and run["taskResults"]) or time.monotonic() - finished_at > 15):
            return run
        if elapsed > timeout:
            raise DemoError(f"flow run {flow_run_id} is still {state} after {timeout:.0f}s")
        position = ""
        if current_task:
            names = [TaskSlug.AIRBYTE_SYNC, *TRANSFORM_SLUGS]
            index = names.index(current_task) + 1 if current_task in names else "?"
            position = f"  task {index}/{task_count} {current_task}"
        progress.status(f"{elapsed:5.0f}s  {state}{position}")
        time.sleep(1)


def outcome(run: dict) -> tuple[bool, list[str]]:
    """Whether the run succeeded, and the lines that tell what it did."""
    results = run["taskResults"]
    by_slug = {r.get("slug"): r for r in results}
    rows = sum(int(r.get("records_synced") or 0) for r in results if r.get("type") == TaskType.AIRBYTE_CONNECTION)
    run_nodes = by_slug.get(TaskSlug.DBT_RUN, {}).get("nodes") or []
    models = [n for n in run_nodes if n.get("unique_id", "").startswith("model.") and n.get("status") == "success"]
    test_nodes = by_slug.get(TaskSlug.DBT_TEST, {}).get("nodes") or []
    passed = sum(1 for n in test_nodes if n.get("status") == "pass")
    failed = sum(1 for n in test_nodes if n.get("status") in ("fail", "error"))
    state = run["stateName"] or run["stateType"]
    success = run["stateType"] == StateType.COMPLETED and run["stateName"] != DBT_TEST_FAILED_STATE_NAME
    lines = [
        f"flow run {run['name']} ({run['flowRunId']}): {state} in {run['totalRunTime']:.1f}s",
        f"  rows synced:       {rows}",
        f"  dbt models built:  {len(models)} ({', '.join(sorted(n['unique_id'].split('.')[-1] for n in models))})",
        f"  dbt tests passed:  {passed}, failed: {failed}",
        "  tasks:",
    ]
    for result in sorted(results, key=lambda r: r.get("seq", 0)):
        duration = result.get("duration_seconds")
        lines.append(
            f"    {result.get('seq')}. {result.get('slug', ''):<13} {result.get('status', ''):<16} "
            f"{f'{duration:.1f}s' if duration is not None else '-':>7}  {result.get('message', '')}"
        )
    if run.get("stateMessage") and not success:
        lines.append(f"  reason: {run['stateMessage']}")
    return success, lines


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=env.get("DDPUI_DEMO_DATA_DIR", "var/demo"), help="default var/demo")
    parser.add_argument("--exit-after-run", action="store_true", help="stop after the run; exit 0 if it completed")
    parser.add_argument(
        "--no-run", action="store_true", help="do not run the pipeline (with --exit-after-run: stop once set up)"
    )
    for name, variable, default in PORT_OPTIONS:
        parser.add_argument(
            f"--{name}-port", type=int, default=int(env.get(variable, default)), help=f"default {default} (${variable})"
        )
    parser.add_argument("--run-timeout", type=float, default=600, help="seconds to wait for the run (default 600)")
    return parser.parse_args(argv)


def _on_signal(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def print_access(layout: Layout, ports: Ports, account: tuple[str, str]) -> None:
    email, password = account
    say()
    say(f"admin       http://127.0.0.1:{ports.django}/admin/   login: {email} / {password}")
    say(f"API docs    http://127.0.0.1:{ports.django}/api/docs  (POST /api/v1/login/ with the same login)")
    say(f"Prefect UI  http://127.0.0.1:{ports.prefect}")
    say(f"logs        {layout.logs}/ (prefect-server, prefect-worker, proxy, django, airbyte-emulator)")
    say(f"state       {layout.root}/ (delete it to start from scratch)")


def run_demo(args: argparse.Namespace, stack: Stack) -> int:
    layout = Layout(Path(args.data_dir).resolve())
    ports = Ports(django=args.django_port, proxy=args.proxy_port, airbyte=args.airbyte_port, prefect=args.prefect_port)
    account = (
        os.environ.get("DDPUI_DEMO_EMAIL", "admin@example.org"),
        os.environ.get("DDPUI_DEMO_PASSWORD", "ddpui-demo-password"),
    )
    check_ports_free(ports)
    for directory in (layout.root, layout.logs, layout.prefect_home, layout.django_data, layout.clients):
        directory.mkdir(parents=True, exist_ok=True)
    layout.ready_file.unlink(missing_ok=True)
    keys = load_secrets(layout)
    # this process talks to Prefect too (the webhook automation): never a temporary server of its own
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{ports.prefect}/api"
    os.environ["PREFECT_HOME"] = str(layout.prefect_home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    warehouse_dsn = os.environ.get("DDPUI_DEMO_WAREHOUSE_DSN", "").strip()
    if warehouse_dsn:
        pg = postgres_warehouse(warehouse_dsn)
        warehouse = {
            "wtype": WarehouseType.POSTGRES,
            "name": "demo warehouse",
            "airbyteConfig": {**pg, "schema": SOURCE_SCHEMA},
        }
        warehouse_text = f"PostgreSQL {pg['host']}:{pg['port']}/{pg['database']}"
    else:
        layout.warehouse.parent.mkdir(parents=True, exist_ok=True)
        warehouse = {
            "wtype": WarehouseType.DUCKDB,
            "name": "demo warehouse",
            "airbyteConfig": {"destination_path": str(layout.warehouse), "schema": SOURCE_SCHEMA},
        }
        warehouse_text = f"DuckDB {layout.warehouse}"
    say(f"data directory {layout.root}; logs in {layout.logs}")
    git_url = sample_git_repo(layout)

    start_stack(stack, layout, ports, keys, account)
    wire_webhook(ports, django_env(layout, ports, keys))
    say("Prefect flow-run notifications go to POST /webhooks/v1/notification/")

    api = Api(f"http://127.0.0.1:{ports.django}")
    try:
        demo = bootstrap(api, account=account, warehouse=warehouse, git_url=git_url)
        layout.ready_file.write_text(
            json.dumps(
                {
                    "django_url": f"http://127.0.0.1:{ports.django}",
                    "prefect_url": f"http://127.0.0.1:{ports.prefect}",
                    "email": account[0],
                    "org_slug": demo.slug,
                    "deployment_id": demo.deployment_id,
                    "pipeline": PIPELINE_NAME,
                    "warehouse": warehouse_text,
                    "dbt_schema": DBT_SCHEMA,
                },
                indent=2,
            )
        )
        success = True
        if not args.no_run:
            manage_env = django_env(layout, ports, keys)
            started = trigger(api, demo, manage_env)
            say(f"running '{PIPELINE_NAME}': flow run {started['name']} ({started['flow_run_id']})")
            try:
                run = follow(api, started["flow_run_id"], task_count=1 + len(TRANSFORM_SLUGS), timeout=args.run_timeout)
            except Interrupted:
                # cancelled while the worker still runs, so the flow process ends and the locks are released
                say("interrupted: cancelling the run before stopping (Ctrl-C again to skip)")
                with contextlib.suppress(Exception):
                    say(f"the run is {cancel_run(api, started['flow_run_id'], timeout=30).lower()}")
                raise
            success, lines = outcome(run)
            say()
            say("outcome")
            for line in lines:
                say(f"  {line}")
            say(f"  warehouse: {warehouse_text}, dbt schema {DBT_SCHEMA}")
            say()
            reconciled = manage(manage_env, "reconcile_locks").strip().splitlines()
            say(f"manage.py reconcile_locks: {reconciled[-1] if reconciled else 'done'}")
    finally:
        api.close()

    print_access(layout, ports, account)
    if args.exit_after_run:
        return 0 if success else 1
    say("Ctrl-C stops everything")
    while True:
        stack.check_alive()
        time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stack = Stack()
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        code = run_demo(args, stack)
    except Interrupted:
        code = 130
    except (DemoError, TimeoutError, RuntimeError) as exc:
        say(f"error: {exc}")
        code = 1
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        stack.stop()
        say("stopped")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


if __name__ == "__main__":
    sys.exit(main())
