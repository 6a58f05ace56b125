"""Task locks: at most one per org task and target, enforced by the database. Only services.locks writes them.

A git or dbt task runs on a dbt target (each target has its own copy of the repository and its own schema), so
it is locked per target: the same task on the same target is exclusive, on two targets it is not. A sync task
has no target (target null): it is locked alone.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.org import DbtTarget, OrgUser
from ddpui.models.tasks import OrgTask


class TaskLock(models.Model):
    orgtask = models.ForeignKey(OrgTask, on_delete=models.CASCADE, related_name="locks")
    target = models.ForeignKey(DbtTarget, on_delete=models.CASCADE, null=True, blank=True, related_name="locks")
    flow_run_id = models.CharField(max_length=64, null=True, blank=True, db_index=True)
    locked_by = models.ForeignKey(OrgUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    locked_at = models.DateTimeField(auto_now_add=True)
    locking_dataflow = models.ForeignKey(
        OrgDataFlowv1, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        db_table = "ddpui_locktask"
        constraints = [
            # two partial constraints, since NULLs are distinct in a unique index on SQLite and PostgreSQL alike
            models.UniqueConstraint(
                fields=["orgtask"], condition=Q(target__isnull=True), name="one_lock_per_task_without_target"
            ),
            models.UniqueConstraint(
                fields=["orgtask", "target"], condition=Q(target__isnull=False), name="one_lock_per_task_and_target"
            ),
        ]

    def __str__(self) -> str:
        on = f" on {self.target.name}" if self.target_id is not None else ""
        return f"lock on {self.orgtask_id}{on} by run {self.flow_run_id or '-'}"
