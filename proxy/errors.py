"""Typed errors of the proxy's services and their one mapping to HTTP answers `{"detail": "..."}`.

Services raise `ProxyError` subclasses (never HTTP exceptions). Errors coming out of the Prefect client are
mapped here too: Prefect unreachable -> 503, Prefect rejecting a call -> 502 carrying Prefect's message.
Anything else becomes a 500 with a generic message; the stack trace goes to the log, never to the caller.
"""

from __future__ import annotations

import logging

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("proxy")


class ProxyError(Exception):
    status_code = 500

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotFound(ProxyError):
    status_code = 404


class Conflict(ProxyError):
    status_code = 409


class InvalidRequest(ProxyError):
    """The body is well-formed but describes something the proxy cannot do (e.g. bad credentials shape)."""

    status_code = 422


class PrefectRejected(ProxyError):
    status_code = 502


class PrefectUnavailable(ProxyError):
    status_code = 503


def prefect_message(exc: httpx.HTTPStatusError) -> str:
    """Prefect's own explanation of a refused call, without echoing what was sent.

    Prefect's 422 answers repeat the request body (`request_body`, and `input` in each error), which may
    hold a secret the proxy was saving: only the messages and field locations are kept.
    """
    response = exc.response
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return response.reason_phrase or f"HTTP {response.status_code}"
    if isinstance(body.get("detail"), str):
        return body["detail"]
    errors = body.get("detail") if isinstance(body.get("detail"), list) else body.get("exception_detail")
    parts = [str(body["exception_message"])] if body.get("exception_message") else []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict):
            location = ".".join(str(item) for item in error.get("loc", ()))
            parts.append(f"{location}: {error.get('msg', '')}".strip(": "))
    return "; ".join(parts)[:1000] or response.reason_phrase or f"HTTP {response.status_code}"


def _json(status_code: int, detail: str, **extra) -> JSONResponse:
    return JSONResponse(status_code=status_code, content={"detail": detail, **extra})


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(item) for item in error.get("loc", ()) if item != "body")
        message = error.get("msg", "invalid value")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts) or "invalid request"


def register_exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProxyError)
    async def _proxy_error(request: Request, exc: ProxyError) -> JSONResponse:
        return _json(exc.status_code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
            for error in exc.errors()
        ]
        return _json(422, _validation_detail(exc), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _json(exc.status_code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(ObjectNotFound)
    async def _prefect_not_found(request: Request, exc: ObjectNotFound) -> JSONResponse:
        detail = prefect_message(exc.http_exc) if isinstance(exc.http_exc, httpx.HTTPStatusError) else "not found"
        return _json(404, f"Prefect has no such object: {detail}")

    @app.exception_handler(ObjectAlreadyExists)
    async def _prefect_conflict(request: Request, exc: ObjectAlreadyExists) -> JSONResponse:
        detail = prefect_message(exc.http_exc) if isinstance(exc.http_exc, httpx.HTTPStatusError) else "already exists"
        return _json(409, f"Prefect already has this object: {detail}")

    @app.exception_handler(httpx.HTTPStatusError)
    async def _prefect_refused(request: Request, exc: httpx.HTTPStatusError) -> JSONResponse:
        status = exc.response.status_code
        message = prefect_message(exc)
        if status == 503:
            return _json(503, f"Prefect is unavailable (HTTP 503): {message}")
        return _json(502, f"Prefect rejected the request (HTTP {status}): {message}")

    @app.exception_handler(httpx.TransportError)
    async def _prefect_unreachable(request: Request, exc: httpx.TransportError) -> JSONResponse:
        url = str(exc.request.url) if exc._request is not None else "the Prefect API"
        reason = str(exc) or type(exc).__name__
        return _json(503, f"Prefect is unreachable ({url}): {reason}")


class CatchAllMiddleware:
    """Turns any unhandled exception into a JSON 500 without a stack trace (logged server-side).

    A plain ASGI middleware rather than an `Exception` handler: Starlette re-raises after calling such a
    handler, which the test clients and some servers report as a crash.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def tracking_send(message):
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if response_started:
                raise
            response = _json(500, "internal error in the proxy; the cause is in the proxy's log")
            await response(scope, receive, send)
