"""The flows the Prefect worker runs for ddpui.

`pipeline_flow` runs an ordered list of tasks described by plain dicts in the deployment's parameters and
builds every Airbyte / shell / dbt operation in memory; only the Airbyte server block and Secret blocks are
read from Prefect. `legacy_pipeline_flow` runs the persisted operation blocks of the old block-based world.
The contract (parameters, results, the "task-results" artifact) is described in docs/flows.md.

This module imports nothing from Django or the proxy: the worker runs it on its own.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import math
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from airbyte_prefect.connections import AirbyteConnection
from airbyte_prefect.exceptions import AirbyteSyncJobTimeout
from airbyte_prefect.server import AirbyteServer
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.states import Completed, Failed, State
from prefect_shell import ShellOperation

if TYPE_CHECKING:
    from prefect_dbt.cli.commands import DbtCoreOperation
    from prefect_dbt.cli.credentials import DbtCliProfile

AIRBYTE_CONNECTION = "Airbyte Connection"
SHELL_OPERATION = "Shell Operation"
DBT_CORE_OPERATION = "dbt Core Operation"
TASK_TYPES = (AIRBYTE_CONNECTION, SHELL_OPERATION, DBT_CORE_OPERATION)

STATUS_SUCCESS = "success"
STATUS_FAILED = "failed"
STATUS_DBT_TEST_FAILED = "dbt_test_failed"
STATUS_SKIPPED = "skipped"
DBT_TEST_FAILED_STATE_NAME = "DBT_TEST_FAILED"

RESULTS_ARTIFACT_KEY = "task-results"
GIT_PULL_SECRET_ENV_KEY = "secret-git-pull-url-block"
GIT_PULL_URL_ENV_VAR = "DDPUI_GIT_PULL_URL"
DEFAULT_AIRBYTE_POLL_SECONDS = 5
REDACTED = "***"

# The directory of the interpreter running the flow holds dbt when it is installed in the same venv;
# the shell that DbtCoreOperation starts does not inherit a venv activation.
_INTERPRETER_BIN = str(Path(sys.executable).parent)
_SENSITIVE_CREDENTIAL_KEYS = {
    "password",
    "pass",
    "private_key",
    "private_key_id",
    "keyfile_json",
    "token",
    "refresh_token",
    "client_secret",
    "secret",
}
_OUTPUT_TAIL_LINES = 8
_MESSAGE_MAX_CHARS = 2000


# --------------------------------------------------------------------------------------------------------
# Secrets: every secret value the flow touches is registered here and removed from logs, messages, results


class _SecretRegistry:
    """The secret strings of the current process's flow run, replaced by *** wherever they would leak."""

    _MIN_LENGTH = 4  # shorter values would shred ordinary log text; they are no real secret either

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: Any) -> None:
        with self._lock:
            for value in values:
                if isinstance(value, str) and len(value) >= self._MIN_LENGTH:
                    self._values.add(value)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def redact(self, value: Any) -> Any:
        """`value` with every registered secret replaced; walks lists, tuples and dicts."""
        if isinstance(value, str):
            with self._lock:
                secrets = sorted(self._values, key=len, reverse=True)
            for secret in secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {self.redact(key): self.redact(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.redact(item) for item in value)
        return value


_secrets = _SecretRegistry()


class _RedactingFilter(logging.Filter):
    """Rewrites each log record with secrets removed, before any handler formats or ships it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        record.msg = _secrets.redact(message)
        record.args = None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = _secrets.redact(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = _secrets.redact(record.exc_text)
        return True


@contextmanager
def _redacted_logging() -> Iterator[None]:
    """Install the redacting filter on every handler that run logs can reach, for one flow run."""
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs", "prefect")]
    loggers.append(logging.getLogger())
    handlers = {handler for logger in loggers for handler in logger.handlers}
    redacting_filter = _RedactingFilter()
    for logger in loggers:
        logger.addFilter(redacting_filter)
    for handler in handlers:
        handler.addFilter(redacting_filter)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redacting_filter)
        for handler in handlers:
            handler.removeFilter(redacting_filter)
        _secrets.clear()


def _register_url_secret(url: str) -> None:
    """Register a git remote URL with every form git may print it in ("From <url>" drops ".git")."""
    forms = {url, url.rstrip("/")}
    parts = urlsplit(url)
    if parts.password:
        _secrets.add(parts.password)
    if parts.username and parts.password:
        _secrets.add(f"{parts.username}:{parts.password}")
    if parts.scheme and parts.hostname:
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        forms.add(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))
    if parts.scheme == "file":
        forms.add(parts.path)
    for form in list(forms):
        forms.add(form.rstrip("/").removesuffix(".git"))
    _secrets.add(*forms)


def _register_credential_secrets(credentials: dict) -> None:
    """Register the sensitive values of warehouse credentials (nested ones too, e.g. a keyfile's key)."""
    for key, value in credentials.items():
        if isinstance(value, dict):
            if key in _SENSITIVE_CREDENTIAL_KEYS:
                _secrets.add(json.dumps(value))
            _register_credential_secrets(value)
        elif key in _SENSITIVE_CREDENTIAL_KEYS and value is not None:
            _secrets.add(str(value))


# --------------------------------------------------------------------------------------------------------
# dbt profiles from the Secret block's JSON


@functools.cache
def _prefect_dbt() -> SimpleNamespace:
    """prefect-dbt's classes, imported on first use: importing them loads dbt-core (seconds of CPU), which
    a flow run without dbt tasks does not need (the dbt commands themselves run in their own process)."""
    with warnings.catch_warnings():
        # prefect_dbt.cli announces its deprecation in favour of prefect_dbt.core on import; the
        # DbtCoreOperation this project's tasks are built on lives only there
        warnings.simplefilter("ignore", UserWarning)
        from prefect_dbt.cli.commands import DbtCoreOperation
        from prefect_dbt.cli.configs import TargetConfigs
        from prefect_dbt.cli.credentials import DbtCliProfile
    return SimpleNamespace(DbtCoreOperation=DbtCoreOperation, TargetConfigs=TargetConfigs, DbtCliProfile=DbtCliProfile)


class ProfileError(ValueError):
    """The dbt profile JSON held in the Secret block does not follow the contract."""


_REQUIRED_CREDENTIALS = {
    "postgres": ("host", "port", "user", "password", "dbname"),
    "duckdb": ("path",),
    "bigquery": ("project", "method", "keyfile_json"),
}


def _parse_profile_json(profile_json: dict | str) -> dict:
    if isinstance(profile_json, str):
        try:
            profile_json = json.loads(profile_json)
        except json.JSONDecodeError as error:
            raise ProfileError(f"the dbt profile secret is not valid JSON (line {error.lineno})") from None
    if not isinstance(profile_json, dict):
        raise ProfileError("the dbt profile secret must hold a JSON object")
    missing = [key for key in ("profile_name", "target", "type", "schema", "credentials") if not profile_json.get(key)]
    if missing:
        raise ProfileError(f"the dbt profile secret lacks {', '.join(missing)}")
    warehouse = profile_json["type"]
    if warehouse not in _REQUIRED_CREDENTIALS:
        raise ProfileError(f"unsupported warehouse type {warehouse!r}; expected one of {sorted(_REQUIRED_CREDENTIALS)}")
    credentials = profile_json["credentials"]
    if not isinstance(credentials, dict):
        raise ProfileError("the dbt profile secret's credentials must be a JSON object")
    missing = [key for key in _REQUIRED_CREDENTIALS[warehouse] if credentials.get(key) in (None, "")]
    if missing:
        raise ProfileError(f"the {warehouse} credentials lack {', '.join(missing)}")
    return profile_json


def _target_extras(warehouse: str, credentials: dict) -> dict:
    extras = {key: value for key, value in credentials.items() if value is not None}
    if warehouse == "postgres":
        extras["port"] = int(extras["port"])
    if warehouse == "bigquery" and isinstance(extras["keyfile_json"], str):
        try:
            extras["keyfile_json"] = json.loads(extras["keyfile_json"])
        except json.JSONDecodeError:
            raise ProfileError("the bigquery keyfile_json is not valid JSON") from None
    return extras


def build_dbt_cli_profile(profile_json: dict | str) -> DbtCliProfile:
    """The in-memory DbtCliProfile for the profile JSON of the contract (see docs/flows.md)."""
    profile = _parse_profile_json(profile_json)
    extras = _target_extras(profile["type"], profile["credentials"])
    dbt = _prefect_dbt()
    target_configs = dbt.TargetConfigs(
        type=profile["type"],
        schema=profile["schema"],
        threads=int(profile.get("threads") or 4),
        extras=extras,
    )
    return dbt.DbtCliProfile(name=profile["profile_name"], target=profile["target"], target_configs=target_configs)


def render_profile(profile_json: dict | str) -> dict:
    """The profiles.yml content (as a dict) that a dbt task writes for this profile JSON."""
    return build_dbt_cli_profile(profile_json).get_profile()


# --------------------------------------------------------------------------------------------------------
# Task failures


class TaskFailed(Exception):
    """One attempt of a pipeline task failed; the message is already free of secrets."""

    def __init__(self, message: str, *, details: dict | None = None, permanent: bool = False):
        self.message = _secrets.redact(message)[:_MESSAGE_MAX_CHARS]
        self.details = _secrets.redact(details or {})
        self.permanent = permanent
        self.attempts = _current_attempt()
        super().__init__(self.message)


class TaskTimedOut(TaskFailed):
    pass


class PipelineFailed(Exception):
    """The exception of a failed pipeline run's state; `results` holds the per-task results."""

    def __init__(self, message: str, results: list[dict]):
        super().__init__(message)
        self.results = results


def _current_attempt() -> int:
    context = TaskRunContext.get()
    return context.task_run.run_count if context else 1


def _retry_unless_permanent(task_, task_run, state) -> bool:
    try:
        state.result()
    except TaskFailed as error:
        return not error.permanent
    except Exception:
        return True
    return False


def _output_tail(lines: list[str]) -> str:
    kept = [line for line in lines if line.strip()][-_OUTPUT_TAIL_LINES:]
    return "\n".join(kept)


# --------------------------------------------------------------------------------------------------------
# Running the operations


@dataclass
class _Deadline:
    """The time an attempt may still use; `None` seconds means no limit."""

    seconds: float | None
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float | None:
        if self.seconds is None:
            return None
        return max(0.0, self.seconds - (time.monotonic() - self.started))


def _run_shell_process(operation: ShellOperation, deadline: _Deadline, timeout_label: str) -> tuple[int, list[str]]:
    """Run `operation` until it ends or the deadline passes (then its whole process tree is killed).

    Returns the exit code and the captured output lines.
    """
    outcome: dict[str, BaseException] = {}
    try:
        process = operation.trigger()

        def wait() -> None:
            try:
                process.wait_for_completion()
            except RuntimeError:
                pass  # a non-zero exit code: the caller reads it from the process
            except BaseException as error:  # noqa: BLE001 - reported to the waiting thread
                outcome["error"] = error

        # the run logger lives in context variables, which a new thread does not inherit
        waiter = threading.Thread(target=contextvars.copy_context().run, args=(wait,), daemon=True)
        waiter.start()
        waiter.join(timeout=deadline.remaining())
        timed_out = waiter.is_alive()
    finally:
        operation.close()  # terminates the process group: on a timeout this stops the commands
    waiter.join()
    if timed_out:
        raise TaskTimedOut(f"{timeout_label} timed out after {deadline.seconds:g} seconds")
    if "error" in outcome:
        raise outcome["error"]
    return process.return_code, process.fetch_result()


def _git_pull_command(command: str) -> str:
    """Point a `git pull` command at the URL held in the environment variable instead of a named remote.

    `git pull [options]` pulls the current branch's namesake from the URL; `git pull [options] REMOTE
    [REFSPEC...]` keeps its refspecs and swaps the remote for the URL. Other commands are unchanged.
    """
    words = shlex.split(command)
    if words[:2] != ["git", "pull"] or any(char in command for char in ";&|<>`$()"):
        return command  # not a plain `git pull ...`: shell syntax is left alone
    options = [shlex.quote(word) for word in words[2:] if word.startswith("-")]
    positionals = [shlex.quote(word) for word in words[2:] if not word.startswith("-")]
    refspecs = positionals[1:] or ['"$(git rev-parse --abbrev-ref HEAD)"']
    return " ".join(["git", "pull", *options, f'"${GIT_PULL_URL_ENV_VAR}"', *refspecs])


def _shell_env(env: dict | None) -> tuple[dict[str, str], str | None]:
    """The environment for bash (values as strings) and the name of the git-pull Secret block, if any."""
    env = {str(key): str(value) for key, value in (env or {}).items()}
    secret_block = env.pop(GIT_PULL_SECRET_ENV_KEY, None)
    return env, secret_block


def _build_shell_operation(commands: list[str], working_dir: str | None, env: dict | None) -> ShellOperation:
    env, secret_block = _shell_env(env)
    if secret_block:
        url = Secret.load(secret_block).get()
        if not isinstance(url, str) or not url:
            raise TaskFailed(f"Secret block {secret_block!r} does not hold a git URL", permanent=True)
        _register_url_secret(url)
        env[GIT_PULL_URL_ENV_VAR] = url
        env.setdefault("GIT_TERMINAL_PROMPT", "0")  # a wrong token must fail, not wait for a password
        commands = [_git_pull_command(command) for command in commands]
    # stop at the first failing command, and keep stderr in the output so failures can be explained
    script = ["set -e", "exec 2>&1", *commands]
    return ShellOperation(commands=script, working_dir=working_dir, env=env)


def _run_shell(operation: ShellOperation, deadline: _Deadline) -> dict:
    return_code, output = _run_shell_process(operation, deadline, "shell commands")
    output = _secrets.redact(output)
    if return_code != 0:
        raise TaskFailed(f"exit code {return_code}: {_output_tail(output)}")
    last_lines = _output_tail(output).splitlines()
    return {"message": last_lines[-1].strip() if last_lines else "ok"}


def _run_results_path(operation: DbtCoreOperation) -> Path:
    project_dir = operation.project_dir or operation.working_dir or Path.cwd()
    return Path(project_dir).expanduser() / "target" / "run_results.json"


def _read_nodes(run_results: Path) -> list[dict]:
    if not run_results.exists():
        return []
    try:
        payload = json.loads(run_results.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return [
        {
            "unique_id": node.get("unique_id"),
            "status": node.get("status"),
            "execution_time": round(float(node.get("execution_time") or 0.0), 3),
            "message": node.get("message"),
        }
        for node in payload.get("results", [])
    ]


def _nodes_summary(nodes: list[dict]) -> str:
    counts: dict[str, int] = {}
    for node in nodes:
        counts[str(node["status"])] = counts.get(str(node["status"]), 0) + 1
    return ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))


def _is_dbt_test(slug: str, commands: list[str]) -> bool:
    return slug == "dbt-test" or all(command.split()[:2] == ["dbt", "test"] for command in commands)


def _dbt_env(env: dict | None) -> dict[str, str]:
    env = {str(key): str(value) for key, value in (env or {}).items()}
    if "PATH" in env:  # the task names its own dbt (e.g. another virtualenv): the worker's is only a fallback
        env["PATH"] = f"{env['PATH']}{os.pathsep}{_INTERPRETER_BIN}"
    else:
        env["PATH"] = f"{_INTERPRETER_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    env.setdefault("DBT_USE_COLORS", "false")  # escape codes make the run logs unreadable
    return env


def _dbt_operation_copy(operation: DbtCoreOperation, **changes: Any) -> DbtCoreOperation:
    """A fresh operation with some fields changed (model_copy would share the private process stacks)."""
    fields = {
        name: getattr(operation, name)
        for name in (
            "commands",
            "env",
            "working_dir",
            "shell",
            "extension",
            "stream_output",
            "project_dir",
            "profiles_dir",
            "overwrite_profiles",
            "dbt_cli_profile",
        )
    }
    fields.update(changes)
    return _prefect_dbt().DbtCoreOperation(**fields)


def _run_dbt(operation: DbtCoreOperation, slug: str, deadline: _Deadline) -> dict:
    """Run each dbt command on its own so every command's run_results.json is read."""
    is_test = _is_dbt_test(slug, operation.commands)
    nodes: list[dict] = []
    run_results = _run_results_path(operation)
    for command in operation.commands:
        run_results.unlink(missing_ok=True)  # so a command that writes none is not credited with old ones
        single = _dbt_operation_copy(operation, commands=[command])
        return_code, output = _run_shell_process(single, deadline, command)
        command_nodes = _read_nodes(run_results)
        nodes.extend(command_nodes)
        if return_code == 0:
            continue
        failed_tests = [node for node in command_nodes if node["status"] in ("fail", "error")]
        if is_test and return_code == 1 and failed_tests:
            return {
                "status": STATUS_DBT_TEST_FAILED,
                "message": f"{command}: {len(failed_tests)} test(s) failed ({_nodes_summary(command_nodes)})",
                "nodes": nodes,
            }
        problems = [f"{node['unique_id']}: {node['message']}" for node in failed_tests]
        reason = "; ".join(problems) if problems else _output_tail(_secrets.redact(output))
        raise TaskFailed(f"{command} exited with code {return_code}: {reason}", details={"nodes": nodes})
    return {"message": _nodes_summary(nodes) or "ok", "nodes": nodes}


def _build_dbt_operation(task_config: dict, profiles_dir: str) -> DbtCoreOperation:
    secret_block = task_config.get("cli_profile_block")
    if not secret_block:
        raise TaskFailed("the task has no cli_profile_block", permanent=True)
    try:
        profile = build_dbt_cli_profile(Secret.load(secret_block).get())
    except ProfileError as error:
        raise TaskFailed(f"Secret block {secret_block!r}: {error}", permanent=True) from None
    _register_credential_secrets(profile.target_configs.get_configs())
    return _prefect_dbt().DbtCoreOperation(
        commands=list(task_config.get("commands") or []),
        project_dir=task_config.get("project_dir"),
        working_dir=task_config.get("working_dir") or task_config.get("project_dir"),
        profiles_dir=profiles_dir,
        overwrite_profiles=True,
        dbt_cli_profile=profile,
        env=_dbt_env(task_config.get("env")),
    )


@contextmanager
def _fresh_profiles_dir() -> Iterator[str]:
    """A private profiles directory for one dbt run: concurrent runs never share a profiles.yml."""
    directory = tempfile.mkdtemp(prefix="ddpui-dbt-profiles-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # it holds the warehouse credentials


def _cancel_airbyte_job(connection: AirbyteConnection, job_id: int) -> None:
    """Best effort: a sync we stopped waiting for should not keep running in Airbyte."""
    server = connection.airbyte_server
    with suppress(httpx.HTTPError):
        httpx.post(
            f"{server.base_url}/jobs/cancel/",
            json={"id": job_id},
            auth=(server.username, server.password.get_secret_value()),
            timeout=connection.timeout,
        )


def _run_airbyte(connection: AirbyteConnection, limit_seconds: float | None) -> dict:
    """Trigger a sync and wait for it; `limit_seconds` bounds the whole sync."""
    connection_id = str(connection.connection_id)
    started = time.monotonic()
    try:
        sync = connection.trigger()
    except Exception as error:  # noqa: BLE001 - any Airbyte failure ends this attempt
        raise TaskFailed(f"could not trigger a sync of connection {connection_id}: {error}") from None
    if limit_seconds is not None:
        remaining = limit_seconds - (time.monotonic() - started)
        connection.max_wait_seconds = max(1, math.ceil(remaining))
    try:
        sync.wait_for_completion()
        result = sync.fetch_result()
    except AirbyteSyncJobTimeout:
        _cancel_airbyte_job(connection, sync.job_id)
        raise TaskTimedOut(
            f"sync of connection {connection_id} (job {sync.job_id}) did not finish within {limit_seconds:g} seconds",
            details={"job_id": sync.job_id, "connection_id": connection_id},
        ) from None
    except Exception as error:  # noqa: BLE001
        raise TaskFailed(
            f"sync of connection {connection_id} (job {sync.job_id}) failed: {error}",
            details={"job_id": sync.job_id, "connection_id": connection_id},
        ) from None
    return {
        "message": f"job {result.job_id} {result.job_status}, {result.records_synced} records synced",
        "connection_id": connection_id,
        "job_id": result.job_id,
        "job_status": str(result.job_status),
        "records_synced": result.records_synced,
    }


def _airbyte_limit(task_config: dict) -> float | None:
    limits = [float(value) for value in (task_config.get("timeout"), task_config.get("timeout_seconds")) if value]
    return min(limits) if limits else None


# --------------------------------------------------------------------------------------------------------
# One pipeline task = one Prefect task run (with Prefect's retries)


@dataclass
class _PipelineTask:
    """A task of the pipeline, from the config or from a legacy block reference."""

    seq: int
    slug: str
    type: str
    orgtask_uuid: str | None
    spec: dict  # what _execute needs: the task's config dict, or {"blockName", "blockType"}
    legacy: bool = False
    retries: int = 0
    retry_delay_seconds: float = 0
    timeout_seconds: float | None = None

    def result_skeleton(self) -> dict:
        return {
            "seq": self.seq,
            "slug": self.slug,
            "type": self.type,
            "orgtask_uuid": self.orgtask_uuid,
            "status": STATUS_SKIPPED,
            "message": "",
            "started_at": None,
            "ended_at": None,
            "duration_seconds": None,
            "attempts": 0,
        }


def _execute_config_task(spec: dict, slug: str, deadline: _Deadline) -> dict:
    task_type = spec["type"]
    if task_type == AIRBYTE_CONNECTION:
        server = AirbyteServer.load(spec["airbyte_server_block"])
        _secrets.add(server.password.get_secret_value())
        connection = AirbyteConnection(
            airbyte_server=server,
            connection_id=spec["connection_id"],
            poll_interval_s=int(spec.get("poll_interval_s") or DEFAULT_AIRBYTE_POLL_SECONDS),
        )
        return _run_airbyte(connection, _airbyte_limit(spec))
    if task_type == SHELL_OPERATION:
        operation = _build_shell_operation(list(spec.get("commands") or []), spec.get("working_dir"), spec.get("env"))
        return _run_shell(operation, deadline)
    with _fresh_profiles_dir() as profiles_dir:
        return _run_dbt(_build_dbt_operation(spec, profiles_dir), slug, deadline)


def _execute_legacy_block(spec: dict, deadline: _Deadline) -> dict:
    name, block_type = spec["blockName"], spec["blockType"]
    if block_type == AIRBYTE_CONNECTION:
        connection = AirbyteConnection.load(name)
        _secrets.add(connection.airbyte_server.password.get_secret_value())
        return _run_airbyte(connection, connection.max_wait_seconds)
    if block_type == SHELL_OPERATION:
        block = ShellOperation.load(name)
        operation = _build_shell_operation(block.commands, block.working_dir, block.env)
        return _run_shell(operation, deadline)
    block = _prefect_dbt().DbtCoreOperation.load(name)
    if block.dbt_cli_profile is None:  # the block relies on a profiles.yml already on disk
        return _run_dbt(_dbt_operation_copy(block, env=_dbt_env(block.env)), name, deadline)
    _register_credential_secrets(block.dbt_cli_profile.target_configs.get_configs())
    with _fresh_profiles_dir() as profiles_dir:
        operation = _dbt_operation_copy(
            block, profiles_dir=profiles_dir, overwrite_profiles=True, env=_dbt_env(block.env)
        )
        return _run_dbt(operation, name, deadline)


@task(name="pipeline-task", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=_retry_unless_permanent)
def run_pipeline_task(pipeline_task: _PipelineTask) -> dict:
    """One attempt of one pipeline task; raises TaskFailed (secret-free) when it fails."""
    deadline = _Deadline(pipeline_task.timeout_seconds)
    logger = get_run_logger()
    logger.info(
        "task %s (seq %s, %s): attempt %s",
        pipeline_task.slug,
        pipeline_task.seq,
        pipeline_task.type,
        _current_attempt(),
    )
    try:
        if pipeline_task.legacy:
            outcome = _execute_legacy_block(pipeline_task.spec, deadline)
        else:
            outcome = _execute_config_task(pipeline_task.spec, pipeline_task.slug, deadline)
    except TaskFailed:
        raise
    except Exception as error:  # noqa: BLE001 - whatever broke, report it without secrets
        raise TaskFailed(f"{type(error).__name__}: {error}") from None
    outcome = _secrets.redact(outcome)
    outcome["attempts"] = _current_attempt()
    return outcome


def _retry_delays(task_: _PipelineTask) -> list[float]:
    return [task_.retry_delay_seconds * 2**attempt for attempt in range(task_.retries)]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _run_one(pipeline_task: _PipelineTask) -> dict:
    result = pipeline_task.result_skeleton()
    result["started_at"] = _now()
    started = time.monotonic()
    runner = run_pipeline_task.with_options(
        task_run_name=f"{pipeline_task.seq}-{pipeline_task.slug}",
        retries=pipeline_task.retries,
        retry_delay_seconds=_retry_delays(pipeline_task) or 0,
    )
    try:
        outcome = runner(pipeline_task)
        result.update(outcome)
        result["status"] = outcome.get("status", STATUS_SUCCESS)
    except TaskFailed as error:
        result.update(error.details)
        result.update(status=STATUS_FAILED, message=error.message, attempts=error.attempts)
    except Exception as error:  # noqa: BLE001 - e.g. the task run crashed before our code ran
        result.update(status=STATUS_FAILED, message=_secrets.redact(f"{type(error).__name__}: {error}"), attempts=1)
    result["ended_at"] = _now()
    result["duration_seconds"] = round(time.monotonic() - started, 3)
    return result


def _run_pipeline(pipeline_tasks: list[_PipelineTask]) -> State:
    """Run the tasks in order, publish their results, and decide the flow run's final state."""
    logger = get_run_logger()
    results: list[dict] = []
    failure: dict | None = None
    for pipeline_task in pipeline_tasks:
        if failure is not None:
            results.append(pipeline_task.result_skeleton())
            continue
        result = _run_one(pipeline_task)
        results.append(result)
        if result["status"] == STATUS_FAILED:
            failure = result
        elif result["status"] == STATUS_DBT_TEST_FAILED:
            logger.warning("task %s (seq %s): %s", result["slug"], result["seq"], result["message"])

    results = _secrets.redact(results)
    create_table_artifact(
        key=RESULTS_ARTIFACT_KEY,
        table=results,
        description="One row per pipeline task: status, timings, attempts and type-specific results.",
    )
    if failure is not None:
        message = f"task {failure['slug']} (seq {failure['seq']}) failed: {failure['message']}"
        # a failed state carries an exception (the engine raises it); the results travel with it
        return Failed(message=message, data=PipelineFailed(message, results))
    test_failures = [result for result in results if result["status"] == STATUS_DBT_TEST_FAILED]
    if test_failures:
        names = ", ".join(f"{result['slug']} (seq {result['seq']})" for result in test_failures)
        return Completed(name=DBT_TEST_FAILED_STATE_NAME, message=f"dbt tests failed in {names}", data=results)
    return Completed(message=f"{len(results)} task(s) succeeded", data=results)


# --------------------------------------------------------------------------------------------------------
# Parameters -> pipeline tasks


def _config_tasks(config: dict) -> list[_PipelineTask]:
    tasks = config.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise ValueError("config.tasks must be a non-empty list of tasks")
    pipeline_tasks = []
    for index, spec in enumerate(tasks):
        if not isinstance(spec, dict):
            raise ValueError(f"config.tasks[{index}] is not an object")
        if spec.get("type") not in TASK_TYPES:
            raise ValueError(f"config.tasks[{index}] has type {spec.get('type')!r}; expected one of {list(TASK_TYPES)}")
        if not isinstance(spec.get("seq"), int):
            raise ValueError(f"config.tasks[{index}] needs an integer seq")
        pipeline_tasks.append(
            _PipelineTask(
                seq=spec["seq"],
                slug=str(spec.get("slug") or spec["type"]),
                type=spec["type"],
                orgtask_uuid=spec.get("orgtask_uuid"),
                spec=spec,
                retries=int(spec.get("retries") or 0),
                retry_delay_seconds=float(spec.get("retry_delay_seconds") or 0),
                timeout_seconds=float(spec["timeout_seconds"]) if spec.get("timeout_seconds") else None,
            )
        )
    seqs = [pipeline_task.seq for pipeline_task in pipeline_tasks]
    if len(set(seqs)) != len(seqs):
        raise ValueError(f"config.tasks have duplicate seq values: {sorted(seqs)}")
    return sorted(pipeline_tasks, key=lambda pipeline_task: pipeline_task.seq)


def _legacy_block_type(entry: dict, default: str) -> str:
    block_type = entry.get("blockType") or default
    if block_type not in TASK_TYPES:
        raise ValueError(
            f"block {entry.get('blockName')!r} has blockType {block_type!r}; expected one of {list(TASK_TYPES)}"
        )
    return block_type


def _legacy_tasks(airbyte_blocks: list | None, dbt_blocks: list | None) -> list[_PipelineTask]:
    """Airbyte blocks first, then dbt / shell blocks, each group in seq order (the old flow's order)."""
    pipeline_tasks = []
    groups = ((airbyte_blocks or [], AIRBYTE_CONNECTION), (dbt_blocks or [], DBT_CORE_OPERATION))
    for entries, default_type in groups:
        for entry in sorted(entries, key=lambda entry: entry.get("seq", 0)):
            if not entry.get("blockName"):
                raise ValueError(f"legacy block entry without blockName: {entry!r}")
            block_type = _legacy_block_type(entry, default_type)
            pipeline_tasks.append(
                _PipelineTask(
                    seq=int(entry.get("seq", 0)),
                    slug=entry["blockName"],
                    type=block_type,
                    orgtask_uuid=None,
                    spec={"blockName": entry["blockName"], "blockType": block_type},
                    legacy=True,
                )
            )
    if not pipeline_tasks:
        raise ValueError("no airbyte_blocks or dbt_blocks to run")
    return pipeline_tasks


# --------------------------------------------------------------------------------------------------------
# Flows


@flow(name="pipeline")
def pipeline_flow(config: dict | None = None, airbyte_blocks: list | None = None, dbt_blocks: list | None = None):
    """Run a pipeline: `config["tasks"]` in seq order, or, when no config is given, the legacy blocks."""
    with _redacted_logging():
        if config:
            if airbyte_blocks or dbt_blocks:
                get_run_logger().info("config is present: the legacy airbyte_blocks / dbt_blocks are ignored")
            return _run_pipeline(_config_tasks(config))
        return _run_pipeline(_legacy_tasks(airbyte_blocks, dbt_blocks))


@flow(name="legacy-pipeline")
def legacy_pipeline_flow(
    airbyte_blocks: list | None = None, dbt_blocks: list | None = None, config: dict | None = None
):
    """Run the persisted AirbyteConnection / ShellOperation / DbtCoreOperation blocks named in the parameters.

    `config` is accepted and ignored: during the block-to-task migration a deployment carries the old
    and the new parameters while it still runs this flow."""
    with _redacted_logging():
        return _run_pipeline(_legacy_tasks(airbyte_blocks, dbt_blocks))


__all__ = [
    "legacy_pipeline_flow",
    "pipeline_flow",
    "render_profile",
    "build_dbt_cli_profile",
    "run_pipeline_task",
]
