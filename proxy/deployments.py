"""Deployments of the pipeline flow: one per ddpui dataflow, plus the shared ad-hoc ones for single tasks.

Every deployment runs `prefect_flows.py` from PROXY_FLOWS_DIR on a process worker: its pull step sets the
working directory there, so the worker finds the flow file without copying any code.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote
from uuid import UUID, uuid4

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentScheduleUpdate
from prefect.client.schemas.actions import DeploymentUpdate as PrefectDeploymentUpdate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, DeploymentFilterTags
from prefect.client.schemas.schedules import CronSchedule
from prefect.exceptions import ObjectNotFound

from ddpcontract.flows import FLOW_NAME_BY_ENTRYPOINT, PARAMETERS_BY_ENTRYPOINT, Entrypoint
from proxy import schemas
from proxy.errors import Conflict, InvalidRequest, NotFound, prefect_message
from proxy.prefect_api import prefect_json
from proxy.settings import ProxySettings

PAGE_SIZE = 200  # Prefect's largest page (PREFECT_API_DEFAULT_LIMIT)
ADHOC_TAG = "adhoc"


def pull_steps(settings: ProxySettings) -> list[dict[str, Any]]:
    return [{"prefect.deployments.steps.set_working_directory": {"directory": str(settings.flows_dir)}}]


def check_parameters(entrypoint: str | None, parameters: dict[str, Any]) -> None:
    accepted = PARAMETERS_BY_ENTRYPOINT.get(entrypoint or "")
    unexpected = sorted(set(parameters) - accepted) if accepted is not None else []
    if unexpected:
        raise InvalidRequest(
            f"{entrypoint} takes only {', '.join(sorted(accepted))}; remove {', '.join(unexpected)} from the parameters"
        )


def deployment_view(deployment: dict[str, Any]) -> schemas.Deployment:
    """The proxy's view of a deployment as Prefect's API returns it (JSON)."""
    cron_schedule = next(
        (item["schedule"] for item in deployment.get("schedules") or [] if "cron" in (item.get("schedule") or {})),
        None,
    )
    return schemas.Deployment(
        deployment_id=deployment["id"],
        name=deployment["name"],
        flow_id=deployment["flow_id"],
        tags=deployment.get("tags") or [],
        parameters=deployment.get("parameters") or {},
        cron=cron_schedule["cron"] if cron_schedule else None,
        timezone=cron_schedule.get("timezone") if cron_schedule else None,
        is_schedule_active=not deployment.get("paused", False),
        entrypoint=deployment.get("entrypoint"),
        work_pool_name=deployment.get("work_pool_name"),
        work_queue_name=deployment.get("work_queue_name"),
    )


async def _read(client: PrefectClient, deployment_id: UUID) -> dict[str, Any]:
    return await prefect_json(
        client, "GET", f"/deployments/{deployment_id}", not_found=f"no deployment with id {deployment_id}"
    )


async def _exists_by_name(client: PrefectClient, flow_name: str, deployment_name: str) -> bool:
    path = f"/deployments/name/{quote(flow_name, safe='')}/{quote(deployment_name, safe='')}"
    return await prefect_json(client, "GET", path, missing_ok=True) is not None


async def _post_deployment(client: PrefectClient, flow_id: UUID, fields: dict[str, Any]) -> UUID:
    """Prefect's create (an upsert by flow and name: the caller has checked the name is free), as plain JSON."""
    body = await prefect_json(client, "POST", "/deployments/", json={"flow_id": str(flow_id), **fields})
    return UUID(body["id"])


class FlowIds:
    """The ids of the flows deployments are made for, by name, looked up (or made) once per app instance.

    A flow deleted behind the proxy's back is noticed when Prefect refuses a deployment for it: its id is then
    looked up again (`forget`)."""

    def __init__(self) -> None:
        self._ids: dict[str, UUID] = {}

    async def get(self, client: PrefectClient, flow_name: str) -> tuple[UUID, bool]:
        """The flow's id, and whether it came from what this instance remembers."""
        if flow_name in self._ids:
            return self._ids[flow_name], True
        self._ids[flow_name] = await client.create_flow_from_name(flow_name)
        return self._ids[flow_name], False

    def forget(self, flow_name: str) -> None:
        self._ids.pop(flow_name, None)


async def deployment_create(
    client: PrefectClient, *, settings: ProxySettings, flow_ids: FlowIds, request: schemas.DeploymentCreate
) -> schemas.DeploymentRef:
    """Once the flow's id is known, two Prefect calls for a chosen name (is it free, then the deployment) and one
    for a name with a unique suffix (new by construction)."""
    check_parameters(request.entrypoint, request.parameters)
    flow_name = request.flow_name or FLOW_NAME_BY_ENTRYPOINT[request.entrypoint]
    if request.unique_suffix:
        name = f"{request.deployment_name}-{uuid4().hex}"
    else:
        name = request.deployment_name
        if await _exists_by_name(client, flow_name, name):
            # Prefect would silently overwrite it: two dataflows must never share one deployment
            raise Conflict(f"a deployment named {name!r} of flow {flow_name!r} already exists")
    schedules = []
    if request.cron:  # checked as Prefect's CronSchedule when the request was validated (schemas.check_cron)
        schedules.append({"schedule": {"cron": request.cron, "timezone": request.timezone or "UTC"}, "active": True})
    work_pool = request.work_pool_name or settings.work_pool
    fields = {
        "name": name,
        "parameters": request.parameters,
        "tags": [request.org_slug],
        "description": request.description,
        "work_pool_name": work_pool,
        "work_queue_name": request.work_queue_name or settings.work_queue,
        "entrypoint": request.entrypoint,
        "path": str(settings.flows_dir),
        "pull_steps": pull_steps(settings),
        "schedules": schedules,
        "enforce_parameter_schema": False,
    }
    flow_id, remembered = await flow_ids.get(client, flow_name)
    try:
        try:
            deployment_id = await _post_deployment(client, flow_id, fields)
        except httpx.HTTPStatusError:
            if not remembered:
                raise
            # the remembered flow may have been deleted since (Prefect refuses a deployment of a missing flow)
            flow_ids.forget(flow_name)
            fresh_id, _ = await flow_ids.get(client, flow_name)
            if fresh_id == flow_id:
                raise
            deployment_id = await _post_deployment(client, fresh_id, fields)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:  # the only object the request names that Prefect looks up
            raise InvalidRequest(
                f"{prefect_message(exc)} (work pool {work_pool!r}): create the work pool "
                f"(`prefect work-pool create --type process <name>`) or name an existing one"
            ) from None
        raise
    return schemas.DeploymentRef(deployment_id=deployment_id, name=name)


async def deployment_read(client: PrefectClient, *, deployment_id: UUID) -> schemas.Deployment:
    return deployment_view(await _read(client, deployment_id))


async def deployment_update(
    client: PrefectClient, *, deployment_id: UUID, request: schemas.DeploymentUpdate
) -> schemas.Deployment:
    current = deployment_view(await _read(client, deployment_id))
    changes: dict[str, Any] = {}
    if request.parameters is not None:
        check_parameters(current.entrypoint, request.parameters)
        changes["parameters"] = request.parameters
    if "cron" in request.model_fields_set:
        if request.cron is None:
            changes["schedules"] = []
        else:
            timezone = request.timezone or current.timezone or "UTC"
            changes["schedules"] = [
                DeploymentScheduleUpdate(schedule=CronSchedule(cron=request.cron, timezone=timezone))
            ]
    elif request.timezone is not None:
        if current.cron is None:
            raise InvalidRequest("the deployment has no schedule whose timezone could change; send a cron too")
        changes["schedules"] = [
            DeploymentScheduleUpdate(schedule=CronSchedule(cron=current.cron, timezone=request.timezone))
        ]
    if changes:
        await client.update_deployment(deployment_id, PrefectDeploymentUpdate(**changes))
    return await deployment_read(client, deployment_id=deployment_id)


async def deployment_set_entrypoint(
    client: PrefectClient, *, settings: ProxySettings, deployment_id: UUID, request: schemas.DeploymentEntrypointUpdate
) -> schemas.Deployment:
    current = await _read(client, deployment_id)
    parameters = request.parameters if request.parameters is not None else current.get("parameters") or {}
    check_parameters(request.entrypoint, parameters)
    # The deployment keeps its flow: Prefect cannot move a deployment to another flow without giving it a new
    # id, and ddpui stores the id. The worker runs whatever flow the entrypoint names.
    await client.update_deployment(
        deployment_id,
        PrefectDeploymentUpdate(entrypoint=request.entrypoint, parameters=parameters, pull_steps=pull_steps(settings)),
    )
    return await deployment_read(client, deployment_id=deployment_id)


async def deployment_delete(client: PrefectClient, *, deployment_id: UUID) -> schemas.DeploymentDeleted:
    try:
        await client.delete_deployment(deployment_id)
    except ObjectNotFound:
        raise NotFound(f"no deployment with id {deployment_id}") from None
    return schemas.DeploymentDeleted(deployment_id=deployment_id)


async def deployment_set_schedule(client: PrefectClient, *, deployment_id: UUID, active: bool) -> schemas.ScheduleState:
    try:
        if active:
            await client.resume_deployment(deployment_id)
        else:
            await client.pause_deployment(deployment_id)
    except ObjectNotFound:
        raise NotFound(f"no deployment with id {deployment_id}") from None
    return schemas.ScheduleState(deployment_id=deployment_id, is_schedule_active=active)


async def _filter_page(
    client: PrefectClient, deployment_filter: DeploymentFilter, *, offset: int = 0
) -> list[dict[str, Any]]:
    body = {"deployments": deployment_filter.model_dump(mode="json", exclude_unset=True), "limit": PAGE_SIZE}
    return await prefect_json(client, "POST", "/deployments/filter", json={**body, "offset": offset})


async def deployments_filter(client: PrefectClient, *, request: schemas.DeploymentFilter) -> schemas.DeploymentList:
    tags = DeploymentFilterTags(all_=[request.org_slug]) if request.org_slug else None
    found: list[dict[str, Any]] = []
    if request.deployment_ids is None:
        while True:
            page = await _filter_page(client, DeploymentFilter(tags=tags), offset=len(found))
            found.extend(page)
            if len(page) < PAGE_SIZE:
                break
    elif request.deployment_ids:
        ids = list(dict.fromkeys(request.deployment_ids))
        chunks = [ids[start : start + PAGE_SIZE] for start in range(0, len(ids), PAGE_SIZE)]
        pages = await asyncio.gather(
            *(_filter_page(client, DeploymentFilter(id=DeploymentFilterId(any_=chunk), tags=tags)) for chunk in chunks)
        )
        found = [deployment for page in pages for deployment in page]
    return schemas.DeploymentList(deployments=[deployment_view(deployment) for deployment in found])


async def _count(client: PrefectClient, deployment_filter: dict[str, Any]) -> int:
    return await prefect_json(client, "POST", "/deployments/count", json={"deployments": deployment_filter})


async def _ids_and_paused(client: PrefectClient, deployment_filter: dict[str, Any]) -> list[tuple[str, bool]]:
    found: list[tuple[str, bool]] = []
    while True:
        page = await prefect_json(
            client,
            "POST",
            "/deployments/filter",
            json={"deployments": deployment_filter, "limit": PAGE_SIZE, "offset": len(found)},
        )
        found.extend((deployment["id"], bool(deployment.get("paused"))) for deployment in page)
        if len(page) < PAGE_SIZE:
            return found


async def deployments_schedule_states(
    client: PrefectClient, *, request: schemas.DeploymentIds
) -> schemas.ScheduleStates:
    """Which of the deployments are paused or gone, without reading them all.

    Prefect takes about as long to send a thousand full deployments as the whole pipeline list may take, so
    two counts come first (all of them, the paused among them); only the exceptions are then read: the
    paused ones, or, when some are missing, all of them (rare: a deployment deleted behind Django's back).
    """
    ids = [str(deployment_id) for deployment_id in dict.fromkeys(request.deployment_ids)]
    if not ids:
        return schemas.ScheduleStates(paused=[], missing=[])
    by_id = {"id": {"any_": ids}}
    paused_filter = {**by_id, "paused": {"eq_": True}}
    existing, paused_count = await asyncio.gather(_count(client, by_id), _count(client, paused_filter))
    if existing == len(ids):
        paused = await _ids_and_paused(client, paused_filter) if paused_count else []
        return schemas.ScheduleStates(paused=[deployment_id for deployment_id, _ in paused], missing=[])
    found = dict(await _ids_and_paused(client, by_id))
    return schemas.ScheduleStates(
        paused=[deployment_id for deployment_id, is_paused in found.items() if is_paused],
        missing=[deployment_id for deployment_id in ids if deployment_id not in found],
    )


def adhoc_deployment_name(kind: str, settings: ProxySettings) -> str:
    """One shared deployment per task kind and work pool (and queue): proxies configured for different pools
    on one Prefect server must not take the deployment over from each other, as a shared name would."""
    queue = f"-{settings.work_queue}" if settings.work_queue else ""
    return f"adhoc-{kind}-{settings.work_pool}{queue}"


class AdhocDeployments:
    """The shared deployments that run one ad-hoc task; made on first use and remembered per app instance.

    Creating a deployment is an upsert in Prefect (same flow + name -> same id), so two proxies creating the
    same one at once end up with one deployment.
    """

    def __init__(self, settings: ProxySettings):
        self.settings = settings
        self._ids: dict[str, UUID] = {}

    def forget(self, kind: str) -> None:
        self._ids.pop(kind, None)

    async def deployment_id(self, client: PrefectClient, *, kind: str) -> UUID:
        if kind not in self._ids:
            flow_id = await client.create_flow_from_name(FLOW_NAME_BY_ENTRYPOINT[Entrypoint.PIPELINE])
            self._ids[kind] = await client.create_deployment(
                flow_id=flow_id,
                name=adhoc_deployment_name(kind, self.settings),
                description=f"Runs one ad-hoc {kind} task for any org (made by the proxy)",
                tags=[ADHOC_TAG],
                work_pool_name=self.settings.work_pool,
                work_queue_name=self.settings.work_queue,
                entrypoint=Entrypoint.PIPELINE,
                path=str(self.settings.flows_dir),
                pull_steps=pull_steps(self.settings),
                enforce_parameter_schema=False,
            )
        return self._ids[kind]
