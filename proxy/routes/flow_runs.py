"""Flow runs: start one from a deployment, read, filter in batches, logs, cancel, retry."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Query

from ddpcontract.proxy_api import MAX_OFFSET
from proxy import flow_runs, schemas
from proxy.dependencies import CREATED, Ended, Prefect, resource_router

router = resource_router(tags=["flow runs"])


@router.post("/deployments/{deployment_id}/flow_run", **CREATED)
async def create_flow_run(
    deployment_id: UUID, client: Prefect, request: schemas.FlowRunCreate | None = None
) -> schemas.FlowRunRef:
    parameters = request.parameters if request is not None else None
    return await flow_runs.flow_run_create(client, deployment_id=deployment_id, parameters=parameters)


@router.get("/flow_runs/{flow_run_id}")
async def read_flow_run(
    flow_run_id: UUID,
    client: Prefect,
    include_task_results: Annotated[
        bool,
        Query(description="Also read the flow's task-results table (one more Prefect call); otherwise it is null"),
    ] = False,
) -> schemas.FlowRun:
    return await flow_runs.flow_run_read(client, flow_run_id=flow_run_id, include_task_results=include_task_results)


@router.post("/flow_runs/filter")
async def filter_flow_runs(request: schemas.FlowRunFilter, client: Prefect) -> schemas.FlowRunList:
    return await flow_runs.flow_runs_filter(client, request=request)


@router.get("/flow_runs/logs/{flow_run_id}")
async def read_flow_run_logs(
    flow_run_id: UUID,
    client: Prefect,
    ended: Ended,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 200,
) -> schemas.FlowRunLogs:
    return await flow_runs.flow_run_logs(client, flow_run_id=flow_run_id, offset=offset, limit=limit, ended=ended)


@router.post("/flow_runs/{flow_run_id}/cancel")
async def cancel_flow_run(flow_run_id: UUID, client: Prefect) -> schemas.FlowRunStateChange:
    return await flow_runs.flow_run_cancel(client, flow_run_id=flow_run_id)


@router.post("/flow_runs/{flow_run_id}/retry")
async def retry_flow_run(flow_run_id: UUID, client: Prefect, ended: Ended) -> schemas.FlowRunStateChange:
    return await flow_runs.flow_run_retry(client, flow_run_id=flow_run_id, ended=ended)
