"""Sources and connections: the Airbyte objects, the sync task, the manual deployment, locks and pipelines."""

from __future__ import annotations

import pytest

from ddpui.models import DataflowOrgTask, OrgDataFlowv1, OrgTask
from ddpui.prefect_client import get_proxy
from ddpui.services import locks
from ddpui.services.task_config import deployment_parameters
from tests.ddpui.api.helpers import add_connection, add_source, add_warehouse, audited
from tests.factories import make_dataflow

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]


@pytest.fixture
def org_with_warehouse(api, new_org, tmp_path):
    org = new_org()
    add_warehouse(api, org, tmp_path)
    return org


def lock_task(orgtask, flow_run_id="f0000000-0000-0000-0000-000000000001"):
    return locks.locks_acquire(orgtasks=[orgtask], flow_run_id=flow_run_id)


# ------------------------------------------------------------------------------------------ sources


def test_source_create_list_get_delete(api, org_with_warehouse, emulator):
    org = org_with_warehouse
    source_id = add_source(api, org, rows=3)
    listed = api.get("/api/airbyte/sources/", headers=org.headers).json()
    assert [(s["sourceId"], s["name"], s["sourceName"]) for s in listed] == [(source_id, "sample", "Sample Data")]
    got = api.get(f"/api/airbyte/sources/{source_id}", headers=org.headers).json()
    assert got["connectionConfiguration"] == {"count": 3}
    assert api.delete(f"/api/airbyte/sources/{source_id}", headers=org.headers).status_code == 200
    assert source_id not in emulator.state()["sources"]
    assert audited(org, "source.created", source_id)["name"] == "sample"
    assert audited(org, "source.deleted", source_id) == {"name": "sample"}
    gone = api.get(f"/api/airbyte/sources/{source_id}", headers=org.headers)
    assert gone.status_code == 404 and gone.json() == {"detail": f"source {source_id} not found"}


def test_source_errors(api, org_with_warehouse):
    org = org_with_warehouse
    bad_config = api.post(
        "/api/airbyte/sources/",
        {"name": "s", "sourceDefId": "5a3b1e00-d0d0-4e3a-9000-000000000001", "config": {"count": "many"}},
        headers=org.headers,
    )
    assert bad_config.status_code == 400 and "count" in bad_config.json()["detail"]
    unknown_definition = api.post("/api/airbyte/sources/", {"name": "s", "sourceDefId": "nope"}, headers=org.headers)
    assert unknown_definition.status_code == 404
    assert api.delete("/api/airbyte/sources/nope", headers=org.headers).status_code == 404
    assert api.post("/api/airbyte/sources/", {"name": "s"}, headers=org.headers).status_code == 422


def test_source_used_by_a_connection_cannot_be_deleted(api, org_with_warehouse):
    org = org_with_warehouse
    source_id = add_source(api, org)
    add_connection(api, org, source_id, name="orders sync")
    response = api.delete(f"/api/airbyte/sources/{source_id}", headers=org.headers)
    assert response.status_code == 409
    assert response.json()["detail"] == "the source is used by the connection(s) orders sync: delete them first"


@pytest.mark.parametrize("role", ["analyst"])
def test_analysts_read_but_do_not_write_sources_and_connections(api, new_org, tmp_path, role):
    org = new_org(role=role)
    assert api.get("/api/airbyte/sources/", headers=org.headers).status_code == 200
    assert api.get("/api/airbyte/v1/connections", headers=org.headers).status_code == 200
    for method, path in [
        ("post", "/api/airbyte/sources/"),
        ("delete", "/api/airbyte/sources/x"),
        ("post", "/api/airbyte/v1/connections/"),
        ("put", "/api/airbyte/v1/connections/x/update"),
        ("post", "/api/airbyte/v1/connections/x/reset"),
        ("delete", "/api/airbyte/v1/connections/x"),
    ]:
        response = (
            getattr(api, method)(path, headers=org.headers)
            if method == "delete"
            else getattr(api, method)(path, {}, headers=org.headers)
        )
        assert response.status_code == 403, (method, path, response.content)


# ------------------------------------------------------------------------------------------ connections


def test_connection_create_makes_sync_task_and_manual_deployment(api, org_with_warehouse, prefect, emulator):
    org = org_with_warehouse
    source_id = add_source(api, org)
    response = api.post(
        "/api/airbyte/v1/connections/",
        {"name": "orders only", "sourceId": source_id, "streams": [{"name": "orders"}], "destinationSchema": "raw_x"},
        headers=org.headers,
    )
    assert response.status_code == 200, response.content
    body = response.json()
    stored = emulator.state()["connections"][body["connectionId"]]
    assert [(s["stream"]["name"], s["config"]["selected"]) for s in stored["syncCatalog"]["streams"]] == [
        ("customers", False),
        ("orders", True),
    ]
    assert (stored["namespaceDefinition"], stored["namespaceFormat"]) == ("customformat", "raw_x")
    assert body["destinationSchema"] == "raw_x"
    assert [s["name"] for s in body["streams"] if s["selected"]] == ["orders"]
    orgtask = OrgTask.objects.get(uuid=body["orgtaskUuid"])
    assert (orgtask.task.slug, orgtask.connection_id) == ("airbyte-sync", body["connectionId"])
    dataflow = OrgDataFlowv1.objects.get(deployment_id=body["deploymentId"])
    assert (dataflow.dataflow_type, dataflow.name) == ("manual", "orders only")
    deployment = prefect.deployment(body["deploymentId"])
    assert deployment["parameters"] == deployment_parameters(org=org.org, orgtasks=[orgtask])
    assert api.get(f"/api/airbyte/v1/connections/{body['connectionId']}", headers=org.headers).json() == {
        **body,
        "lock": None,
    }


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"name": "c", "streams": [{"name": "invoices"}]}, 400, "unknown stream(s) invoices"),
        ({"name": "c", "streams": [{"name": "orders", "selected": False}]}, 400, "select at least one stream"),
        ({"name": "c", "destinationSchema": "bad-schema"}, 400, "destinationSchema"),
        ({"name": "c", "streams": [{"name": "orders", "syncMode": "sometimes"}]}, 400, "syncMode"),
        ({"sourceId": "x"}, 422, "name"),
    ],
)
def test_invalid_connection_requests(api, org_with_warehouse, body, status, detail):
    org = org_with_warehouse
    body = {"sourceId": add_source(api, org), **body}
    response = api.post("/api/airbyte/v1/connections/", body, headers=org.headers)
    assert response.status_code == status, response.content
    assert detail in response.json()["detail"]
    assert not OrgTask.objects.filter(org__slug=org.slug).exists()


def test_connection_needs_a_warehouse_and_a_known_source(api, new_org, tmp_path):
    org = new_org()
    no_warehouse = api.post("/api/airbyte/v1/connections/", {"name": "c", "sourceId": "x"}, headers=org.headers)
    assert no_warehouse.status_code == 400 and "no warehouse" in no_warehouse.json()["detail"]
    add_warehouse(api, org, tmp_path)
    unknown = api.post("/api/airbyte/v1/connections/", {"name": "c", "sourceId": "nope"}, headers=org.headers)
    assert unknown.status_code == 404 and unknown.json()["detail"] == "source nope not found"


def test_connection_update_renames_and_changes_streams(api, org_with_warehouse, emulator):
    org = org_with_warehouse
    connection = add_connection(api, org, add_source(api, org))
    connection_id = connection["connectionId"]
    response = api.put(
        f"/api/airbyte/v1/connections/{connection_id}/update",
        {"name": "customers nightly", "streams": [{"name": "customers"}]},
        headers=org.headers,
    )
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "customers nightly"
    assert [s["name"] for s in response.json()["streams"] if s["selected"]] == ["customers"]
    assert emulator.state()["connections"][connection_id]["name"] == "customers nightly"
    assert OrgDataFlowv1.objects.get(deployment_id=connection["deploymentId"]).name == "customers nightly"
    assert audited(org, "connection.created", connection_id)["name"] == "sample sync"
    assert audited(org, "connection.updated", connection_id) == {"name": "customers nightly", "streams": ["customers"]}


def test_locked_connection_refuses_update_reset_and_delete(api, org_with_warehouse, emulator):
    org = org_with_warehouse
    connection = add_connection(api, org, add_source(api, org))
    connection_id = connection["connectionId"]
    lock_task(OrgTask.objects.get(uuid=connection["orgtaskUuid"]))
    for method, path, body in [
        ("put", f"/api/airbyte/v1/connections/{connection_id}/update", {"name": "n"}),
        ("post", f"/api/airbyte/v1/connections/{connection_id}/reset", {}),
        ("delete", f"/api/airbyte/v1/connections/{connection_id}", None),
    ]:
        response = (
            api.delete(path, headers=org.headers)
            if method == "delete"
            else getattr(api, method)(path, body, headers=org.headers)
        )
        assert response.status_code == 409, (method, path)
        assert "is locked by run f0000000-0000-0000-0000-000000000001" in response.json()["detail"]
    assert connection_id in emulator.state()["connections"]
    listed = api.get("/api/airbyte/v1/connections", headers=org.headers).json()
    assert listed[0]["lock"]["flowRunId"] == "f0000000-0000-0000-0000-000000000001"


def test_connection_reset_starts_an_airbyte_reset(api, org_with_warehouse, emulator):
    org = org_with_warehouse
    connection_id = add_connection(api, org, add_source(api, org))["connectionId"]
    emulator.configure(sync_seconds=3)
    response = api.post(f"/api/airbyte/v1/connections/{connection_id}/reset", headers=org.headers)
    assert response.status_code == 200, response.content
    job = emulator.state()["jobs"][str(response.json()["jobId"])]
    assert (job["configType"], job["configId"]) == ("reset_connection", connection_id)
    assert audited(org, "connection.reset", connection_id) == {"jobId": response.json()["jobId"]}
    busy = api.post(f"/api/airbyte/v1/connections/{connection_id}/reset", headers=org.headers)
    assert busy.status_code == 409 and "already running" in busy.json()["detail"]


def test_unknown_connection_is_404_everywhere(api, org_with_warehouse):
    org = org_with_warehouse
    for method, path in [
        ("get", "/api/airbyte/v1/connections/nope"),
        ("put", "/api/airbyte/v1/connections/nope/update"),
        ("post", "/api/airbyte/v1/connections/nope/reset"),
        ("delete", "/api/airbyte/v1/connections/nope"),
    ]:
        response = (
            getattr(api, method)(path, headers=org.headers)
            if method in ("get", "delete")
            else getattr(api, method)(path, {}, headers=org.headers)
        )
        assert response.status_code == 404, (method, path)
        assert response.json() == {"detail": "connection nope not found"}


def test_connection_delete_takes_it_out_of_every_pipeline(api, org_with_warehouse, prefect, emulator):
    org = org_with_warehouse
    source_id = add_source(api, org)
    kept = add_connection(api, org, source_id, name="kept")
    doomed = add_connection(api, org, source_id, name="doomed")
    kept_task = OrgTask.objects.get(uuid=kept["orgtaskUuid"])
    doomed_task = OrgTask.objects.get(uuid=doomed["orgtaskUuid"])
    pipelines = {}
    parallel = {"first": 1, "second": 4, "only": 2}
    for name, tasks in [
        ("first", [kept_task, doomed_task]),
        ("second", [doomed_task, kept_task]),
        ("only", [doomed_task]),
    ]:
        deployment = get_proxy().deployments.create(
            name=f"pipeline-{org.slug}-{name}",
            org_slug=org.slug,
            parameters=deployment_parameters(org=org.org, orgtasks=tasks, max_parallel_syncs=parallel[name]),
        )
        pipelines[name] = make_dataflow(
            org.org, name=name, orgtasks=tasks, deployment_id=deployment.id, max_parallel_syncs=parallel[name]
        )
    only = pipelines.pop("only")

    response = api.delete(f"/api/airbyte/v1/connections/{doomed['connectionId']}", headers=org.headers)
    assert response.status_code == 200, response.content

    assert doomed["connectionId"] not in emulator.state()["connections"]
    assert prefect.deployment(doomed["deploymentId"]) is None
    assert not OrgTask.objects.filter(id=doomed_task.id).exists()
    assert not OrgDataFlowv1.objects.filter(deployment_id=doomed["deploymentId"]).exists()
    for name, pipeline in pipelines.items():
        assert list(DataflowOrgTask.objects.filter(dataflow=pipeline).values_list("orgtask_id", "seq")) == [
            (kept_task.id, 0)
        ]
        config = prefect.deployment(pipeline.deployment_id)["parameters"]["config"]
        assert [(t["seq"], t["connection_id"]) for t in config["tasks"]] == [(0, kept["connectionId"])]
        assert config["max_parallel_syncs"] == parallel[name]  # the pipeline keeps its setting
    # a pipeline whose only task it was keeps an empty task list (and its setting)
    assert not DataflowOrgTask.objects.filter(dataflow=only).exists()
    assert prefect.deployment(only.deployment_id)["parameters"]["config"] == {
        "org_slug": org.slug,
        "tasks": [],
        "max_parallel_syncs": 2,
    }
    deleted_from = audited(org, "connection.deleted", doomed["connectionId"])["pipelines"]
    assert sorted(deleted_from) == ["first", "only", "second"]
    listed = api.get("/api/airbyte/v1/connections", headers=org.headers).json()
    assert [c["connectionId"] for c in listed] == [kept["connectionId"]]
