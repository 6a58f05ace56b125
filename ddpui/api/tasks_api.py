"""Org tasks: the transform set (git pull and dbt commands), custom dbt commands, one-off runs, and the master
list the custom-task form offers — in the shapes Dalgo's web app reads (WEBAPP_CONTRACT.md W-37…W-44).

The /prefect/tasks/transform/ routes are declared before /prefect/tasks/{orgtask_uuid}/ so that
"transform" is never read as a task uuid.
"""

from __future__ import annotations

from typing import Any

import pydantic
from django.conf import settings
from ninja import Field, Router, Schema

from ddpcontract.states import DBT_TEST_FAILED_STATE_NAME, StateType
from ddpui.api.schemas import ERRORS, OkOut
from ddpui.api.shapes import LockOut
from ddpui.auth import org_auth
from ddpui.errors import InvalidInput
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


TaskLockOut = LockOut  # the lock's one shape (ddpui.api.shapes); the connection routes name it so too


class TransformTaskOut(Schema):
    uuid: str
    slug: str
    label: str
    type: str
    command: str
    generated_by: str  # the web app's name; `generatedBy` kept beside it
    generatedBy: str
    seq: int
    deploymentId: str | None
    lock: LockOut | None


class CustomTaskIn(Schema):
    # the web app sends `task_slug`; ddpui's own clients `taskSlug`: either is read
    task_slug: str = Field(min_length=1, validation_alias=pydantic.AliasChoices("taskSlug", "task_slug"))
    flags: list[str] = []
    options: dict[str, Any] = {}


class TaskRunIn(pydantic.BaseModel):
    # the dbt target to run on: the default target when left out
    target: str | None = pydantic.Field(default=None, max_length=32)


class TaskRunOut(Schema):
    """What the web app reads (`status === 'success'`, `result`: lines it shows), and the run beside it."""

    status: str  # success | failed | running (still running when the wait ended)
    result: list[str]
    flow_run_id: str
    name: str | None
    state_type: str
    state_name: str
    target: str | None


class TaskTemplateOut(Schema):
    slug: str
    label: str
    type: str
    command: str | None
    is_system: bool


class TaskParametersOut(Schema):
    flags: list[str]
    options: list[str]


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


def _transform_list(views: list[transform_tasks.TransformTaskView]) -> list[dict]:
    return [
        {
            "uuid": str(view.orgtask.uuid),
            "slug": view.orgtask.task.slug,
            "label": view.orgtask.task.label,
            "type": view.orgtask.task.type,
            "command": view.orgtask.command_text(),
            "generated_by": view.orgtask.generated_by,
            "generatedBy": view.orgtask.generated_by,
            "seq": view.seq,
            "deploymentId": view.deployment_id,
            "lock": view.lock,
        }
        for view in views
    ]


@router.post(
    "/prefect/tasks/transform/", response={200: list[TransformTaskOut], **ERRORS}, auth=org_auth("tasks:write")
)
def create_transform_tasks(request):
    return _transform_list(transform_tasks.transform_tasks_create(org=request.auth.org, orguser=request.auth.orguser))


@router.get("/prefect/tasks/transform/", response={200: list[TransformTaskOut], **ERRORS}, auth=org_auth("tasks:read"))
def list_transform_tasks(request):
    return _transform_list(transform_tasks.transform_tasks_list(org=request.auth.org))


@router.delete("/prefect/tasks/transform/", response={200: OkOut, **ERRORS}, auth=org_auth("tasks:write"))
def delete_transform_tasks(request):
    transform_tasks.transform_tasks_delete(org=request.auth.org, orguser=request.auth.orguser)
    return {"success": True}


@router.post("/prefect/tasks/", response={200: OrgTaskOut, **ERRORS}, auth=org_auth("tasks:write"))
def create_custom_task(request, payload: CustomTaskIn):
    orgtask = transform_tasks.orgtask_create(
        org=request.auth.org,
        orguser=request.auth.orguser,
        task_slug=payload.task_slug,
        flags=payload.flags,
        options=payload.options,
    )
    return orgtask_out(orgtask)


@router.get("/prefect/tasks/{orgtask_uuid}/", response={200: OrgTaskOut, **ERRORS}, auth=org_auth("tasks:read"))
def get_task(request, orgtask_uuid: str):
    return orgtask_out(orgtask_get(org=request.auth.org, orgtask_uuid=orgtask_uuid))


@router.delete("/prefect/tasks/{orgtask_uuid}/", response={200: OkOut, **ERRORS}, auth=org_auth("tasks:write"))
def delete_task(request, orgtask_uuid: str):
    transform_tasks.orgtask_delete(org=request.auth.org, orguser=request.auth.orguser, orgtask_uuid=orgtask_uuid)
    return {"success": True}


@router.post(
    "/prefect/tasks/{orgtask_uuid}/run/",
    response={200: TaskRunOut, **ERRORS},
    auth=org_auth("tasks:run"),
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": TaskRunIn.model_json_schema()}},
        }
    },
)
def run_task(request, orgtask_uuid: str):
    # the body is optional: the web app posts none (or `{}` as text/plain); `{"target": "dev"}` names a target
    try:
        has_json = request.content_type == "application/json" and request.body.strip()
        payload = TaskRunIn.model_validate_json(request.body) if has_json else TaskRunIn()
    except pydantic.ValidationError as exc:
        raise InvalidInput(
            "invalid body: expected {'target': '<target name>'}: " + str(exc.errors()[0]["msg"])
        ) from None
    result = transform_tasks.orgtask_run(
        org=request.auth.org,
        orguser=request.auth.orguser,
        orgtask_uuid=orgtask_uuid,
        wait_seconds=settings.TASK_RUN_WAIT_SECONDS,
        target=payload.target,
    )
    run = result.run
    if not result.ended:
        status = "running"
        lines = [
            f"the task is still running (flow run {run.flow_run_id}, {run.state_name or run.state_type}); "
            f"its logs: GET /api/prefect/flow_runs/{run.flow_run_id}/logs"
        ]
    else:
        passed = run.state_type == StateType.COMPLETED and run.state_name != DBT_TEST_FAILED_STATE_NAME
        status = "success" if passed else "failed"
        lines = [line.message for line in result.log_lines]
    return {
        "status": status,
        "result": lines,
        "flow_run_id": run.flow_run_id,
        "name": run.name,
        "state_type": run.state_type,
        "state_name": run.state_name,
        "target": run.target_name or None,
    }


@router.get("/data/tasks/", response={200: list[TaskTemplateOut], **ERRORS}, auth=org_auth("tasks:read"))
def list_task_templates(request):
    return [
        {"slug": t.slug, "label": t.label, "type": t.type, "command": t.command, "is_system": t.is_system}
        for t in transform_tasks.transform_task_templates()
    ]


@router.get("/data/tasks/{slug}/config/", response={200: TaskParametersOut, **ERRORS}, auth=org_auth("tasks:read"))
def task_template_parameters(request, slug: str):
    flags, options = transform_tasks.transform_task_parameters(slug=slug)
    return {"flags": flags, "options": options}
