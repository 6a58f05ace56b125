"""Progress of the org's background tasks (web app row W-34): polled until the last step is completed or
failed."""

from __future__ import annotations

from datetime import datetime

from ninja import Router, Schema

from ddpui.api.schemas import ERRORS
from ddpui.auth import org_auth
from ddpui.services import background

router = Router(tags=["tasks"])


class StepOut(Schema):
    stepnum: int
    status: str
    message: str


class TaskProgressOut(Schema):
    task_id: str
    kind: str
    status: str
    progress: list[StepOut]
    createdAt: datetime
    finishedAt: datetime | None


@router.get("/tasks/{task_id}", response={200: TaskProgressOut, **ERRORS}, auth=org_auth("org:read"))
def get_task_progress(request, task_id: str):
    """`progress[]`: every step so far, in order; the last one says `running`, `completed` or `failed` (with
    the reason in its message). A task whose process stopped is reported failed after a minute."""
    task = background.task_get(org=request.auth.org, task_id=task_id)
    return {
        "task_id": str(task.task_id),
        "kind": task.kind,
        "status": task.status,
        "progress": task.steps,
        "createdAt": task.created_at,
        "finishedAt": task.finished_at,
    }
