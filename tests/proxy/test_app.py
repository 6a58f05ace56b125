"""The proxy as a service: settings, auth, health, the error contract and the OpenAPI contract."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from devtools.processes import free_port
from proxy import __main__ as proxy_main
from proxy import flow_runs
from proxy.errors import prefect_message
from proxy.main import create_app, telemetry_config
from proxy.settings import REPO_ROOT, ProxySettings, SettingsError
from tests.proxy.conftest import AUTH, TOKEN, proxy_settings

pytestmark = pytest.mark.prefect

SOME_ID = "00000000-0000-0000-0000-000000000001"


def test_settings_come_from_the_environment_with_defaults():
    settings = ProxySettings.from_env({"PREFECT_API_URL": "http://127.0.0.1:4200/api/"})
    assert settings.prefect_api_url == "http://127.0.0.1:4200/api"
    assert settings.token is None
    assert settings.work_pool == "ddpui"
    assert settings.work_queue is None
    assert settings.flows_dir == REPO_ROOT
    assert (REPO_ROOT / "proxy").is_dir()

    settings = ProxySettings.from_env(
        {
            "PREFECT_API_URL": "http://prefect:4200/api",
            "PROXY_TOKEN": "t",
            "PROXY_WORK_POOL": "pool",
            "PROXY_WORK_QUEUE": "queue",
            "PROXY_FLOWS_DIR": "/srv/flows",
        }
    )
    assert (settings.token, settings.work_pool, settings.work_queue) == ("t", "pool", "queue")
    assert settings.flows_dir == Path("/srv/flows")


def test_settings_refuse_a_missing_prefect_api_url():
    with pytest.raises(SettingsError, match="PREFECT_API_URL"):
        ProxySettings.from_env({"PROXY_TOKEN": "t"})


OFF = {"tracing": False, "metrics": False, "logs": False}


@pytest.mark.parametrize(
    ("environ", "config"),
    [
        ({}, OFF),
        ({"PATH": "/usr/bin", "PREFECT_API_URL": "http://127.0.0.1:4200/api"}, OFF),
        ({"FASTAPI_OTEL_AUTO_CONFIGURE": "false"}, OFF),
        ({"FASTAPI_OTEL_AUTO_CONFIGURE": "TRUE"}, {}),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, {}),
        ({"OTEL_SERVICE_NAME": "proxy"}, {}),
    ],
)
def test_fastapis_telemetry_is_on_only_where_opentelemetry_is_set_up(environ, config):
    assert telemetry_config(environ) == config


def test_the_served_proxy_uses_the_c_parser_and_event_loop(monkeypatch):
    served = {}
    monkeypatch.setattr(proxy_main.uvicorn, "run", lambda app, **options: served.update(options, app=app))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("PROXY_TOKEN", "t")
    assert proxy_main.main(["--port", "8123", "--workers", "2"]) == 0
    assert served["app"] == "proxy.main:app"
    assert (served["http"], served["loop"], served["proxy_headers"]) == ("httptools", "uvloop", False)
    assert (served["host"], served["port"], served["workers"]) == ("127.0.0.1", 8123, 2)


def test_health_answers_without_a_token(prefect_server):
    with TestClient(create_app(proxy_settings())) as client:
        response = client.get("/proxy/health")
    assert response.status_code == 200
    assert response.json()["prefect"] == "ok"
    assert response.json()["prefect_version"].startswith("3.")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}],
    ids=["no header", "wrong token", "wrong scheme", "no scheme"],
)
def test_calls_without_the_right_token_get_401(prefect_server, headers):
    with TestClient(create_app(proxy_settings())) as client:
        for method, path in [
            ("GET", f"/proxy/deployments/{SOME_ID}"),
            ("POST", "/proxy/flow_runs/filter"),
            ("POST", "/proxy/blocks/secret/"),
            ("DELETE", f"/proxy/blocks/{SOME_ID}"),
        ]:
            response = client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path)
            assert "token" in response.json()["detail"]
            assert response.headers["www-authenticate"] == "Bearer"


def test_a_proxy_without_proxy_token_refuses_every_call(prefect_server):
    settings = proxy_settings(PROXY_TOKEN="")
    assert settings.token is None
    with TestClient(create_app(settings)) as client:
        response = client.get(f"/proxy/deployments/{SOME_ID}", headers={"Authorization": "Bearer "})
        assert response.status_code == 401
        assert "PROXY_TOKEN" in response.json()["detail"]
        assert client.get("/proxy/health").status_code == 200


def test_an_unreachable_prefect_gives_503(prefect_server):
    dead = proxy_settings(PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api")
    with TestClient(create_app(dead), headers=AUTH) as client:
        health = client.get("/proxy/health")
        assert health.status_code == 503
        assert "Prefect" in health.json()["detail"]
        for method, path, body in [
            ("GET", f"/proxy/deployments/{SOME_ID}", None),
            ("GET", "/proxy/blocks/secret/anything", None),
            ("POST", "/proxy/blocks/secret/", {"blockName": "x", "secret": "y"}),
            ("POST", "/proxy/flow_runs/filter", {}),
        ]:
            response = client.request(method, path, json=body)
            assert response.status_code == 503, (method, path, response.text)
            assert "unreachable" in response.json()["detail"]


def test_an_unknown_work_pool_is_the_callers_mistake_with_prefects_message(api, prefect):
    name = f"x-{uuid.uuid4().hex[:8]}"
    response = api.post(
        "/proxy/v1/deployments/",
        json={"deployment_name": name, "org_slug": "acme", "parameters": {}, "work_pool_name": "no-such-pool"},
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert 'Work pool "no-such-pool" not found' in detail and "prefect work-pool create" in detail
    assert not [d for d in prefect.read_deployments() if d.name == name]


def test_prefects_refusals_are_reported_without_echoing_the_request():
    body = {
        "exception_message": "Invalid request received.",
        "exception_detail": [{"loc": ["body", "data"], "msg": "bad value", "input": {"password": "s3cr3t"}}],
        "request_body": {"data": {"password": "s3cr3t"}},
    }
    request = httpx.Request("POST", "http://prefect/api/block_documents/")
    refused = httpx.HTTPStatusError("422", request=request, response=httpx.Response(422, json=body, request=request))
    assert prefect_message(refused) == "Invalid request received.; body.data: bad value"
    not_found = httpx.Response(404, json={"detail": 'Work pool "x" not found.'}, request=request)
    assert prefect_message(httpx.HTTPStatusError("404", request=request, response=not_found)) == (
        'Work pool "x" not found.'
    )


def test_invalid_bodies_get_422_with_a_readable_detail(api):
    response = api.post("/proxy/blocks/secret/", json={"blockName": "Not A Valid Name", "secret": "s"})
    assert response.status_code == 422
    assert "blockName" in response.json()["detail"]
    response = api.post("/proxy/blocks/secret/", json={"blockName": "ok-name", "secret": "s", "extra": 1})
    assert response.status_code == 422
    assert api.get("/proxy/deployments/not-a-uuid").status_code == 422
    # numbers and flags are taken as the schema types them: no booleans for integers, no strings for either
    shell = {"type": "Shell Operation", "slug": "s", "commands": ["true"], "working_dir": "/tmp"}
    for bad in ({"seq": False}, {"seq": "1"}, {"seq": 1.5}):
        response = api.post("/proxy/flows/shell/run/", json={"org_slug": "acme", "task": {**shell, **bad}})
        assert response.status_code == 422, (bad, response.text)
        assert "seq" in response.json()["detail"]
    response = api.post("/proxy/flow_runs/filter", json={"limit": True, "include_parameters": "yes"})
    assert response.status_code == 422
    assert "limit" in response.json()["detail"] and "include_parameters" in response.json()["detail"]


def test_an_unexpected_error_is_a_json_500_without_a_stack_trace(api, monkeypatch):
    async def broken(*args, **kwargs):
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(flow_runs, "flow_run_read", broken)
    response = api.get(f"/proxy/flow_runs/{uuid.uuid4()}")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error in the proxy; the cause is in the proxy's log"}


def test_every_route_is_in_the_openapi_with_request_and_response_models(api):
    spec = api.get("/openapi.json").json()
    operations = {(method.upper(), path): op for path, item in spec["paths"].items() for method, op in item.items()}
    expected = {
        ("POST", "/proxy/blocks/airbyte/server/"),
        ("PUT", "/proxy/blocks/airbyte/server/"),
        ("GET", "/proxy/blocks/airbyte/server/"),
        ("POST", "/proxy/blocks/dbtcli/profile/"),
        ("PUT", "/proxy/blocks/dbtcli/profile/"),
        ("GET", "/proxy/blocks/dbtcli/profile/"),
        ("POST", "/proxy/blocks/secret/"),
        ("PUT", "/proxy/blocks/secret/"),
        ("PATCH", "/proxy/blocks/secret/"),
        ("GET", "/proxy/blocks/secret/{block_name}"),
        ("DELETE", "/proxy/blocks/{block_id}"),
        ("POST", "/proxy/v1/deployments/"),
        ("PUT", "/proxy/v1/deployments/{deployment_id}"),
        ("PATCH", "/proxy/v1/deployments/{deployment_id}/entrypoint"),
        ("GET", "/proxy/deployments/{deployment_id}"),
        ("POST", "/proxy/deployments/filter"),
        ("POST", "/proxy/deployments/schedule_states"),
        ("DELETE", "/proxy/deployments/{deployment_id}"),
        ("POST", "/proxy/deployments/{deployment_id}/set_schedule/{schedule_status}"),
        ("POST", "/proxy/deployments/{deployment_id}/flow_run"),
        ("GET", "/proxy/flow_runs/{flow_run_id}"),
        ("POST", "/proxy/flow_runs/filter"),
        ("GET", "/proxy/flow_runs/logs/{flow_run_id}"),
        ("POST", "/proxy/flow_runs/{flow_run_id}/cancel"),
        ("POST", "/proxy/flow_runs/{flow_run_id}/retry"),
        ("POST", "/proxy/v1/flows/dbtcore/run/"),
        ("POST", "/proxy/flows/shell/run/"),
        ("PUT", "/proxy/automations/flow-run-notifications/"),
        ("GET", "/proxy/automations/flow-run-notifications/{name}"),
        ("DELETE", "/proxy/automations/flow-run-notifications/{name}"),
        ("POST", "/proxy/outgoing-webhooks/send"),
        ("POST", "/proxy/legacy/blocks/describe"),
        ("POST", "/proxy/blocks/dbtcli/profile/from_dbtcore/"),
        ("GET", "/proxy/health"),
    }
    assert set(operations) == expected
    for key, operation in operations.items():
        success = next(code for code in operation["responses"] if code.startswith("2"))
        assert "$ref" in operation["responses"][success]["content"]["application/json"]["schema"], key
        if key[0] in {"POST", "PUT", "PATCH"} and "requestBody" in operation:
            assert "$ref" in str(operation["requestBody"]["content"]["application/json"]["schema"]), key
        if key != ("GET", "/proxy/health"):
            assert operation.get("security") == [{"HTTPBearer": []}], key
            assert {"401", "404", "422", "502", "503"} <= set(operation["responses"]), key


def test_write_routes_all_take_a_body(api):
    spec = api.get("/openapi.json").json()
    no_body = {
        ("post", "/proxy/deployments/{deployment_id}/set_schedule/{schedule_status}"),
        ("post", "/proxy/flow_runs/{flow_run_id}/cancel"),
        ("post", "/proxy/flow_runs/{flow_run_id}/retry"),
    }
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in {"post", "put", "patch"} and (method, path) not in no_body:
                assert "requestBody" in operation, (method, path)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/proxy/blocks/secret/", {"blockName": "a\u0000b", "secret": "x"}),
        ("POST", "/proxy/blocks/secret/", '{"blockName": "ok", "secret": "x\\ud83d"}'),  # sent as JSON escapes
        # a surrogate encoded as UTF-8 bytes (not valid UTF-8, but Python's JSON parser lets it through)
        ("POST", "/proxy/blocks/secret/", b'{"blockName": "ok", "secret": "x\xed\xa0\x80"}'),
        # a lone surrogate in a UTF-16 body
        ("POST", "/proxy/blocks/secret/", '{"blockName": "ok", "secret": "x\ud800"}'.encode("utf-16", "surrogatepass")),
        ("GET", "/proxy/blocks/secret/a%00b", None),
    ],
)
def test_text_prefect_cannot_store_is_a_422_before_prefect_is_called(method, path, body):
    app = create_app(ProxySettings(prefect_api_url="http://127.0.0.1:9/api", token="t"))
    with TestClient(app) as client:
        headers = {"Authorization": "Bearer t", "Content-Type": "application/json"}
        content = body if isinstance(body, str | bytes) else None if body is None else json.dumps(body)
        response = client.request(method, path, content=content, headers=headers)
    assert response.status_code == 422, response.text
    assert "may not contain" in response.json()["detail"]
