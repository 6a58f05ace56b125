"""Tasks: their types, kinds and slugs, and the task config — what a task of each type carries.

The task config is the deployment parameters Django writes and the pipeline flow reads (docs/flows.md):

    {"config": {"org_slug": "acme", "tasks": [{"seq": 0, "type": "Airbyte Connection", ...}, ...]}}

Django builds it from these models and the flow parses it with `pipeline_config_parse`, so both sides
agree on every field. Only block names travel here, never a secret.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)


class TaskType(StrEnum):
    """A task's `type` in the task config: the operation the flow builds for it."""

    AIRBYTE_CONNECTION = "Airbyte Connection"
    SHELL_OPERATION = "Shell Operation"
    DBT_CORE_OPERATION = "dbt Core Operation"


class TaskKind(StrEnum):
    """The `type` of a task in the master task list (`ddpui_tasks.type`)."""

    AIRBYTE = "airbyte"
    GIT = "git"
    DBT = "dbt"


class TaskSlug(StrEnum):
    """The master task list's slugs (ddpui/fixtures/tasks.json holds the rows)."""

    AIRBYTE_SYNC = "airbyte-sync"
    AIRBYTE_RESET = "airbyte-reset"
    GIT_PULL = "git-pull"
    DBT_CLEAN = "dbt-clean"
    DBT_DEPS = "dbt-deps"
    DBT_RUN = "dbt-run"
    DBT_TEST = "dbt-test"
    DBT_DOCS_GENERATE = "dbt-docs-generate"
    DBT_SEED = "dbt-seed"


# the operation a task of each kind becomes in the task config
TASK_TYPE_BY_KIND = {
    TaskKind.AIRBYTE: TaskType.AIRBYTE_CONNECTION,
    TaskKind.GIT: TaskType.SHELL_OPERATION,
    TaskKind.DBT: TaskType.DBT_CORE_OPERATION,
}

# A shell task's `env` key naming the Secret block that holds the git remote URL (with its token); the flow
# removes it from the environment and pulls from that URL instead.
GIT_PULL_SECRET_ENV_KEY = "secret-git-pull-url-block"

# Prefect's rule for block document names
BLOCK_NAME_PATTERN = r"^[a-z0-9-]{1,200}$"
BlockName = Annotated[str, StringConstraints(pattern=BLOCK_NAME_PATTERN)]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]
# a dbt target's name: a word that dbt (--target) and a directory name take alike
TARGET_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
TargetName = Annotated[str, StringConstraints(pattern=TARGET_NAME_PATTERN)]
# an org's slug (Django's slug rule), safe as a directory name
OrgSlug = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")]
# a git branch name that cannot be read as an option (git refuses the other bad names itself)
Branch = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$")]
# whole seconds stay integers in the JSON
Seconds = Annotated[StrictInt | StrictFloat, Field(ge=0), WithJsonSchema({"type": "number", "minimum": 0})]


class _TaskConfigBase(BaseModel):
    """Fields every task carries."""

    model_config = ConfigDict(extra="forbid")

    seq: StrictInt = Field(default=0, description="Order of execution; unique within a pipeline")
    slug: NonEmpty = Field(description="The master task's slug; names the task in messages and results")
    orgtask_uuid: str | None = Field(default=None, description="Copied to the task's result")
    retries: StrictInt = Field(default=0, ge=0, description="Extra attempts after a failure")
    retry_delay_seconds: Seconds = Field(default=0, description="Backoff base: retry n waits base * 2**n")
    timeout_seconds: Seconds | None = Field(default=None, description="Limit of one attempt")


class AirbyteTaskConfig(_TaskConfigBase):
    """An Airbyte sync, triggered and awaited through an in-memory AirbyteConnection."""

    type: Literal[TaskType.AIRBYTE_CONNECTION]
    airbyte_server_block: BlockName = Field(description="The AirbyteServer block: the only block loaded")
    connection_id: NonEmpty
    timeout: Seconds | None = Field(default=None, description="Limit of the whole sync, trigger to end")
    poll_interval_s: StrictInt | None = Field(default=None, ge=1)


class RepositoryConfig(BaseModel):
    """The org's dbt repository, which the flow materialises on the worker that runs the task: a copy per org and
    target in the worker's cache, cloned (or brought to the branch's tip) from the git URL in the Secret block."""

    model_config = ConfigDict(extra="forbid")

    git_url_block: BlockName = Field(description="The Secret block holding the git URL, with its token if any")
    branch: Branch | None = Field(
        default=None, description="The branch the workspace tracks; else the remote's default"
    )
    org_slug: OrgSlug
    target: TargetName = Field(description="Names the copy: each target has its own, so targets never share files")


class ShellTaskConfig(_TaskConfigBase):
    """Shell commands in one bash script that stops at the first failure (git pull among them)."""

    type: Literal[TaskType.SHELL_OPERATION]
    commands: list[NonEmpty] = Field(min_length=1)
    working_dir: NonEmpty | None = Field(default=None, description="Ignored when `repository` is given")
    repository: RepositoryConfig | None = Field(
        default=None, description="Run in the worker's copy of the org's repository for this target"
    )
    env: dict[str, str] = Field(
        default_factory=dict, description=f"May name the git-pull URL Secret under {GIT_PULL_SECRET_ENV_KEY!r}"
    )


class DbtTaskConfig(_TaskConfigBase):
    """dbt commands run with a profile built in memory from the Secret block `cli_profile_block`."""

    type: Literal[TaskType.DBT_CORE_OPERATION]
    commands: list[NonEmpty] = Field(min_length=1)
    cli_profile_block: BlockName = Field(description="The Secret block holding the dbt profile as JSON")
    target: TargetName | None = Field(
        default=None, description="The dbt target: the profile is built under this name and each command gets --target"
    )
    repository: RepositoryConfig | None = Field(
        default=None, description="The project is the worker's copy of the org's repository for this target"
    )
    project_dir: NonEmpty | None = Field(default=None, description="Without `repository`: the project on disk")
    working_dir: NonEmpty | None = Field(default=None, description="Defaults to the project's directory")
    profiles_dir: str | None = Field(default=None, description="Ignored: each run writes a fresh one")
    env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_a_project(self):
        if self.repository is None and self.project_dir is None:
            raise ValueError("needs repository or project_dir")
        return self


_TASK_TYPES = tuple(task_type.value for task_type in TaskType)
TaskConfig = Annotated[AirbyteTaskConfig | ShellTaskConfig | DbtTaskConfig, Field(discriminator="type")]
_task_config = TypeAdapter(TaskConfig)


# Airbyte syncs of one pipeline run at once unless the pipeline says otherwise (1 runs every task in turn)
DEFAULT_MAX_PARALLEL_SYNCS = 4
MAX_PARALLEL_SYNCS_LIMIT = 16


class PipelineConfig(BaseModel):
    """The `config` parameter of the pipeline flow."""

    model_config = ConfigDict(extra="forbid")

    org_slug: str | None = None
    tasks: list[TaskConfig] = Field(min_length=1)
    max_parallel_syncs: StrictInt | None = Field(
        default=None,
        ge=1,
        le=MAX_PARALLEL_SYNCS_LIMIT,
        description=f"Airbyte syncs run at once (default {DEFAULT_MAX_PARALLEL_SYNCS}); 1 runs the tasks one by one",
    )

    def parameters(self, *, with_defaults: bool = False) -> dict[str, Any]:
        """The deployment parameters carrying this config, as JSON: only the fields that were set, or (with
        `with_defaults`, for tasks a caller may have sent without their defaulted fields such as `seq`) every
        field that has a value."""
        if with_defaults:
            return {"config": self.model_dump(mode="json", exclude_none=True)}
        return {"config": self.model_dump(mode="json", exclude_unset=True)}


class TaskConfigError(ValueError):
    """The task config breaks the contract; the message says where, never with the values."""


def _errors(error: ValidationError, where: str, *, skip: int = 0) -> str:
    """The problems of `error` by field (`skip` leading location parts), without the values."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in item["loc"][skip:])
        problems.append(f"{location}: {item['msg']}" if location else item["msg"])
    return f"{where}: {'; '.join(problems)}"


def task_config_parse(raw: Any, *, where: str = "task") -> TaskConfig:
    """One task dict as a typed task config; TaskConfigError says what is wrong and where."""
    if not isinstance(raw, dict):
        raise TaskConfigError(f"{where} is not an object")
    if raw.get("type") not in _TASK_TYPES:
        raise TaskConfigError(f"{where} has type {raw.get('type')!r}; expected one of {list(_TASK_TYPES)}")
    try:
        return _task_config.validate_python(raw)
    except ValidationError as error:
        raise TaskConfigError(_errors(error, where, skip=1)) from None  # skip the type's tag


def pipeline_config_parse(config: Any) -> PipelineConfig:
    """The pipeline flow's `config` parameter, checked task by task: every task needs an integer `seq`,
    unique in the pipeline. The tasks come back in `seq` order."""
    if not isinstance(config, dict):
        raise TaskConfigError("config must be an object")
    unknown = sorted(set(config) - set(PipelineConfig.model_fields))
    if unknown:
        raise TaskConfigError(f"config has unknown keys {unknown}; expected {sorted(PipelineConfig.model_fields)}")
    raw_tasks = config.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise TaskConfigError("config.tasks must be a non-empty list of tasks")
    tasks = []
    for index, raw in enumerate(raw_tasks):
        where = f"config.tasks[{index}]"
        task = task_config_parse(raw, where=where)
        if "seq" not in raw:
            raise TaskConfigError(f"{where} needs an integer seq")
        tasks.append(task)
    seqs = [task.seq for task in tasks]
    if len(set(seqs)) != len(seqs):
        raise TaskConfigError(f"config.tasks have duplicate seq values: {sorted(seqs)}")
    fields = {key: config[key] for key in ("org_slug", "max_parallel_syncs") if key in config}
    try:
        return PipelineConfig(**fields, tasks=sorted(tasks, key=lambda task: task.seq))
    except ValidationError as error:
        raise TaskConfigError(_errors(error, "config")) from None
