"""The warehouse tab as the web app drives it (W-04…W-11): definitions, their specification, the checks,
create, read, update and delete, each request exactly as the web app sends it (text/plain JSON, x-dalgo-org)
and each answer checked for every field the web app reads."""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connection
from prefect.blocks.system import Secret

from ddpui.models import AuditEvent, OrgWarehouse
from devtools.airbyte_emulator import (
    DUCKDB_DESTINATION_DEFINITION_ID,
    POSTGRES_DESTINATION_DEFINITION_ID,
    SNOWFLAKE_DESTINATION_DEFINITION_ID,
)

from .conftest import WebApp
from .ingest_support import create_warehouse, duckdb_config, postgres_config, signed_in_org

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]

MASK = "**********"


@pytest.fixture
def webapp(live_services):
    return signed_in_org()


@pytest.fixture
def emulator(live_services):
    return live_services["airbyte"]


def test_w05_destination_definitions_give_the_type_pickers_names_and_ids(webapp):
    response = webapp.get("airbyte/destination_definitions")
    assert response.status_code == 200, response.content
    definitions = {d["name"]: d["destinationDefinitionId"] for d in response.json()}
    assert definitions == {
        "Postgres": POSTGRES_DESTINATION_DEFINITION_ID,
        "DuckDB": DUCKDB_DESTINATION_DEFINITION_ID,
        "Snowflake": SNOWFLAKE_DESTINATION_DEFINITION_ID,
    }


def test_w06_specification_is_the_connectors_json_schema(webapp):
    response = webapp.get(f"airbyte/destination_definitions/{POSTGRES_DESTINATION_DEFINITION_ID}/specifications")
    assert response.status_code == 200, response.content
    spec = response.json()
    # what ConnectorConfigInput walks: properties with type/title/order, required, airbyte_secret, oneOf groups
    assert spec["type"] == "object" and set(spec["required"]) == {"host", "port", "username", "database", "schema"}
    assert spec["properties"]["password"]["airbyte_secret"] is True
    assert spec["properties"]["port"]["type"] == "integer" and spec["properties"]["port"]["order"] == 1
    modes = [option["properties"]["mode"]["const"] for option in spec["properties"]["ssl_mode"]["oneOf"]]
    assert modes == ["disable", "allow", "prefer", "require"]
    unknown = webapp.get("airbyte/destination_definitions/no-such-definition/specifications")
    assert (
        unknown.status_code == 404 and "destination definition no-such-definition not found" in unknown.json()["detail"]
    )


def test_w07_check_connection_succeeds_and_refuses_a_config_that_breaks_the_spec(webapp, tmp_path):
    body = {
        "name": "wh",
        "destinationDefId": DUCKDB_DESTINATION_DEFINITION_ID,
        "config": duckdb_config(tmp_path / "w.duckdb"),
    }
    response = webapp.post("airbyte/destinations/check_connection/", body)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "succeeded" and isinstance(response.json()["logs"], list)
    bad = webapp.post(
        "airbyte/destinations/check_connection/",
        {"name": "wh", "destinationDefId": POSTGRES_DESTINATION_DEFINITION_ID, "config": {"host": "h", "port": "x"}},
    )
    assert bad.status_code == 400
    assert bad.json()["detail"] == (
        "the configuration does not fit the Postgres specification: database is required; "
        "port must be an integer (got a string); schema is required; username is required"
    )
    unknown = webapp.post("airbyte/destinations/check_connection/", {**body, "destinationDefId": "nope"})
    assert unknown.status_code == 404


def test_w07_a_wrong_password_or_host_fails_the_check_with_airbytes_message(webapp, pg_dsn):
    body = {"name": "wh", "destinationDefId": POSTGRES_DESTINATION_DEFINITION_ID}
    good = webapp.post("airbyte/destinations/check_connection/", {**body, "config": postgres_config(pg_dsn)})
    assert good.status_code == 200 and good.json()["status"] == "succeeded", good.content
    wrong_password = webapp.post(
        "airbyte/destinations/check_connection/", {**body, "config": postgres_config(pg_dsn, password="wrong")}
    )
    assert wrong_password.status_code == 400
    assert wrong_password.json()["detail"].startswith("the connection check failed: State code: 28P01;")
    assert "password authentication failed" in wrong_password.json()["detail"]
    wrong_host = webapp.post(
        "airbyte/destinations/check_connection/", {**body, "config": postgres_config(pg_dsn, port=1)}
    )
    assert wrong_host.status_code == 400 and "State code: 08001" in wrong_host.json()["detail"]
    assert not OrgWarehouse.objects.filter(org__slug=webapp.org_slug).exists()


def test_w08_create_with_the_web_apps_body_then_w04_read_it_at_the_web_apps_path(webapp, tmp_path, emulator):
    config = duckdb_config(tmp_path / "w.duckdb")
    response = webapp.post(
        "organizations/warehouse/",
        {
            "wtype": "duckdb",
            "name": "Main warehouse",
            "destinationDefId": DUCKDB_DESTINATION_DEFINITION_ID,
            "airbyteConfig": config,
        },
    )
    assert response.status_code == 200, response.content
    warehouses = webapp.get("organizations/warehouses")
    assert warehouses.status_code == 200, warehouses.content
    (item,) = warehouses.json()["warehouses"]
    destination = item["airbyte_destination"]
    org = OrgWarehouse.objects.get(org__slug=webapp.org_slug).org
    assert (item["wtype"], item["name"]) == ("duckdb", "Main warehouse")
    assert destination["workspaceId"] == org.airbyte_workspace_id
    assert destination["destinationId"] == response.json()["destinationId"] in emulator.state()["destinations"]
    assert destination["destinationDefinitionId"] == DUCKDB_DESTINATION_DEFINITION_ID
    assert destination["icon"].startswith("<svg")
    assert destination["connectionConfiguration"]["destination_path"] == str(tmp_path / "w.duckdb")
    assert AuditEvent.objects.filter(org=org, action="warehouse.created").count() == 1


def test_w04_a_postgres_warehouse_shows_its_connection_fields_with_the_password_masked(webapp, pg_dsn):
    config = postgres_config(pg_dsn)  # the check connects for real: the server's own login
    item = create_warehouse(webapp, config, definition_id=POSTGRES_DESTINATION_DEFINITION_ID, label="Postgres")
    shown = item["airbyte_destination"]["connectionConfiguration"]
    assert (shown["host"], shown["port"], shown["database"], shown["username"]) == (
        config["host"],
        config["port"],
        config["database"],
        config["username"],
    )
    assert shown["password"] == "**********" and item["airbyteConfig"] == shown


def test_w09_check_for_update_keeps_the_stored_password_behind_the_mask(webapp, pg_dsn):
    item = create_warehouse(
        webapp, postgres_config(pg_dsn), definition_id=POSTGRES_DESTINATION_DEFINITION_ID, label="Postgres"
    )
    destination_id = item["airbyte_destination"]["destinationId"]
    masked = item["airbyte_destination"]["connectionConfiguration"]  # what EditDestinationForm prefills
    path = f"airbyte/destinations/{destination_id}/check_connection_for_update/"
    same = webapp.post(path, {"name": "warehouse", "config": masked})
    assert same.status_code == 200 and same.json()["status"] == "succeeded", same.content
    wrong = webapp.post(path, {"name": "warehouse", "config": {**masked, "password": "wrong"}})
    assert wrong.status_code == 400 and "28P01" in wrong.json()["detail"]
    assert (
        webapp.post("airbyte/destinations/not-ours/check_connection_for_update/", {"config": masked}).status_code == 404
    )


def test_w10_update_with_the_web_apps_field_names(webapp, tmp_path, emulator):
    item = create_warehouse(webapp, duckdb_config(tmp_path / "w.duckdb"))
    destination_id = item["airbyte_destination"]["destinationId"]
    new_config = duckdb_config(tmp_path / "moved.duckdb")
    response = webapp.put(
        f"airbyte/v1/destinations/{destination_id}/",
        {"name": "Renamed", "destinationDefId": DUCKDB_DESTINATION_DEFINITION_ID, "config": new_config},
    )
    assert response.status_code == 200, response.content
    stored = emulator.state()["destinations"][destination_id]
    assert stored["name"] == "Renamed" and stored["connectionConfiguration"]["destination_path"] == str(
        tmp_path / "moved.duckdb"
    )
    assert webapp.get("organizations/warehouses").json()["warehouses"][0]["name"] == "Renamed"


def test_w10_secrets_sent_back_masked_keep_their_stored_values(webapp, pg_dsn, emulator):
    """EditDestinationForm sends the whole configuration back with the password still masked: as in Airbyte,
    the masked value keeps the stored one, in Airbyte's destination and in the credentials Secret (merged by the
    proxy; the password never passes through Django)."""
    config = postgres_config(pg_dsn)
    item = create_warehouse(webapp, config, definition_id=POSTGRES_DESTINATION_DEFINITION_ID, label="Postgres")
    destination = item["airbyte_destination"]
    destination_id = destination["destinationId"]
    shown = destination["connectionConfiguration"]
    assert shown["password"] == MASK
    body = {
        "name": "Renamed",
        "destinationDefId": destination["destinationDefinitionId"],
        "config": {**shown, "schema": "raw_two"},
    }
    check = webapp.post(f"airbyte/destinations/{destination_id}/check_connection_for_update/", body)
    assert check.status_code == 200 and check.json()["status"] == "succeeded", check.content

    response = webapp.put(f"airbyte/v1/destinations/{destination_id}/", body)
    assert response.status_code == 200, response.content
    expected = {**config, "schema": "raw_two"}
    assert emulator.state()["destinations"][destination_id]["connectionConfiguration"] == expected
    block_name = OrgWarehouse.objects.get(airbyte_destination_id=destination_id).credentials_block_name
    assert Secret.load(block_name).get() == expected
    assert webapp.get("organizations/warehouses").json()["warehouses"][0]["name"] == "Renamed"

    # a password typed again replaces the stored one (the check connects with it, so it must be the real one)
    retyped = {**body, "config": {**shown, "password": config["password"], "schema": "raw_three"}}
    assert webapp.put(f"airbyte/v1/destinations/{destination_id}/", retyped).status_code == 200
    assert Secret.load(block_name).get() == {**config, "schema": "raw_three"}


def test_w10_a_masked_password_is_refused_on_create(webapp, pg_dsn):
    """A new warehouse has no stored password for a mask to stand for."""
    response = webapp.post(
        "organizations/warehouse/",
        {
            "wtype": "postgres",
            "name": "warehouse",
            "destinationDefId": POSTGRES_DESTINATION_DEFINITION_ID,
            "airbyteConfig": postgres_config(pg_dsn, password=MASK),
        },
    )
    assert response.status_code == 400
    assert "masked value" in response.json()["detail"] and "password" in response.json()["detail"]


def test_w11_delete_answers_json_and_empties_the_tab(webapp, tmp_path, emulator):
    destination_id = create_warehouse(webapp, duckdb_config(tmp_path / "w.duckdb"))["airbyte_destination"][
        "destinationId"
    ]
    response = webapp.delete("v1/organizations/warehouses/")
    assert response.status_code == 200 and response.json() == {"success": True}
    assert destination_id not in emulator.state()["destinations"]
    assert webapp.get("organizations/warehouses").json() == {"warehouses": []}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_w08_the_same_warehouse_created_twice_at_once_gives_one_success_and_one_409(live_services, tmp_path):
    """Two requests race: one warehouse, one clean 409 (never Prefect's 409 as a 502), one destination."""
    webapp = signed_in_org()
    other = WebApp(webapp.token, webapp.org_slug)
    body = {
        "wtype": "duckdb",
        "name": "w",
        "destinationDefId": DUCKDB_DESTINATION_DEFINITION_ID,
        "airbyteConfig": duckdb_config(tmp_path / "w.duckdb"),
    }
    start, answers = threading.Barrier(2), []

    def create(client: WebApp) -> None:
        close_old_connections()
        try:
            start.wait()
            answers.append(client.post("organizations/warehouse/", body))
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(client,)) for client in (webapp, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answer.status_code for answer in answers) == [200, 409], [a.content for a in answers]
    conflict = next(answer for answer in answers if answer.status_code == 409)
    assert conflict.json()["detail"] == (
        "your organization already has a warehouse named 'w': give the new one another name, or update that one"
    )
    org = OrgWarehouse.objects.get(org__slug=webapp.org_slug).org
    destinations = live_services["airbyte"].state()["destinations"].values()
    assert [d["name"] for d in destinations if d["workspaceId"] == org.airbyte_workspace_id] == ["w"]
