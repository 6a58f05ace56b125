"""The whole ingest page in one journey, through the web app's own calls against the real stack (Django,
proxy, Prefect server and worker, the Airbyte emulator writing into DuckDB): warehouse → source → check →
discover → a connection with one incremental stream → sync → the sync's logs — and a second sync that,
being incremental, adds nothing."""

from __future__ import annotations

import time

import duckdb
import pytest

from .ingest_support import duckdb_config, form_streams, signed_in_org

pytestmark = [pytest.mark.django_db, pytest.mark.prefect, pytest.mark.worker]

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def run_state(run: dict) -> str:
    # the web app reads state_type (W-29, served by the orchestration screens' work); ddpui's earlier
    # answer spelled it stateType
    return run.get("state_type") or run.get("stateType")


def sync_through_the_deployment(webapp, deployment_id: str, timeout: float = 180) -> str:
    """Connections.tsx's syncConnection: start the connection's deployment (W-28), poll its state (W-29)."""
    started = webapp.post(f"prefect/v1/flows/{deployment_id}/flow_run/", {})
    assert started.status_code == 200, started.content
    flow_run_id = started.json()["flow_run_id"]
    deadline = time.monotonic() + timeout
    while True:
        run = webapp.get(f"prefect/flow_runs/{flow_run_id}")
        assert run.status_code == 200, run.content
        if run_state(run.json()) in TERMINAL:
            assert run_state(run.json()) == "COMPLETED", run.json()
            return flow_run_id
        assert time.monotonic() < deadline, run.json()
        time.sleep(0.5)


def rows(path, table: str) -> list[tuple]:
    connection = duckdb.connect(str(path), read_only=True)
    try:
        return connection.execute(f"select id from staging.{table} order by id").fetchall()
    finally:
        connection.close()


def test_ingest_journey_from_warehouse_to_an_incremental_sync_and_its_logs(live_services, prefect_worker, tmp_path):
    webapp = signed_in_org()
    warehouse = tmp_path / "warehouse.duckdb"

    # warehouse: W-05 type picker, W-06 form, W-07 check, W-08 create, W-04 read
    definitions = {
        d["name"]: d["destinationDefinitionId"] for d in webapp.get("airbyte/destination_definitions").json()
    }
    duckdb_id = definitions["DuckDB"]
    spec = webapp.get(f"airbyte/destination_definitions/{duckdb_id}/specifications").json()
    assert "destination_path" in spec["required"]
    config = duckdb_config(warehouse)
    check = webapp.post(
        "airbyte/destinations/check_connection/", {"name": "wh", "destinationDefId": duckdb_id, "config": config}
    )
    assert check.json()["status"] == "succeeded", check.content
    created = webapp.post(
        "organizations/warehouse/",
        {"wtype": "duckdb", "name": "wh", "destinationDefId": duckdb_id, "airbyteConfig": config},
    )
    assert created.status_code == 200, created.content
    assert webapp.get("organizations/warehouses").json()["warehouses"][0]["airbyte_destination"]["destinationId"]

    # source: W-13, W-14, W-15 check, W-16 create, W-12 list
    sources = {d["name"]: d["sourceDefinitionId"] for d in webapp.get("airbyte/source_definitions").json()}
    sample_id = sources["Sample Data"]
    assert "count" in webapp.get(f"airbyte/source_definitions/{sample_id}/specifications").json()["properties"]
    body = {"name": "survey", "sourceDefId": sample_id, "config": {"count": 5, "seed": 42}}
    assert webapp.post("airbyte/sources/check_connection/", body).json()["status"] == "succeeded"
    assert webapp.post("airbyte/sources/", body).status_code == 200
    (source,) = webapp.get("airbyte/sources").json()

    # connection: W-22 discover, W-23 create with orders incremental on id (customers left out)
    catalog = webapp.get(f"airbyte/sources/{source['sourceId']}/schema_catalog").json()["catalog"]
    streams = form_streams(
        catalog,
        {"orders": {"selected": True, "syncMode": "incremental", "destinationSyncMode": "append", "cursorField": "id"}},
    )
    connection = webapp.post(
        "airbyte/v1/connections/",
        {
            "name": "survey sync",
            "sourceId": source["sourceId"],
            "streams": streams,
            "normalize": False,
            "destinationSchema": "staging",
        },
    )
    assert connection.status_code == 200, connection.content
    (row,) = webapp.get("airbyte/v1/connections").json()  # W-21
    assert (row["source"]["sourceName"], row["destination"]["destinationName"], row["lastRun"]) == (
        "Sample Data",
        "DuckDB",
        None,
    )

    # sync: W-28 through the connection's deployment, W-29 state, W-30 the run's logs
    flow_run_id = sync_through_the_deployment(webapp, row["deploymentId"])
    assert rows(warehouse, "orders") == [(i,) for i in range(1, 6)]
    logs = webapp.get(f"prefect/flow_runs/{flow_run_id}/logs").json()["logs"]
    lines = logs["logs"] if isinstance(logs, dict) else logs
    assert lines and all("message" in line for line in lines)

    # W-21 after the sync: the last Airbyte sync and no lock; W-31 the sync's own log lines
    (row,) = webapp.get("airbyte/v1/connections").json()
    assert (row["lastRun"]["status"], row["isRunning"], row["lock"]) == ("COMPLETED", False, None)
    job = webapp.get(f"airbyte/v1/connections/{row['connectionId']}/jobs").json()
    assert (job["status"], job["recordsSynced"]) == ("succeeded", 5)
    assert any("read 5 record(s) from stream orders (incremental on id from None)" in line for line in job["logs"])

    # a second sync reads only what is new: nothing, and the table keeps its rows (append)
    sync_through_the_deployment(webapp, row["deploymentId"])
    assert rows(warehouse, "orders") == [(i,) for i in range(1, 6)]
    job = webapp.get(f"airbyte/v1/connections/{row['connectionId']}/jobs").json()
    assert (job["status"], job["recordsSynced"]) == ("succeeded", 0)
    assert any("incremental on id from 5" in line for line in job["logs"])
