"""Every error answer under /api/ and /webhooks/ is JSON {"detail": ...}, whatever DEBUG says: unknown paths,
wrong methods, unhandled exceptions, and a NUL character in any path parameter (PostgreSQL cannot compare
text holding one, so without the guard a lookup ended in a 500)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from ddpui.api.core import api
from tests.factories import auth_headers, make_orguser

pytestmark = pytest.mark.django_db

WEBHOOK = "/webhooks/v1/notification/"


def _assert_json_detail(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    "path",
    ["/api/no-such-thing/", "/api/v1/organizations/does/not/exist", "/api/prefect/v1/flows/x/y/z/w", "/webhooks/nope"],
)
def test_unknown_paths_answer_json_404(settings, debug, path):
    settings.DEBUG = debug
    body = _assert_json_detail(Client().get(path), 404)
    assert "not found" in body["detail"]


@pytest.mark.parametrize("debug", [False, True])
def test_wrong_method_answers_json_405_naming_the_allowed_ones(settings, debug):
    settings.DEBUG = debug
    orguser = make_orguser()
    response = Client().patch("/api/v1/login/", **auth_headers(orguser))
    body = _assert_json_detail(response, 405)
    assert "POST" in body["detail"] and "PATCH" in body["detail"]
    assert "POST" in response["Allow"]


@pytest.mark.parametrize("debug", [False, True])
def test_webhook_wrong_method_answers_json_405(settings, debug):
    settings.DEBUG = debug
    response = Client().get(WEBHOOK)
    _assert_json_detail(response, 405)
    assert response["Allow"] == "POST"


@pytest.mark.parametrize("debug", [False, True])
def test_unhandled_exception_in_the_webhook_answers_json_500(settings, monkeypatch, debug):
    settings.DEBUG = debug
    settings.WEBHOOK_SECRET = "s3cret"

    def boom(body):
        raise RuntimeError("unexpected")

    monkeypatch.setattr("ddpui.webhooks.webhook_parse", boom)
    response = Client(raise_request_exception=False).post(
        WEBHOOK, "{}", "application/json", HTTP_X_DDPUI_WEBHOOK_SECRET="s3cret"
    )
    body = _assert_json_detail(response, 500)
    assert "unexpected" not in body["detail"]  # no internals in the answer


@pytest.mark.parametrize("debug", [False, True])
def test_unhandled_exception_in_a_middleware_answers_json_500(settings, monkeypatch, debug):
    settings.DEBUG = debug

    def boom(self, request):
        raise RuntimeError("session store down")

    monkeypatch.setattr("django.contrib.sessions.middleware.SessionMiddleware.process_request", boom)
    response = Client(raise_request_exception=False).get("/api/v1/currentuser")
    _assert_json_detail(response, 500)


def _path_operations() -> list[tuple[str, str]]:
    """(method, path) of every API operation that takes a path parameter, from the OpenAPI schema."""
    found = []
    for path, operations in api.get_openapi_schema()["paths"].items():
        if "{" in path:
            found += [(method.upper(), path) for method in operations if method in {"get", "post", "put", "delete"}]
    return sorted(found)


PATH_OPERATIONS = _path_operations()


def test_the_api_has_operations_with_path_parameters():
    assert len(PATH_OPERATIONS) >= 5, PATH_OPERATIONS


@pytest.mark.parametrize(("method", "path"), PATH_OPERATIONS)
def test_nul_in_any_path_parameter_is_a_json_404(method, path):
    orguser = make_orguser()
    url = re.sub(r"\{[^}]+\}", "abc%00def", path)
    response = Client().generic(method, url, "{}", "application/json", **auth_headers(orguser, orguser.org.slug))
    _assert_json_detail(response, 404)
