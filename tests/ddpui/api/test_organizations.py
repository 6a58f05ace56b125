"""Organizations, their Airbyte workspace and their warehouse: happy paths, errors and roles."""

from __future__ import annotations

import json

import pytest

from ddpui.models import AuditEvent, Org, OrgPrefectBlockv1, OrgUser, OrgWarehouse
from tests.ddpui.api.helpers import (
    add_connection,
    add_dbt_workspace,
    add_source,
    add_transform_tasks,
    add_warehouse,
    audited,
    unique,
)
from tests.factories import make_org, make_orguser, make_user, token_for
from tests.support.orgsetup import warehouse_request

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]


def bearer(user) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token_for(user)}"}


# ------------------------------------------------------------------------------------------ organizations


def test_creating_an_org_makes_workspace_block_and_account_manager(api, live, prefect, emulator):
    user = make_user()
    name = unique("Clean Water")
    response = api.post("/api/v1/organizations/", {"name": name}, headers=bearer(user))
    assert response.status_code == 200, response.content
    body = response.json()
    org = Org.objects.get(slug=body["slug"])
    assert (body["name"], body["role"]) == (name, "account-manager")
    assert OrgUser.objects.get(org=org).user == user
    assert org.airbyte_workspace_id in emulator.state()["workspaces"]
    block = OrgPrefectBlockv1.objects.get(org=org)
    assert (block.block_type, block.block_name) == ("Airbyte Server", f"{org.slug}-airbyte-server")
    assert prefect.block_names(org.slug) == {f"{org.slug}-airbyte-server"}


def test_org_name_is_unique_case_insensitively(api, live):
    name = unique("Rural Health")
    api.post("/api/v1/organizations/", {"name": name}, headers=bearer(make_user()))
    response = api.post("/api/v1/organizations/", {"name": name.upper()}, headers=bearer(make_user()))
    assert response.status_code == 409
    assert response.json() == {"detail": f"an organization named '{name.upper()}' already exists: choose another name"}


def test_org_creation_needs_a_token_and_a_name(api, live):
    assert api.post("/api/v1/organizations/", {"name": "x"}).status_code == 401
    missing = api.post("/api/v1/organizations/", {}, headers=bearer(make_user()))
    assert missing.status_code == 422 and "name" in missing.json()["detail"]
    blank = api.post("/api/v1/organizations/", {"name": "  !! "}, headers=bearer(make_user()))
    assert blank.status_code == 400 and "letters or digits" in blank.json()["detail"]
    # PostgreSQL cannot store NUL in text: refused with a message before it reaches the database
    before = Org.objects.count()
    nul = api.post("/api/v1/organizations/", {"name": "Rural\u0000Health"}, headers=bearer(make_user()))
    assert nul.status_code == 422 and "NUL" in nul.json()["detail"]
    nested = api.post("/api/v1/organizations/", {"name": "ok", "x": {"y": ["\u0000"]}}, headers=bearer(make_user()))
    assert nested.status_code == 422 and "NUL" in nested.json()["detail"]
    assert Org.objects.count() == before


def test_workspace_attach_only_for_an_org_without_one(api, live, new_org, emulator):
    org = new_org()
    again = api.post("/api/airbyte/v1/workspace/", {"name": "second"}, headers=org.headers)
    assert again.status_code == 409 and "already has the Airbyte workspace" in again.json()["detail"]

    bare = make_org(unique("Bare"))  # made by the operator, without Airbyte
    manager = make_orguser(bare, "account-manager")
    headers = {**bearer(manager.user), "HTTP_X_DALGO_ORG": bare.slug}
    response = api.post("/api/airbyte/v1/workspace/", {"name": "bare ws"}, headers=headers)
    assert response.status_code == 200, response.content
    bare.refresh_from_db()
    assert bare.airbyte_workspace_id == response.json()["workspaceId"] in emulator.state()["workspaces"]
    assert OrgPrefectBlockv1.objects.filter(org=bare, block_type="Airbyte Server").count() == 1


@pytest.mark.parametrize("role", ["pipeline-manager", "analyst"])
def test_only_account_managers_attach_workspaces(api, live, role):
    orguser = make_orguser(make_org(unique("Roles")), role)
    response = api.post(
        "/api/airbyte/v1/workspace/",
        {"name": "w"},
        headers={**bearer(orguser.user), "HTTP_X_DALGO_ORG": orguser.org.slug},
    )
    assert response.status_code == 403 and role in response.json()["detail"]


# ------------------------------------------------------------------------------------------ warehouse


def test_warehouse_create_list_masked(api, live, new_org, prefect, pg_like_config, emulator):
    org = new_org()
    response = api.post(
        "/api/v1/organizations/warehouse/",
        {"wtype": "postgres", "name": "main", "airbyteConfig": pg_like_config},
        headers=org.headers,
    )
    assert response.status_code == 200, response.content
    destination_id = response.json()["destinationId"]
    assert emulator.state()["destinations"][destination_id]["destinationName"] == "Postgres"
    warehouse = OrgWarehouse.objects.get(org__slug=org.slug)
    assert (warehouse.wtype, warehouse.credentials_block_name) == ("postgres", f"{org.slug}-warehouse-credentials")
    listed = api.get("/api/v1/organizations/warehouses", headers=org.headers).json()["warehouses"]
    assert len(listed) == 1
    assert listed[0]["airbyteConfig"] == {**pg_like_config, "password": "**********"}
    assert listed[0]["destinationId"] == destination_id
    blocks = prefect.block_names(org.slug)
    assert f"{org.slug}-warehouse-credentials" in blocks
    assert f"{org.slug}-dbt-profile" not in blocks  # made later, by the transform tasks


def test_warehouse_list_is_empty_without_one(api, live, new_org):
    org = new_org(role="analyst")
    assert api.get("/api/v1/organizations/warehouses", headers=org.headers).json() == {"warehouses": []}


def test_a_second_warehouse_has_its_own_destination_and_block_and_the_first_stays_the_default(
    api, live, new_org, tmp_path, prefect
):
    org = new_org()
    first = add_warehouse(api, org, tmp_path)
    same_name = api.post(
        "/api/v1/organizations/warehouse/", warehouse_request(tmp_path / "b.duckdb"), headers=org.headers
    )
    assert same_name.status_code == 409
    assert same_name.json()["detail"] == (
        "your organization already has a warehouse named 'warehouse': give the new one another name, or update that one"
    )
    second = api.post(
        "/api/v1/organizations/warehouse/",
        warehouse_request(tmp_path / "dev.duckdb", name="Dev warehouse"),
        headers=org.headers,
    )
    assert second.status_code == 200, second.content
    assert second.json()["destinationId"] != first["destinationId"]
    assert second.json()["credentialsBlockName"] == f"{org.slug}-warehouse-dev-warehouse-credentials"
    assert json.loads(prefect.secret_value(second.json()["credentialsBlockName"]))["destination_path"].endswith(
        "dev.duckdb"
    )
    listed = api.get("/api/organizations/warehouses", headers=org.headers).json()["warehouses"]
    # the web app reads warehouses[0]: the first one made, the default
    assert [(w["name"], w["isDefault"], w["destinationId"]) for w in listed] == [
        ("warehouse", True, first["destinationId"]),
        ("Dev warehouse", False, second.json()["destinationId"]),
    ]
    assert listed[1]["airbyteConfig"]["destination_path"].endswith("dev.duckdb")
    me = api.get("/api/currentuserv2", headers=org.headers).json()
    assert [item["wtype"] for item in me] == ["duckdb"]
    # the other one is deleted by its destination; the web app's delete names none and means the default
    deleted = api.delete(f"/api/v1/organizations/warehouses/{second.json()['destinationId']}/", headers=org.headers)
    assert deleted.status_code == 200
    assert second.json()["credentialsBlockName"] not in prefect.block_names(org.slug)
    assert [
        w["name"] for w in api.get("/api/v1/organizations/warehouses", headers=org.headers).json()["warehouses"]
    ] == ["warehouse"]


def test_bigquery_is_refused_when_airbyte_has_no_such_destination(api, live, new_org):
    org = new_org()
    config = {"project_id": "p", "dataset_id": "d", "credentials_json": json.dumps({"type": "service_account"})}
    response = api.post(
        "/api/v1/organizations/warehouse/", {"wtype": "bigquery", "airbyteConfig": config}, headers=org.headers
    )
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "warehouse type 'bigquery' is not supported by this Airbyte server: it has no bigquery destination"
    )
    assert not OrgWarehouse.objects.filter(org__slug=org.slug).exists()


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"wtype": "oracle", "airbyteConfig": {}}, 422, "wtype"),
        ({"wtype": "duckdb"}, 422, "airbyteConfig"),
        ({"wtype": "duckdb", "airbyteConfig": {}}, 400, "needs destination_path"),
        (
            {"wtype": "postgres", "airbyteConfig": {"host": "h", "port": 5432}},
            400,
            "needs database, username, password",
        ),
        (
            {"wtype": "duckdb", "airbyteConfig": {"destination_path": "/tmp/x.duckdb", "schema": "bad schema"}},
            400,
            "schema",
        ),
        ({"wtype": "duckdb", "destinationDefId": "nope", "airbyteConfig": {"destination_path": "/x"}}, 400, "nope"),
    ],
)
def test_invalid_warehouse_requests(api, live, new_org, body, status, detail):
    org = new_org()
    response = api.post("/api/v1/organizations/warehouse/", body, headers=org.headers)
    assert response.status_code == status, response.content
    assert detail in response.json()["detail"]
    assert not OrgWarehouse.objects.filter(org__slug=org.slug).exists()


@pytest.mark.parametrize("role", ["pipeline-manager", "analyst"])
def test_only_account_managers_write_the_warehouse(api, live, new_org, tmp_path, role):
    org = new_org(role=role)
    response = api.post(
        "/api/v1/organizations/warehouse/", warehouse_request(tmp_path / "w.duckdb"), headers=org.headers
    )
    assert response.status_code == 403
    assert api.delete("/api/v1/organizations/warehouses/", headers=org.headers).status_code == 403
    assert api.put("/api/airbyte/v1/destinations/x/", {"airbyteConfig": {}}, headers=org.headers).status_code == 403


def test_destination_update_moves_airbyte_the_secret_and_the_profile(
    api, live, new_org, prefect, pg_like_config, emulator, repo_url
):
    org = new_org()
    destination_id = api.post(
        "/api/v1/organizations/warehouse/",
        {"wtype": "postgres", "name": "main", "airbyteConfig": pg_like_config},
        headers=org.headers,
    ).json()["destinationId"]
    add_dbt_workspace(api, org, repo_url)
    add_transform_tasks(api, org)  # makes the dbt profile from the credentials block
    profile = json.loads(prefect.secret_value(f"{org.slug}-dbt-profile"))
    assert profile["credentials"] == {
        "host": pg_like_config["host"],
        "port": pg_like_config["port"],
        "user": pg_like_config["username"],
        "password": pg_like_config["password"],
        "dbname": pg_like_config["database"],
    }
    new_config = {**pg_like_config, "host": "db.internal", "password": "rotated-password"}
    response = api.put(
        f"/api/airbyte/v1/destinations/{destination_id}/",
        {"name": "renamed", "airbyteConfig": new_config},
        headers=org.headers,
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"destinationId": destination_id, "name": "renamed", "wtype": "postgres"}
    stored = emulator.state()["destinations"][destination_id]
    assert (stored["name"], stored["connectionConfiguration"]["password"]) == ("renamed", "rotated-password")
    assert json.loads(prefect.secret_value(f"{org.slug}-warehouse-credentials")) == new_config
    profile = json.loads(prefect.secret_value(f"{org.slug}-dbt-profile"))
    assert (profile["credentials"]["host"], profile["credentials"]["password"]) == ("db.internal", "rotated-password")
    assert "rotated-password" not in response.content.decode()

    # sent back with the password masked (as the web app's edit form does): every copy keeps the stored one
    masked = api.put(
        f"/api/airbyte/v1/destinations/{destination_id}/",
        {"airbyteConfig": {**new_config, "host": "db2.internal", "password": "**********"}},
        headers=org.headers,
    )
    assert masked.status_code == 200, masked.content
    kept = {**new_config, "host": "db2.internal"}
    assert emulator.state()["destinations"][destination_id]["connectionConfiguration"] == kept
    assert json.loads(prefect.secret_value(f"{org.slug}-warehouse-credentials")) == kept
    profile = json.loads(prefect.secret_value(f"{org.slug}-dbt-profile"))
    assert (profile["credentials"]["host"], profile["credentials"]["password"]) == ("db2.internal", "rotated-password")
    rows = AuditEvent.objects.filter(org__slug=org.slug, action="warehouse.updated", object_id=destination_id)
    assert [(row.actor, row.details) for row in rows.order_by("id")] == [
        (org.user.email, {"name": "renamed"}),
        (org.user.email, {"name": "renamed"}),
    ]  # no secret in the trail


def test_destination_update_errors(api, live, new_org, pg_like_config):
    org = new_org()
    destination_id = api.post(
        "/api/v1/organizations/warehouse/", {"wtype": "postgres", "airbyteConfig": pg_like_config}, headers=org.headers
    ).json()["destinationId"]
    unknown = api.put("/api/airbyte/v1/destinations/123/", {"airbyteConfig": pg_like_config}, headers=org.headers)
    assert unknown.status_code == 404 and unknown.json()["detail"] == "destination 123 not found"
    lacking = {key: value for key, value in pg_like_config.items() if key != "database"}
    refused = api.put(
        f"/api/airbyte/v1/destinations/{destination_id}/", {"airbyteConfig": lacking}, headers=org.headers
    )
    assert refused.status_code == 400 and "database" in refused.json()["detail"]


def test_warehouse_delete_removes_destination_blocks_and_row(api, live, new_org, prefect, tmp_path, emulator):
    org = new_org()
    destination_id = add_warehouse(api, org, tmp_path)["destinationId"]
    response = api.delete("/api/v1/organizations/warehouses/", headers=org.headers)
    assert response.status_code == 200, response.content
    assert destination_id not in emulator.state()["destinations"]
    assert prefect.block_names(org.slug) == {f"{org.slug}-airbyte-server"}
    assert not OrgWarehouse.objects.filter(org__slug=org.slug).exists()
    assert list(OrgPrefectBlockv1.objects.filter(org__slug=org.slug).values_list("block_type", flat=True)) == [
        "Airbyte Server"
    ]
    again = api.delete("/api/v1/organizations/warehouses/", headers=org.headers)
    assert again.status_code == 404 and "no warehouse" in again.json()["detail"]
    assert audited(org, "warehouse.created", destination_id)["wtype"] == "duckdb"
    assert audited(org, "warehouse.deleted", destination_id)["wtype"] == "duckdb"


def test_warehouse_in_use_cannot_be_deleted(api, live, new_org, tmp_path, repo_url):
    org = new_org()
    add_warehouse(api, org, tmp_path)
    connection = add_connection(api, org, add_source(api, org))
    response = api.delete("/api/v1/organizations/warehouses/", headers=org.headers)
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "the warehouse 'warehouse' is used by 1 connection(s) (sample sync): delete them first"
    )
    assert (
        api.delete(f"/api/airbyte/v1/connections/{connection['connectionId']}", headers=org.headers).status_code == 200
    )
    add_dbt_workspace(api, org, repo_url)
    response = api.delete("/api/v1/organizations/warehouses/", headers=org.headers)
    assert response.status_code == 409
    assert response.json()["detail"].startswith("the warehouse 'warehouse' is used by the dbt target(s) default:")
    assert OrgWarehouse.objects.filter(org__slug=org.slug).exists()


ROUTES = [
    ("post", "/api/v1/organizations/"),
    ("post", "/api/v1/organizations/warehouse/"),
    ("get", "/api/v1/organizations/warehouses"),
    ("delete", "/api/v1/organizations/warehouses/"),
    ("post", "/api/airbyte/v1/workspace/"),
    ("put", "/api/airbyte/v1/destinations/d/"),
    ("post", "/api/airbyte/sources/"),
    ("get", "/api/airbyte/sources/"),
    ("get", "/api/airbyte/sources/s"),
    ("delete", "/api/airbyte/sources/s"),
    ("post", "/api/airbyte/v1/connections/"),
    ("get", "/api/airbyte/v1/connections"),
    ("get", "/api/airbyte/v1/connections/c"),
    ("put", "/api/airbyte/v1/connections/c/update"),
    ("post", "/api/airbyte/v1/connections/c/reset"),
    ("delete", "/api/airbyte/v1/connections/c"),
    ("post", "/api/dbt/workspace/"),
    ("put", "/api/dbt/v1/schema/"),
    ("get", "/api/dbt/dbt_workspace"),
    ("delete", "/api/dbt/workspace/"),
    ("post", "/api/prefect/tasks/transform/"),
    ("get", "/api/prefect/tasks/transform/"),
    ("delete", "/api/prefect/tasks/transform/"),
    ("post", "/api/prefect/tasks/"),
    ("delete", "/api/prefect/tasks/00000000-0000-0000-0000-000000000000/"),
    ("post", "/api/prefect/tasks/00000000-0000-0000-0000-000000000000/run/"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_token(api, method, path):
    response = getattr(api, method)(path) if method in ("get", "delete") else getattr(api, method)(path, {})
    assert response.status_code == 401, (method, path)
    assert "token" in response.json()["detail"]
