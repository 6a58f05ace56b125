"""The task config contract: what Django writes and the flow accepts, and what either side refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ddpcontract.tasks import (
    TASK_TYPE_BY_KIND,
    AirbyteTaskConfig,
    DbtTaskConfig,
    PipelineConfig,
    ShellTaskConfig,
    TaskConfigError,
    TaskKind,
    TaskSlug,
    TaskType,
    pipeline_config_parse,
    task_config_parse,
)

FIXTURE = Path(__file__).resolve().parents[2] / "ddpui" / "fixtures" / "tasks.json"

AIRBYTE = {
    "seq": 0,
    "type": "Airbyte Connection",
    "slug": "airbyte-sync",
    "orgtask_uuid": "6f1c0e1e-0000-4000-8000-000000000001",
    "airbyte_server_block": "acme-airbyte-server",
    "connection_id": "c0ffee00-0000-4000-8000-000000000000",
    "timeout": 3600,
}
GIT_PULL = {
    "seq": 1,
    "type": "Shell Operation",
    "slug": "git-pull",
    "orgtask_uuid": "6f1c0e1e-0000-4000-8000-000000000002",
    "commands": ["git pull"],
    "working_dir": "/srv/clients/acme/dbtrepo",
    "env": {"secret-git-pull-url-block": "acme-git-pull-url"},
}
DBT_RUN = {
    "seq": 2,
    "type": "dbt Core Operation",
    "slug": "dbt-run",
    "orgtask_uuid": "6f1c0e1e-0000-4000-8000-000000000003",
    "commands": ["dbt run --select tag:daily"],
    "cli_profile_block": "acme-dbt-profile",
    "project_dir": "/srv/clients/acme/dbtrepo",
    "working_dir": "/srv/clients/acme/dbtrepo",
    "profiles_dir": "/srv/clients/acme/profiles",
    "env": {},
}


def without(task: dict, key: str) -> dict:
    return {name: value for name, value in task.items() if name != key}


# the same tasks as Django writes them for a workspace with a git URL Secret: on a target, in the worker's copy
REPOSITORY = {"git_url_block": "acme-git-pull-url", "branch": "main", "org_slug": "acme", "target": "dev"}
GIT_PULL_ON_TARGET = {**without(GIT_PULL, "working_dir"), "repository": REPOSITORY}
DBT_RUN_ON_TARGET = {
    **without(without(without(DBT_RUN, "project_dir"), "working_dir"), "profiles_dir"),
    "target": "dev",
    "repository": REPOSITORY,
}


@pytest.mark.parametrize(
    ("task", "model"),
    [
        (AIRBYTE, AirbyteTaskConfig),
        (GIT_PULL, ShellTaskConfig),
        (DBT_RUN, DbtTaskConfig),
        (GIT_PULL_ON_TARGET, ShellTaskConfig),
        (DBT_RUN_ON_TARGET, DbtTaskConfig),
    ],
    ids=["airbyte", "shell", "dbt", "shell-on-target", "dbt-on-target"],
)
def test_each_task_type_parses_to_its_model_and_dumps_back_unchanged(task, model):
    parsed = task_config_parse(task)
    assert type(parsed) is model
    assert parsed.model_dump(mode="json", exclude_unset=True) == task


def test_a_pipeline_config_round_trips_as_deployment_parameters_with_tasks_in_seq_order():
    config = {"org_slug": "acme", "tasks": [DBT_RUN, AIRBYTE, GIT_PULL]}
    parsed = pipeline_config_parse(config)
    assert [task.slug for task in parsed.tasks] == ["airbyte-sync", "git-pull", "dbt-run"]
    assert parsed.parameters() == {"config": {"org_slug": "acme", "tasks": [AIRBYTE, GIT_PULL, DBT_RUN]}}
    # what Django builds from the models is what the flow parses
    built = PipelineConfig(org_slug="acme", tasks=[AIRBYTE, GIT_PULL, DBT_RUN]).parameters()
    assert pipeline_config_parse(built["config"]).parameters() == built


def test_a_task_sent_without_its_defaulted_fields_is_written_with_them_for_the_flow():
    # an ad-hoc run's task may come without seq (or retries): the flow needs seq, so the proxy writes defaults
    sent = DbtTaskConfig.model_validate(without(DBT_RUN, "seq"))
    written = PipelineConfig(org_slug="acme", tasks=[sent]).parameters(with_defaults=True)
    assert written["config"]["tasks"][0]["seq"] == 0 and written["config"]["tasks"][0]["retries"] == 0
    assert "max_parallel_syncs" not in written["config"]  # unset values stay out
    assert pipeline_config_parse(written["config"]).tasks[0].commands == DBT_RUN["commands"]
    with pytest.raises(TaskConfigError, match="needs an integer seq"):
        pipeline_config_parse(PipelineConfig(org_slug="acme", tasks=[sent]).parameters()["config"])


def test_optional_fields_keep_their_documented_defaults():
    shell = task_config_parse({"seq": 3, "type": "Shell Operation", "slug": "echo", "commands": ["echo hi"]})
    assert (shell.working_dir, shell.env, shell.retries, shell.retry_delay_seconds, shell.timeout_seconds) == (
        None,
        {},
        0,
        0,
        None,
    )
    assert task_config_parse({**AIRBYTE, "timeout": 3600}).timeout == 3600  # integers stay integers in JSON
    assert task_config_parse(without(DBT_RUN, "working_dir")).working_dir is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (["not", "an", "object"], "config must be an object"),
        ({"tasks": []}, "config.tasks must be a non-empty list of tasks"),
        ({"tasks": {"seq": 0}}, "config.tasks must be a non-empty list of tasks"),
        ({"tasks": [AIRBYTE], "schedule": "daily"}, "config has unknown keys ['schedule']"),
        ({"tasks": [AIRBYTE, "git pull"]}, "config.tasks[1] is not an object"),
        ({"tasks": [AIRBYTE, {"seq": 1, "type": "Nope", "slug": "x"}]}, "config.tasks[1] has type 'Nope'"),
        ({"tasks": [without(AIRBYTE, "type")]}, "config.tasks[0] has type None"),
        ({"tasks": [without(GIT_PULL, "seq")]}, "config.tasks[0] needs an integer seq"),
        ({"tasks": [{**GIT_PULL, "seq": "1"}]}, "config.tasks[0]: seq: Input should be a valid integer"),
        ({"tasks": [{**GIT_PULL, "seq": True}]}, "config.tasks[0]: seq: Input should be a valid integer"),
        ({"tasks": [AIRBYTE, {**GIT_PULL, "seq": 0}]}, "config.tasks have duplicate seq values: [0, 0]"),
        ({"tasks": [without(DBT_RUN, "cli_profile_block")]}, "config.tasks[0]: cli_profile_block: Field required"),
        ({"tasks": [without(DBT_RUN, "project_dir")]}, "config.tasks[0]: Value error, needs repository or project_dir"),
        ({"tasks": [{**DBT_RUN_ON_TARGET, "target": "Dev"}]}, "config.tasks[0]: target: String should match"),
        (
            {"tasks": [{**DBT_RUN_ON_TARGET, "repository": {**REPOSITORY, "branch": "--upload-pack=x"}}]},
            "config.tasks[0]: repository.branch: String should match",
        ),
        (
            {"tasks": [{**GIT_PULL_ON_TARGET, "repository": {**REPOSITORY, "org_slug": "../etc"}}]},
            "config.tasks[0]: repository.org_slug: String should match",
        ),
        (
            {"tasks": [{**GIT_PULL_ON_TARGET, "repository": without(REPOSITORY, "git_url_block")}]},
            "config.tasks[0]: repository.git_url_block: Field required",
        ),
        ({"tasks": [without(AIRBYTE, "connection_id")]}, "config.tasks[0]: connection_id: Field required"),
        ({"tasks": [without(AIRBYTE, "slug")]}, "config.tasks[0]: slug: Field required"),
        ({"tasks": [{**GIT_PULL, "commands": []}]}, "config.tasks[0]: commands: List should have at least 1 item"),
        ({"tasks": [{**GIT_PULL, "retries": -1}]}, "config.tasks[0]: retries: Input should be greater than or equal"),
        ({"tasks": [{**DBT_RUN, "cli_profile_block": "Acme Profile"}]}, "config.tasks[0]: cli_profile_block:"),
        ({"tasks": [{**GIT_PULL, "timeout_seconds": "60"}]}, "config.tasks[0]: timeout_seconds.int: Input should be"),
        ({"tasks": [{**AIRBYTE, "timeout": -5}]}, "config.tasks[0]: timeout: Input should be greater than or equal"),
        ({"tasks": [{**AIRBYTE, "retires": 2}]}, "config.tasks[0]: retires: Extra inputs are not permitted"),
        ({"tasks": [AIRBYTE], "org_slug": 7}, "config: org_slug: Input should be a valid string"),
    ],
)
def test_a_config_that_breaks_the_contract_is_refused_saying_where(config, message):
    with pytest.raises(TaskConfigError) as refused:
        pipeline_config_parse(config)
    assert message in str(refused.value)
    assert isinstance(refused.value, ValueError)  # the flow fails the run with it before any task starts


def test_a_refusal_never_repeats_the_values_it_refused():
    secret = "glpat-Secr3tT0ken"
    with pytest.raises(TaskConfigError) as refused:
        pipeline_config_parse({"tasks": [{**GIT_PULL, "env": {"TOKEN": 12345}}]})
    assert "env.TOKEN" in str(refused.value) and "12345" not in str(refused.value)
    with pytest.raises(TaskConfigError) as refused:
        pipeline_config_parse({"tasks": [{**AIRBYTE, "airbyte_server_block": f"https://x:{secret}@host"}]})
    assert "airbyte_server_block" in str(refused.value) and secret not in str(refused.value)


def test_the_master_task_list_uses_the_contracts_slugs_and_kinds():
    rows = [row["fields"] for row in json.loads(FIXTURE.read_text()) if row["model"] == "ddpui.task"]
    assert {row["slug"] for row in rows} == {slug.value for slug in TaskSlug}
    assert {row["type"] for row in rows} <= {kind.value for kind in TaskKind}
    assert set(TASK_TYPE_BY_KIND) == set(TaskKind)
    assert set(TASK_TYPE_BY_KIND.values()) == set(TaskType)


def test_the_task_models_choices_are_the_contracts_kinds():
    from ddpui.models.tasks import TaskType as TaskTypeChoices

    assert set(TaskTypeChoices.values) == {kind.value for kind in TaskKind}
