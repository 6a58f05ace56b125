"""The sources tab as the web app drives it (W-12…W-20), each request exactly as the web app sends it and
each answer checked for every field the web app reads."""

from __future__ import annotations

import pytest

from ddpui.models import AuditEvent
from devtools.airbyte_emulator import POSTGRES_SOURCE_DEFINITION_ID, SAMPLE_SOURCE_DEFINITION_ID

from .ingest_support import create_source, create_warehouse, duckdb_config, postgres_config, signed_in_org

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]


@pytest.fixture
def webapp(live_services):
    return signed_in_org()


@pytest.fixture
def emulator(live_services):
    return live_services["airbyte"]


def test_w12_sources_are_listed_at_the_path_without_a_slash_and_no_redirect(webapp):
    create_source(webapp, name="survey")
    response = webapp.get("airbyte/sources")
    assert response.status_code == 200, (response.status_code, response.get("Location"))
    (source,) = response.json()
    assert (source["name"], source["sourceName"]) == ("survey", "Sample Data") and source["sourceId"]
    assert webapp.get("airbyte/sources/").json() == response.json()  # ddpui's spelling stays


def test_w13_source_definitions_give_the_type_pickers_names_and_ids(webapp):
    response = webapp.get("airbyte/source_definitions")
    assert response.status_code == 200, response.content
    assert {d["name"]: d["sourceDefinitionId"] for d in response.json()} == {
        "Sample Data": SAMPLE_SOURCE_DEFINITION_ID,
        "Postgres": POSTGRES_SOURCE_DEFINITION_ID,
    }


def test_w14_source_specification_is_the_connectors_json_schema(webapp):
    response = webapp.get(f"airbyte/source_definitions/{POSTGRES_SOURCE_DEFINITION_ID}/specifications")
    assert response.status_code == 200, response.content
    spec = response.json()
    assert set(spec["required"]) == {"host", "port", "database", "username"}
    assert spec["properties"]["schemas"]["type"] == "array" and spec["properties"]["password"]["airbyte_secret"]
    methods = [option["properties"]["method"]["const"] for option in spec["properties"]["replication_method"]["oneOf"]]
    assert "Standard" in methods
    assert webapp.get("airbyte/source_definitions/nope/specifications").status_code == 404


def test_w15_check_connection_of_a_new_source(webapp):
    body = {"name": "s", "sourceDefId": SAMPLE_SOURCE_DEFINITION_ID, "config": {"count": 3, "seed": 1}}
    response = webapp.post("airbyte/sources/check_connection/", body)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "succeeded" and response.json()["logs"]
    # a number input left empty is NaN in the form, null in the JSON: the field is named
    bad = webapp.post("airbyte/sources/check_connection/", {**body, "config": {"count": None, "seed": 1}})
    assert bad.status_code == 400
    assert bad.json()["detail"] == (
        "the configuration does not fit the Sample Data specification: count must be an integer (got null)"
    )
    assert webapp.get("airbyte/sources").json() == []  # a check saves nothing


def test_w15_a_postgres_source_with_a_wrong_password_fails_with_airbytes_message(webapp, pg_dsn):
    config = postgres_config(pg_dsn, schemas=["public"], replication_method={"method": "Standard"})
    config.pop("schema")
    body = {"name": "pg", "sourceDefId": POSTGRES_SOURCE_DEFINITION_ID}
    good = webapp.post("airbyte/sources/check_connection/", {**body, "config": config})
    assert good.status_code == 200 and good.json()["status"] == "succeeded", good.content
    bad = webapp.post("airbyte/sources/check_connection/", {**body, "config": {**config, "password": "wrong"}})
    assert bad.status_code == 400
    assert "State code: 28P01" in bad.json()["detail"] and "password authentication failed" in bad.json()["detail"]


def test_w16_create_and_w17_read_a_source(webapp, emulator):
    body = {"name": "household survey", "sourceDefId": SAMPLE_SOURCE_DEFINITION_ID, "config": {"count": 4, "seed": 9}}
    created = webapp.post("airbyte/sources/", body)
    assert created.status_code == 200, created.content
    source_id = created.json()["sourceId"]
    assert emulator.state()["sources"][source_id]["connectionConfiguration"] == {"count": 4, "seed": 9}
    response = webapp.get(f"airbyte/sources/{source_id}")
    assert response.status_code == 200, response.content
    source = response.json()
    assert (source["name"], source["sourceDefinitionId"], source["sourceId"]) == (
        "household survey",
        SAMPLE_SOURCE_DEFINITION_ID,
        source_id,
    )
    assert source["connectionConfiguration"] == {"count": 4, "seed": 9}
    assert AuditEvent.objects.filter(action="source.created", object_id=source_id).exists()


def test_w16_a_config_that_breaks_the_spec_or_an_unknown_definition_creates_nothing(webapp, emulator):
    before = len(emulator.state()["sources"])
    bad = webapp.post(
        "airbyte/sources/", {"name": "s", "sourceDefId": SAMPLE_SOURCE_DEFINITION_ID, "config": {"count": -1}}
    )
    assert bad.status_code == 400
    assert (
        bad.json()["detail"] == "the configuration does not fit the Sample Data specification: count must be at least 0"
    )
    unknown = webapp.post("airbyte/sources/", {"name": "s", "sourceDefId": "no-such-definition", "config": {}})
    assert unknown.status_code == 404
    assert "source definition no-such-definition not found" in unknown.json()["detail"]
    assert len(emulator.state()["sources"]) == before


def test_w18_update_a_source_with_the_web_apps_body(webapp, emulator):
    source_id = create_source(webapp, count=2)["sourceId"]
    response = webapp.put(
        f"airbyte/sources/{source_id}",
        {"name": "renamed", "sourceDefId": SAMPLE_SOURCE_DEFINITION_ID, "config": {"count": 7, "seed": 42}},
    )
    assert response.status_code == 200, response.content
    stored = emulator.state()["sources"][source_id]
    assert (stored["name"], stored["connectionConfiguration"]) == ("renamed", {"count": 7, "seed": 42})
    assert [s["name"] for s in webapp.get("airbyte/sources").json()] == ["renamed"]
    other_type = webapp.put(
        f"airbyte/sources/{source_id}",
        {"name": "x", "sourceDefId": POSTGRES_SOURCE_DEFINITION_ID, "config": {"host": "h"}},
    )
    assert other_type.status_code == 400 and "keeps its connector" in other_type.json()["detail"]
    bad = webapp.put(
        f"airbyte/sources/{source_id}",
        {"name": "x", "sourceDefId": SAMPLE_SOURCE_DEFINITION_ID, "config": {"seed": "a"}},
    )
    assert bad.status_code == 400 and "seed must be an integer" in bad.json()["detail"]
    assert emulator.state()["sources"][source_id]["name"] == "renamed"


def test_w19_check_for_update_with_a_masked_password_uses_the_stored_one(webapp, pg_dsn):
    config = postgres_config(pg_dsn, schemas=["public"])
    config.pop("schema")
    body = {"name": "pg", "sourceDefId": POSTGRES_SOURCE_DEFINITION_ID, "config": config}
    source_id = webapp.post("airbyte/sources/", body).json()["sourceId"]
    shown = webapp.get(f"airbyte/sources/{source_id}").json()["connectionConfiguration"]
    assert shown["password"] == "**********"
    path = f"airbyte/sources/{source_id}/check_connection_for_update/"
    same = webapp.post(path, {"name": "pg", "sourceDefId": POSTGRES_SOURCE_DEFINITION_ID, "config": shown})
    assert same.status_code == 200 and same.json()["status"] == "succeeded", same.content
    wrong = webapp.post(path, {"name": "pg", "config": {**shown, "password": "wrong"}})
    assert wrong.status_code == 400 and "28P01" in wrong.json()["detail"]


def test_w20_delete_a_source(webapp, emulator, tmp_path):
    source_id = create_source(webapp)["sourceId"]
    response = webapp.delete(f"airbyte/sources/{source_id}")
    assert response.status_code == 200 and response.json()["success"] is True
    assert source_id not in emulator.state()["sources"]
    assert webapp.get("airbyte/sources").json() == []


def test_w20_a_source_in_use_is_not_deleted(webapp, tmp_path):
    create_warehouse(webapp, duckdb_config(tmp_path / "w.duckdb"))
    source_id = create_source(webapp)["sourceId"]
    assert webapp.post("airbyte/v1/connections/", {"name": "c", "sourceId": source_id}).status_code == 200
    response = webapp.delete(f"airbyte/sources/{source_id}")
    assert response.status_code == 409 and "used by the connection(s) c" in response.json()["detail"]
