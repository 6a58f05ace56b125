"""The audit trail: who (a user, or the system on behalf of a run) changed what, and when."""

from __future__ import annotations

from django.db import models

from ddpui.models.org import Org, OrgUser


class AuditEvent(models.Model):
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="audit_events", null=True, blank=True)
    orguser = models.ForeignKey(OrgUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor = models.CharField(max_length=200, help_text="the user's e-mail, or 'system' / 'run <id>'")
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=100, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["org", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.object_type} {self.object_id}"
