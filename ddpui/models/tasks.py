"""The master task list and each org's instances of it."""

from __future__ import annotations

import uuid

from django.db import models

from ddpcontract.tasks import TaskKind
from ddpui.models.org import Org


class TaskType(models.TextChoices):
    """The master task list's kinds (`ddpcontract.tasks.TaskKind`) as model choices."""

    AIRBYTE = TaskKind.AIRBYTE.value, "Airbyte"
    GIT = TaskKind.GIT.value, "git"
    DBT = TaskKind.DBT.value, "dbt"


class Task(models.Model):
    """One row of the master list (fixtures/tasks.json), installed by a data migration."""

    slug = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=16, choices=TaskType.choices)
    label = models.CharField(max_length=100)
    command = models.CharField(max_length=100, null=True, blank=True)
    is_system = models.BooleanField(default=True)

    class Meta:
        db_table = "ddpui_tasks"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.slug


class OrgTask(models.Model):
    class GeneratedBy(models.TextChoices):
        SYSTEM = "system", "system"
        CLIENT = "client", "client"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="orgtasks")
    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="orgtasks")
    connection_id = models.CharField(max_length=64, null=True, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    generated_by = models.CharField(max_length=16, choices=GeneratedBy.choices, default=GeneratedBy.SYSTEM)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["org", "connection_id"])]

    def __str__(self) -> str:
        return f"{self.org.slug}: {self.command_text()}"

    def command_text(self) -> str:
        """`dbt <command> [--flag ...] [--option value ...]` for dbt tasks, the master command otherwise."""
        base = self.task.command or self.task.slug
        if self.task.type == TaskType.GIT:
            return f"git {base}"
        if self.task.type != TaskType.DBT:
            return base
        parts = [f"dbt {base}"]
        params = self.parameters or {}
        for flag in params.get("flags", []) or []:
            parts.append(f"--{flag}")
        for key, value in (params.get("options", {}) or {}).items():
            values = value if isinstance(value, list) else [value]
            for item in values:
                parts.append(f"--{key} {item}")
        return " ".join(parts)
