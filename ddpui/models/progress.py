"""Progress of work that runs in the background after the request that started it (the dbt workspace
set-up and repository change): what the web app polls at GET /api/tasks/{task_id}."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from ddpui.models.org import Org, OrgUser


class TaskProgress(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "running"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"

    task_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="task_progress")
    orguser = models.ForeignKey(OrgUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    kind = models.CharField(max_length=64, help_text="what the task does, e.g. dbt-workspace-setup")
    resource = models.CharField(
        max_length=64, help_text="what it works on: one running task per org and resource (DB-enforced)"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    steps = models.JSONField(default=list, blank=True, help_text="[{stepnum, status, message}] in order")
    heartbeat_at = models.DateTimeField(default=timezone.now, help_text="last sign of life of its thread")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["org", "resource"], condition=Q(status="running"), name="one_running_task_per_org_resource"
            )
        ]

    def __str__(self) -> str:
        return f"{self.org.slug}: {self.kind} {self.status} ({self.task_id})"
