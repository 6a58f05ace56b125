"""Pipelines through the API with the real proxy and Prefect server (no worker: runs stay scheduled)."""

import re
import uuid
from datetime import timedelta

import httpx
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ddpui.models import AuditEvent, DataflowOrgTask, OrgDataFlowv1, PrefectFlowRun, TaskLock
from ddpui.prefect_client import get_proxy
from tests.factories import auth_headers, make_dataflow, make_orguser
from tests.support.prefect_rest import prefect_request

from .conftest import make_pipeline_org

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]


def create(client, orguser, **body):
    payload = {"name": "nightly", "connections": [], "transformTasks": [], "cron": None, **body}
    return client.post("/api/prefect/v1/flows/", payload, content_type="application/json", **auth_headers(orguser))


def prefect_deployment(deployment_id: str) -> httpx.Response:
    return prefect_request("GET", f"deployments/{deployment_id}", expect=(200, 404))


def test_create_orders_tasks_and_stores_the_deployment(live_services, pipeline_org):
    org, orguser, syncs, t = pipeline_org
    client = Client()
    response = create(
        client,
        orguser,
        connections=[{"id": syncs[1].connection_id, "seq": 2}, {"id": syncs[0].connection_id, "seq": 1}],
        transformTasks=[
            {"uuid": str(t["dbt-test"].uuid), "seq": 1},
            {"uuid": str(t["dbt-run"].uuid), "seq": 0},
            {"uuid": str(t["dbt-deps"].uuid), "seq": 9},
            {"uuid": str(t["git-pull"].uuid), "seq": 8},
        ],
        cron="0 2 * * *",
        timezone="Asia/Kolkata",
    )
    assert response.status_code == 200, response.content
    deployment_id = response.json()["deploymentId"]
    dataflow = OrgDataFlowv1.objects.get(deployment_id=deployment_id, org=org)
    order = list(
        DataflowOrgTask.objects.filter(dataflow=dataflow).order_by("seq").values_list("orgtask__task__slug", flat=True)
    )
    assert order == ["airbyte-sync", "airbyte-sync", "git-pull", "dbt-deps", "dbt-run", "dbt-test"]
    deployment = prefect_deployment(deployment_id).json()
    # named by the proxy (a unique suffix: no name check); the name Django stores is Prefect's
    assert re.fullmatch(f"pipeline-{org.slug}-nightly-[0-9a-f]{{32}}", deployment["name"]), deployment["name"]
    assert dataflow.deployment_name == deployment["name"]
    tasks = deployment["parameters"]["config"]["tasks"]
    assert [task["slug"] for task in tasks] == order
    assert [task["seq"] for task in tasks] == list(range(6))
    assert tasks[0]["connection_id"] == syncs[0].connection_id
    assert tasks[4]["commands"] == ["dbt run"] and tasks[4]["cli_profile_block"] == f"{org.slug}-dbt-profile"
    assert AuditEvent.objects.filter(org=org, action="pipeline.created", object_id=deployment_id).exists()

    listed = client.get("/api/prefect/v1/flows/", **auth_headers(orguser)).json()
    assert [(p["name"], p["cron"], p["isScheduleActive"], p["lock"]) for p in listed] == [
        ("nightly", "0 2 * * *", True, None)
    ]

    detail = client.get(f"/api/prefect/v1/flows/{deployment_id}", **auth_headers(orguser)).json()
    assert [c["id"] for c in detail["connections"]] == [syncs[0].connection_id, syncs[1].connection_id]
    assert [x["slug"] for x in detail["transformTasks"]] == ["git-pull", "dbt-deps", "dbt-run", "dbt-test"]


def test_unknown_connections_and_tasks_are_named_in_a_400(live_services, pipeline_org):
    org, orguser, syncs, t = pipeline_org
    _, _, foreign_syncs, foreign_tasks = make_pipeline_org("Other Org")
    bogus = str(uuid.uuid4())
    response = create(
        Client(),
        orguser,
        connections=[{"id": syncs[0].connection_id, "seq": 0}, {"id": foreign_syncs[0].connection_id, "seq": 1}],
        transformTasks=[{"uuid": bogus, "seq": 0}, {"uuid": str(foreign_tasks["dbt-run"].uuid), "seq": 1}],
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert foreign_syncs[0].connection_id in detail and bogus in detail and str(foreign_tasks["dbt-run"].uuid) in detail
    assert not OrgDataFlowv1.objects.filter(org=org).exists()


@pytest.mark.parametrize(
    "body, message",
    [
        ({"cron": "every day"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"name": ""}, "name"),
        ({}, "at least one"),
    ],
)
def test_invalid_pipeline_is_rejected_with_a_message(live_services, pipeline_org, body, message):
    org, orguser, syncs, t = pipeline_org
    base = {"transformTasks": [{"uuid": str(t["dbt-run"].uuid), "seq": 0}]} if body else {}
    response = create(Client(), orguser, **{**base, **body})
    assert response.status_code == 400
    assert message in response.json()["detail"]


def test_proxy_down_stores_nothing(live_services, pipeline_org, settings):
    org, orguser, syncs, t = pipeline_org
    settings.PROXY_URL = "http://127.0.0.1:9"  # nothing listens there
    response = create(Client(), orguser, transformTasks=[{"uuid": str(t["dbt-run"].uuid), "seq": 0}])
    assert response.status_code == 503
    assert "unreachable" in response.json()["detail"]
    assert not OrgDataFlowv1.objects.filter(org=org).exists() and not DataflowOrgTask.objects.exists()


def test_trigger_locks_tasks_second_trigger_gets_409_and_cancel_releases(live_services, pipeline_org):
    org, orguser, syncs, t = pipeline_org
    client = Client()
    deployment_id = create(client, orguser, transformTasks=[{"uuid": str(t["dbt-run"].uuid), "seq": 0}]).json()[
        "deploymentId"
    ]
    first = client.post(f"/api/prefect/v1/flows/{deployment_id}/flow_run/", **auth_headers(orguser))
    assert first.status_code == 200, first.content
    run_id = first.json()["flow_run_id"]
    lock = TaskLock.objects.get(orgtask=t["dbt-run"])
    assert lock.flow_run_id == run_id and lock.locked_by == orguser

    second = client.post(f"/api/prefect/v1/flows/{deployment_id}/flow_run/", **auth_headers(orguser))
    assert second.status_code == 409
    assert run_id in second.json()["detail"] and "dbt-run" in second.json()["detail"]

    # a pipeline that shares the task is refused too, and PUT / DELETE of the running one are refused
    other = create(client, orguser, name="other", transformTasks=[{"uuid": str(t["dbt-run"].uuid), "seq": 0}]).json()
    assert (
        client.post(f"/api/prefect/v1/flows/{other['deploymentId']}/flow_run/", **auth_headers(orguser)).status_code
        == 409
    )
    listed = {p["name"]: p["lock"] for p in client.get("/api/prefect/v1/flows/", **auth_headers(orguser)).json()}
    assert listed["nightly"]["status"] == "queued" and listed["other"]["status"] == "locked"
    assert client.delete(f"/api/prefect/v1/flows/{deployment_id}", **auth_headers(orguser)).status_code == 409

    run = client.get(f"/api/prefect/flow_runs/{run_id}", **auth_headers(orguser)).json()
    assert run["deploymentId"] == deployment_id and run["stateType"] in {"SCHEDULED", "PENDING"}

    cancelled = client.post(f"/api/prefect/flow_runs/{run_id}/cancel", **auth_headers(orguser))
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["stateType"] == "CANCELLED"
    assert not TaskLock.objects.exists()
    assert PrefectFlowRun.objects.get(flow_run_id=run_id).state_type == "CANCELLED"
    actions = set(AuditEvent.objects.filter(org=org).values_list("action", flat=True))
    assert {"pipeline.run_triggered", "run.cancelled", "locks.released"} <= actions

    history = client.get(
        f"/api/prefect/v1/flows/{deployment_id}/flow_runs/history?limit=5", **auth_headers(orguser)
    ).json()
    assert [h["flowRunId"] for h in history] == [run_id]


def test_trigger_with_proxy_down_releases_the_locks(live_services, pipeline_org, settings):
    org, orguser, syncs, t = pipeline_org
    client = Client()
    deployment_id = create(client, orguser, transformTasks=[{"uuid": str(t["dbt-run"].uuid), "seq": 0}]).json()[
        "deploymentId"
    ]
    settings.PROXY_URL = "http://127.0.0.1:9"
    response = client.post(f"/api/prefect/v1/flows/{deployment_id}/flow_run/", **auth_headers(orguser))
    assert response.status_code == 503
    assert not TaskLock.objects.exists()


def test_update_rebuilds_parameters_and_schedule_and_delete_removes_deployment(live_services, pipeline_org):
    org, orguser, syncs, t = pipeline_org
    client = Client()
    deployment_id = create(
        client, orguser, transformTasks=[{"uuid": str(t["dbt-run"].uuid), "seq": 0}], cron="0 1 * * *"
    ).json()["deploymentId"]
    body = {
        "name": "renamed",
        "connections": [{"id": syncs[0].connection_id, "seq": 0}],
        "transformTasks": [{"uuid": str(t["dbt-test"].uuid), "seq": 0}],
        "cron": "30 3 * * 1",
    }
    updated = client.put(
        f"/api/prefect/v1/flows/{deployment_id}", body, content_type="application/json", **auth_headers(orguser)
    )
    assert updated.status_code == 200, updated.content
    assert updated.json()["name"] == "renamed"
    deployment = prefect_deployment(deployment_id).json()
    assert [task["slug"] for task in deployment["parameters"]["config"]["tasks"]] == ["airbyte-sync", "dbt-test"]
    assert get_proxy().deployment(deployment_id).get().cron == "30 3 * * 1"

    paused = client.post(f"/api/prefect/v1/flows/{deployment_id}/set_schedule/inactive", **auth_headers(orguser))
    assert paused.status_code == 200
    assert get_proxy().deployment(deployment_id).get().is_schedule_active is False
    assert (
        client.post(
            f"/api/prefect/v1/flows/{deployment_id}/set_schedule/sometimes", **auth_headers(orguser)
        ).status_code
        == 422
    )

    deleted = client.delete(f"/api/prefect/v1/flows/{deployment_id}", **auth_headers(orguser))
    assert deleted.status_code == 200
    assert prefect_deployment(deployment_id).status_code == 404
    assert not OrgDataFlowv1.objects.filter(deployment_id=deployment_id).exists()
    trail = AuditEvent.objects.filter(org=org, object_id=deployment_id).order_by("id")
    assert [(row.action, row.actor) for row in trail] == [
        ("pipeline.created", orguser.user.email),
        ("pipeline.updated", orguser.user.email),
        ("pipeline.schedule_paused", orguser.user.email),
        ("pipeline.deleted", orguser.user.email),
    ]
    assert trail[1].details == {
        "name": "renamed",
        "cron": "30 3 * * 1",
        "tasks": ["airbyte-sync", "dbt-test"],
        "target": "default",
    }
    assert trail[3].details == {"name": "renamed"}


def test_other_orgs_pipelines_and_runs_are_404(live_services, pipeline_org):
    org, orguser, syncs, t = pipeline_org
    client = Client()
    deployment_id = create(client, orguser, transformTasks=[{"uuid": str(t["dbt-run"].uuid), "seq": 0}]).json()[
        "deploymentId"
    ]
    run_id = client.post(f"/api/prefect/v1/flows/{deployment_id}/flow_run/", **auth_headers(orguser)).json()[
        "flow_run_id"
    ]
    _, intruder, _, _ = make_pipeline_org("Intruder Org")
    h = auth_headers(intruder)
    for method, path in [
        ("get", f"/api/prefect/v1/flows/{deployment_id}"),
        ("put", f"/api/prefect/v1/flows/{deployment_id}"),
        ("delete", f"/api/prefect/v1/flows/{deployment_id}"),
        ("post", f"/api/prefect/v1/flows/{deployment_id}/set_schedule/inactive"),
        ("post", f"/api/prefect/v1/flows/{deployment_id}/flow_run/"),
        ("get", f"/api/prefect/v1/flows/{deployment_id}/flow_runs/history"),
        ("get", f"/api/prefect/flow_runs/{run_id}"),
        ("get", f"/api/prefect/flow_runs/{run_id}/logs"),
        ("post", f"/api/prefect/flow_runs/{run_id}/cancel"),
    ]:
        body = (
            {"name": "x", "transformTasks": [{"uuid": str(t["dbt-run"].uuid), "seq": 0}]} if method == "put" else None
        )
        kwargs = {"content_type": "application/json", "data": body} if body else {}
        response = getattr(client, method)(path, **kwargs, **h)
        assert response.status_code == 404, (method, path, response.content)
    assert OrgDataFlowv1.objects.filter(deployment_id=deployment_id, name="nightly").exists()
    assert TaskLock.objects.get().flow_run_id == run_id
    assert get_proxy().flow_run(run_id).state().state_type in {"SCHEDULED", "PENDING"}


def test_analyst_can_read_but_not_write(live_services, pipeline_org):
    org, orguser, syncs, t = pipeline_org
    analyst = make_orguser(org, "analyst")
    client = Client()
    assert client.get("/api/prefect/v1/flows/", **auth_headers(analyst)).status_code == 200
    response = create(client, analyst, transformTasks=[{"uuid": str(t["dbt-run"].uuid), "seq": 0}])
    assert response.status_code == 403
    assert client.get("/api/v1/audit", **auth_headers(analyst)).status_code == 403


def test_pipeline_list_costs_the_same_queries_and_proxy_calls_for_1_and_100(live_services, pipeline_org):
    org, orguser, syncs, t = pipeline_org
    client = Client()
    proxy = get_proxy()
    headers = auth_headers(orguser)

    def measure():
        before = proxy.calls
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/api/prefect/v1/flows/", **headers)
        assert response.status_code == 200
        return len(response.json()), len(queries), proxy.calls - before

    def runs(deployment_id: str) -> str:
        """Run records: a success, then a newer run whose dbt tests failed (not a success). Returns the first."""
        now = timezone.now()
        succeeded = PrefectFlowRun.objects.create(
            flow_run_id=str(uuid.uuid4()), deployment_id=deployment_id, org=org, state_type="COMPLETED",
            state_name="Completed", start_time=now - timedelta(hours=2), end_time=now - timedelta(hours=1),
        )  # fmt: skip
        PrefectFlowRun.objects.create(
            flow_run_id=str(uuid.uuid4()), deployment_id=deployment_id, org=org, state_type="COMPLETED",
            state_name="DBT_TEST_FAILED", start_time=now - timedelta(minutes=30), end_time=now,
        )  # fmt: skip
        return succeeded.flow_run_id

    first = make_dataflow(org, orgtasks=[t["dbt-run"]], deployment_id=str(uuid.uuid4()))
    last_success = runs(first.deployment_id)
    one = measure()
    for _ in range(99):
        dataflow = make_dataflow(org, orgtasks=[t["dbt-run"], t["dbt-test"]], deployment_id=str(uuid.uuid4()))
        runs(dataflow.deployment_id)
    hundred = measure()
    assert one[0] == 1 and hundred[0] == 100
    assert one[1:] == hundred[1:]
    assert hundred[2] == 2 and hundred[1] <= 10
    # these dataflows' deployment ids were never in Prefect
    listed = client.get("/api/prefect/v1/flows/", **headers).json()
    assert {(p["missingInPrefect"], p["isScheduleActive"]) for p in listed} == {(True, False)}
    # each pipeline's last successful run, from our records, in the same query as the pipelines
    shown = next(p for p in listed if p["deploymentId"] == first.deployment_id)["lastSuccessfulRun"]
    assert shown["flowRunId"] == last_success and shown["endTime"] is not None
    assert all(p["lastSuccessfulRun"] for p in listed)


def test_pipeline_list_shows_paused_and_missing_deployments(live_services, pipeline_org):
    org, orguser, syncs, t = pipeline_org
    client = Client()
    headers = auth_headers(orguser)
    ids = {}
    for name in ("active", "paused", "gone"):
        response = create(client, orguser, name=name, transformTasks=[{"uuid": str(t["dbt-run"].uuid), "seq": 0}])
        assert response.status_code == 200, response.content
        ids[name] = response.json()["deploymentId"]
    assert client.post(f"/api/prefect/v1/flows/{ids['paused']}/set_schedule/inactive", **headers).status_code == 200

    # deleted in Prefect behind Django's back (an operator in the Prefect UI)
    prefect_request("DELETE", f"deployments/{ids['gone']}", expect=(204,))
    listed = client.get("/api/prefect/v1/flows/", **headers).json()
    assert [(p["name"], p["isScheduleActive"], p["missingInPrefect"]) for p in listed] == [
        ("active", True, False),
        ("gone", False, True),
        ("paused", False, False),
    ]


def test_audit_log_is_paginated_for_account_managers(live_services, pipeline_org):
    org, orguser, syncs, t = pipeline_org
    manager = make_orguser(org, "account-manager")
    client = Client()
    for name in ["a", "b", "c"]:
        assert (
            create(client, orguser, name=name, transformTasks=[{"uuid": str(t["dbt-run"].uuid), "seq": 0}]).status_code
            == 200
        )
    page = client.get("/api/v1/audit?limit=2&offset=0", **auth_headers(manager)).json()
    assert page["count"] == 3 and len(page["events"]) == 2
    assert page["events"][0]["details"]["name"] == "c" and page["events"][0]["actor"] == orguser.user.email
    rest = client.get("/api/v1/audit?limit=2&offset=2", **auth_headers(manager)).json()
    assert [e["details"]["name"] for e in rest["events"]] == ["a"]


def test_pipeline_still_on_the_legacy_flow_cannot_be_edited(live_services, pipeline_org):
    """Between migration phase 1 and the entrypoint switch an edit would drop the legacy parameters."""
    org, orguser, syncs, t = pipeline_org
    client = Client()
    deployment_id = create(client, orguser, transformTasks=[{"uuid": str(t["dbt-run"].uuid), "seq": 0}]).json()[
        "deploymentId"
    ]
    get_proxy().deployment(deployment_id).set_entrypoint("prefect_flows.py:legacy_pipeline_flow")
    body = {"name": "edited", "transformTasks": [{"uuid": str(t["dbt-test"].uuid), "seq": 0}]}
    response = client.put(
        f"/api/prefect/v1/flows/{deployment_id}", body, content_type="application/json", **auth_headers(orguser)
    )
    assert response.status_code == 409
    assert "--switch-entrypoint" in response.json()["detail"]
    assert OrgDataFlowv1.objects.get(deployment_id=deployment_id).name == "nightly"
