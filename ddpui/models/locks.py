"""Task locks: at most one per org task, enforced by the database. Only services.locks writes them."""

from __future__ import annotations

from django.db import models

from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.org import OrgUser
from ddpui.models.tasks import OrgTask


class TaskLock(models.Model):
    orgtask = models.OneToOneField(OrgTask, on_delete=models.CASCADE, related_name="lock")
    flow_run_id = models.CharField(max_length=64, null=True, blank=True, db_index=True)
    locked_by = models.ForeignKey(OrgUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    locked_at = models.DateTimeField(auto_now_add=True)
    locking_dataflow = models.ForeignKey(
        OrgDataFlowv1, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        db_table = "ddpui_locktask"

    def __str__(self) -> str:
        return f"lock on {self.orgtask_id} by run {self.flow_run_id or '-'}"
