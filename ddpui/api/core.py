"""The one NinjaAPI, its error mapping, and router registration."""

from __future__ import annotations

import logging

from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from ddpui.errors import DomainError

logger = logging.getLogger(__name__)


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


class TextRefused(ValueError):
    """Input text the database cannot store; answered 422 with this message."""


class TextParser(Parser):
    """JSON bodies and query strings, refusing NUL characters: PostgreSQL cannot store them in text, so they
    would otherwise end in a database error (a 500) instead of a message saying what to fix."""

    def parse_body(self, request):
        data = super().parse_body(request)
        if _has_nul(data):
            raise TextRefused("invalid request: text may not contain NUL characters (\\u0000)")
        return data

    def parse_querydict(self, data, list_fields, request):
        result = super().parse_querydict(data, list_fields, request)
        if _has_nul(result):
            raise TextRefused("invalid request: query parameters may not contain NUL characters")
        return result


api = NinjaAPI(
    parser=TextParser(),
    title="ddpui API",
    version="1.0.0",
    description="Orchestration backend: organizations, warehouses, Airbyte connections, dbt tasks and pipelines.",
    docs_url="/docs",
    urls_namespace="api",
)


def _detail(request, status: int, message: str):
    return api.create_response(request, {"detail": message}, status=status)


@api.exception_handler(DomainError)
def on_domain_error(request, exc: DomainError):
    return _detail(request, exc.status_code, exc.message)


@api.exception_handler(AuthenticationError)
def on_authentication_error(request, exc):
    return _detail(
        request, 401, "missing or invalid token: send 'Authorization: Bearer <token>' from POST /api/v1/login/"
    )


@api.exception_handler(ValidationError)
def on_validation_error(request, exc: ValidationError):
    problems = []
    for error in exc.errors:
        location = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "payload"))
        problems.append(f"{location}: {error.get('msg', 'invalid')}" if location else error.get("msg", "invalid"))
    return _detail(request, 422, "invalid request: " + "; ".join(problems))


@api.exception_handler(Http404)
def on_not_found(request, exc):
    return _detail(request, 404, "not found")


@api.exception_handler(TextRefused)
def on_text_refused(request, exc: TextRefused):
    return _detail(request, 422, str(exc))


@api.exception_handler(HttpError)
def on_http_error(request, exc: HttpError):
    if isinstance(exc.__cause__, TextRefused):  # ninja wraps any body parser error in a 400 "Cannot parse"
        return on_text_refused(request, exc.__cause__)
    return _detail(request, exc.status_code, str(exc.message))


@api.exception_handler(Exception)
def on_unexpected(request, exc):
    logger.exception("unhandled error on %s %s", request.method, request.path)
    return _detail(request, 500, "internal error: the server logs have the details")


ROUTER_MODULES = [
    "ddpui.api.user_org_api",  # login, current user
    "ddpui.api.org_api",  # organizations, warehouse
    "ddpui.api.airbyte_api",  # workspace, sources, connections
    "ddpui.api.dbt_api",  # dbt workspace, schema
    "ddpui.api.targets_api",  # dbt targets
    "ddpui.api.task_progress_api",  # progress of background tasks
    "ddpui.api.tasks_api",  # transform and custom org tasks
    "ddpui.api.pipelines_api",  # pipelines, runs, logs
    "ddpui.api.run_control_api",  # resume a failed run
    "ddpui.api.audit_api",  # audit trail
    "ddpui.api.alerts_api",  # alert preferences, channels, alerts
]


def register_routers() -> None:
    import importlib

    for module_name in ROUTER_MODULES:
        api.add_router("", importlib.import_module(module_name).router)


register_routers()
