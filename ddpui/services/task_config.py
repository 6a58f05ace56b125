"""Builds the task config (DESIGN §4): the deployment parameters that tell a flow what to run.

The models are the contract's (`ddpcontract.tasks`), so what Django writes is validated against what the
flow reads. Only block names go in, never secrets.
"""

from __future__ import annotations

from django.conf import settings
from pydantic import ValidationError

from ddpcontract.tasks import (
    GIT_PULL_SECRET_ENV_KEY,
    AirbyteTaskConfig,
    DbtTaskConfig,
    PipelineConfig,
    ShellTaskConfig,
    TaskKind,
    TaskSlug,
    TaskType,
)
from ddpui.errors import InvalidInput
from ddpui.models.org import Org, OrgDbt, OrgPrefectBlockv1
from ddpui.models.tasks import OrgTask

# within a pipeline: syncs first, then git pull, dbt clean, dbt deps, then everything else by seq
_LEADING_ORDER = {
    TaskSlug.AIRBYTE_SYNC: 0,
    TaskSlug.AIRBYTE_RESET: 0,
    TaskSlug.GIT_PULL: 1,
    TaskSlug.DBT_CLEAN: 2,
    TaskSlug.DBT_DEPS: 3,
}


def pipeline_order(items: list[tuple[int, OrgTask]]) -> list[OrgTask]:
    """Orders (requested seq, orgtask) pairs: syncs, git-pull, dbt-clean, dbt-deps, then the rest by seq."""
    return [
        orgtask for _, orgtask in sorted(items, key=lambda item: (_LEADING_ORDER.get(item[1].task.slug, 4), item[0]))
    ]


def _task_dict(model: type[AirbyteTaskConfig | ShellTaskConfig | DbtTaskConfig], **fields) -> dict:
    """The task as the contract's model validates it, in JSON form (only the fields given)."""
    try:
        task = model(**fields)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors(include_input=False)
        )
        raise InvalidInput(f"the task {fields.get('slug')} cannot be run: {problems}") from None
    return task.model_dump(mode="json", exclude_unset=True)


class OrgContext:
    """What the task dicts of one org need: its Airbyte server block and its dbt workspace. Two queries."""

    def __init__(self, org: Org):
        self.org = org
        self.server_block = (
            OrgPrefectBlockv1.objects.filter(org=org, block_type=OrgPrefectBlockv1.BlockType.AIRBYTE_SERVER)
            .values_list("block_name", flat=True)
            .first()
        )
        self.dbt = OrgDbt.objects.select_related("cli_profile_block").filter(org=org).first()

    def airbyte_task(self, orgtask: OrgTask, seq: int) -> dict:
        if not self.server_block:
            raise InvalidInput(
                f"org '{self.org.slug}' has no Airbyte server block: create the organization's workspace first"
            )
        return _task_dict(
            AirbyteTaskConfig,
            seq=seq,
            type=TaskType.AIRBYTE_CONNECTION,
            slug=orgtask.task.slug,
            orgtask_uuid=str(orgtask.uuid),
            airbyte_server_block=self.server_block,
            connection_id=orgtask.connection_id,
            timeout=settings.AIRBYTE_SYNC_TIMEOUT_SECONDS,
        )

    def _require_dbt(self) -> OrgDbt:
        if self.dbt is None:
            raise InvalidInput(f"org '{self.org.slug}' has no dbt workspace: set one up with POST /api/dbt/workspace/")
        return self.dbt

    def git_task(self, orgtask: OrgTask, seq: int) -> dict:
        dbt = self._require_dbt()
        env = {GIT_PULL_SECRET_ENV_KEY: dbt.gitrepo_access_token_secret} if dbt.gitrepo_access_token_secret else {}
        return _task_dict(
            ShellTaskConfig,
            seq=seq,
            type=TaskType.SHELL_OPERATION,
            slug=orgtask.task.slug,
            orgtask_uuid=str(orgtask.uuid),
            commands=[orgtask.command_text()],
            working_dir=dbt.project_dir,
            env=env,
        )

    def dbt_task(self, orgtask: OrgTask, seq: int, *, command: str | None = None) -> dict:
        dbt = self._require_dbt()
        if dbt.cli_profile_block is None:
            raise InvalidInput(
                f"org '{self.org.slug}' has no dbt CLI profile: "
                "create the transform tasks with POST /api/prefect/tasks/transform/"
            )
        return _task_dict(
            DbtTaskConfig,
            seq=seq,
            type=TaskType.DBT_CORE_OPERATION,
            slug=orgtask.task.slug,
            orgtask_uuid=str(orgtask.uuid),
            commands=[command or orgtask.command_text()],
            cli_profile_block=dbt.cli_profile_block.block_name,
            project_dir=dbt.project_dir,
            working_dir=dbt.project_dir,
            profiles_dir=str(settings.CLIENT_DBT_ROOT / self.org.slug / "profiles"),
            env={},
        )

    def task(self, orgtask: OrgTask, seq: int) -> dict:
        if orgtask.task.type == TaskKind.AIRBYTE:
            return self.airbyte_task(orgtask, seq)
        if orgtask.task.type == TaskKind.GIT:
            return self.git_task(orgtask, seq)
        return self.dbt_task(orgtask, seq)

    def parameters(self, tasks: list[dict], *, max_parallel_syncs: int | None = None) -> dict:
        """The deployment parameters carrying task dicts (made by this context) in run order;
        `max_parallel_syncs` is written when given."""
        fields = {"max_parallel_syncs": max_parallel_syncs} if max_parallel_syncs is not None else {}
        if not tasks:
            # a pipeline whose last task was deleted (with its connection) keeps an empty task list: its runs
            # fail, saying so, until it gets tasks again (the contract's model refuses to build such a config)
            return PipelineConfig.model_construct(org_slug=self.org.slug, tasks=[], **fields).parameters()
        return PipelineConfig(org_slug=self.org.slug, tasks=tasks, **fields).parameters()


def deployment_parameters(*, org: Org, orgtasks: list[OrgTask], max_parallel_syncs: int | None = None) -> dict:
    """The deployment parameters for org tasks already in run order; `max_parallel_syncs` (how many of the
    pipeline's Airbyte syncs run at once) is written when given."""
    context = OrgContext(org)
    return context.parameters(
        [context.task(t, seq) for seq, t in enumerate(orgtasks)], max_parallel_syncs=max_parallel_syncs
    )
