"""The audit trail, for account managers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Query, Router, Schema

from ddpui.api.schemas import ERRORS, MAX_OFFSET
from ddpui.auth import org_auth
from ddpui.services.audit import audit_list

router = Router(tags=["audit"])


class AuditEventOut(Schema):
    id: int
    actor: str
    action: str
    objectType: str
    objectId: str
    details: dict[str, Any]
    createdAt: datetime


class AuditPageOut(Schema):
    count: int
    limit: int
    offset: int
    events: list[AuditEventOut]


@router.get("/v1/audit", response={200: AuditPageOut, **ERRORS}, auth=org_auth("audit:read"))
def list_audit(request, limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_OFFSET)):
    count, events = audit_list(org=request.auth.org, limit=limit, offset=offset)
    return {
        "count": count,
        "limit": limit,
        "offset": offset,
        "events": [
            {
                "id": e.id,
                "actor": e.actor,
                "action": e.action,
                "objectType": e.object_type,
                "objectId": e.object_id,
                "details": e.details,
                "createdAt": e.created_at,
            }
            for e in events
        ],
    }
