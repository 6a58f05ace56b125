"""Two orgs cannot see or change each other's objects: every object-scoped route answers 404, and lists
show only the caller's own objects."""

from __future__ import annotations

import pytest

from ddpui.models import OrgTask, OrgWarehouse
from tests.ddpui.api.helpers import add_connection, add_dbt_workspace, add_source, add_transform_tasks, add_warehouse

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]


@pytest.fixture
def two_orgs(api, new_org, tmp_path, repo_url):
    """Org A fully set up; org B with its own warehouse (so B's routes get past "no warehouse")."""
    a, b = new_org(), new_org()
    add_warehouse(api, a, tmp_path)
    add_warehouse(api, b, tmp_path)
    source_id = add_source(api, a)
    connection = add_connection(api, a, source_id)
    add_dbt_workspace(api, a, repo_url)
    tasks = add_transform_tasks(api, a)
    return a, b, {"source_id": source_id, "connection": connection, "tasks": tasks}


def test_org_b_gets_404_for_every_object_of_org_a(api, two_orgs, emulator):
    a, b, objects = two_orgs
    source_id = objects["source_id"]
    connection_id = objects["connection"]["connectionId"]
    sync_uuid = objects["connection"]["orgtaskUuid"]
    task_uuid = objects["tasks"]["dbt-run"]
    destination_id = OrgWarehouse.objects.get(org__slug=a.slug).airbyte_destination_id
    routes = [
        ("get", f"/api/airbyte/sources/{source_id}", None),
        ("delete", f"/api/airbyte/sources/{source_id}", None),
        ("get", f"/api/airbyte/v1/connections/{connection_id}", None),
        ("put", f"/api/airbyte/v1/connections/{connection_id}/update", {"name": "stolen"}),
        ("post", f"/api/airbyte/v1/connections/{connection_id}/reset", {}),
        ("delete", f"/api/airbyte/v1/connections/{connection_id}", None),
        ("put", f"/api/airbyte/v1/destinations/{destination_id}/", {"airbyteConfig": {"destination_path": "/tmp/x"}}),
        ("get", f"/api/prefect/tasks/{task_uuid}/", None),
        ("delete", f"/api/prefect/tasks/{task_uuid}/", None),
        ("post", f"/api/prefect/tasks/{task_uuid}/run/", {}),
        ("get", f"/api/prefect/tasks/{sync_uuid}/", None),
    ]
    for method, path, body in routes:
        if method in ("get", "delete"):
            response = getattr(api, method)(path, headers=b.headers)
        else:
            response = getattr(api, method)(path, body, headers=b.headers)
        assert response.status_code == 404, (method, path, response.content)
        assert "not found" in response.json()["detail"], (method, path)

    # nothing of A changed
    state = emulator.state()
    assert source_id in state["sources"] and connection_id in state["connections"]
    assert state["connections"][connection_id]["name"] == "sample sync"
    assert OrgTask.objects.filter(org__slug=a.slug).count() == 7
    assert not state["jobs"] or all(job["configId"] != connection_id for job in state["jobs"].values())


def test_lists_show_only_the_callers_objects(api, two_orgs):
    a, b, objects = two_orgs
    assert api.get("/api/airbyte/sources/", headers=b.headers).json() == []
    assert api.get("/api/airbyte/v1/connections", headers=b.headers).json() == []
    assert api.get("/api/prefect/tasks/transform/", headers=b.headers).json() == []
    assert api.get("/api/dbt/dbt_workspace", headers=b.headers).json() == {
        "error": "no dbt workspace has been configured"
    }
    b_warehouse = api.get("/api/v1/organizations/warehouses", headers=b.headers).json()["warehouses"]
    a_warehouse = api.get("/api/v1/organizations/warehouses", headers=a.headers).json()["warehouses"]
    assert [w["destinationId"] for w in b_warehouse] != [w["destinationId"] for w in a_warehouse]
    assert [c["connectionId"] for c in api.get("/api/airbyte/v1/connections", headers=a.headers).json()] == [
        objects["connection"]["connectionId"]
    ]


def test_a_connection_cannot_use_another_orgs_source(api, two_orgs):
    a, b, objects = two_orgs
    response = api.post(
        "/api/airbyte/v1/connections/", {"name": "theft", "sourceId": objects["source_id"]}, headers=b.headers
    )
    assert response.status_code == 404
    assert response.json() == {"detail": f"source {objects['source_id']} not found"}


def test_deleting_org_b_objects_leaves_org_a_untouched(api, two_orgs, emulator):
    a, b, objects = two_orgs
    assert api.delete("/api/v1/organizations/warehouses/", headers=b.headers).status_code == 200
    assert api.delete("/api/prefect/tasks/transform/", headers=b.headers).status_code == 200
    assert OrgTask.objects.filter(org__slug=a.slug).count() == 7
    assert OrgWarehouse.objects.filter(org__slug=a.slug).exists()
    assert objects["connection"]["connectionId"] in emulator.state()["connections"]
