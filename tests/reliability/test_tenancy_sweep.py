"""Tenancy sweep: every route of the Django API, called by a user of org B with org A's ids.

The routes are enumerated from the NinjaAPI's registered operations (and checked against Django's URL
resolver), so a new route cannot escape: it fails this test until it is added to ROUTES below with the
kind of each of its path parameters. Proves:
- every route with an object id answers 404 for each of org A's ids of that kind;
- every route without an object id acts on B only, and its answer names none of A's objects;
- afterwards org A is untouched: every row of A in every ddpui table, its Prefect deployments
  (parameters, schedule, pool), its Prefect blocks and its Airbyte objects are exactly as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from django.apps import apps
from django.db import models
from django.urls import URLPattern, URLResolver, get_resolver

from ddpui.api.core import api
from ddpui.models import Org, TaskProgress
from tests.support.orgsetup import make_sample_git_repo, setup_org_via_api
from tests.support.prefect_rest import prefect_client

from .conftest import RecordingClient, unique_email

pytestmark = [pytest.mark.django_db, pytest.mark.prefect, pytest.mark.slow]

# path parameter -> the kind of org A's object it names (A's ids of each kind are all tried), or a fixed
# value for parameters that name no object
ID_KINDS = {
    "destination_id": "destination",
    "source_id": "source",
    "connection_id": "connection",
    "orgtask_uuid": "orgtask",
    "deployment_id": "deployment",
    "flow_run_id": "flow_run",
    "task_id": "task",
    # a dbt target is named within its org: A's own target name (every org has a `default` of its own)
    "name": "target",
}
# a connector definition is Airbyte's catalogue, shared by every org: any real one will do
FIXED_PARAMETERS = {"status": "inactive", "slug": "dbt-run", "definition_id": "5a3b1e00-d0d0-4e3a-9000-000000000001"}


def _pipeline_body(a: dict) -> dict:
    return {
        "name": "stolen",
        "connections": [{"id": a["connection"][0], "seq": 0}],
        "transformTasks": [{"uuid": a["orgtask"][-1], "seq": 1}],
    }


# every route of the API: (method, path) -> the JSON body B sends (built from A's ids), or None for no body.
# Routes with ids must answer 404; routes without must not reveal or change A's data.
ROUTES: dict[tuple[str, str], Callable[[dict], dict | None]] = {
    ("POST", "/api/v1/login/"): lambda a: {"email": a["email"], "password": "not-a-password"},
    ("GET", "/api/v1/currentuser"): lambda a: None,
    ("POST", "/api/login/"): lambda a: {"username": a["email"], "password": "not-a-password"},
    ("GET", "/api/currentuserv2"): lambda a: None,
    ("POST", "/api/v1/organizations/"): lambda a: {"name": a["org_name"]},
    ("POST", "/api/v1/organizations/warehouse/"): lambda a: {
        "wtype": "duckdb",
        "airbyteConfig": {"destination_path": "/tmp/stolen.duckdb"},
        "destinationDefId": "x",
    },
    ("GET", "/api/v1/organizations/warehouses"): lambda a: None,
    ("POST", "/api/organizations/warehouse/"): lambda a: {
        "wtype": "duckdb",
        "airbyteConfig": {"destination_path": "/tmp/stolen.duckdb"},
        "destinationDefId": "x",
    },
    ("GET", "/api/organizations/warehouses"): lambda a: None,
    ("GET", "/api/airbyte/destination_definitions"): lambda a: None,
    ("GET", "/api/airbyte/destination_definitions/{definition_id}/specifications"): lambda a: None,
    ("GET", "/api/airbyte/source_definitions"): lambda a: None,
    ("GET", "/api/airbyte/source_definitions/{definition_id}/specifications"): lambda a: None,
    ("POST", "/api/airbyte/destinations/check_connection/"): lambda a: {
        "name": "b",
        "destinationDefId": "5a3b1e00-d0d0-4e3a-9000-000000000102",
        "config": {"destination_path": "/tmp/b-check.duckdb"},
    },
    ("POST", "/api/airbyte/destinations/{destination_id}/check_connection_for_update/"): lambda a: {
        "name": "stolen",
        "config": {"destination_path": "/tmp/stolen.duckdb"},
    },
    ("POST", "/api/airbyte/sources/check_connection/"): lambda a: {
        "name": "b",
        "sourceDefId": a["source_definition_id"],
        "config": {"count": 1},
    },
    ("GET", "/api/airbyte/sources"): lambda a: None,
    ("PUT", "/api/airbyte/sources/{source_id}"): lambda a: {"name": "stolen", "config": {"count": 1}},
    ("POST", "/api/airbyte/sources/{source_id}/check_connection_for_update/"): lambda a: {"config": {"count": 1}},
    ("GET", "/api/airbyte/sources/{source_id}/schema_catalog"): lambda a: None,
    ("GET", "/api/airbyte/v1/connections/{connection_id}/jobs"): lambda a: None,
    ("PUT", "/api/dbt/github/"): lambda a: {"gitrepoUrl": a["git_repo_url"]},
    ("GET", "/api/tasks/{task_id}"): lambda a: None,
    ("DELETE", "/api/v1/organizations/warehouses/"): lambda a: None,
    ("DELETE", "/api/v1/organizations/warehouses/{destination_id}/"): lambda a: None,
    ("GET", "/api/v1/dbt/targets/"): lambda a: None,
    ("POST", "/api/v1/dbt/targets/"): lambda a: {"name": "tenantb_dev", "schema": "tenantb_dev"},
    ("GET", "/api/v1/dbt/targets/{name}/"): lambda a: None,
    ("PUT", "/api/v1/dbt/targets/{name}/"): lambda a: {"schema": "stolen"},
    ("DELETE", "/api/v1/dbt/targets/{name}/"): lambda a: None,
    ("POST", "/api/airbyte/v1/workspace/"): lambda a: {"name": a["org_name"]},
    ("PUT", "/api/airbyte/v1/destinations/{destination_id}/"): lambda a: {
        "airbyteConfig": {"destination_path": "/tmp/stolen.duckdb", "schema": "stolen"}
    },
    ("POST", "/api/airbyte/sources/"): lambda a: {
        "name": "b source",
        "sourceDefId": a["source_definition_id"],
        "config": {"count": 1},
    },
    ("GET", "/api/airbyte/sources/"): lambda a: None,
    ("GET", "/api/airbyte/sources/{source_id}"): lambda a: None,
    ("DELETE", "/api/airbyte/sources/{source_id}"): lambda a: None,
    ("POST", "/api/airbyte/v1/connections/"): lambda a: {"name": "stolen", "sourceId": a["source"][0]},
    ("GET", "/api/airbyte/v1/connections"): lambda a: None,
    ("GET", "/api/airbyte/v1/connections/{connection_id}"): lambda a: None,
    ("DELETE", "/api/airbyte/v1/connections/{connection_id}"): lambda a: None,
    ("PUT", "/api/airbyte/v1/connections/{connection_id}/update"): lambda a: {"name": "stolen"},
    ("POST", "/api/airbyte/v1/connections/{connection_id}/reset"): lambda a: None,
    ("POST", "/api/dbt/workspace/"): lambda a: {"gitrepoUrl": a["git_repo_url"], "defaultSchema": "stolen"},
    ("DELETE", "/api/dbt/workspace/"): lambda a: None,
    ("PUT", "/api/dbt/v1/schema/"): lambda a: {"targetConfigs": {"schema": "b_schema"}},
    ("GET", "/api/dbt/dbt_workspace"): lambda a: None,
    ("POST", "/api/prefect/tasks/transform/"): lambda a: None,
    ("GET", "/api/prefect/tasks/transform/"): lambda a: None,
    ("DELETE", "/api/prefect/tasks/transform/"): lambda a: None,
    ("POST", "/api/prefect/tasks/"): lambda a: {"taskSlug": "dbt-run", "flags": ["full-refresh"]},
    ("GET", "/api/prefect/tasks/{orgtask_uuid}/"): lambda a: None,
    ("DELETE", "/api/prefect/tasks/{orgtask_uuid}/"): lambda a: None,
    ("POST", "/api/prefect/tasks/{orgtask_uuid}/run/"): lambda a: None,
    ("GET", "/api/data/tasks/"): lambda a: None,
    ("GET", "/api/data/tasks/{slug}/config/"): lambda a: None,
    ("POST", "/api/prefect/v1/flows/"): _pipeline_body,
    ("GET", "/api/prefect/v1/flows/"): lambda a: None,
    ("GET", "/api/prefect/v1/flows/{deployment_id}"): lambda a: None,
    ("PUT", "/api/prefect/v1/flows/{deployment_id}"): _pipeline_body,
    ("DELETE", "/api/prefect/v1/flows/{deployment_id}"): lambda a: None,
    ("POST", "/api/prefect/v1/flows/{deployment_id}/set_schedule/{status}"): lambda a: None,
    ("POST", "/api/prefect/v1/flows/{deployment_id}/flow_run/"): lambda a: None,
    ("GET", "/api/prefect/flow_runs/{flow_run_id}"): lambda a: None,
    ("GET", "/api/prefect/flow_runs/{flow_run_id}/logs"): lambda a: None,
    ("GET", "/api/prefect/v1/flows/{deployment_id}/flow_runs/history"): lambda a: None,
    ("GET", "/api/prefect/flows/{deployment_id}/flow_runs/history"): lambda a: None,
    ("POST", "/api/prefect/flows/{deployment_id}/set_schedule/{status}"): lambda a: None,
    ("GET", "/api/dashboard/v1"): lambda a: None,
    ("POST", "/api/prefect/flow_runs/{flow_run_id}/cancel"): lambda a: None,
    ("POST", "/api/prefect/flow_runs/{flow_run_id}/retry"): lambda a: None,
    ("GET", "/api/v1/alerts/preferences"): lambda a: None,
    ("PUT", "/api/v1/alerts/preferences"): lambda a: {"email": {"run-failed": False, "connection-stale": True}},
    ("DELETE", "/api/v1/alerts/preferences"): lambda a: None,
    ("GET", "/api/v1/alerts/channels"): lambda a: None,
    ("PUT", "/api/v1/alerts/channels/webhook"): lambda a: {"events": ["run-failed"]},
    ("DELETE", "/api/v1/alerts/channels/webhook"): lambda a: None,
    ("POST", "/api/v1/alerts/channels/webhook/test"): lambda a: None,
    ("GET", "/api/v1/alerts"): lambda a: None,
    ("GET", "/api/v1/audit"): lambda a: None,
}


def registered_routes() -> set[tuple[str, str]]:
    """(method, path) of every operation registered on the NinjaAPI, checked against the URL resolver."""
    routes, paths = set(), set()
    for prefix, router in api._routers:
        for path, path_view in router.path_operations.items():
            full = "/api" + prefix + path
            paths.add(full)
            for operation in path_view.operations:
                routes.update((method, full) for method in operation.methods)

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield "/" + prefix + str(pattern.pattern)

    schema_routes = {"/api/", "/api/openapi.json", "/api/docs"}
    resolved = {route.replace("<", "{").replace(">", "}") for route in walk(get_resolver().url_patterns)}
    resolved_api = {route for route in resolved if route.startswith("/api/")} - schema_routes
    assert resolved_api == paths, f"URL resolver and NinjaAPI disagree: {sorted(resolved_api ^ paths)}"
    return routes


def _parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _org_lookup(model: type[models.Model], depth: int = 3) -> str | None:
    """The ORM path from `model` to its Org (e.g. "orgtask__org"), or None for tables without an org."""
    if model is Org:
        return "pk"
    frontier = [(model, "")]
    for _ in range(depth):
        next_frontier = []
        for current, prefix in frontier:
            for field in current._meta.get_fields():
                if not (field.many_to_one or field.one_to_one) or not field.concrete:
                    continue
                lookup = f"{prefix}{field.name}"
                if field.related_model is Org:
                    return lookup
                next_frontier.append((field.related_model, lookup + "__"))
        frontier = next_frontier
    return None


def org_rows(org: Org) -> dict[str, list[dict]]:
    """Every row of every ddpui table that belongs to the org (whole table for tables with no org)."""
    snapshot = {}
    for model in apps.get_app_config("ddpui").get_models():
        lookup = _org_lookup(model)
        rows = model.objects.all() if lookup is None else model.objects.filter(**{lookup: org.pk})
        snapshot[model._meta.db_table] = list(rows.order_by("pk").values())
    return snapshot


def prefect_view(a: dict) -> dict:
    """A's deployments and blocks as Prefect itself holds them."""
    prefect = prefect_client()
    deployments = {}
    for deployment_id in a["deployment"]:
        body = prefect.get(f"/deployments/{deployment_id}").raise_for_status().json()
        deployments[deployment_id] = {
            key: body.get(key) for key in ("name", "parameters", "paused", "work_pool_name", "entrypoint", "path")
        }
        deployments[deployment_id]["schedules"] = [
            (s["schedule"], s["active"]) for s in sorted(body.get("schedules", []), key=lambda s: s["id"])
        ]
    blocks = prefect.post(
        "/block_documents/filter", json={"block_documents": {"name": {"like_": a["org_slug"]}}, "limit": 200}
    ).raise_for_status()
    block_view = sorted(
        (doc["id"], doc["name"], doc["updated"]) for doc in blocks.json() if doc["name"].startswith(a["org_slug"])
    )
    runs = {run_id: _run_view(prefect.get(f"/flow_runs/{run_id}")) for run_id in a["flow_run"]}
    return {"deployments": deployments, "blocks": block_view, "runs": runs}


def _run_view(response: httpx.Response) -> str:
    """What B could have done to one of A's runs: delete it or cancel it. Anything else is the run's own
    progress: the one-off task run goes to the proxy's shared ad-hoc pool, which the session worker polls when
    an earlier test started it, so it may legitimately move on from Scheduled while the sweep runs."""
    if response.status_code == 404:
        return "DELETED"
    state = response.raise_for_status().json()["state"]["type"]
    return state if state in ("CANCELLING", "CANCELLED") else "not cancelled"


def airbyte_view(emulator, a: dict) -> dict:
    state = emulator.state()
    return {
        kind: {key: value for key, value in state[kind].items() if value.get("workspaceId") == a["workspace_id"]}
        for kind in ("sources", "destinations")
    } | {"connections": {c: state["connections"].get(c) for c in a["connection"]}}


@pytest.fixture
def org_a_and_b(idle_pool, tmp_path):
    """Org A fully set up through the API with a pipeline, a queued run and a one-off task run; org B set up
    the same way, by another user."""
    from devtools.airbyte_emulator import SAMPLE_SOURCE_DEFINITION_ID

    client = RecordingClient()
    repo_url = make_sample_git_repo(tmp_path)
    email_a = unique_email("tenant-a")
    a = setup_org_via_api(
        client,
        email=email_a,
        password="tenant-a-password",
        org_name="Tenant A",
        warehouse_path_or_pg=tmp_path / "a.duckdb",
        git_repo_url=repo_url,
    )
    headers = a["headers"]
    tasks = a["transform_tasks"]
    custom = client.post(
        "/api/prefect/tasks/", {"taskSlug": "dbt-run", "options": {"select": "orders"}}, "application/json", **headers
    )
    assert custom.status_code == 200, custom.content
    target = client.post(
        "/api/v1/dbt/targets/", {"name": "tenanta_dev", "schema": "tenanta_dev"}, "application/json", **headers
    )
    assert target.status_code == 200, target.content
    pipeline = {
        "name": "tenant a nightly",
        "connections": [{"id": a["connection_id"], "seq": 0}],
        "transformTasks": [{"uuid": tasks["git-pull"], "seq": 1}, {"uuid": tasks["dbt-run"], "seq": 2}],
        "cron": "0 1 * * *",
    }
    created = client.post("/api/prefect/v1/flows/", pipeline, "application/json", **headers)
    assert created.status_code == 200, created.content
    pipeline_id = created.json()["deploymentId"]
    run = client.post(f"/api/prefect/v1/flows/{pipeline_id}/flow_run/", **headers)
    assert run.status_code == 200, run.content
    task_run = client.post(f"/api/prefect/tasks/{tasks['dbt-docs-generate']}/run/", **headers)
    assert task_run.status_code == 200, task_run.content

    b = setup_org_via_api(
        client,
        email=unique_email("tenant-b"),
        password="tenant-b-password",
        org_name="Tenant B",
        warehouse_path_or_pg=tmp_path / "b.duckdb",
        git_repo_url=repo_url,
    )
    # a background task of A (its dbt set-up's progress), made as the set-up service would record it
    task = TaskProgress.objects.create(
        org=Org.objects.get(slug=a["org_slug"]),
        kind="dbt-workspace-setup",
        resource="dbt-workspace",
        status=TaskProgress.Status.COMPLETED,
        steps=[{"stepnum": 1, "status": "completed", "message": "dbt workspace ready"}],
    )
    ids = {
        "email": email_a,
        "org_slug": a["org_slug"],
        "org_name": a["org_name"],
        "workspace_id": a["workspace_id"],
        "git_repo_url": repo_url,
        "source_definition_id": SAMPLE_SOURCE_DEFINITION_ID,
        "destination": [a["destination_id"]],
        "source": [a["source_id"]],
        "connection": [a["connection_id"]],
        "orgtask": [a["sync_task_uuid"], *tasks.values(), custom.json()["uuid"]],
        "deployment": [pipeline_id, a["deployment_id"]],
        "flow_run": [run.json()["flow_run_id"], task_run.json()["flow_run_id"]],
        "task": [str(task.task_id)],
        "target": ["tenanta_dev"],
    }
    return ids, b


def test_org_b_can_neither_see_nor_change_org_a(org_a_and_b, live_services):
    a, b = org_a_and_b
    emulator = live_services["airbyte"]
    routes = registered_routes()
    missing = sorted(routes - set(ROUTES))
    assert not missing, f"routes not covered by the tenancy sweep (add them to ROUTES): {missing}"
    assert not set(ROUTES) - routes, f"ROUTES lists routes that no longer exist: {sorted(set(ROUTES) - routes)}"
    for method, path in routes:
        for name in _parameters(path):
            assert name in ID_KINDS or name in FIXED_PARAMETERS, (
                f"{method} {path}: path parameter '{name}' has no id kind: add it to ID_KINDS"
            )

    org_a = Org.objects.get(slug=a["org_slug"])
    rows_before, prefect_before, airbyte_before = org_rows(org_a), prefect_view(a), airbyte_view(emulator, a)
    # what would reveal A: its objects' ids and names (an id B itself sent may be echoed back in a 404)
    revealing = {a["org_slug"], a["workspace_id"], *[i for kind in set(ID_KINDS.values()) for i in a[kind]]}

    client = RecordingClient()
    calls = 0
    # reads first, then writes, then deletes: every one of them is refused or acts on B only
    order = {"GET": 0, "POST": 1, "PUT": 1, "DELETE": 2}
    for method, path in sorted(routes, key=lambda route: (order[route[0]], route[1])):
        names = _parameters(path)
        body = ROUTES[(method, path)](a)
        if not [name for name in names if name in ID_KINDS]:
            response = _send(client, method, path, body, b["headers"])
            calls += 1
            assert response.status_code < 500, (method, path, response.status_code, response.content)
            sent = json.dumps(body or {})
            leaked = sorted(value for value in revealing if value in response.content.decode() and value not in sent)
            assert not leaked, f"{method} {path} as org B revealed org A's {leaked}: {response.content[:300]}"
            continue
        for filled in _fill(path, names, a):
            response = _send(client, method, filled, body, b["headers"])
            calls += 1
            assert response.status_code == 404, (method, filled, response.status_code, response.content)
            assert "not found" in response.json()["detail"], (method, filled, response.content)
    assert calls >= len(routes)

    assert org_rows(org_a) == rows_before
    assert prefect_view(a) == prefect_before
    assert airbyte_view(emulator, a) == airbyte_before


def _fill(path: str, names: list[str], a: dict):
    """The path with each id parameter set to each of A's ids of its kind (one parameter varies at a time)."""
    base = {name: FIXED_PARAMETERS.get(name) or a[ID_KINDS[name]][0] for name in names}
    variants = []
    for name in names:
        for value in a[ID_KINDS[name]] if name in ID_KINDS else [base[name]]:
            variants.append({**base, name: value})
    for values in variants:
        yield path.format(**values)


def _send(client, method: str, path: str, body, headers):
    if method == "GET":
        return client.get(path, **headers)
    if body is None:
        return client.generic(method, path, **headers)
    return client.generic(method, path, json.dumps(body), content_type="application/json", **headers)
