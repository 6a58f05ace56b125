"""What a deployment runs, as steps comparable between the old blocks and the new tasks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ddpcontract.tasks import GIT_PULL_SECRET_ENV_KEY, TaskType
from ddpui.block_migration.dbt_commands import DbtCommand, parse_dbt_command

GIT_PULL_COMMAND = "git pull"


@dataclass(frozen=True)
class Step:
    """One thing a deployment runs, comparable between the old blocks and the new tasks.

    kind: airbyte | git | dbt | shell; value: the connection id or the canonical command; where: the Airbyte
    server block, or the directory (and git URL Secret) the command runs with; label: block name or task slug."""

    kind: str
    value: str
    where: str
    label: str
    dbt: DbtCommand | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.value

    def __str__(self) -> str:
        return f"sync {self.value}" if self.kind == "airbyte" else self.value


def _git_where(working_dir: str | None, url_block: str | None) -> str:
    return f"{working_dir} (pull URL from {url_block or 'origin'})"


def shell_steps(commands: list[str], *, working_dir, url_block, label: str) -> list[Step]:
    steps = []
    for command in commands:
        text = " ".join(command.split())
        kind = "git" if text == GIT_PULL_COMMAND else "shell"
        steps.append(Step(kind, text, _git_where(working_dir, url_block), label))
    return steps


def dbt_steps(commands: list[str], *, project_dir, label: str, subcommands) -> list[Step]:
    steps = []
    for command in commands:
        parsed = parse_dbt_command(command, subcommands)
        steps.append(Step("dbt", parsed.canonical, str(project_dir), label, dbt=parsed))
    return steps


def config_steps(config: dict | None, subcommands, *, repository_dir: str | None = None) -> list[Step]:
    """The steps of a task config (DESIGN §4), in run order. A task that runs in the worker's copy of the org's
    repository (`repository`) runs where `repository_dir` is: the org's project, of which Django's clone is one
    copy (the legacy blocks ran in it)."""
    steps: list[Step] = []
    for task in sorted((config or {}).get("tasks") or [], key=lambda task: task.get("seq", 0)):
        label = str(task.get("slug") or task.get("type"))
        in_copy = bool(task.get("repository"))
        if task.get("type") == TaskType.AIRBYTE_CONNECTION:
            steps.append(Step("airbyte", str(task.get("connection_id")), str(task.get("airbyte_server_block")), label))
        elif task.get("type") == TaskType.SHELL_OPERATION:
            url_block = (task.get("env") or {}).get(GIT_PULL_SECRET_ENV_KEY)
            working_dir = repository_dir if in_copy else task.get("working_dir")
            steps += shell_steps(task.get("commands") or [], working_dir=working_dir, url_block=url_block, label=label)
        else:
            project_dir = repository_dir if in_copy else task.get("project_dir")
            steps += dbt_steps(
                task.get("commands") or [], project_dir=project_dir, label=label, subcommands=subcommands
            )
    return steps


def compare_steps(old: list[Step], new: list[Step], *, new_name: str = "the new tasks") -> list[str]:
    """Every difference between what the old blocks run and what the new tasks run."""
    differences = []
    old_connections = {step.value for step in old if step.kind == "airbyte"}
    new_connections = {step.value for step in new if step.kind == "airbyte"}
    if old_connections != new_connections:
        differences.append(
            f"connections: only in the old blocks {sorted(old_connections - new_connections)}, "
            f"only in {new_name} {sorted(new_connections - old_connections)}"
        )
    old_commands = Counter(step.value for step in old if step.kind != "airbyte")
    new_commands = Counter(step.value for step in new if step.kind != "airbyte")
    if old_commands != new_commands:
        differences.append(
            f"commands: only in the old blocks {sorted((old_commands - new_commands).elements())}, "
            f"only in {new_name} {sorted((new_commands - old_commands).elements())}"
        )
    if not differences and [step.key for step in old] != [step.key for step in new]:
        differences.append(
            f"order: the old blocks run [{'; '.join(map(str, old))}], {new_name} [{'; '.join(map(str, new))}]"
        )
    if not differences:
        for position, (before, after) in enumerate(zip(old, new, strict=True)):
            if before.where != after.where:
                differences.append(f"step {position} ({before}): old runs with {before.where}, new with {after.where}")
    return differences
