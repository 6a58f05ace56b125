"""What every proxy route depends on: the token check, the app's Prefect client, settings and ad-hoc
deployments, and the error answers each route documents. Routers are made here, one per resource.

Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a thread pool, which
costs about a millisecond per call.
"""

from __future__ import annotations

import contextlib
import hmac
import json
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prefect.client.orchestration import PrefectClient

from proxy import deployments, schemas
from proxy.deployments import AdhocDeployments
from proxy.errors import InvalidRequest
from proxy.flow_runs import EndedFamilies
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


async def flow_ids(request: Request) -> deployments.FlowIds:
    return request.app.state.flow_ids


async def ended_families(request: Request) -> EndedFamilies:
    return request.app.state.ended_families


Prefect = Annotated[PrefectClient, Depends(prefect_client)]
Settings = Annotated[ProxySettings, Depends(proxy_settings)]
Adhoc = Annotated[AdhocDeployments, Depends(adhoc_deployments)]
FlowIds = Annotated[deployments.FlowIds, Depends(flow_ids)]
Ended = Annotated[EndedFamilies, Depends(ended_families)]


def _unstorable(value) -> str | None:
    """Why Prefect could not store this text (a NUL, or half of a UTF-16 surrogate pair), or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return "NUL characters (\\u0000)"
        if any("\ud800" <= char <= "\udfff" for char in value):
            return "unpaired surrogate characters (\\ud800-\\udfff)"
        return None
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    return next((reason for item in items if (reason := _unstorable(item))), None)


def _may_hold_unstorable(body: bytes) -> bool:
    """Whether a JSON body could decode to a NUL or a lone surrogate: only through a `\\u` escape, a NUL byte
    (also in any UTF-16 or UTF-32 body) or bytes that are not strict UTF-8 (Python's JSON parser lets encoded
    surrogates through)."""
    if b"\\u" in body or b"\x00" in body:
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


async def refuse_unstorable_text(request: Request) -> None:
    """Text that Prefect's database cannot store (PostgreSQL refuses NUL and invalid UTF-8, and Prefect answers
    such a failure as a retryable 503) is refused with a 422 before Prefect is called.

    A JSON body is parsed for this only when it might hold such text (see `_may_hold_unstorable`); the route
    parses it anyway, so the common body is parsed once."""
    where = [("path", request.path_params), ("query", dict(request.query_params))]
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.body()
        if _may_hold_unstorable(body):
            with contextlib.suppress(ValueError):  # not JSON: the route's own parsing answers 400
                where.append(("body", json.loads(body)))
    for place, value in where:
        if reason := _unstorable(value):
            raise InvalidRequest(f"invalid request: the {place} may not contain {reason}")


def resource_router(*, tags: list[str], prefix: str = "") -> APIRouter:
    """The router of one resource: under /proxy, behind the token, documenting the error answers; text
    Prefect cannot store is refused first."""
    return APIRouter(
        prefix=PREFIX + prefix,
        tags=tags,
        dependencies=[Depends(require_token), Depends(refuse_unstorable_text)],
        responses=ERROR_RESPONSES,
    )
