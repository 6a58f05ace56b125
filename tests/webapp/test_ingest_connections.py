"""The connections tab as the web app drives it (W-21…W-27, W-31): stream discovery, create and edit with
the user's sync modes and cursors, the list with names, last sync, running state and lock, reset, the sync's
logs and delete — each request exactly as the web app sends it, each answer checked for what it reads."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
import pytest

from ddpui.models import AuditEvent, OrgDataFlowv1, OrgTask
from ddpui.services import locks
from tests.support.prefect_rest import prefect_client

from .ingest_support import create_source, create_warehouse, duckdb_config, form_streams, signed_in_org

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]


@pytest.fixture
def emulator(live_services):
    return live_services["airbyte"]


@pytest.fixture
def prefect_deployments(prefect_server):
    """prefect_deployments(org_slug) -> the ids of the org's deployments, read from Prefect itself."""
    client = prefect_client()

    def ids(org_slug: str) -> list[str]:
        response = client.post("/deployments/filter", json={"deployments": {"tags": {"all_": [org_slug]}}})
        response.raise_for_status()
        return [deployment["id"] for deployment in response.json()]

    return ids


@pytest.fixture
def org(live_services, tmp_path):
    """An org with its DuckDB warehouse and a Sample Data source of 5 rows per stream."""
    webapp = signed_in_org()
    create_warehouse(webapp, duckdb_config(tmp_path / "w.duckdb"))
    return webapp, create_source(webapp, count=5)["sourceId"]


def discover(webapp, source_id: str) -> dict:
    response = webapp.get(f"airbyte/sources/{source_id}/schema_catalog")
    assert response.status_code == 200, response.content
    return response.json()["catalog"]


def create(webapp, source_id: str, choices: dict, **extra) -> dict:
    """CreateConnectionForm's submit: every stream with its row's choices, destinationSchema, normalize."""
    body = {
        "name": "survey sync",
        "sourceId": source_id,
        "streams": form_streams(discover(webapp, source_id), choices),
        "normalize": False,
        "destinationSchema": "staging",
        **extra,
    }
    return webapp.post("airbyte/v1/connections/", body)


def airbyte_sync(emulator, connection_id: str) -> dict:
    """A sync started in Airbyte itself, as a pipeline's flow does it."""
    response = httpx.post(
        f"{emulator.api_url}/connections/sync", json={"connectionId": connection_id}, auth=("airbyte", "password")
    )
    response.raise_for_status()
    return response.json()["job"]


def test_w22_discovery_gives_airbytes_catalog(org):
    webapp, source_id = org
    streams = {entry["stream"]["name"]: entry for entry in discover(webapp, source_id)["streams"]}
    assert set(streams) == {"customers", "orders"}
    orders = streams["orders"]
    assert orders["stream"]["supportedSyncModes"] == ["full_refresh", "incremental"]
    assert orders["stream"]["sourceDefinedCursor"] is False
    assert orders["stream"]["defaultCursorField"] == ["ordered_at"]
    assert set(orders["stream"]["jsonSchema"]["properties"]) == {"id", "customer_id", "amount", "status", "ordered_at"}
    assert {key: orders["config"][key] for key in ("selected", "syncMode", "destinationSyncMode", "cursorField")} == {
        "selected": True,
        "syncMode": "full_refresh",
        "destinationSyncMode": "overwrite",
        "cursorField": ["ordered_at"],
    }
    assert webapp.get("airbyte/sources/no-such-source/schema_catalog").status_code == 404


def test_w23_create_keeps_each_streams_sync_mode_destination_mode_and_cursor(org, emulator, prefect_deployments):
    webapp, source_id = org
    response = create(
        webapp,
        source_id,
        {
            "orders": {
                "selected": True,
                "syncMode": "incremental",
                "destinationSyncMode": "append",
                "cursorField": "id",
            },
            "customers": {"selected": True, "syncMode": "full_refresh", "destinationSyncMode": "append_dedup"},
        },
    )
    assert response.status_code == 200, response.content
    connection_id = response.json()["connectionId"]
    stored = emulator.state()["connections"][connection_id]
    configs = {entry["stream"]["name"]: entry["config"] for entry in stored["syncCatalog"]["streams"]}
    assert {k: configs["orders"][k] for k in ("selected", "syncMode", "destinationSyncMode", "cursorField")} == {
        "selected": True,
        "syncMode": "incremental",
        "destinationSyncMode": "append",
        "cursorField": ["id"],
    }
    assert (configs["customers"]["destinationSyncMode"], configs["customers"]["primaryKey"]) == (
        "append_dedup",
        [["id"]],
    )
    assert (stored["namespaceDefinition"], stored["namespaceFormat"]) == ("customformat", "staging")
    assert OrgDataFlowv1.objects.get(deployment_id=response.json()["deploymentId"]).dataflow_type == "manual"
    assert prefect_deployments(webapp.org_slug) == [response.json()["deploymentId"]]
    assert AuditEvent.objects.filter(action="connection.created", object_id=connection_id).exists()


@pytest.mark.parametrize(
    ("choices", "extra", "detail"),
    [
        (
            {"orders": {"selected": True, "syncMode": "incremental", "cursorField": "nope"}},
            {},
            "stream orders: cursorField nope is not a field of the stream "
            "(fields: amount, customer_id, id, ordered_at, status)",
        ),
        (
            {"orders": {"selected": True, "syncMode": "incremental", "destinationSyncMode": "overwrite"}},
            {},
            "stream orders: an incremental sync needs destinationSyncMode append or append_dedup, not overwrite",
        ),
        ({"orders": {"selected": True, "syncMode": "sometimes"}}, {}, "stream orders: syncMode must be one of"),
        ({"invoices": {}}, {}, "unknown stream(s) invoices: the source offers customers, orders"),
        ({}, {}, "select at least one stream"),
        (
            {"orders": {"selected": True}},
            {"destinationSchema": "bad schema"},
            "destinationSchema must be a plain SQL identifier",
        ),
        ({"orders": {"selected": True}}, {"normalize": True}, "normalize is not supported"),
    ],
)
def test_w23_bad_choices_are_refused_naming_what_to_fix_and_nothing_is_created(
    org, emulator, prefect_deployments, choices, extra, detail
):
    webapp, source_id = org
    body_choices = {name: value for name, value in choices.items() if name != "invoices"}
    body = {
        "name": "c",
        "sourceId": source_id,
        "streams": form_streams(discover(webapp, source_id), body_choices),
        "normalize": False,
        **extra,
    }
    if "invoices" in choices:
        body["streams"].append(
            {
                "name": "invoices",
                "selected": True,
                "syncMode": "full_refresh",
                "destinationSyncMode": "append",
                "cursorField": "",
            }
        )
    response = webapp.post("airbyte/v1/connections/", body)
    assert response.status_code == 400, response.content
    assert detail in response.json()["detail"]
    assert not OrgTask.objects.filter(org__slug=webapp.org_slug).exists()
    assert not [c for c in emulator.state()["connections"].values() if c["sourceId"] == source_id]
    assert prefect_deployments(webapp.org_slug) == []


def test_w24_read_gives_the_edit_form_its_source_catalog_schema_and_normalize(org):
    webapp, source_id = org
    choices = {
        "orders": {
            "selected": True,
            "syncMode": "incremental",
            "destinationSyncMode": "append",
            "cursorField": "ordered_at",
        }
    }
    connection_id = create(webapp, source_id, choices).json()["connectionId"]
    response = webapp.get(f"airbyte/v1/connections/{connection_id}")
    assert response.status_code == 200, response.content
    read = response.json()
    assert (read["name"], read["source"]["name"], read["source"]["id"]) == ("survey sync", "sample", source_id)
    assert (read["destinationSchema"], read["normalize"]) == ("staging", False)
    streams = {entry["stream"]["name"]: entry for entry in read["syncCatalog"]["streams"]}
    assert streams["orders"]["stream"]["supportedSyncModes"] == ["full_refresh", "incremental"]
    assert {
        k: streams["orders"]["config"][k] for k in ("selected", "syncMode", "destinationSyncMode", "cursorField")
    } == {
        "selected": True,
        "syncMode": "incremental",
        "destinationSyncMode": "append",
        "cursorField": ["ordered_at"],
    }
    assert streams["customers"]["config"]["selected"] is False
    assert set(streams["orders"]["stream"]["jsonSchema"]["properties"]) >= {"ordered_at"}


def test_w25_update_with_the_web_apps_body_changes_streams_and_cursor(org, emulator):
    webapp, source_id = org
    created = create(webapp, source_id, {"orders": {"selected": True}}).json()
    connection_id = created["connectionId"]
    # the edit form's rows come from the connection's own catalog
    catalog = webapp.get(f"airbyte/v1/connections/{connection_id}").json()["syncCatalog"]
    streams = form_streams(
        catalog,
        {
            "orders": {
                "selected": True,
                "syncMode": "incremental",
                "destinationSyncMode": "append_dedup",
                "cursorField": "ordered_at",
            },
            "customers": {"selected": True, "syncMode": "full_refresh", "destinationSyncMode": "overwrite"},
        },
    )
    body = {
        "name": "survey nightly",
        "sourceId": source_id,
        "streams": streams,
        "normalize": False,
        "destinationSchema": "raw",
    }
    response = webapp.put(f"airbyte/v1/connections/{connection_id}/update", body)
    assert response.status_code == 200, response.content
    stored = emulator.state()["connections"][connection_id]
    configs = {entry["stream"]["name"]: entry["config"] for entry in stored["syncCatalog"]["streams"]}
    assert (
        configs["orders"]["syncMode"],
        configs["orders"]["destinationSyncMode"],
        configs["orders"]["cursorField"],
    ) == (
        "incremental",
        "append_dedup",
        ["ordered_at"],
    )
    assert configs["customers"]["selected"] is True
    assert (stored["name"], stored["namespaceFormat"]) == ("survey nightly", "raw")
    bad = webapp.put(
        f"airbyte/v1/connections/{connection_id}/update",
        {
            **body,
            "streams": form_streams(
                catalog, {"orders": {"selected": True, "syncMode": "incremental", "cursorField": "missing"}}
            ),
        },
    )
    assert bad.status_code == 400 and "cursorField missing is not a field" in bad.json()["detail"]
    assert emulator.state()["connections"][connection_id]["name"] == "survey nightly"


def test_w21_list_shows_names_last_sync_running_state_and_lock(org, emulator):
    webapp, source_id = org
    created = create(webapp, source_id, {"orders": {"selected": True}}).json()
    connection_id = created["connectionId"]
    (row,) = webapp.get("airbyte/v1/connections").json()
    assert (row["name"], row["connectionId"], row["deploymentId"]) == (
        "survey sync",
        connection_id,
        created["deploymentId"],
    )
    assert (row["source"]["name"], row["source"]["sourceName"]) == ("sample", "Sample Data")
    assert (row["destination"]["name"], row["destination"]["destinationName"]) == ("warehouse", "DuckDB")
    assert (row["lastRun"], row["isRunning"], row["lock"]) == (None, False, None)

    job = airbyte_sync(emulator, connection_id)  # a pipeline's sync: it shows here too
    emulator.wait_for_job(job["id"])
    (row,) = webapp.get("airbyte/v1/connections").json()
    assert row["lastRun"]["status"] == "COMPLETED" and row["lastRun"]["airbyteJobStatus"] == "succeeded"
    assert dt.datetime.fromisoformat(row["lastRun"]["startTime"]).timestamp() == job["createdAt"]

    emulator.configure(sync_seconds=30)
    running = airbyte_sync(emulator, connection_id)
    orgtask = OrgTask.objects.get(uuid=created["orgtaskUuid"])
    locks.locks_acquire(orgtasks=[orgtask], flow_run_id=str(uuid.uuid4()))  # taken by a scheduled run: no user
    (row,) = webapp.get("airbyte/v1/connections").json()
    assert row["isRunning"] is True and row["lastRun"]["status"] in ("PENDING", "RUNNING")
    assert row["lock"]["lockedBy"] == "system" and row["lock"]["lockedAt"]
    httpx.post(f"{emulator.api_url}/jobs/cancel", json={"id": running["id"]}, auth=("airbyte", "password"))


def test_w26_delete_and_w27_reset_answer_success(org, emulator):
    webapp, source_id = org
    connection_id = create(webapp, source_id, {"orders": {"selected": True}}).json()["connectionId"]
    reset = webapp.post(f"airbyte/v1/connections/{connection_id}/reset", {})
    assert reset.status_code == 200 and reset.json()["success"] is True, reset.content
    job = emulator.state()["jobs"][str(reset.json()["jobId"])]
    assert (job["configType"], job["configId"]) == ("reset_connection", connection_id)
    emulator.wait_for_job(reset.json()["jobId"])
    deleted = webapp.delete(f"airbyte/v1/connections/{connection_id}")
    assert deleted.status_code == 200 and deleted.json()["success"] is True
    assert connection_id not in emulator.state()["connections"]
    assert webapp.get("airbyte/v1/connections").json() == []


def test_w31_the_last_syncs_logs(org, emulator):
    webapp, source_id = org
    connection_id = create(webapp, source_id, {"orders": {"selected": True}}).json()["connectionId"]
    none_yet = webapp.get(f"airbyte/v1/connections/{connection_id}/jobs")
    assert none_yet.status_code == 200 and none_yet.json()["status"] == "not found"
    job = airbyte_sync(emulator, connection_id)
    emulator.wait_for_job(job["id"])
    response = webapp.get(f"airbyte/v1/connections/{connection_id}/jobs")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["jobId"], body["recordsSynced"]) == ("succeeded", job["id"], 5)
    assert any("read 5 record(s) from stream orders" in line for line in body["logs"])
    assert webapp.get("airbyte/v1/connections/not-ours/jobs").status_code == 404
