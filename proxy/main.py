"""The proxy's FastAPI app and its routes. Handlers are thin: parse, call one service, return its model.

Run it with `python -m proxy --host 127.0.0.1 --port 8085` (see docs/proxy.md).
"""

from __future__ import annotations

import hmac
from contextlib import asynccontextmanager
from typing import Annotated, Literal
from uuid import UUID

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prefect.client.orchestration import PrefectClient

from ddpcontract.tasks import BLOCK_NAME_PATTERN
from proxy import automations, blocks, deployments, flow_runs, legacy, schemas
from proxy.deployments import AdhocDeployments
from proxy.errors import CatchAllMiddleware, PrefectUnavailable, prefect_message, register_exception_handlers
from proxy.prefect_api import PrefectConnection
from proxy.settings import ProxySettings

_bearer = HTTPBearer(auto_error=False, description="The shared PROXY_TOKEN")

ERROR_RESPONSES = {
    400: {"model": schemas.ErrorBody, "description": "The body is not valid JSON (or not UTF-8)"},
    401: {"model": schemas.ErrorBody, "description": "Missing or wrong bearer token"},
    404: {"model": schemas.ErrorBody, "description": "Unknown id or name"},
    409: {"model": schemas.ErrorBody, "description": "Conflicts with the current state"},
    422: {"model": schemas.ErrorBody, "description": "Invalid request"},
    502: {"model": schemas.ErrorBody, "description": "Prefect rejected the call (its message is in detail)"},
    503: {"model": schemas.ErrorBody, "description": "Prefect is unreachable"},
}


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a thread pool, which
# costs about a millisecond per call.


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    expected: str | None = request.app.state.settings.token
    if expected is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the proxy has no PROXY_TOKEN configured, so it refuses every call; set PROXY_TOKEN and restart it",
            headers={"WWW-Authenticate": "Bearer"},
        )
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong token: send 'Authorization: Bearer <PROXY_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def prefect_client(request: Request) -> PrefectClient:
    return await request.app.state.prefect.client()


async def proxy_settings(request: Request) -> ProxySettings:
    return request.app.state.settings


async def adhoc_deployments(request: Request) -> AdhocDeployments:
    return request.app.state.adhoc


Prefect = Annotated[PrefectClient, Depends(prefect_client)]
Settings = Annotated[ProxySettings, Depends(proxy_settings)]
Adhoc = Annotated[AdhocDeployments, Depends(adhoc_deployments)]

router = APIRouter(prefix="/proxy", dependencies=[Depends(require_token)], responses=ERROR_RESPONSES)
CREATED = {"status_code": status.HTTP_201_CREATED}


# ---------------------------------------------------------------- blocks


@router.post("/blocks/airbyte/server/", tags=["blocks"], **CREATED)
async def create_airbyte_server(request: schemas.AirbyteServerCreate, client: Prefect) -> schemas.BlockRef:
    return await blocks.airbyte_server_create(client, request=request)


@router.put("/blocks/airbyte/server/", tags=["blocks"])
async def update_airbyte_server(request: schemas.AirbyteServerUpdate, client: Prefect) -> schemas.BlockRef:
    return await blocks.airbyte_server_update(client, request=request)


@router.get("/blocks/airbyte/server/", tags=["blocks"])
async def read_airbyte_server(
    blockName: Annotated[str, Query(pattern=BLOCK_NAME_PATTERN)], client: Prefect
) -> schemas.AirbyteServerBlock:
    return await blocks.airbyte_server_read(client, name=blockName)


@router.post("/blocks/dbtcli/profile/", tags=["blocks"], **CREATED)
async def create_dbt_cli_profile(request: schemas.DbtCliProfileCreate, client: Prefect) -> schemas.BlockRef:
    return await blocks.dbt_cli_profile_create(client, request=request)


@router.put("/blocks/dbtcli/profile/", tags=["blocks"])
async def update_dbt_cli_profile(request: schemas.DbtCliProfileUpdate, client: Prefect) -> schemas.BlockRef:
    return await blocks.dbt_cli_profile_update(client, request=request)


@router.get("/blocks/dbtcli/profile/", tags=["blocks"])
async def read_dbt_cli_profile(
    block_name: Annotated[str, Query(pattern=BLOCK_NAME_PATTERN)], client: Prefect
) -> schemas.DbtCliProfileBlock:
    return await blocks.dbt_cli_profile_read(client, name=block_name)


@router.post("/blocks/secret/", tags=["blocks"], **CREATED)
async def create_secret(request: schemas.SecretWrite, client: Prefect) -> schemas.BlockRef:
    return await blocks.secret_create(client, request=request)


@router.put("/blocks/secret/", tags=["blocks"])
async def upsert_secret(request: schemas.SecretWrite, client: Prefect) -> schemas.BlockRef:
    return await blocks.secret_upsert(client, request=request)


@router.get("/blocks/secret/{block_name}", tags=["blocks"])
async def read_secret(
    block_name: Annotated[str, Path(pattern=BLOCK_NAME_PATTERN)], client: Prefect
) -> schemas.BlockRef:
    return await blocks.secret_read(client, name=block_name)


@router.delete("/blocks/{block_id}", tags=["blocks"])
async def delete_block(block_id: UUID, client: Prefect) -> schemas.BlockDeleted:
    return await blocks.block_delete(client, block_id=block_id)


# ---------------------------------------------------------------- deployments


@router.post("/v1/deployments/", tags=["deployments"], **CREATED)
async def create_deployment(
    request: schemas.DeploymentCreate, client: Prefect, settings: Settings
) -> schemas.DeploymentRef:
    return await deployments.deployment_create(client, settings=settings, request=request)


@router.put("/v1/deployments/{deployment_id}", tags=["deployments"])
async def update_deployment(
    deployment_id: UUID, request: schemas.DeploymentUpdate, client: Prefect
) -> schemas.Deployment:
    return await deployments.deployment_update(client, deployment_id=deployment_id, request=request)


@router.patch("/v1/deployments/{deployment_id}/entrypoint", tags=["deployments"])
async def set_deployment_entrypoint(
    deployment_id: UUID, request: schemas.DeploymentEntrypointUpdate, client: Prefect, settings: Settings
) -> schemas.Deployment:
    return await deployments.deployment_set_entrypoint(
        client, settings=settings, deployment_id=deployment_id, request=request
    )


@router.get("/deployments/{deployment_id}", tags=["deployments"])
async def read_deployment(deployment_id: UUID, client: Prefect) -> schemas.Deployment:
    return await deployments.deployment_read(client, deployment_id=deployment_id)


@router.post("/deployments/filter", tags=["deployments"])
async def filter_deployments(request: schemas.DeploymentFilter, client: Prefect) -> schemas.DeploymentList:
    return await deployments.deployments_filter(client, request=request)


@router.post("/deployments/schedule_states", tags=["deployments"])
async def deployment_schedule_states(request: schemas.DeploymentIds, client: Prefect) -> schemas.ScheduleStates:
    return await deployments.deployments_schedule_states(client, request=request)


@router.delete("/deployments/{deployment_id}", tags=["deployments"])
async def delete_deployment(deployment_id: UUID, client: Prefect) -> schemas.DeploymentDeleted:
    return await deployments.deployment_delete(client, deployment_id=deployment_id)


@router.post("/deployments/{deployment_id}/set_schedule/{schedule_status}", tags=["deployments"])
async def set_deployment_schedule(
    deployment_id: UUID, schedule_status: Literal["active", "inactive"], client: Prefect
) -> schemas.ScheduleState:
    return await deployments.deployment_set_schedule(
        client, deployment_id=deployment_id, active=schedule_status == "active"
    )


# ---------------------------------------------------------------- flow runs


@router.post("/deployments/{deployment_id}/flow_run", tags=["flow runs"], **CREATED)
async def create_flow_run(
    deployment_id: UUID, client: Prefect, request: schemas.FlowRunCreate | None = None
) -> schemas.FlowRunRef:
    parameters = request.parameters if request is not None else None
    return await flow_runs.flow_run_create(client, deployment_id=deployment_id, parameters=parameters)


@router.get("/flow_runs/{flow_run_id}", tags=["flow runs"])
async def read_flow_run(flow_run_id: UUID, client: Prefect) -> schemas.FlowRun:
    return await flow_runs.flow_run_read(client, flow_run_id=flow_run_id)


@router.post("/flow_runs/filter", tags=["flow runs"])
async def filter_flow_runs(request: schemas.FlowRunFilter, client: Prefect) -> schemas.FlowRunList:
    return await flow_runs.flow_runs_filter(client, request=request)


@router.get("/flow_runs/logs/{flow_run_id}", tags=["flow runs"])
async def read_flow_run_logs(
    flow_run_id: UUID,
    client: Prefect,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 200,
) -> schemas.FlowRunLogs:
    return await flow_runs.flow_run_logs(client, flow_run_id=flow_run_id, offset=offset, limit=limit)


@router.post("/flow_runs/{flow_run_id}/cancel", tags=["flow runs"])
async def cancel_flow_run(flow_run_id: UUID, client: Prefect) -> schemas.FlowRunStateChange:
    return await flow_runs.flow_run_cancel(client, flow_run_id=flow_run_id)


@router.post("/flow_runs/{flow_run_id}/retry", tags=["flow runs"])
async def retry_flow_run(flow_run_id: UUID, client: Prefect) -> schemas.FlowRunStateChange:
    return await flow_runs.flow_run_retry(client, flow_run_id=flow_run_id)


# ---------------------------------------------------------------- ad-hoc task runs


@router.post("/v1/flows/dbtcore/run/", tags=["ad-hoc task runs"], **CREATED)
async def run_dbt_task(request: schemas.DbtTaskRun, client: Prefect, adhoc: Adhoc) -> schemas.FlowRunRef:
    return await flow_runs.adhoc_task_run(client, adhoc=adhoc, kind="dbt", org_slug=request.org_slug, task=request.task)


@router.post("/flows/shell/run/", tags=["ad-hoc task runs"], **CREATED)
async def run_shell_task(request: schemas.ShellTaskRun, client: Prefect, adhoc: Adhoc) -> schemas.FlowRunRef:
    return await flow_runs.adhoc_task_run(
        client, adhoc=adhoc, kind="shell", org_slug=request.org_slug, task=request.task
    )


# ---------------------------------------------------------------- automations (routes in proxy/automations.py)

router.include_router(automations.router)
router.include_router(legacy.router)  # block migration routes (proxy/legacy.py)


# ---------------------------------------------------------------- health (no token: for probes)

health_router = APIRouter(prefix="/proxy", tags=["health"])


@health_router.get("/health", responses={503: {"model": schemas.ErrorBody}})
async def health(client: Prefect) -> schemas.Health:
    try:
        version = await client.api_version()
    except httpx.HTTPStatusError as exc:
        raise PrefectUnavailable(f"Prefect at {client.api_url} is not healthy: {prefect_message(exc)}") from None
    except httpx.TransportError as exc:
        raise PrefectUnavailable(f"Prefect at {client.api_url} does not answer: {exc or type(exc).__name__}") from None
    return schemas.Health(prefect="ok", prefect_version=str(version))


# ---------------------------------------------------------------- the app


class PrefectSettingsMiddleware:
    """Makes the app's own Prefect settings current for the whole request (see proxy.prefect_api)."""

    def __init__(self, app, connection: PrefectConnection):
        self.app = app
        self.connection = connection

    async def __call__(self, scope, receive, send):
        with self.connection.settings_context():
            await self.app(scope, receive, send)


def create_app(settings: ProxySettings | None = None) -> FastAPI:
    settings = settings or ProxySettings.from_env()
    connection = PrefectConnection(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        with connection.settings_context():
            await connection.client()  # build it (TLS context, connection pool) before the first request
        yield
        await connection.close()

    app = FastAPI(
        title="ddpui Prefect proxy",
        description="The only service that talks to Prefect: blocks, deployments, flow runs and logs.",
        version="1.0.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.prefect = connection
    app.state.adhoc = AdhocDeployments(settings)
    register_exception_handlers(app)
    app.add_middleware(PrefectSettingsMiddleware, connection=connection)
    app.add_middleware(CatchAllMiddleware)
    app.include_router(router)
    app.include_router(health_router)
    return app


def __getattr__(name: str):
    # `proxy.main:app` is built on first access, so importing this module needs no environment
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
