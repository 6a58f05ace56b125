"""Deployments: create, update, switch the entrypoint, read, filter, schedule states, pause/resume, delete."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from proxy import deployments, schemas
from proxy.dependencies import CREATED, FlowIds, Prefect, Settings, resource_router

router = resource_router(tags=["deployments"])


@router.post("/v1/deployments/", **CREATED)
async def create_deployment(
    request: schemas.DeploymentCreate, client: Prefect, settings: Settings, flow_ids: FlowIds
) -> schemas.DeploymentRef:
    return await deployments.deployment_create(client, settings=settings, flow_ids=flow_ids, request=request)


@router.put("/v1/deployments/{deployment_id}")
async def update_deployment(
    deployment_id: UUID, request: schemas.DeploymentUpdate, client: Prefect
) -> schemas.Deployment:
    return await deployments.deployment_update(client, deployment_id=deployment_id, request=request)


@router.patch("/v1/deployments/{deployment_id}/entrypoint")
async def set_deployment_entrypoint(
    deployment_id: UUID, request: schemas.DeploymentEntrypointUpdate, client: Prefect, settings: Settings
) -> schemas.Deployment:
    return await deployments.deployment_set_entrypoint(
        client, settings=settings, deployment_id=deployment_id, request=request
    )


@router.get("/deployments/{deployment_id}")
async def read_deployment(deployment_id: UUID, client: Prefect) -> schemas.Deployment:
    return await deployments.deployment_read(client, deployment_id=deployment_id)


@router.post("/deployments/filter")
async def filter_deployments(request: schemas.DeploymentFilter, client: Prefect) -> schemas.DeploymentList:
    return await deployments.deployments_filter(client, request=request)


@router.post("/deployments/schedule_states")
async def deployment_schedule_states(request: schemas.DeploymentIds, client: Prefect) -> schemas.ScheduleStates:
    return await deployments.deployments_schedule_states(client, request=request)


@router.delete("/deployments/{deployment_id}")
async def delete_deployment(deployment_id: UUID, client: Prefect) -> schemas.DeploymentDeleted:
    return await deployments.deployment_delete(client, deployment_id=deployment_id)


@router.post("/deployments/{deployment_id}/set_schedule/{schedule_status}")
async def set_deployment_schedule(
    deployment_id: UUID, schedule_status: Literal["active", "inactive"], client: Prefect
) -> schemas.ScheduleState:
    return await deployments.deployment_set_schedule(
        client, deployment_id=deployment_id, active=schedule_status == "active"
    )
