"""Builds the task config (DESIGN §4): the deployment parameters that tell a flow what to run.

The models are the contract's (`ddpcontract.tasks`), so what Django writes is validated against what the
flow reads. Only block names go in, never secrets. Git and dbt tasks run on a dbt target: in the worker's copy of
the org's repository for that target (`repository`: the flow clones or updates it from the git URL Secret), with
that target's profile block and name.
"""

from __future__ import annotations

from django.conf import settings
from pydantic import ValidationError

from ddpcontract.tasks import (
    GIT_PULL_SECRET_ENV_KEY,
    AirbyteTaskConfig,
    DbtTaskConfig,
    PipelineConfig,
    RepositoryConfig,
    ShellTaskConfig,
    TaskKind,
    TaskSlug,
    TaskType,
)
from ddpui.errors import InvalidInput
from ddpui.models.org import DbtTarget, Org, OrgDbt, OrgPrefectBlockv1
from ddpui.models.tasks import OrgTask
from ddpui.services.targets import target_require_runnable, target_resolve

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
    """What the task dicts of one org need: its Airbyte server block, its dbt workspace and the target its git and
    dbt tasks run on (`target`, else the default one). Two queries, and one for the target when a git or dbt task
    is built."""

    def __init__(self, org: Org, target: DbtTarget | None = None):
        self.org = org
        self.server_block = (
            OrgPrefectBlockv1.objects.filter(org=org, block_type=OrgPrefectBlockv1.BlockType.AIRBYTE_SERVER)
            .values_list("block_name", flat=True)
            .first()
        )
        self.dbt = OrgDbt.objects.filter(org=org).first()
        self._target = target

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

    @property
    def target(self) -> DbtTarget:
        """The target the git and dbt tasks run on."""
        if self._target is None:
            self._target = target_resolve(org=self.org, name=None)
        return self._target

    def _repository(self, dbt: OrgDbt) -> dict | None:
        """Where the worker gets the project: its copy for the target, from the git URL Secret. A workspace without
        that Secret (made by hand) keeps running in its project directory (which workers must then see)."""
        if not dbt.gitrepo_access_token_secret:
            return None
        repository = RepositoryConfig(
            git_url_block=dbt.gitrepo_access_token_secret,
            branch=dbt.gitrepo_branch or None,
            org_slug=self.org.slug,
            target=self.target.name,
        )
        return repository.model_dump(mode="json", exclude_none=True)

    def git_task(self, orgtask: OrgTask, seq: int) -> dict:
        dbt = self._require_dbt()
        env = {GIT_PULL_SECRET_ENV_KEY: dbt.gitrepo_access_token_secret} if dbt.gitrepo_access_token_secret else {}
        repository = self._repository(dbt)
        where = {"repository": repository} if repository else {"working_dir": dbt.project_dir}
        return _task_dict(
            ShellTaskConfig,
            seq=seq,
            type=TaskType.SHELL_OPERATION,
            slug=orgtask.task.slug,
            orgtask_uuid=str(orgtask.uuid),
            commands=[orgtask.command_text()],
            env=env,
            **where,
        )

    def dbt_task(self, orgtask: OrgTask, seq: int, *, command: str | None = None) -> dict:
        dbt = self._require_dbt()
        target = self.target
        target_require_runnable(target)
        repository = self._repository(dbt)
        where = (
            {"repository": repository}
            if repository
            else {"project_dir": dbt.project_dir, "working_dir": dbt.project_dir}
        )
        return _task_dict(
            DbtTaskConfig,
            seq=seq,
            type=TaskType.DBT_CORE_OPERATION,
            slug=orgtask.task.slug,
            orgtask_uuid=str(orgtask.uuid),
            commands=[command or orgtask.command_text()],
            cli_profile_block=target.profile_block.block_name,
            target=target.name,
            env={},
            **where,
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


def deployment_parameters(
    *, org: Org, orgtasks: list[OrgTask], target: DbtTarget | None = None, max_parallel_syncs: int | None = None
) -> dict:
    """The deployment parameters for org tasks already in run order, their git and dbt tasks on `target` (else the
    default target); `max_parallel_syncs` (how many of the pipeline's Airbyte syncs run at once) is written when
    given."""
    context = OrgContext(org, target)
    return context.parameters(
        [context.task(t, seq) for seq, t in enumerate(orgtasks)], max_parallel_syncs=max_parallel_syncs
    )
