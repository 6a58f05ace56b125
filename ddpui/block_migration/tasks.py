"""Finds (when planning) or makes (when applying) the org task that runs a step."""

from __future__ import annotations

from ddpcontract.tasks import TaskSlug
from ddpui.block_migration.comparison import Step
from ddpui.block_migration.dbt_commands import parse_dbt_command
from ddpui.block_migration.errors import MigrationProblem
from ddpui.errors import InvalidInput
from ddpui.models.org import Org
from ddpui.models.tasks import OrgTask, Task
from ddpui.services.transform_tasks import SYSTEM_TRANSFORM_SLUGS, orgtask_create


class TaskResolver:
    """Finds (when planning) or makes (when applying) the org task that runs a step."""

    def __init__(self, org: Org):
        self.org = org

    def find(self, step: Step, subcommands) -> OrgTask | None:
        tasks = OrgTask.objects.select_related("task").filter(org=self.org)
        if step.kind == "airbyte":
            return tasks.filter(task__slug=TaskSlug.AIRBYTE_SYNC, connection_id=step.value).order_by("id").first()
        if step.kind == "git":
            return tasks.filter(task__slug=TaskSlug.GIT_PULL).order_by("id").first()
        candidates = tasks.filter(task__slug=step.dbt.task_slug).order_by("-generated_by", "id")
        for candidate in candidates:  # system tasks first ("system" > "client")
            if parse_dbt_command(candidate.command_text(), subcommands).canonical == step.value:
                return candidate
        return None

    def ensure(self, step: Step, subcommands) -> OrgTask:
        found = self.find(step, subcommands)
        if found is not None:
            return found
        if step.kind == "airbyte":
            return OrgTask.objects.create(
                org=self.org, task=Task.objects.get(slug=TaskSlug.AIRBYTE_SYNC), connection_id=step.value
            )
        if step.kind == "git":
            return OrgTask.objects.create(org=self.org, task=Task.objects.get(slug=TaskSlug.GIT_PULL))
        if step.dbt.is_plain and step.dbt.task_slug in SYSTEM_TRANSFORM_SLUGS:
            return OrgTask.objects.create(org=self.org, task=Task.objects.get(slug=step.dbt.task_slug))
        flags, options = step.dbt.parameters()
        try:
            return orgtask_create(
                org=self.org, task_slug=step.dbt.task_slug, flags=flags, options=options, orguser=None
            )
        except InvalidInput as error:
            raise MigrationProblem(f"'{step.value}' cannot become a task: {error.message}") from None
