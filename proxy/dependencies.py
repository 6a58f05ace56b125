"""What every proxy route depends on: the token check, the app's Prefect client, settings and ad-hoc
deployments, and the error answers each route documents. Routers are made here, one per resource.

Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a thread pool, which
costs about a millisecond per call.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prefect.client.orchestration import PrefectClient

from proxy import schemas
from proxy.deployments import AdhocDeployments
from proxy.settings import ProxySettings

PREFIX = "/proxy"

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
CREATED = {"status_code": status.HTTP_201_CREATED}


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


def resource_router(*, tags: list[str], prefix: str = "") -> APIRouter:
    """The router of one resource: under /proxy, behind the token, documenting the error answers."""
    return APIRouter(
        prefix=PREFIX + prefix, tags=tags, dependencies=[Depends(require_token)], responses=ERROR_RESPONSES
    )
