"""Fixtures for the flow tests: real flow runs of prefect_flows.py on the session's worker.

Everything is real except Airbyte (the emulator): the Prefect server and worker from tests/conftest.py,
git repositories in tmp, dbt on a copy of the sample project, DuckDB files and PostgreSQL databases.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import httpx
import psycopg
import pytest
from airbyte_prefect.server import AirbyteServer
from prefect import Flow
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.states import Cancelling

from devtools.airbyte_emulator import (
    DUCKDB_DESTINATION_DEFINITION_ID,
    POSTGRES_DESTINATION_DEFINITION_ID,
    SAMPLE_SOURCE_DEFINITION_ID,
    EmulatorServer,
)
from tests.support.git_http import serve_git_with_token

with warnings.catch_warnings():
    # the tests build legacy blocks with prefect_dbt.cli, which warns on import that it is deprecated
    warnings.simplefilter("ignore", UserWarning)
    import prefect_dbt.cli  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_PROJECT = REPO_ROOT / "devtools" / "sample_dbt_project"
SOURCE_SCHEMA = "airbyte_raw"
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "ddpui tests",
    "GIT_AUTHOR_EMAIL": "tests@ddpui.invalid",
    "GIT_COMMITTER_NAME": "ddpui tests",
    "GIT_COMMITTER_EMAIL": "tests@ddpui.invalid",
}
# a distinctive Airbyte password, so a leak would be visible in the logs
AIRBYTE_PASSWORD = f"ab-{secrets.token_hex(8)}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def process_alive(pid: int) -> bool:
    """Whether the process runs; a zombie (ended, not yet reaped by its parent) does not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# ------------------------------------------------------------------------------------------ Prefect


class FlowRuns:
    """Deployments of both flows on the test work pool; starts runs and reads back what they left."""

    def __init__(self, work_pool: str) -> None:
        self.deployment_ids: dict[str, uuid.UUID] = {}
        for entrypoint in ("prefect_flows.py:pipeline_flow", "prefect_flows.py:legacy_pipeline_flow"):
            flow = Flow.from_source(source=str(REPO_ROOT), entrypoint=entrypoint)
            self.deployment_ids[entrypoint.split(":")[1]] = flow.deploy(
                name=f"flows-tests-{flow.name}",
                work_pool_name=work_pool,
                build=False,
                push=False,
                print_next_steps=False,
                ignore_warnings=True,
            )

    def start(self, parameters: dict, flow: str = "pipeline_flow") -> uuid.UUID:
        with get_client(sync_client=True) as client:
            run = client.create_flow_run_from_deployment(self.deployment_ids[flow], parameters=parameters)
        return run.id

    def wait(self, flow_run_id: uuid.UUID, timeout: float = 240):
        """Poll the run until it is terminal (no fixed sleeps), then until its last log has arrived."""
        deadline = time.monotonic() + timeout
        with get_client(sync_client=True) as client:
            while True:
                run = client.read_flow_run(flow_run_id)
                if run.state and run.state.type.value in TERMINAL_STATES:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"flow run {flow_run_id} still {run.state and run.state.name} after {timeout}s")
                time.sleep(0.5)
            # the flow process ships its logs in batches: the engine's last line closes the run's logs
            while "Finished in state" not in self.logs(flow_run_id) and time.monotonic() < deadline:
                time.sleep(0.3)
        return run

    def run(self, parameters: dict, flow: str = "pipeline_flow", timeout: float = 240):
        return self.wait(self.start(parameters, flow), timeout)

    def cancel(self, flow_run_id: uuid.UUID) -> None:
        """Cancel as Prefect's UI (and the proxy) do: propose Cancelling; the worker stops the run."""
        with get_client(sync_client=True) as client:
            result = client.set_flow_run_state(flow_run_id, Cancelling(message="cancelled by the tests"))
        assert result.status.value == "ACCEPT", result

    def wait_terminal(self, flow_run_id: uuid.UUID, timeout: float = 120):
        deadline = time.monotonic() + timeout
        with get_client(sync_client=True) as client:
            while True:
                run = client.read_flow_run(flow_run_id)
                if run.state and run.state.type.value in TERMINAL_STATES:
                    return run
                if time.monotonic() > deadline:
                    raise TimeoutError(f"flow run {flow_run_id} still {run.state and run.state.name} after {timeout}s")
                time.sleep(0.2)

    def task_runs(self, flow_run_id: uuid.UUID) -> dict[str, object]:
        """The run's task runs by name (`<seq>-<slug>`)."""
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return {run.name: run for run in runs}

    def logs(self, flow_run_id: uuid.UUID) -> str:
        messages: list[str] = []
        log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        with get_client(sync_client=True) as client:
            while True:
                page = client.read_logs(log_filter=log_filter, limit=200, offset=len(messages))
                messages.extend(log.message for log in page)
                if len(page) < 200:
                    return "\n".join(messages)

    def task_results(self, flow_run_id: uuid.UUID) -> list[dict]:
        """The rows of the run's "task-results" table artifact."""
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["task-results"]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                )
            )
        assert len(artifacts) == 1, artifacts
        data = artifacts[0].data
        return json.loads(data) if isinstance(data, str) else data


@pytest.fixture(scope="session")
def flow_runs(prefect_server, prefect_worker) -> FlowRuns:
    return FlowRuns(prefect_worker.pool)


# ------------------------------------------------------------------------------------------ Airbyte


class Airbyte:
    """The Airbyte emulator plus the Prefect AirbyteServer block pointing at it."""

    def __init__(self, server: EmulatorServer, block_name: str):
        self.server = server
        self.block_name = block_name
        self.http = httpx.Client(base_url=server.api_url, auth=("airbyte", AIRBYTE_PASSWORD), timeout=10)
        self.workspace_id = self._post("/workspaces/create/", {"name": "flows tests"})["workspaceId"]
        self.source_id = self._post(
            "/sources/create/",
            {
                "workspaceId": self.workspace_id,
                "name": "sample",
                "sourceDefinitionId": SAMPLE_SOURCE_DEFINITION_ID,
                "connectionConfiguration": {"count": 20, "seed": 7},
            },
        )["sourceId"]

    def _post(self, path: str, body: dict) -> dict:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def connection(self, definition_id: str, configuration: dict) -> str:
        destination = self._post(
            "/destinations/create/",
            {
                "workspaceId": self.workspace_id,
                "name": unique("warehouse"),
                "destinationDefinitionId": definition_id,
                "connectionConfiguration": configuration,
            },
        )
        connection = self._post(
            "/connections/create/",
            {"sourceId": self.source_id, "destinationId": destination["destinationId"], "name": unique("sync")},
        )
        return connection["connectionId"]

    def duckdb_connection(self, path: Path) -> str:
        configuration = {"destination_path": str(path), "schema": SOURCE_SCHEMA}
        return self.connection(DUCKDB_DESTINATION_DEFINITION_ID, configuration)

    def postgres_connection(self, warehouse: PostgresWarehouse) -> str:
        return self.connection(
            POSTGRES_DESTINATION_DEFINITION_ID,
            {
                "host": warehouse.host,
                "port": warehouse.port,
                "database": warehouse.dbname,
                "schema": SOURCE_SCHEMA,
                "username": warehouse.user,
                "password": warehouse.password,
            },
        )

    def close(self) -> None:
        self.http.close()


def _start_airbyte(name: str, **controls) -> tuple[EmulatorServer, Airbyte]:
    server = EmulatorServer(host="127.0.0.1", port=0, username="airbyte", password=AIRBYTE_PASSWORD)
    server.start()
    server.configure(**controls)
    block_name = unique(name)
    AirbyteServer(server_host="127.0.0.1", server_port=server.port, username="airbyte", password=AIRBYTE_PASSWORD).save(
        block_name, overwrite=True
    )
    return server, Airbyte(server, block_name)


@pytest.fixture(scope="session")
def airbyte(prefect_server):
    """An emulator whose syncs take a fraction of a second."""
    server, client = _start_airbyte("flows-airbyte", sync_seconds=0.2)
    yield client
    client.close()
    server.stop()


@pytest.fixture(scope="session")
def slow_airbyte(prefect_server):
    """A second emulator whose syncs take a minute (its controls are global, so it is a separate one)."""
    server, client = _start_airbyte("flows-slow-airbyte", sync_seconds=60)
    yield client
    client.close()
    server.stop()


# ------------------------------------------------------------------------------------------ git + dbt


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **GIT_IDENTITY}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclass
class DbtRepo:
    """A bare "remote" holding the sample dbt project, a clone to run in, and a clone to push from."""

    bare: Path
    work: Path
    author: Path

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def push_commit(self, files: dict[str, str], message: str) -> str:
        for relative, content in files.items():
            path = self.author / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        git("add", "-A", cwd=self.author)
        git("commit", "-q", "-m", message, cwd=self.author)
        git("push", "-q", "origin", "main", cwd=self.author)
        git("update-server-info", cwd=self.bare)  # for the HTTP remote (git's "dumb" protocol)
        return git("rev-parse", "HEAD", cwd=self.author)

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture
def dbt_repo(tmp_path) -> DbtRepo:
    bare, author, work = tmp_path / "remote.git", tmp_path / "author", tmp_path / "dbtrepo"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    shutil.copytree(
        SAMPLE_PROJECT, author, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb*")
    )
    git("init", "-q", "-b", "main", cwd=author)
    git("remote", "add", "origin", str(bare), cwd=author)
    git("add", "-A", cwd=author)
    git("commit", "-q", "-m", "sample project", cwd=author)
    git("push", "-q", "origin", "main", cwd=author)
    git("clone", "-q", str(bare), str(work), cwd=tmp_path)
    git("update-server-info", cwd=bare)
    return DbtRepo(bare=bare, work=work, author=author)


@pytest.fixture
def tokenised_remote_url(dbt_repo):
    """An https-style remote URL of dbt_repo with an OAuth token in it, served on 127.0.0.1."""
    token = f"tok-{secrets.token_hex(12)}"
    with serve_git_with_token(dbt_repo.bare.parent, token) as base_url:
        yield base_url.replace("http://", f"http://oauth2:{token}@", 1) + f"/{dbt_repo.bare.name}"


@pytest.fixture(scope="session")
def save_secret(prefect_server):
    """save_secret(prefix, value) -> the name of a new Secret block holding value."""

    def save(prefix: str, value) -> str:
        name = unique(prefix)
        Secret(value=value).save(name, overwrite=True)
        return name

    return save


# ------------------------------------------------------------------------------------------ warehouses


@dataclass
class PostgresWarehouse:
    host: str
    port: int
    user: str
    password: str
    dbname: str
    admin_dsn: str

    def profile(self, schema: str = "analytics") -> dict:
        return {
            "profile_name": "ddpui",
            "target": "default",
            "type": "postgres",
            "schema": schema,
            "threads": 2,
            "credentials": {
                "host": self.host,
                "port": self.port,
                "user": self.user,
                "password": self.password,
                "dbname": self.dbname,
            },
        }

    def tables(self, schema: str) -> set[str]:
        dsn = f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"
        with psycopg.connect(dsn) as connection:
            rows = connection.execute(
                "select table_name from information_schema.tables where table_schema = %s", (schema,)
            ).fetchall()
        return {row[0] for row in rows}


@pytest.fixture
def postgres_warehouse(pg_dsn):
    """A database owned by a fresh role with a distinctive password (so a leak would be visible)."""
    parts = urlsplit(pg_dsn)
    suffix = uuid.uuid4().hex[:8]
    warehouse = PostgresWarehouse(
        host=parts.hostname,
        port=parts.port or 5432,
        user=f"flows_{suffix}",
        password=f"pw-{secrets.token_hex(10)}",
        dbname=f"flows_wh_{suffix}",
        admin_dsn=pg_dsn,
    )
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f"create role {warehouse.user} login password '{warehouse.password}'")
        admin.execute(f"create database {warehouse.dbname} owner {warehouse.user}")
    yield warehouse
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f"drop database if exists {warehouse.dbname} with (force)")
        admin.execute(f"drop role if exists {warehouse.user}")


@dataclass
class DuckDBWarehouse:
    path: Path

    def profile(self, schema: str = "analytics") -> dict:
        return {
            "profile_name": "ddpui",
            "target": "default",
            "type": "duckdb",
            "schema": schema,
            "threads": 1,
            "credentials": {"path": str(self.path)},
        }

    def tables(self, schema: str) -> set[str]:
        connection = duckdb.connect(str(self.path), read_only=True)
        try:
            rows = connection.execute(
                "select table_name from information_schema.tables where table_schema = ?", [schema]
            ).fetchall()
        finally:
            connection.close()
        return {row[0] for row in rows}


@pytest.fixture
def duckdb_warehouse(tmp_path) -> DuckDBWarehouse:
    directory = tmp_path / "warehouse"
    directory.mkdir()
    return DuckDBWarehouse(directory / "warehouse.duckdb")


# ------------------------------------------------------------------------------------------ task configs


class TaskConfigs:
    """Builds the task dicts of a pipeline config, as Django writes them (see docs/flows.md)."""

    def __init__(self, airbyte_block: str):
        self.airbyte_block = airbyte_block

    def airbyte(self, seq: int, connection_id: str, *, block: str | None = None, **extra) -> dict:
        return {
            "seq": seq,
            "type": "Airbyte Connection",
            "slug": "airbyte-sync",
            "orgtask_uuid": str(uuid.uuid4()),
            "airbyte_server_block": block or self.airbyte_block,
            "connection_id": connection_id,
            "timeout": 120,
            "poll_interval_s": 1,
            **extra,
        }

    def git_pull(self, seq: int, repo: DbtRepo, secret_block: str, **extra) -> dict:
        return {
            "seq": seq,
            "type": "Shell Operation",
            "slug": "git-pull",
            "orgtask_uuid": str(uuid.uuid4()),
            "commands": ["git pull"],
            "working_dir": str(repo.work),
            "env": {"secret-git-pull-url-block": secret_block},
            **extra,
        }

    def dbt(self, seq: int, slug: str, command: str, repo: DbtRepo, profile_block: str, **extra) -> dict:
        env = {"DDPUI_SOURCE_SCHEMA": SOURCE_SCHEMA, **extra.pop("env", {})}
        return {
            "seq": seq,
            "type": "dbt Core Operation",
            "slug": slug,
            "orgtask_uuid": str(uuid.uuid4()),
            "commands": [command],
            "cli_profile_block": profile_block,
            "project_dir": str(repo.work),
            "working_dir": str(repo.work),
            "profiles_dir": str(repo.work / "profiles-ignored"),
            "env": env,
            **extra,
        }

    def shell(self, seq: int, slug: str, commands: list[str], **extra) -> dict:
        return {
            "seq": seq,
            "type": "Shell Operation",
            "slug": slug,
            "orgtask_uuid": str(uuid.uuid4()),
            "commands": commands,
            "env": {},
            **extra,
        }


@pytest.fixture(scope="session")
def tasks(airbyte) -> TaskConfigs:
    return TaskConfigs(airbyte.block_name)
