"""Pipelines (Prefect deployments of ordered org tasks) and their runs, in the shapes Dalgo's web app reads
(WEBAPP_CONTRACT.md W-29, W-30, W-45..W-54) with ddpui's own fields beside them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import pydantic
from ninja import Field, Query, Router, Schema

from ddpcontract.tasks import MAX_PARALLEL_SYNCS_LIMIT
from ddpui.api.schemas import ERRORS, MAX_OFFSET, OkOut
from ddpui.api.shapes import FlowRunOut, LockOut, flow_run_out, prefect_run_out
from ddpui.auth import org_auth
from ddpui.errors import InvalidInput
from ddpui.models.tasks import TaskType
from ddpui.prefect_client import LOG_PAGE_LIMIT
from ddpui.services import pipelines, run_control, runs

router = Router(tags=["pipelines"])

# a task's position in a pipeline: the web app counts from 1; larger values are refused before anything runs
MAX_SEQ = 10_000


class ConnectionRef(Schema):
    id: str = Field(min_length=1)
    seq: int = Field(0, ge=0, le=MAX_SEQ)


class TransformTaskRef(Schema):
    uuid: str = Field(min_length=1)
    seq: int = Field(0, ge=0, le=MAX_SEQ)


class PipelineIn(Schema):
    name: str
    connections: list[ConnectionRef] = []
    transformTasks: list[TransformTaskRef] = []
    cron: str | None = None
    timezone: str | None = None
    # the dbt target its git and dbt tasks run on: the default target when left out (on create), unchanged when
    # left out (on update)
    target: str | None = Field(default=None, max_length=32)
    # the web app's "run transform tasks" switch ('yes'/'no'); accepted and not needed: the pipeline's
    # tasks are exactly the ones `transformTasks` names
    dbtTransform: str | None = None
    maxParallelSyncs: int | None = Field(
        None,
        ge=1,
        le=MAX_PARALLEL_SYNCS_LIMIT,
        description="Airbyte syncs run at once (default 4; 1: every task in turn); left out on update: kept",
    )


class PipelineCreatedOut(Schema):
    name: str
    deploymentId: str
    deploymentName: str
    cron: str | None
    target: str | None


# The list's items are plain pydantic models: a ninja Schema validates each field through a getter made for
# ORM objects, which costs about 30 ms on a list of 1,000 pipelines built from dicts.
class LastSuccessfulRunOut(pydantic.BaseModel):
    flowRunId: str
    startTime: datetime | None
    endTime: datetime | None


class PipelineListItem(pydantic.BaseModel):
    name: str
    deploymentId: str
    deploymentName: str
    cron: str | None
    timezone: str | None
    isScheduleActive: bool
    status: bool  # the web app's name for isScheduleActive
    missingInPrefect: bool
    lastRun: dict[str, Any] | None
    lock: LockOut | None
    isRunning: bool
    lastSuccessfulRun: LastSuccessfulRunOut | None
    target: str | None


class PipelineConnectionOut(Schema):
    id: str
    seq: int
    name: str


class PipelineTaskOut(Schema):
    uuid: str
    seq: int
    slug: str
    command: str


class PipelineDetailOut(Schema):
    name: str
    deploymentId: str
    deploymentName: str
    dataflowType: str
    cron: str | None
    timezone: str | None
    isScheduleActive: bool
    dbtTransform: str
    connections: list[PipelineConnectionOut]
    transformTasks: list[PipelineTaskOut]
    maxParallelSyncs: int
    lock: LockOut | None
    isRunning: bool
    target: str | None


class RunIn(Schema):
    flags: list[str] | None = None
    options: dict[str, str] | None = None


class RunStartedOut(Schema):
    flow_run_id: str
    name: str | None


class LogPageOut(Schema):
    offset: int
    logs: list[dict[str, Any]]


class LogsOut(Schema):
    logs: LogPageOut
    offset: int
    next_offset: int | None


class OverviewRunOut(pydantic.BaseModel):
    id: str
    name: str
    status: str | None
    state_name: str | None
    startTime: datetime | None
    expectedStartTime: datetime | None
    totalRunTime: float


class OverviewItem(pydantic.BaseModel):
    name: str
    deploymentId: str
    deploymentName: str
    cron: str | None
    runs: list[OverviewRunOut]
    lock: LockOut | None
    target: str | None


def _refs(payload: PipelineIn) -> dict:
    return {
        "name": payload.name,
        "connections": [pipelines.TaskRef(key=c.id, seq=c.seq) for c in payload.connections],
        "transform_tasks": [pipelines.TaskRef(key=t.uuid, seq=t.seq) for t in payload.transformTasks],
        "cron": payload.cron,
        "timezone": payload.timezone,
        "max_parallel_syncs": payload.maxParallelSyncs,
        "target": payload.target,
    }


def _detail_out(detail: pipelines.PipelineDetail) -> dict:
    dataflow = detail.dataflow
    transform = [(seq, t) for seq, t in enumerate(detail.orgtasks) if t.task.type != TaskType.AIRBYTE]
    return {
        "name": dataflow.name,
        "deploymentId": dataflow.deployment_id,
        "deploymentName": dataflow.deployment_name,
        "dataflowType": dataflow.dataflow_type,
        "cron": dataflow.cron,
        "timezone": dataflow.timezone,
        "isScheduleActive": detail.is_schedule_active,
        "dbtTransform": "yes" if transform else "no",
        "connections": [
            {"id": t.connection_id, "seq": seq, "name": detail.connection_names.get(t.connection_id, t.connection_id)}
            for seq, t in enumerate(detail.orgtasks)
            if t.task.type == TaskType.AIRBYTE
        ],
        "transformTasks": [
            {"uuid": str(t.uuid), "seq": seq, "slug": t.task.slug, "command": t.command_text()} for seq, t in transform
        ],
        "maxParallelSyncs": dataflow.max_parallel_syncs,
        "lock": detail.lock,
        "isRunning": detail.lock is not None and detail.lock.held_by(dataflow.id),
        "target": detail.target,
    }


@router.post("/prefect/v1/flows/", response={200: PipelineCreatedOut, **ERRORS}, auth=org_auth("pipelines:write"))
def create_pipeline(request, payload: PipelineIn):
    dataflow = pipelines.pipeline_create(org=request.auth.org, orguser=request.auth.orguser, **_refs(payload))
    return {
        "name": dataflow.name,
        "deploymentId": dataflow.deployment_id,
        "deploymentName": dataflow.deployment_name,
        "cron": dataflow.cron,
        "target": dataflow.target.name if dataflow.target_id is not None else None,
    }


@router.get("/prefect/v1/flows/", response={200: list[PipelineListItem], **ERRORS}, auth=org_auth("pipelines:read"))
def list_pipelines(request):
    return [
        {
            "name": p.name,
            "deploymentId": p.deployment_id,
            "deploymentName": p.deployment_name,
            "cron": p.cron,
            "timezone": p.timezone,
            "isScheduleActive": p.is_schedule_active,
            "status": p.is_schedule_active,
            "missingInPrefect": p.missing_in_prefect,
            "lastRun": prefect_run_out(p.last_run),
            "lock": p.lock,
            "isRunning": p.is_running,
            "lastSuccessfulRun": p.last_successful_run
            and {
                "flowRunId": p.last_successful_run["flow_run_id"],
                "startTime": p.last_successful_run["start_time"],
                "endTime": p.last_successful_run["end_time"],
            },
            "target": p.target,
        }
        for p in pipelines.pipelines_list(org=request.auth.org)
    ]


@router.get(
    "/prefect/v1/flows/{deployment_id}", response={200: PipelineDetailOut, **ERRORS}, auth=org_auth("pipelines:read")
)
def get_pipeline(request, deployment_id: str):
    return _detail_out(pipelines.pipeline_detail(org=request.auth.org, deployment_id=deployment_id))


@router.put(
    "/prefect/v1/flows/{deployment_id}", response={200: PipelineDetailOut, **ERRORS}, auth=org_auth("pipelines:write")
)
def update_pipeline(request, deployment_id: str, payload: PipelineIn):
    pipelines.pipeline_update(
        org=request.auth.org, orguser=request.auth.orguser, deployment_id=deployment_id, **_refs(payload)
    )
    return _detail_out(pipelines.pipeline_detail(org=request.auth.org, deployment_id=deployment_id))


@router.delete("/prefect/v1/flows/{deployment_id}", response={200: OkOut, **ERRORS}, auth=org_auth("pipelines:write"))
def delete_pipeline(request, deployment_id: str):
    pipelines.pipeline_delete(org=request.auth.org, orguser=request.auth.orguser, deployment_id=deployment_id)
    return {"success": True}


def set_schedule(request, deployment_id: str, status: Literal["active", "inactive"]):
    pipelines.pipeline_set_schedule(
        org=request.auth.org, orguser=request.auth.orguser, deployment_id=deployment_id, active=status == "active"
    )
    return {"success": True}


# the web app (and Dalgo) call it without /v1: both paths, one handler
for _path, _operation_id in (
    ("/prefect/v1/flows/{deployment_id}/set_schedule/{status}", "set_schedule"),
    ("/prefect/flows/{deployment_id}/set_schedule/{status}", "set_schedule_webapp"),
):
    router.post(_path, response={200: OkOut, **ERRORS}, auth=org_auth("pipelines:write"), operation_id=_operation_id)(
        set_schedule
    )


@router.post(
    "/prefect/v1/flows/{deployment_id}/flow_run/",
    response={200: RunStartedOut, **ERRORS},
    auth=org_auth("pipelines:run"),
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": RunIn.model_json_schema()}},
        }
    },
)
def run_pipeline(request, deployment_id: str):
    # the body is optional: a plain "run now" posts nothing, or `{}` (the web app, as text/plain)
    try:
        has_json = request.content_type == "application/json" and request.body.strip()
        payload = RunIn.model_validate_json(request.body) if has_json else RunIn()
    except pydantic.ValidationError as exc:
        raise InvalidInput(
            "invalid body: expected {'flags': [...], 'options': {...}}: " + str(exc.errors()[0]["msg"])
        ) from None
    record = pipelines.pipeline_run(
        org=request.auth.org,
        orguser=request.auth.orguser,
        deployment_id=deployment_id,
        flags=payload.flags,
        options=payload.options,
    )
    return {"flow_run_id": record.flow_run_id, "name": record.name}


@router.get("/prefect/flow_runs/{flow_run_id}", response={200: FlowRunOut, **ERRORS}, auth=org_auth("runs:read"))
def get_flow_run(request, flow_run_id: str):
    return flow_run_out(runs.run_get(org=request.auth.org, flow_run_id=flow_run_id))


@router.get("/prefect/flow_runs/{flow_run_id}/logs", response={200: LogsOut, **ERRORS}, auth=org_auth("runs:read"))
def get_flow_run_logs(
    request,
    flow_run_id: str,
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    limit: int = Query(LOG_PAGE_LIMIT, ge=1, le=LOG_PAGE_LIMIT),
):
    page = runs.run_logs(org=request.auth.org, flow_run_id=flow_run_id, offset=offset, limit=limit)
    # nested as the web app reads it (`logs.logs[]`), the next offset beside
    lines = [line.model_dump(mode="json") for line in page.lines]
    return {"logs": {"offset": page.offset, "logs": lines}, "offset": page.offset, "next_offset": page.next_offset}


def flow_run_history(
    request,
    deployment_id: str,
    limit: int = Query(10, ge=1, le=50),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    fetchlogs: bool | None = Query(None, description="accepted for the web app and ignored: read logs per run"),
):
    return [
        flow_run_out(record)
        for record in runs.run_history(org=request.auth.org, deployment_id=deployment_id, limit=limit, offset=offset)
    ]


# the web app calls it without /v1: both paths, one handler
for _path, _operation_id in (
    ("/prefect/v1/flows/{deployment_id}/flow_runs/history", "flow_run_history"),
    ("/prefect/flows/{deployment_id}/flow_runs/history", "flow_run_history_webapp"),
):
    router.get(
        _path, response={200: list[FlowRunOut], **ERRORS}, auth=org_auth("runs:read"), operation_id=_operation_id
    )(flow_run_history)


@router.post(
    "/prefect/flow_runs/{flow_run_id}/cancel", response={200: FlowRunOut, **ERRORS}, auth=org_auth("runs:write")
)
def cancel_flow_run(request, flow_run_id: str):
    record = run_control.run_cancel(org=request.auth.org, orguser=request.auth.orguser, flow_run_id=flow_run_id)
    return flow_run_out(record)


@router.get("/dashboard/v1", response={200: list[OverviewItem], **ERRORS}, auth=org_auth("pipelines:read"))
def pipelines_overview(request):
    """The web app's pipeline overview: each pipeline with its newest runs and its lock."""
    items = []
    for overview in pipelines.pipelines_overview(org=request.auth.org):
        shaped_runs = []
        for run in overview.runs:
            shaped = prefect_run_out(run)
            # as Dalgo's records: a run not started yet shows its expected start
            shaped["startTime"] = shaped["startTime"] or shaped["expectedStartTime"]
            shaped_runs.append(shaped)
        items.append(
            {
                "name": overview.name,
                "deploymentId": overview.deployment_id,
                "deploymentName": overview.deployment_name,
                "cron": overview.cron,
                "runs": shaped_runs,
                "lock": overview.lock,
                "target": overview.target,
            }
        )
    return items
