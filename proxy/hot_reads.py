"""The three reads Django makes most (a deployment, a flow run, a run's logs), answered without FastAPI's
per-request machinery: matching the path against every route, solving each route's dependencies, validating the
returned model. That machinery is most of the proxy's own CPU on a read (docs/proxy.md, Latency).

The answers are those of the routes in proxy.routes (tests/proxy/test_hot_reads.py compares the two byte for
byte): the same services are called, their models serialised as FastAPI serialises them, their errors answered
by the app's own exception handlers. Only requests this layer is sure about are answered here: a GET of one of
the three paths with the right bearer token, a canonical UUID and query parameters it knows, with values FastAPI
reads the same way. Everything else (no token or another one, another spelling of a UUID, an unknown parameter,
an out-of-range value, every other path) goes on to FastAPI unchanged, which answers as it always has.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from ddpcontract.proxy_api import MAX_OFFSET
from proxy import deployments, flow_runs

_UUID = "([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
_INT = re.compile(r"[0-9]{1,9}")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}

# (the app, its Prefect client, the object's id, the query) -> the model the route returns
Service = Callable[[Any, Any, UUID, dict[str, Any]], Awaitable[Any]]


async def _deployment(app, client, deployment_id: UUID, query: dict[str, Any]):
    return await deployments.deployment_read(client, deployment_id=deployment_id)


async def _flow_run(app, client, flow_run_id: UUID, query: dict[str, Any]):
    return await flow_runs.flow_run_read(client, flow_run_id=flow_run_id, **query)


# the logs route's query parameters: default and bounds (tests/proxy/test_hot_reads.py checks them against the
# route's OpenAPI description)
LOG_PAGE = {"offset": (0, 0, MAX_OFFSET), "limit": (200, 1, 200)}


async def _logs(app, client, flow_run_id: UUID, query: dict[str, Any]):
    page = {name: default for name, (default, _, _) in LOG_PAGE.items()} | query
    return await flow_runs.flow_run_logs(client, flow_run_id=flow_run_id, ended=app.state.ended_families, **page)


def _int_in(low: int, high: int) -> Callable[[str], int | None]:
    def parse(text: str) -> int | None:
        if _INT.fullmatch(text) and low <= int(text) <= high:
            return int(text)
        return None

    return parse


# (path, service, {query parameter: its parser, None when FastAPI should judge the value})
ROUTES: list[tuple[re.Pattern[str], Service, dict[str, Callable[[str], Any]]]] = [
    (re.compile(f"/proxy/deployments/{_UUID}"), _deployment, {}),
    (re.compile(f"/proxy/flow_runs/{_UUID}"), _flow_run, {"include_task_results": _BOOLEANS.get}),
    (
        re.compile(f"/proxy/flow_runs/logs/{_UUID}"),
        _logs,
        {name: _int_in(low, high) for name, (_, low, high) in LOG_PAGE.items()},
    ),
]


def _match(scope) -> tuple[Service, UUID, dict[str, Any]] | None:
    """The service, id and query of a request answered here, or None (FastAPI answers it)."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path = scope["path"]
    for pattern, service, parsers in ROUTES:
        matched = pattern.fullmatch(path)
        if matched is None:
            continue
        query: dict[str, Any] = {}
        for key, text in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            parser = parsers.get(key)
            value = parser(text) if parser is not None else None
            if value is None or key in query:
                return None  # unknown, repeated or not read the same way by FastAPI: its answer
            query[key] = value
        return service, UUID(matched.group(1)), query
    return None


def _token_is_right(scope, expected: str | None) -> bool:
    if expected is None:
        return False
    for name, value in scope["headers"]:
        if name == b"authorization":
            return hmac.compare_digest(value, b"Bearer " + expected.encode())
    return False


def _exception_handler(app, exc: Exception):
    for kind in type(exc).__mro__:
        if kind in app.exception_handlers:
            return app.exception_handlers[kind]
    return None


class HotReadsMiddleware:
    """ASGI middleware answering the hot reads (see the module's text); inside the app's Prefect settings."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        matched = _match(scope)
        app = scope.get("app")
        if matched is None or app is None or not _token_is_right(scope, app.state.settings.token):
            await self.app(scope, receive, send)
            return
        service, object_id, query = matched
        try:
            model = await service(app, await app.state.prefect.client(), object_id, query)
        except Exception as exc:
            handler = _exception_handler(app, exc)
            if handler is None:
                raise  # as from a route: the catch-all middleware answers a logged 500
            response = await handler(Request(scope, receive), exc)
        else:
            response = Response(model.__pydantic_serializer__.to_json(model), media_type="application/json")
        await response(scope, receive, send)
