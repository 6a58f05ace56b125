"""The migration's pure pieces: dbt command lines reduced to what they mean, and old vs new steps compared.

No Prefect, no database: the master task list's dbt commands are given as a table.
"""

from __future__ import annotations

import pytest

from ddpui.block_migration.comparison import Step, compare_steps, config_steps
from ddpui.block_migration.dbt_commands import parse_dbt_command
from ddpui.block_migration.errors import MigrationProblem

SUBCOMMANDS = {
    ("run",): "dbt-run",
    ("test",): "dbt-test",
    ("deps",): "dbt-deps",
    ("docs", "generate"): "dbt-docs-generate",
}


@pytest.mark.parametrize(
    ("command", "slug", "canonical", "flags", "options"),
    [
        ("dbt run", "dbt-run", "dbt run", [], {}),
        ("dbt docs generate", "dbt-docs-generate", "dbt docs generate", [], {}),
        ("dbt run --full-refresh", "dbt-run", "dbt run --full-refresh", ["full-refresh"], {}),
        ("dbt run -s orders", "dbt-run", "dbt run --select orders", [], {"select": "orders"}),
        ("dbt run --select=orders", "dbt-run", "dbt run --select orders", [], {"select": "orders"}),
        ("dbt run --select a b", "dbt-run", "dbt run --select a --select b", [], {"select": ["a", "b"]}),
        (
            "dbt test -x --target prod",
            "dbt-test",
            "dbt test --fail-fast --target prod",
            ["fail-fast"],
            {"target": "prod"},
        ),
        # flags are sorted, so the same meaning gives the same canonical text
        (
            "dbt run --threads 4 --full-refresh --debug",
            "dbt-run",
            "dbt run --debug --full-refresh --threads 4",
            ["debug", "full-refresh"],
            {"threads": "4"},
        ),
    ],
)
def test_a_dbt_command_is_reduced_to_its_task_flags_and_options(command, slug, canonical, flags, options):
    parsed = parse_dbt_command(command, SUBCOMMANDS)
    assert (parsed.task_slug, parsed.canonical) == (slug, canonical)
    assert parsed.parameters() == (flags, options)
    assert parsed.is_plain == (not flags and not options)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("git pull", "is not a dbt command"),
        ("", "is not a dbt command"),
        ("dbt seed", "no task in the master task list runs it"),
        ("dbt run orders", "unexpected argument 'orders'"),
        ("dbt run -s", "-s needs a value"),
        ("dbt run --select 'orders", "cannot parse the dbt command"),
    ],
)
def test_a_command_without_a_task_is_a_migration_problem(command, message):
    with pytest.raises(MigrationProblem) as problem:
        parse_dbt_command(command, SUBCOMMANDS)
    assert message in problem.value.message


def config(*tasks: dict) -> dict:
    return {"tasks": [{"seq": seq, **task} for seq, task in enumerate(tasks)]}


SYNC = {"type": "Airbyte Connection", "slug": "airbyte-sync", "connection_id": "c1", "airbyte_server_block": "acme-ab"}
PULL = {"type": "Shell Operation", "slug": "git-pull", "commands": ["git  pull"], "working_dir": "/repo"}
RUN = {"type": "dbt Core Operation", "slug": "dbt-run", "commands": ["dbt run -s orders"], "project_dir": "/repo"}


def test_a_task_config_becomes_steps_in_run_order():
    steps = config_steps({"tasks": [{**RUN, "seq": 2}, {**SYNC, "seq": 0}, {**PULL, "seq": 1}]}, SUBCOMMANDS)
    assert [(step.kind, step.value, step.where) for step in steps] == [
        ("airbyte", "c1", "acme-ab"),
        ("git", "git pull", "/repo (pull URL from origin)"),
        ("dbt", "dbt run --select orders", "/repo"),
    ]


@pytest.mark.parametrize(
    ("old", "new", "differences"),
    [
        (config(SYNC, PULL, RUN), config(SYNC, PULL, RUN), []),
        (
            config(SYNC, RUN),
            config({**SYNC, "connection_id": "c2"}, RUN),
            ["connections: only in the old blocks ['c1'], only in the new tasks ['c2']"],
        ),
        (
            config(PULL, RUN),
            config(PULL, {**RUN, "commands": ["dbt run"]}),
            ["commands: only in the old blocks ['dbt run --select orders'], only in the new tasks ['dbt run']"],
        ),
        (
            config(PULL, RUN),
            config(RUN, PULL),
            [
                "order: the old blocks run [git pull; dbt run --select orders], "
                "the new tasks [dbt run --select orders; git pull]"
            ],
        ),
        (
            config(PULL, RUN),
            config(PULL, {**RUN, "project_dir": "/other"}),
            ["step 1 (dbt run --select orders): old runs with /repo, new with /other"],
        ),
    ],
    ids=["same", "connection", "command", "order", "directory"],
)
def test_old_and_new_steps_are_compared_by_connections_commands_order_and_place(old, new, differences):
    assert compare_steps(config_steps(old, SUBCOMMANDS), config_steps(new, SUBCOMMANDS)) == differences


def test_a_step_reads_as_what_it_runs():
    assert str(Step("airbyte", "c1", "acme-ab", "airbyte-sync")) == "sync c1"
    assert str(Step("dbt", "dbt run", "/repo", "dbt-run")) == "dbt run"
