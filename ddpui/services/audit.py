"""Writes the audit trail. Details must never carry secrets: callers pass ids, names and states only."""

from __future__ import annotations

from ddpui.models.audit import AuditEvent
from ddpui.models.org import Org, OrgUser


def audit_record(
    *,
    org: Org | None,
    action: str,
    object_type: str,
    object_id: str = "",
    orguser: OrgUser | None = None,
    actor: str | None = None,
    details: dict | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        org=org,
        orguser=orguser,
        actor=actor or (orguser.user.email if orguser is not None else "system"),
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        details=details or {},
    )


def audit_list(*, org: Org, limit: int, offset: int) -> tuple[int, list[AuditEvent]]:
    events = AuditEvent.objects.filter(org=org)
    return events.count(), list(events.order_by("-created_at", "-id")[offset : offset + limit])
