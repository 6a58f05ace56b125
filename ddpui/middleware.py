"""Error answers of the API and the webhook are always JSON `{"detail": ...}`, whatever DEBUG says.

Django answers an unknown path, a wrong method or an unhandled exception with an HTML page (a debug page
when DEBUG is on); ninja answers a wrong method with plain text. For machine clients under `/api/` and
`/webhooks/` this middleware turns every such answer into JSON, and refuses a NUL character in the path
before any view runs (PostgreSQL cannot store or compare text holding one, so a lookup would fail with 500).
"""

from __future__ import annotations

import json
import logging

from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

JSON_PREFIXES = ("/api/", "/webhooks/")

_DEFAULT_DETAIL = {
    400: "bad request",
    401: "authentication required",
    403: "forbidden",
    404: "not found: no such path",
    405: "method not allowed",
    413: "request body too large",
    500: "internal error: the server logs have the details",
}


def json_error(status: int, detail: str | None = None, **extra) -> JsonResponse:
    detail = detail or _DEFAULT_DETAIL.get(status) or f"error {status}"
    return JsonResponse({"detail": detail}, status=status, **extra)


def _is_json(response: HttpResponse) -> bool:
    return (response.get("Content-Type") or "").split(";")[0].strip() == "application/json"


def _json_body_has_detail(response: HttpResponse) -> bool:
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return False
    return isinstance(body, dict) and "detail" in body


class JsonErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(JSON_PREFIXES):
            return self.get_response(request)
        if "\x00" in request.path:
            return json_error(404, "not found: a path may not contain NUL characters")
        response = self.get_response(request)
        if response.status_code < 400 or getattr(response, "streaming", False):
            return response
        if _is_json(response) and _json_body_has_detail(response):
            return response
        if response.status_code == 405:
            allowed = response.get("Allow", "")
            detail = f"method {request.method} not allowed on {request.path}" + (f": use {allowed}" if allowed else "")
            replaced = json_error(405, detail)
            if allowed:
                replaced["Allow"] = allowed
            return replaced
        if response.status_code == 404:
            return json_error(404, f"not found: no such path {request.path}")
        return json_error(response.status_code)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """An exception no view handled: log it and answer a JSON 500 (never Django's debug page)."""
        if not request.path.startswith(JSON_PREFIXES):
            return None
        from django.core.exceptions import PermissionDenied
        from django.http import Http404

        if isinstance(exception, Http404):
            return json_error(404, f"not found: no such path {request.path}")
        if isinstance(exception, PermissionDenied):
            return json_error(403)
        logger.error("unhandled error on %s %s", request.method, request.path, exc_info=exception)
        return json_error(500)
