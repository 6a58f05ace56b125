"""Org tasks."""

from __future__ import annotations

from ninja import Router, Schema

from ddpui.api.schemas import ERRORS
from ddpui.auth import org_auth
from ddpui.services.selectors import orgtask_get

router = Router(tags=["tasks"])


class OrgTaskOut(Schema):
    uuid: str
    slug: str
    type: str
    label: str
    command: str
    connection_id: str | None
    generated_by: str


def orgtask_out(orgtask) -> dict:
    return {
        "uuid": str(orgtask.uuid),
        "slug": orgtask.task.slug,
        "type": orgtask.task.type,
        "label": orgtask.task.label,
        "command": orgtask.command_text(),
        "connection_id": orgtask.connection_id,
        "generated_by": orgtask.generated_by,
    }


@router.get("/prefect/tasks/{orgtask_uuid}/", response={200: OrgTaskOut, **ERRORS}, auth=org_auth("tasks:read"))
def get_task(request, orgtask_uuid: str):
    return orgtask_out(orgtask_get(org=request.auth.org, orgtask_uuid=orgtask_uuid))
