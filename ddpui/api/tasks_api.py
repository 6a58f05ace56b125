"""Org tasks: the transform set (git pull and dbt commands), custom dbt commands, and one-off runs.

The /prefect/tasks/transform/ routes are declared before /prefect/tasks/{orgtask_uuid}/ so that
"transform" is never read as a task uuid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Field, Router, Schema

from ddpui.api.schemas import ERRORS, OkOut
from ddpui.auth import org_auth
from ddpui.services import transform_tasks
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


class TaskLockOut(Schema):
    status: str
    flowRunId: str | None
    lockedBy: str | None
    lockedAt: datetime
    lockingPipeline: str | None


class TransformTaskOut(Schema):
    uuid: str
    slug: str
    type: str
    command: str
    generatedBy: str
    seq: int
    lock: TaskLockOut | None


class CustomTaskIn(Schema):
    taskSlug: str = Field(min_length=1)
    flags: list[str] = []
    options: dict[str, Any] = {}


class RunStartedOut(Schema):
    flow_run_id: str
    name: str | None


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


@router.post(
    "/prefect/tasks/transform/", response={200: list[TransformTaskOut], **ERRORS}, auth=org_auth("tasks:write")
)
def create_transform_tasks(request):
    return transform_tasks.transform_tasks_create(org=request.auth.org)


@router.get("/prefect/tasks/transform/", response={200: list[TransformTaskOut], **ERRORS}, auth=org_auth("tasks:read"))
def list_transform_tasks(request):
    return transform_tasks.transform_tasks_list(org=request.auth.org)


@router.delete("/prefect/tasks/transform/", response={200: OkOut, **ERRORS}, auth=org_auth("tasks:write"))
def delete_transform_tasks(request):
    transform_tasks.transform_tasks_delete(org=request.auth.org)
    return {"success": True}


@router.post("/prefect/tasks/", response={200: OrgTaskOut, **ERRORS}, auth=org_auth("tasks:write"))
def create_custom_task(request, payload: CustomTaskIn):
    orgtask = transform_tasks.orgtask_create(
        org=request.auth.org, task_slug=payload.taskSlug, flags=payload.flags, options=payload.options
    )
    return orgtask_out(orgtask)


@router.get("/prefect/tasks/{orgtask_uuid}/", response={200: OrgTaskOut, **ERRORS}, auth=org_auth("tasks:read"))
def get_task(request, orgtask_uuid: str):
    return orgtask_out(orgtask_get(org=request.auth.org, orgtask_uuid=orgtask_uuid))


@router.delete("/prefect/tasks/{orgtask_uuid}/", response={200: OkOut, **ERRORS}, auth=org_auth("tasks:write"))
def delete_task(request, orgtask_uuid: str):
    transform_tasks.orgtask_delete(org=request.auth.org, orgtask_uuid=orgtask_uuid)
    return {"success": True}


@router.post("/prefect/tasks/{orgtask_uuid}/run/", response={200: RunStartedOut, **ERRORS}, auth=org_auth("tasks:run"))
def run_task(request, orgtask_uuid: str):
    return transform_tasks.orgtask_run(org=request.auth.org, orguser=request.auth.orguser, orgtask_uuid=orgtask_uuid)
