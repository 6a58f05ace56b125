"""dbt tasks: each command on its own DbtCoreOperation, with a fresh profiles directory, its nodes read back."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect.blocks.system import Secret

from ddpcontract.flows import TaskStatus
from ddpcontract.tasks import DbtTaskConfig, TaskSlug
from ddpui.flows.attempts import Deadline, TaskFailed, output_tail, run_process
from ddpui.flows.profiles import ProfileError, build_dbt_cli_profile, prefect_dbt
from ddpui.flows.redaction import redact, register_credential_secrets

if TYPE_CHECKING:
    from prefect_dbt.cli.commands import DbtCoreOperation

# The directory of the interpreter running the flow holds dbt when it is installed in the same venv;
# the shell that DbtCoreOperation starts does not inherit a venv activation.
_INTERPRETER_BIN = str(Path(sys.executable).parent)


def _run_results_path(operation: DbtCoreOperation) -> Path:
    project_dir = operation.project_dir or operation.working_dir or Path.cwd()
    return Path(project_dir).expanduser() / "target" / "run_results.json"


_TESTED_KINDS = ("model", "seed", "snapshot", "source")


def _tested_nodes(manifest: Path, test_ids: list[str]) -> dict[str, list[str]]:
    """test unique_id -> the models (seeds, snapshots, sources) it tests, from dbt's manifest of the same
    command; {} when the manifest cannot be read."""
    try:
        nodes = json.loads(manifest.read_text()).get("nodes") or {}
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}
    tested = {}
    for test_id in test_ids:
        depends_on = ((nodes.get(test_id) or {}).get("depends_on") or {}).get("nodes") or []
        tested[test_id] = [node for node in depends_on if str(node).split(".", 1)[0] in _TESTED_KINDS]
    return tested


def _read_nodes(run_results: Path) -> list[dict]:
    """The command's nodes from run_results.json; a failing test also names the models it tests (`models`),
    so an alert can say whose data did not pass."""
    if not run_results.exists():
        return []
    try:
        payload = json.loads(run_results.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    nodes = [
        {
            "unique_id": node.get("unique_id"),
            "status": node.get("status"),
            "execution_time": round(float(node.get("execution_time") or 0.0), 3),
            "message": node.get("message"),
        }
        for node in payload.get("results", [])
    ]
    failed_tests = [
        node["unique_id"]
        for node in nodes
        if node["status"] in ("fail", "error") and str(node["unique_id"]).startswith("test.")
    ]
    if failed_tests:
        tested = _tested_nodes(run_results.with_name("manifest.json"), failed_tests)
        for node in nodes:
            if node["unique_id"] in tested:
                node["models"] = tested[node["unique_id"]]
    return nodes


def _nodes_summary(nodes: list[dict]) -> str:
    counts: dict[str, int] = {}
    for node in nodes:
        counts[str(node["status"])] = counts.get(str(node["status"]), 0) + 1
    return ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))


def _is_dbt_test(slug: str, commands: list[str]) -> bool:
    return slug == TaskSlug.DBT_TEST or all(command.split()[:2] == ["dbt", "test"] for command in commands)


def dbt_env(env: dict | None) -> dict[str, str]:
    env = {str(key): str(value) for key, value in (env or {}).items()}
    if "PATH" in env:  # the task names its own dbt (e.g. another virtualenv): the worker's is only a fallback
        env["PATH"] = f"{env['PATH']}{os.pathsep}{_INTERPRETER_BIN}"
    else:
        env["PATH"] = f"{_INTERPRETER_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    env.setdefault("DBT_USE_COLORS", "false")  # escape codes make the run logs unreadable
    return env


def dbt_operation_copy(operation: DbtCoreOperation, **changes: Any) -> DbtCoreOperation:
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
    return prefect_dbt().DbtCoreOperation(**fields)


def run_dbt(operation: DbtCoreOperation, slug: str, deadline: Deadline) -> dict:
    """Run each dbt command on its own so every command's run_results.json is read."""
    is_test = _is_dbt_test(slug, operation.commands)
    nodes: list[dict] = []
    run_results = _run_results_path(operation)
    for command in operation.commands:
        run_results.unlink(missing_ok=True)  # so a command that writes none is not credited with old ones
        single = dbt_operation_copy(operation, commands=[command])
        return_code, output = run_process(single, deadline, command)
        command_nodes = _read_nodes(run_results)
        nodes.extend(command_nodes)
        if return_code == 0:
            continue
        failed_tests = [node for node in command_nodes if node["status"] in ("fail", "error")]
        if is_test and return_code == 1 and failed_tests:
            return {
                "status": TaskStatus.DBT_TEST_FAILED,
                "message": f"{command}: {len(failed_tests)} test(s) failed ({_nodes_summary(command_nodes)})",
                "nodes": nodes,
            }
        problems = [f"{node['unique_id']}: {node['message']}" for node in failed_tests]
        reason = "; ".join(problems) if problems else output_tail(redact(output))
        raise TaskFailed(f"{command} exited with code {return_code}: {reason}", details={"nodes": nodes})
    return {"message": _nodes_summary(nodes) or "ok", "nodes": nodes}


def with_target(command: str, target: str | None) -> str:
    """The dbt command run on `target` (`--target` added unless the command names one)."""
    words = command.split()
    if not target or words[:1] != ["dbt"] or "--target" in words or "-t" in words:
        return command
    return f"{command} --target {target}"


def build_dbt_operation(task: DbtTaskConfig, profiles_dir: str, project_dir: str | None = None) -> DbtCoreOperation:
    """The task's operation; `project_dir` is where its project is (the worker's copy of the repository), by
    default the task's own `project_dir`."""
    try:
        profile = build_dbt_cli_profile(Secret.load(task.cli_profile_block).get(), target_name=task.target)
    except ProfileError as error:
        raise TaskFailed(f"Secret block {task.cli_profile_block!r}: {error}", permanent=True) from None
    register_credential_secrets(profile.target_configs.get_configs())
    project_dir = project_dir or task.project_dir
    return prefect_dbt().DbtCoreOperation(
        commands=[with_target(command, task.target) for command in task.commands],
        project_dir=project_dir,
        working_dir=project_dir if task.repository is not None else (task.working_dir or project_dir),
        profiles_dir=profiles_dir,
        overwrite_profiles=True,
        dbt_cli_profile=profile,
        env=dbt_env(task.env),
    )


@contextmanager
def fresh_profiles_dir() -> Iterator[str]:
    """A private profiles directory for one dbt run: concurrent runs never share a profiles.yml."""
    directory = tempfile.mkdtemp(prefix="ddpui-dbt-profiles-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # it holds the warehouse credentials
