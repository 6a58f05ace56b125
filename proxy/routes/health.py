"""Health: whether Prefect answers. No token, so probes can call it."""

from __future__ import annotations

import httpx
from fastapi import APIRouter

from proxy import schemas
from proxy.dependencies import PREFIX, Prefect
from proxy.errors import PrefectUnavailable, prefect_message

router = APIRouter(prefix=PREFIX, tags=["health"])


@router.get("/health", responses={503: {"model": schemas.ErrorBody}})
async def health(client: Prefect) -> schemas.Health:
    try:
        version = await client.api_version()
    except httpx.HTTPStatusError as exc:
        raise PrefectUnavailable(f"Prefect at {client.api_url} is not healthy: {prefect_message(exc)}") from None
    except httpx.TransportError as exc:
        raise PrefectUnavailable(f"Prefect at {client.api_url} does not answer: {exc or type(exc).__name__}") from None
    return schemas.Health(prefect="ok", prefect_version=str(version))
