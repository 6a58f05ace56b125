"""dbt command lines reduced to what they mean, so old blocks and new tasks can be compared and matched."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ddpcontract.tasks import TaskKind
from ddpui.block_migration.errors import MigrationProblem
from ddpui.models.tasks import Task

_SHORT_OPTIONS = {"-s": "select", "-m": "models", "-t": "target"}
_SHORT_FLAGS = {"-x": "fail-fast"}


@dataclass(frozen=True)
class DbtCommand:
    """A dbt command line reduced to what it means: master task, flags and options (flags sorted)."""

    task_slug: str
    words: tuple[str, ...]
    flags: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def canonical(self) -> str:
        parts = ["dbt", *self.words, *(f"--{flag}" for flag in self.flags)]
        for name, values in self.options:
            parts += [f"--{name} {value}" for value in values]
        return " ".join(parts)

    @property
    def is_plain(self) -> bool:
        return not self.flags and not self.options

    def parameters(self) -> tuple[list[str], dict]:
        options = {name: values[0] if len(values) == 1 else list(values) for name, values in self.options}
        return list(self.flags), options


def parse_dbt_command(command: str, subcommands: dict[tuple[str, ...], str]) -> DbtCommand:
    """`dbt run --select a --full-refresh` -> DbtCommand; `subcommands` maps command words to master task slugs."""
    try:
        words = shlex.split(command)
    except ValueError:
        raise MigrationProblem(f"cannot parse the dbt command {command!r}") from None
    if not words or words[0] != "dbt":
        raise MigrationProblem(f"{command!r} is not a dbt command")
    rest = words[1:]
    matches = [sub for sub in subcommands if tuple(rest[: len(sub)]) == sub]
    if not matches:
        known = ", ".join(sorted(" ".join(sub) for sub in subcommands))
        raise MigrationProblem(f"{command!r}: no task in the master task list runs it (known: {known})")
    sub = max(matches, key=len)
    args = rest[len(sub) :]
    flags: set[str] = set()
    options: dict[str, list[str]] = {}
    index = 0
    while index < len(args):
        word = args[index]
        index += 1
        if word in _SHORT_FLAGS:
            flags.add(_SHORT_FLAGS[word])
            continue
        if word in _SHORT_OPTIONS:
            name = _SHORT_OPTIONS[word]
        elif word.startswith("--") and len(word) > 2:
            name = word[2:]
            if "=" in name:
                name, value = name.split("=", 1)
                options.setdefault(name, []).append(value)
                continue
        else:
            raise MigrationProblem(f"{command!r}: unexpected argument {word!r}")
        values = []
        while index < len(args) and not args[index].startswith("-"):
            values.append(args[index])
            index += 1
        if values:
            options.setdefault(name, []).extend(values)
        elif word.startswith("--"):
            flags.add(name)
        else:
            raise MigrationProblem(f"{command!r}: {word} needs a value")
    return DbtCommand(
        task_slug=subcommands[sub],
        words=sub,
        flags=tuple(sorted(flags)),
        options=tuple(sorted((name, tuple(values)) for name, values in options.items())),
    )


def dbt_subcommands() -> dict[tuple[str, ...], str]:
    """The dbt command words of each dbt task of the master list -> its slug (e.g. ("docs", "generate"))."""
    return {
        tuple((task.command or "").split()): task.slug
        for task in Task.objects.filter(type=TaskKind.DBT)
        if task.command
    }
