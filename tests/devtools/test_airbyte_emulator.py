"""Tests of devtools.airbyte_emulator (the Airbyte config API test double).

No Django database is needed. PostgreSQL tests use DDPUI_TEST_PG_DSN: skipped
when it is unset locally, failing when CI=true.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import httpx
import pytest

from devtools.airbyte_emulator import (
    DUCKDB_DESTINATION_DEFINITION_ID,
    POSTGRES_DESTINATION_DEFINITION_ID,
    SAMPLE_SOURCE_DEFINITION_ID,
    EmulatorServer,
    generate_stream,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
AUTH = ("airbyte", "password")


# --------------------------------------------------------------------------- helpers


def require_pg_dsn() -> str:
    dsn = os.environ.get("DDPUI_TEST_PG_DSN", "").strip()
    if not dsn:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail("DDPUI_TEST_PG_DSN is not set but CI=true: the PostgreSQL destination tests must run in CI")
        pytest.skip("DDPUI_TEST_PG_DSN not set (local run without PostgreSQL)")
    return dsn


@pytest.fixture
def srv():
    with EmulatorServer(host="127.0.0.1", port=0) as server:
        server.configure(sync_seconds=0.05)
        yield server


@pytest.fixture
def api(srv):
    with httpx.Client(base_url=srv.url + "/api/v1", auth=AUTH, timeout=10) as client:
        yield client


def post(api, path, body=None, status=200):
    resp = api.post(path, json=body or {})
    assert resp.status_code == status, (path, resp.status_code, resp.text)
    return resp.json() if resp.content else None


def make_pipeline(api, dest_def_id, dest_config, count=10, seed=42, **connection):
    ws = post(api, "/workspaces/create", {"name": "Test Workspace"})
    src = post(
        api,
        "/sources/create",
        {
            "workspaceId": ws["workspaceId"],
            "name": "sample",
            "sourceDefinitionId": SAMPLE_SOURCE_DEFINITION_ID,
            "connectionConfiguration": {"count": count, "seed": seed},
        },
    )
    dst = post(
        api,
        "/destinations/create",
        {
            "workspaceId": ws["workspaceId"],
            "name": "warehouse",
            "destinationDefinitionId": dest_def_id,
            "connectionConfiguration": dest_config,
        },
    )
    con = post(
        api,
        "/connections/create",
        {
            "sourceId": src["sourceId"],
            "destinationId": dst["destinationId"],
            "name": "sample to warehouse",
            **connection,
        },
    )
    return ws, src, dst, con


def duckdb_pipeline(api, tmp_path, **kwargs):
    path = tmp_path / "nested" / "warehouse.duckdb"
    parts = make_pipeline(
        api, DUCKDB_DESTINATION_DEFINITION_ID, {"destination_path": str(path), "schema": "airbyte_raw"}, **kwargs
    )
    return path, parts


def run_job(srv, api, path, connection_id, expect="succeeded"):
    job = post(api, path, {"connectionId": connection_id})
    assert job["job"]["status"] == "pending"
    info = srv.wait_for_job(job["job"]["id"], timeout=30)
    assert info["job"]["status"] == expect, info
    return info


def duck_rows(path, table, schema="airbyte_raw", columns="*"):
    con = duckdb.connect(str(path))
    try:
        return con.execute(f"select {columns} from {schema}.{table} order by id").fetchall()
    finally:
        con.close()


# --------------------------------------------------------------------------- basics


def test_health_auth_and_routing(srv, api):
    base = srv.url + "/api/v1"
    assert httpx.get(base + "/health/").json() == {"available": True}
    assert httpx.get(base + "/health").json() == {"available": True}
    assert httpx.post(base + "/workspaces/list", json={}).status_code == 401
    assert httpx.post(base + "/workspaces/list", json={}, auth=("airbyte", "nope")).status_code == 401
    assert httpx.post(base + "/workspaces/list", json={}, auth=AUTH).status_code == 200
    # with and without trailing slash
    assert post(api, "/workspaces/list/") == {"workspaces": []}
    # malformed / wrong bodies
    assert (
        api.post("/workspaces/get", content=b"{not json", headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    assert api.post("/workspaces/get", json=[1, 2]).status_code == 422
    assert api.post("/workspaces/create", json={}).status_code == 422
    missing = api.post("/no/such/endpoint", json={})
    assert missing.status_code == 404 and "message" in missing.json()
    assert api.get("/workspaces/list").status_code == 405


def test_unavailable_mode(srv, api):
    srv.configure(unavailable=True)
    assert httpx.get(srv.url + "/api/v1/health/").json() == {"available": False}
    assert api.post("/workspaces/list", json={}).status_code == 503
    srv.configure(unavailable=False)
    assert api.post("/workspaces/list", json={}).status_code == 200


def test_control_endpoints_over_http(srv, api):
    ctl = srv.url + "/_emulator"
    got = httpx.post(ctl + "/config", json={"sync_seconds": 0.1, "fail_next_syncs": 2}).json()
    assert got["sync_seconds"] == 0.1 and got["fail_next_syncs"] == 2
    assert httpx.post(ctl + "/config", json={"bogus": 1}).status_code == 422
    assert httpx.post(ctl + "/config", json={"sync_seconds": -1}).status_code == 422
    post(api, "/workspaces/create", {"name": "A"})
    state = httpx.get(ctl + "/state").json()
    assert len(state["workspaces"]) == 1 and state["controls"]["fail_next_syncs"] == 2
    assert httpx.post(ctl + "/reset").json() == {"reset": True}
    state = httpx.get(ctl + "/state").json()
    assert state["workspaces"] == {} and state["controls"]["fail_next_syncs"] == 0
    with pytest.raises(ValueError):
        srv.configure(fail_next_syncs="x")


def test_workspace_crud(api):
    ws = post(api, "/workspaces/create", {"name": "My Org"})
    assert ws["name"] == "My Org" and ws["slug"] == "my-org"
    uuid.UUID(ws["workspaceId"])
    assert post(api, "/workspaces/get", {"workspaceId": ws["workspaceId"]}) == ws
    assert [w["workspaceId"] for w in post(api, "/workspaces/list")["workspaces"]] == [ws["workspaceId"]]
    renamed = post(api, "/workspaces/update_name", {"workspaceId": ws["workspaceId"], "name": "New"})
    assert renamed["name"] == "New"
    assert api.post("/workspaces/delete", json={"workspaceId": ws["workspaceId"]}).status_code == 204
    resp = api.post("/workspaces/get", json={"workspaceId": ws["workspaceId"]})
    assert resp.status_code == 404 and "message" in resp.json()


def test_definitions_and_specs(api):
    ws = post(api, "/workspaces/create", {"name": "W"})
    wid = ws["workspaceId"]
    for path in ("/source_definitions/list", "/source_definitions/list_for_workspace"):
        defs = post(api, path, {"workspaceId": wid})["sourceDefinitions"]
        assert {d["name"]: d["sourceDefinitionId"] for d in defs}["Sample Data"] == SAMPLE_SOURCE_DEFINITION_ID
    for path in ("/destination_definitions/list", "/destination_definitions/list_for_workspace"):
        defs = {
            d["name"]: d["destinationDefinitionId"]
            for d in post(api, path, {"workspaceId": wid})["destinationDefinitions"]
        }
        assert defs["Postgres"] == POSTGRES_DESTINATION_DEFINITION_ID
        assert defs["DuckDB"] == DUCKDB_DESTINATION_DEFINITION_ID
    spec = post(
        api,
        "/source_definition_specifications/get",
        {"sourceDefinitionId": SAMPLE_SOURCE_DEFINITION_ID, "workspaceId": wid},
    )
    assert {"count", "seed"} <= set(spec["connectionSpecification"]["properties"])
    spec = post(
        api,
        "/destination_definition_specifications/get",
        {"destinationDefinitionId": POSTGRES_DESTINATION_DEFINITION_ID, "workspaceId": wid},
    )
    props = spec["connectionSpecification"]["properties"]
    assert {"host", "port", "database", "schema", "username", "password"} <= set(props)
    spec = post(
        api,
        "/destination_definition_specifications/get",
        {"destinationDefinitionId": DUCKDB_DESTINATION_DEFINITION_ID, "workspaceId": wid},
    )
    assert {"destination_path", "schema"} <= set(spec["connectionSpecification"]["properties"])
    assert (
        api.post("/source_definition_specifications/get", json={"sourceDefinitionId": str(uuid.uuid4())}).status_code
        == 404
    )


def test_source_crud_check_discover(api):
    wid = post(api, "/workspaces/create", {"name": "W"})["workspaceId"]
    bad = api.post(
        "/sources/create",
        json={
            "workspaceId": wid,
            "name": "s",
            "sourceDefinitionId": SAMPLE_SOURCE_DEFINITION_ID,
            "connectionConfiguration": {"count": "many"},
        },
    )
    assert bad.status_code == 422 and "count" in bad.json()["message"]
    src = post(
        api,
        "/sources/create",
        {
            "workspaceId": wid,
            "name": "s",
            "sourceDefinitionId": SAMPLE_SOURCE_DEFINITION_ID,
            "connectionConfiguration": {"count": 3, "seed": 7},
        },
    )
    assert src["sourceName"] == "Sample Data" and src["workspaceId"] == wid
    assert post(api, "/sources/get", {"sourceId": src["sourceId"]}) == src
    assert post(api, "/sources/list", {"workspaceId": wid})["sources"] == [src]
    upd = post(
        api,
        "/sources/update",
        {"sourceId": src["sourceId"], "name": "renamed", "connectionConfiguration": {"count": 4, "seed": 7}},
    )
    assert upd["name"] == "renamed" and upd["connectionConfiguration"]["count"] == 4
    assert post(api, "/sources/check_connection", {"sourceId": src["sourceId"]})["status"] == "succeeded"
    catalog = post(api, "/sources/discover_schema", {"sourceId": src["sourceId"]})["catalog"]
    streams = {s["stream"]["name"]: s for s in catalog["streams"]}
    assert set(streams) == {"customers", "orders"}
    assert "amount" in streams["orders"]["stream"]["jsonSchema"]["properties"]
    assert streams["orders"]["config"]["selected"] is True
    assert "full_refresh" in streams["orders"]["stream"]["supportedSyncModes"]
    assert api.post("/sources/delete", json={"sourceId": src["sourceId"]}).status_code == 204
    assert api.post("/sources/get", json={"sourceId": src["sourceId"]}).status_code == 404
    assert api.post("/sources/check_connection", json={"sourceId": src["sourceId"]}).status_code == 404


def test_destination_crud_validation_and_secrets(srv, api, tmp_path):
    wid = post(api, "/workspaces/create", {"name": "W"})["workspaceId"]
    resp = api.post(
        "/destinations/create",
        json={
            "workspaceId": wid,
            "name": "d",
            "destinationDefinitionId": DUCKDB_DESTINATION_DEFINITION_ID,
            "connectionConfiguration": {"schema": "raw"},
        },
    )
    assert resp.status_code == 422 and "destination_path" in resp.json()["message"]
    resp = api.post(
        "/destinations/create",
        json={
            "workspaceId": wid,
            "name": "d",
            "destinationDefinitionId": POSTGRES_DESTINATION_DEFINITION_ID,
            "connectionConfiguration": {"port": 5432, "database": "x", "schema": "s", "username": "u"},
        },
    )
    assert resp.status_code == 422 and "host" in resp.json()["message"]
    pg = post(
        api,
        "/destinations/create",
        {
            "workspaceId": wid,
            "name": "pg",
            "destinationDefinitionId": POSTGRES_DESTINATION_DEFINITION_ID,
            "connectionConfiguration": {
                "host": "127.0.0.1",
                "port": 1,
                "database": "x",
                "schema": "s",
                "username": "u",
                "password": "s3cret",
            },
        },
    )
    assert pg["destinationName"] == "Postgres"
    assert pg["connectionConfiguration"]["password"] == "**********"
    # sending the mask back keeps the stored secret
    cfg = dict(pg["connectionConfiguration"], database="y")
    upd = post(
        api,
        "/destinations/update",
        {"destinationId": pg["destinationId"], "name": "pg2", "connectionConfiguration": cfg},
    )
    assert upd["name"] == "pg2" and upd["connectionConfiguration"]["database"] == "y"
    stored = srv.state()["destinations"][pg["destinationId"]]["connectionConfiguration"]
    assert stored["password"] == "s3cret"
    # nothing listens on port 1: check fails but the call succeeds
    check = post(api, "/destinations/check_connection", {"destinationId": pg["destinationId"]})
    assert check["status"] == "failed" and check["message"]
    duck = post(
        api,
        "/destinations/create",
        {
            "workspaceId": wid,
            "name": "duck",
            "destinationDefinitionId": DUCKDB_DESTINATION_DEFINITION_ID,
            "connectionConfiguration": {"destination_path": str(tmp_path / "a" / "w.duckdb")},
        },
    )
    assert (
        post(api, "/destinations/check_connection", {"destinationId": duck["destinationId"]})["status"] == "succeeded"
    )
    listed = post(api, "/destinations/list", {"workspaceId": wid})["destinations"]
    assert {d["destinationId"] for d in listed} == {pg["destinationId"], duck["destinationId"]}
    assert post(api, "/destinations/get", {"destinationId": duck["destinationId"]})["name"] == "duck"
    assert api.post("/destinations/delete", json={"destinationId": duck["destinationId"]}).status_code == 204
    assert api.post("/destinations/get", json={"destinationId": duck["destinationId"]}).status_code == 404


def test_connection_crud(api, tmp_path):
    _path, (ws, src, dst, con) = duckdb_pipeline(api, tmp_path)
    assert con["status"] == "active" and con["sourceId"] == src["sourceId"]
    assert {s["stream"]["name"] for s in con["syncCatalog"]["streams"]} == {"customers", "orders"}
    assert post(api, "/connections/get", {"connectionId": con["connectionId"]}) == con
    listed = post(api, "/connections/list", {"workspaceId": ws["workspaceId"]})["connections"]
    assert [c["connectionId"] for c in listed] == [con["connectionId"]]
    upd = post(
        api, "/connections/update", {"connectionId": con["connectionId"], "status": "inactive", "name": "renamed"}
    )
    assert upd["status"] == "inactive" and upd["name"] == "renamed"
    assert (
        api.post("/connections/update", json={"connectionId": con["connectionId"], "status": "bogus"}).status_code
        == 422
    )
    unknown = api.post("/connections/get", json={"connectionId": str(uuid.uuid4())})
    assert unknown.status_code == 404 and "message" in unknown.json()
    assert api.post("/connections/sync", json={"connectionId": str(uuid.uuid4())}).status_code == 404
    assert api.post("/jobs/get", json={"id": 12345}).status_code == 404
    assert api.post("/connections/delete", json={"connectionId": con["connectionId"]}).status_code == 204
    assert api.post("/connections/get", json={"connectionId": con["connectionId"]}).status_code == 404
    # deleting a source deletes its connections
    con2 = post(api, "/connections/create", {"sourceId": src["sourceId"], "destinationId": dst["destinationId"]})
    post(api, "/sources/delete", {"sourceId": src["sourceId"]}, status=204)
    assert api.post("/connections/get", json={"connectionId": con2["connectionId"]}).status_code == 404


# --------------------------------------------------------------------------- jobs


def test_sync_writes_rows_into_duckdb(srv, api, tmp_path):
    path, (_ws, _src, _dst, con) = duckdb_pipeline(api, tmp_path, count=7, seed=3)
    info = run_job(srv, api, "/connections/sync", con["connectionId"])
    job, attempt = info["job"], info["attempts"][-1]
    assert job["configType"] == "sync" and job["configId"] == con["connectionId"]
    assert isinstance(job["createdAt"], int) and job["updatedAt"] >= job["createdAt"]
    assert attempt["attempt"]["status"] == "succeeded"
    assert attempt["attempt"]["recordsSynced"] == 14 and attempt["attempt"]["bytesSynced"] > 0
    assert attempt["attempt"]["endedAt"] >= attempt["attempt"]["createdAt"]
    assert any("14 record(s)" in line for line in attempt["logs"]["logLines"])
    customers = duck_rows(path, "customers")
    orders = duck_rows(path, "orders")
    assert len(customers) == 7 and len(orders) == 7
    assert {o[3] for o in orders} <= {"completed", "returned", "pending"}
    assert {o[1] for o in orders} <= {c[0] for c in customers}
    con_ = duckdb.connect(str(path))
    try:
        cols = [
            r[0]
            for r in con_.execute(
                "select column_name from information_schema.columns where table_schema='airbyte_raw' "
                "and table_name='orders' order by ordinal_position"
            ).fetchall()
        ]
    finally:
        con_.close()
    assert cols == ["id", "customer_id", "amount", "status", "ordered_at", "_airbyte_extracted_at"]
    # a second sync -> newest first in jobs/list
    run_job(srv, api, "/connections/sync", con["connectionId"])
    jobs = post(api, "/jobs/list", {"configTypes": ["sync"], "configId": con["connectionId"]})["jobs"]
    assert [j["job"]["id"] for j in jobs] == sorted((j["job"]["id"] for j in jobs), reverse=True)
    assert len(jobs) == 2
    page = post(
        api,
        "/jobs/list",
        {"configTypes": ["sync"], "configId": con["connectionId"], "pagination": {"pageSize": 1, "rowOffset": 1}},
    )["jobs"]
    assert [j["job"]["id"] for j in page] == [jobs[1]["job"]["id"]]


def test_sync_data_is_deterministic(srv, api, tmp_path):
    data_cols = "id, customer_id, amount, status, ordered_at"
    path, (_ws, src, _dst, con) = duckdb_pipeline(api, tmp_path, count=25, seed=11)
    run_job(srv, api, "/connections/sync", con["connectionId"])
    first = (
        duck_rows(path, "customers", columns="id, name, email, country, created_at"),
        duck_rows(path, "orders", columns=data_cols),
    )
    run_job(srv, api, "/connections/sync", con["connectionId"])
    second = (
        duck_rows(path, "customers", columns="id, name, email, country, created_at"),
        duck_rows(path, "orders", columns=data_cols),
    )
    assert first == second
    assert first[0] == generate_stream("customers", 25, 11)
    assert first[1] == generate_stream("orders", 25, 11)
    post(api, "/sources/update", {"sourceId": src["sourceId"], "connectionConfiguration": {"count": 25, "seed": 12}})
    run_job(srv, api, "/connections/sync", con["connectionId"])
    assert duck_rows(path, "orders", columns=data_cols) != first[1]


def test_prefix_and_stream_selection(srv, api, tmp_path):
    path, (_ws, src, _dst, con) = duckdb_pipeline(api, tmp_path, count=4)
    catalog = post(api, "/sources/discover_schema", {"sourceId": src["sourceId"]})["catalog"]
    for entry in catalog["streams"]:
        entry["config"]["selected"] = entry["stream"]["name"] == "customers"
    post(api, "/connections/update", {"connectionId": con["connectionId"], "prefix": "raw_", "syncCatalog": catalog})
    info = run_job(srv, api, "/connections/sync", con["connectionId"])
    assert info["attempts"][-1]["attempt"]["recordsSynced"] == 4
    con_ = duckdb.connect(str(path))
    try:
        tables = {
            r[0]
            for r in con_.execute(
                "select table_name from information_schema.tables where table_schema='airbyte_raw'"
            ).fetchall()
        }
    finally:
        con_.close()
    assert tables == {"raw_customers"}


def test_failure_injection_and_conflicts(srv, api, tmp_path):
    path, (_ws, _src, _dst, con) = duckdb_pipeline(api, tmp_path)
    cid = con["connectionId"]
    srv.configure(fail_next_syncs=1)
    info = run_job(srv, api, "/connections/sync", cid, expect="failed")
    attempt = info["attempts"][-1]
    assert attempt["attempt"]["status"] == "failed"
    msg = attempt["attempt"]["failureSummary"]["failures"][0]["externalMessage"]
    assert "injected" in msg and any("injected" in line for line in attempt["logs"]["logLines"])
    assert not path.exists()  # a failed sync writes nothing
    run_job(srv, api, "/connections/sync", cid)  # the counter is used up
    srv.configure(fail_connection_ids=[cid])
    run_job(srv, api, "/connections/sync", cid, expect="failed")
    run_job(srv, api, "/connections/sync", cid, expect="failed")
    srv.configure(fail_connection_ids=[])
    # a second sync while one is running is refused; a running job can be cancelled
    srv.configure(sync_seconds=5)
    job = post(api, "/connections/sync", {"connectionId": cid})["job"]
    assert api.post("/connections/sync", json={"connectionId": cid}).status_code == 409
    cancelled = post(api, "/jobs/cancel", {"id": job["id"]})
    assert cancelled["job"]["status"] == "cancelled"
    assert srv.wait_for_job(job["id"])["job"]["status"] == "cancelled"


def test_reset_job_empties_tables(srv, api, tmp_path):
    path, (_ws, _src, _dst, con) = duckdb_pipeline(api, tmp_path, count=5)
    run_job(srv, api, "/connections/sync", con["connectionId"])
    assert len(duck_rows(path, "orders")) == 5
    info = run_job(srv, api, "/connections/reset", con["connectionId"])
    assert info["job"]["configType"] == "reset_connection"
    assert info["attempts"][-1]["attempt"]["recordsSynced"] == 0
    assert duck_rows(path, "orders") == [] and duck_rows(path, "customers") == []
    resets = post(api, "/jobs/list", {"configTypes": ["reset_connection"], "configId": con["connectionId"]})["jobs"]
    assert [j["job"]["configType"] for j in resets] == ["reset_connection"]
    both = post(api, "/jobs/list", {"configTypes": ["sync", "reset_connection"], "configId": con["connectionId"]})[
        "jobs"
    ]
    assert [j["job"]["configType"] for j in both] == ["reset_connection", "sync"]


def test_state_file_survives_restart(tmp_path):
    state_file = tmp_path / "state" / "emulator.json"
    with EmulatorServer(port=0, state_file=str(state_file)) as first:
        first.configure(sync_seconds=0.05)
        with httpx.Client(base_url=first.api_url, auth=AUTH) as api:
            _path, (ws, _src, _dst, con) = duckdb_pipeline(api, tmp_path, count=2)
            job1 = run_job(first, api, "/connections/sync", con["connectionId"])["job"]["id"]
    assert json.loads(state_file.read_text())["connections"]
    with (
        EmulatorServer(port=0, state_file=str(state_file)) as second,
        httpx.Client(base_url=second.api_url, auth=AUTH) as api,
    ):
        assert post(api, "/workspaces/get", {"workspaceId": ws["workspaceId"]})["name"] == ws["name"]
        assert post(api, "/connections/get", {"connectionId": con["connectionId"]})["status"] == "active"
        assert post(api, "/jobs/get", {"id": job1})["job"]["status"] == "succeeded"
        job2 = post(api, "/connections/sync", {"connectionId": con["connectionId"]})["job"]["id"]
        assert job2 > job1
        second.wait_for_job(job2)


def test_cli_serves_and_stops(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.airbyte_emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--username",
            "u",
            "--password",
            "p",
            "--state-file",
            str(tmp_path / "s.json"),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").json()["available"]:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "emulator CLI did not start"
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port}/api/v1"
        assert httpx.post(base + "/workspaces/create", json={"name": "x"}).status_code == 401
        assert httpx.post(base + "/workspaces/create", json={"name": "x"}, auth=("u", "p")).status_code == 200
        assert (tmp_path / "s.json").exists()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stdout.read().decode()


# --------------------------------------------------------------------------- airbyte-prefect


def test_airbyte_prefect_client_against_emulator(srv, api, tmp_path):
    from airbyte_prefect import exceptions as ab_err
    from airbyte_prefect.connections import AirbyteConnection
    from airbyte_prefect.server import AirbyteServer
    from pydantic import SecretStr

    path, (_ws, _src, _dst, con) = duckdb_pipeline(api, tmp_path, count=6)
    srv.configure(sync_seconds=0.2)
    server = AirbyteServer(
        server_host="127.0.0.1", server_port=srv.port, username="airbyte", password=SecretStr("password")
    )
    block = AirbyteConnection(
        airbyte_server=server, connection_id=con["connectionId"], poll_interval_s=1, max_wait_seconds=60
    )
    run = block.trigger()
    run.wait_for_completion()
    result = run.fetch_result()
    assert result.job_status == "succeeded"
    assert result.records_synced == 12
    assert result.job_id == run.job_id
    assert len(duck_rows(path, "orders")) == 6

    srv.configure(fail_next_syncs=1)
    with pytest.raises(ab_err.AirbyteSyncJobFailed):
        block.trigger().wait_for_completion()

    post(api, "/connections/update", {"connectionId": con["connectionId"], "status": "inactive"})
    with pytest.raises(ab_err.AirbyteConnectionInactiveException):
        block.trigger()

    missing = AirbyteConnection(airbyte_server=server, connection_id=str(uuid.uuid4()))
    with pytest.raises(ab_err.ConnectionNotFoundException):
        missing.trigger()

    wrong = AirbyteServer(
        server_host="127.0.0.1", server_port=srv.port, username="airbyte", password=SecretStr("wrong")
    )
    with pytest.raises(ab_err.AirbyteServerNotHealthyException):
        AirbyteConnection(airbyte_server=wrong, connection_id=con["connectionId"]).trigger()

    srv.configure(unavailable=True)
    with pytest.raises(ab_err.AirbyteServerNotHealthyException):
        block.trigger()


# --------------------------------------------------------------------------- Postgres


@pytest.fixture
def pg_destination():
    """(connectionConfiguration, psycopg connection) for a fresh schema; dropped afterwards."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    dsn = require_pg_dsn()
    params = conninfo_to_dict(dsn)
    schema = f"emu_test_{uuid.uuid4().hex[:10]}"
    config = {
        "host": params.get("host", "127.0.0.1"),
        "port": int(params.get("port", 5432)),
        "database": params.get("dbname", "postgres"),
        "schema": schema,
        "username": params.get("user", "postgres"),
        "password": params.get("password", ""),
    }
    conn = psycopg.connect(dsn, autocommit=True)
    try:
        yield config, conn
    finally:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()


def test_sync_and_reset_into_postgres(srv, api, pg_destination):
    config, pg = pg_destination
    schema = config["schema"]
    _ws, _src, dst, con = make_pipeline(api, POSTGRES_DESTINATION_DEFINITION_ID, config, count=9, seed=5)
    assert post(api, "/destinations/check_connection", {"destinationId": dst["destinationId"]})["status"] == "succeeded"
    info = run_job(srv, api, "/connections/sync", con["connectionId"])
    assert info["attempts"][-1]["attempt"]["recordsSynced"] == 18

    def rows(table, cols):
        return pg.execute(f'select {cols} from "{schema}"."{table}" order by id').fetchall()

    first = rows("orders", "id, customer_id, amount, status, ordered_at")
    assert first == generate_stream("orders", 9, 5)
    assert len(rows("customers", "id")) == 9
    # a view on the raw table survives the next sync (tables are truncated, not dropped)
    pg.execute(f'create view "{schema}".v_orders as select id from "{schema}".orders')
    run_job(srv, api, "/connections/sync", con["connectionId"])
    assert rows("orders", "id, customer_id, amount, status, ordered_at") == first
    assert pg.execute(f'select count(*) from "{schema}".v_orders').fetchone()[0] == 9
    run_job(srv, api, "/connections/reset", con["connectionId"])
    assert rows("orders", "id") == [] and rows("customers", "id") == []


def test_unreachable_postgres_fails_the_job(srv, api):
    config = {
        "host": "127.0.0.1",
        "port": 1,
        "database": "x",
        "schema": "raw",  # nothing on port 1
        "username": "u",
        "password": "p",
    }
    _ws, _src, _dst, con = make_pipeline(api, POSTGRES_DESTINATION_DEFINITION_ID, config)
    info = run_job(srv, api, "/connections/sync", con["connectionId"], expect="failed")
    assert "Postgres" in info["attempts"][-1]["attempt"]["failureSummary"]["failures"][0]["externalMessage"]


# --------------------------------------------------------------------------- connectors as Airbyte describes them


def test_every_specification_is_a_json_schema_the_web_app_can_render(api):
    """Each spec is a valid draft-07 schema; every oneOf option has its properties, its required list and a
    const discriminator shared by the options (what Dalgo's ConnectorConfigInput walks)."""
    import jsonschema

    ws = post(api, "/workspaces/create", {"name": "W"})["workspaceId"]
    specs = []
    for d in post(api, "/source_definitions/list_for_workspace", {"workspaceId": ws})["sourceDefinitions"]:
        body = {"sourceDefinitionId": d["sourceDefinitionId"], "workspaceId": ws}
        specs.append(post(api, "/source_definition_specifications/get", body)["connectionSpecification"])
    for d in post(api, "/destination_definitions/list_for_workspace", {"workspaceId": ws})["destinationDefinitions"]:
        body = {"destinationDefinitionId": d["destinationDefinitionId"], "workspaceId": ws}
        spec = post(api, "/destination_definition_specifications/get", body)
        assert set(spec["supportedDestinationSyncModes"]) == {"overwrite", "append", "append_dedup"}
        specs.append(spec["connectionSpecification"])
        assert d["icon"].startswith("<svg")
    assert len(specs) == 5
    for spec in specs:
        jsonschema.Draft7Validator.check_schema(spec)
        assert isinstance(spec["required"], list)
        for prop in spec["properties"].values():
            options = prop.get("oneOf") or []
            if options:
                common = set.intersection(*(set(option["properties"]) for option in options))
                assert len(options) > 1 and common, prop["title"]
                key = sorted(common)[0]
                assert all(isinstance(option["required"], list) for option in options)
                assert len({option["properties"][key]["const"] for option in options}) == len(options)


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            {"host": "h", "port": "5432", "database": "d", "schema": "s", "username": "u"},
            "$.port: string found, integer expected",
        ),
        ({"port": 5432, "database": "d", "schema": "s", "username": "u"}, "$.host: is missing but it is required"),
        (
            {"host": "h", "port": 70000, "database": "d", "schema": "s", "username": "u"},
            "$.port: must have a maximum value of 65536",
        ),
        (
            {"host": "h", "port": 1, "database": "d", "schema": "s", "username": "u", "ssl_mode": {"mode": "bogus"}},
            "$.ssl_mode: should be valid to one and only one schema, but 0 are valid",
        ),
    ],
)
def test_a_configuration_that_breaks_the_spec_is_refused_with_airbytes_message(api, config, problem):
    ws = post(api, "/workspaces/create", {"name": "W"})["workspaceId"]
    body = {"workspaceId": ws, "name": "d", "destinationDefinitionId": POSTGRES_DESTINATION_DEFINITION_ID}
    refused = api.post("/destinations/create", json={**body, "connectionConfiguration": config})
    assert refused.status_code == 422
    assert refused.json()["exceptionClassName"] == "io.airbyte.validation.json.JsonValidationException"
    assert refused.json()["message"].startswith("The provided configuration does not fulfill the specification.")
    assert problem in refused.json()["message"]
    check = api.post(
        "/scheduler/destinations/check_connection",
        json={"destinationDefinitionId": POSTGRES_DESTINATION_DEFINITION_ID, "connectionConfiguration": config},
    )
    assert check.status_code == 422 and problem in check.json()["message"]


def test_nested_secrets_are_masked_and_kept_when_sent_back_masked(srv, api):
    from devtools.airbyte_emulator import SNOWFLAKE_DESTINATION_DEFINITION_ID

    ws = post(api, "/workspaces/create", {"name": "W"})["workspaceId"]
    config = {
        "host": "acme.eu-west-1.aws.snowflakecomputing.com",
        "role": "R",
        "warehouse": "W",
        "database": "D",
        "schema": "S",
        "username": "U",
        "credentials": {"auth_type": "Username and Password", "password": "sn0w-secret"},
        "loading_method": {"method": "Internal Staging"},
    }
    body = {"workspaceId": ws, "name": "sf", "destinationDefinitionId": SNOWFLAKE_DESTINATION_DEFINITION_ID}
    created = post(api, "/destinations/create", {**body, "connectionConfiguration": config})
    assert created["connectionConfiguration"]["credentials"] == {
        "auth_type": "Username and Password",
        "password": "**********",
    }
    post(
        api,
        "/destinations/update",
        {
            "destinationId": created["destinationId"],
            "name": "sf",
            "connectionConfiguration": created["connectionConfiguration"],
        },
    )
    stored = srv.state()["destinations"][created["destinationId"]]["connectionConfiguration"]
    assert stored["credentials"]["password"] == "sn0w-secret"
    check = post(api, "/destinations/check_connection", {"destinationId": created["destinationId"]})
    assert check["status"] == "failed" and check["message"].startswith("Could not connect with provided configuration.")
    assert check["jobInfo"]["succeeded"] is True and check["jobInfo"]["configType"] == "check_connection_destination"


def test_sample_source_incremental_append_dedup_and_reset(srv, api, tmp_path):
    """Incremental append reads only rows past the saved cursor; append_dedup keeps one row per key; a reset
    empties the tables and forgets the cursor."""
    path, (_ws, src, _dst, con) = duckdb_pipeline(api, tmp_path, count=5)
    catalog = post(api, "/sources/discover_schema", {"sourceId": src["sourceId"]})["catalog"]
    streams = {entry["stream"]["name"]: entry for entry in catalog["streams"]}
    assert streams["customers"]["stream"]["supportedSyncModes"] == ["full_refresh", "incremental"]
    assert streams["customers"]["stream"]["defaultCursorField"] == ["created_at"]
    assert streams["orders"]["stream"]["sourceDefinedPrimaryKey"] == [["id"]]
    streams["customers"]["config"].update(syncMode="incremental", cursorField=["id"], destinationSyncMode="append")
    streams["orders"]["config"].update(syncMode="full_refresh", destinationSyncMode="append_dedup")
    post(api, "/connections/update", {"connectionId": con["connectionId"], "syncCatalog": catalog})

    first = run_job(srv, api, "/connections/sync", con["connectionId"])
    assert first["attempts"][-1]["attempt"]["recordsSynced"] == 10
    state = post(api, "/state/get", {"connectionId": con["connectionId"]})
    assert state["stateType"] == "stream"
    assert state["streamState"] == [
        {"streamDescriptor": {"name": "customers"}, "streamState": {"cursor": 5, "cursor_field": ["id"]}}
    ]
    again = run_job(srv, api, "/connections/sync", con["connectionId"])
    assert again["attempts"][-1]["attempt"]["streamStats"] == [
        {"streamName": "customers", "stats": {"recordsEmitted": 0, "recordsCommitted": 0}},
        {"streamName": "orders", "stats": {"recordsEmitted": 5, "recordsCommitted": 5}},
    ]
    assert len(duck_rows(path, "customers")) == 5 and len(duck_rows(path, "orders")) == 5
    post(api, "/sources/update", {"sourceId": src["sourceId"], "connectionConfiguration": {"count": 8, "seed": 42}})
    run_job(srv, api, "/connections/sync", con["connectionId"])
    assert [row[0] for row in duck_rows(path, "customers")] == list(range(1, 9))
    assert [row[0] for row in duck_rows(path, "orders")] == list(range(1, 9))
    run_job(srv, api, "/connections/reset", con["connectionId"])
    assert duck_rows(path, "customers") == []
    assert post(api, "/state/get", {"connectionId": con["connectionId"]})["stateType"] == "not_set"


def test_job_logs_debug_info_and_the_connection_list_as_airbyte_serves_them(srv, api, tmp_path):
    _path, (ws, src, dst, con) = duckdb_pipeline(api, tmp_path, count=3)
    listed = post(api, "/web_backend/connections/list", {"workspaceId": ws["workspaceId"]})["connections"]
    assert (
        listed[0]["source"]["sourceName"] == "Sample Data" and listed[0]["destination"]["destinationName"] == "DuckDB"
    )
    assert listed[0]["latestSyncJobStatus"] is None and listed[0]["isSyncing"] is False
    job = run_job(srv, api, "/connections/sync", con["connectionId"])["job"]
    listed = post(api, "/web_backend/connections/list", {"workspaceId": ws["workspaceId"]})["connections"]
    assert (listed[0]["latestSyncJobStatus"], listed[0]["latestSyncJobCreatedAt"]) == ("succeeded", job["createdAt"])
    jobs = post(api, "/jobs/list", {"configTypes": ["sync"], "configId": con["connectionId"]})["jobs"]
    assert jobs[0]["attempts"][0]["status"] == "succeeded" and "logs" not in jobs[0]["attempts"][0]
    attempt = post(api, "/attempt/get_for_job", {"jobId": job["id"], "attemptNumber": 0})
    assert attempt["attempt"]["recordsSynced"] == 6
    assert any("read 3 record(s) from stream orders" in line for line in attempt["logs"]["logLines"])
    assert all(") - " in line or "):1 - " in line for line in attempt["logs"]["logLines"])
    debug = post(api, "/jobs/get_debug_info", {"id": job["id"]})
    assert debug["job"]["sourceDefinition"]["name"] == "Sample Data"
    assert debug["attempts"][0]["logs"]["logLines"] == attempt["logs"]["logLines"]
    assert api.post("/attempt/get_for_job", json={"jobId": job["id"], "attemptNumber": 3}).status_code == 404


@pytest.fixture
def pg_source():
    """(connectionConfiguration, psycopg connection) of a schema holding a table `visits` with 3 rows."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    dsn = require_pg_dsn()
    params = conninfo_to_dict(dsn)
    schema = f"emu_src_{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(f'CREATE SCHEMA "{schema}"')
    conn.execute(
        f'CREATE TABLE "{schema}".visits (id serial PRIMARY KEY, site text, visitors integer, '
        "amount numeric(10, 2), seen_at timestamp, tags jsonb)"
    )
    conn.execute(
        f'INSERT INTO "{schema}".visits (site, visitors, amount, seen_at, tags) VALUES '
        "('a', 3, 1.50, '2024-01-01 10:00', '[\"x\"]'), ('b', 5, 2.25, '2024-01-02 10:00', null), "
        "('c', 7, 3.00, '2024-01-03 10:00', '{\"k\": 1}')"
    )
    config = {
        "host": params.get("host", "127.0.0.1"),
        "port": int(params.get("port", 5432)),
        "database": params.get("dbname", "postgres"),
        "schemas": [schema],
        "username": params.get("user", "postgres"),
        "password": params.get("password", ""),
        "ssl_mode": {"mode": "disable"},
        "replication_method": {"method": "Standard"},
    }
    try:
        yield config, conn, schema
    finally:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()


def test_postgres_checks_fail_with_airbytes_messages(api, pg_source):
    from devtools.airbyte_emulator import POSTGRES_SOURCE_DEFINITION_ID

    config, _conn, _schema = pg_source
    ws = post(api, "/workspaces/create", {"name": "W"})["workspaceId"]

    def check(kind, definition_id, cfg):
        body = {f"{kind}DefinitionId": definition_id, "connectionConfiguration": cfg, "workspaceId": ws}
        return post(api, f"/scheduler/{kind}s/check_connection", body)

    assert check("source", POSTGRES_SOURCE_DEFINITION_ID, config)["status"] == "succeeded"
    wrong_password = check("source", POSTGRES_SOURCE_DEFINITION_ID, {**config, "password": "wrong"})
    assert wrong_password["status"] == "failed" and wrong_password["jobInfo"]["succeeded"] is True
    assert wrong_password["message"].startswith("State code: 28P01; Error code: 0; Message: FATAL:")
    assert "password authentication failed" in wrong_password["message"]
    closed_port = check("source", POSTGRES_SOURCE_DEFINITION_ID, {**config, "port": 1})
    assert (
        closed_port["message"].startswith("State code: 08001; Message: Connection to ")
        and "refused" in closed_port["message"]
    )
    no_schema = check("source", POSTGRES_SOURCE_DEFINITION_ID, {**config, "schemas": ["nope_schema"]})
    assert no_schema["status"] == "failed" and "nope_schema" in no_schema["message"]
    destination = {k: config[k] for k in ("host", "port", "database", "username", "password")} | {"schema": "x"}
    assert check("destination", POSTGRES_DESTINATION_DEFINITION_ID, destination)["status"] == "succeeded"
    bad = check("destination", POSTGRES_DESTINATION_DEFINITION_ID, {**destination, "password": "wrong"})
    assert bad["status"] == "failed" and "28P01" in bad["message"]


def test_postgres_source_discovers_tables_and_syncs_them_incrementally(srv, api, tmp_path, pg_source):
    from devtools.airbyte_emulator import POSTGRES_SOURCE_DEFINITION_ID

    config, conn, schema = pg_source
    ws = post(api, "/workspaces/create", {"name": "W"})["workspaceId"]
    src = post(
        api,
        "/sources/create",
        {
            "workspaceId": ws,
            "name": "pg",
            "sourceDefinitionId": POSTGRES_SOURCE_DEFINITION_ID,
            "connectionConfiguration": config,
        },
    )
    assert src["connectionConfiguration"]["password"] == "**********"
    discovered = post(api, "/sources/discover_schema", {"sourceId": src["sourceId"]})
    (entry,) = discovered["catalog"]["streams"]
    stream = entry["stream"]
    assert (stream["name"], stream["namespace"], stream["sourceDefinedPrimaryKey"]) == ("visits", schema, [["id"]])
    assert stream["jsonSchema"]["properties"]["seen_at"]["format"] == "date-time"
    assert stream["jsonSchema"]["properties"]["visitors"] == {"type": "integer"}
    entry["config"].update(syncMode="incremental", cursorField=["seen_at"], destinationSyncMode="append")
    dst = post(
        api,
        "/destinations/create",
        {
            "workspaceId": ws,
            "name": "duck",
            "destinationDefinitionId": DUCKDB_DESTINATION_DEFINITION_ID,
            "connectionConfiguration": {"destination_path": str(tmp_path / "w.duckdb"), "schema": "raw"},
        },
    )
    con = post(
        api,
        "/connections/create",
        {"sourceId": src["sourceId"], "destinationId": dst["destinationId"], "syncCatalog": discovered["catalog"]},
    )
    run_job(srv, api, "/connections/sync", con["connectionId"])
    assert [r[:3] for r in duck_rows(tmp_path / "w.duckdb", "visits", "raw")] == [(1, "a", 3), (2, "b", 5), (3, "c", 7)]
    conn.execute(f"INSERT INTO \"{schema}\".visits (site, visitors, seen_at) VALUES ('d', 9, '2024-01-04 10:00')")
    second = run_job(srv, api, "/connections/sync", con["connectionId"])
    assert second["attempts"][-1]["attempt"]["recordsSynced"] == 1
    assert [r[1] for r in duck_rows(tmp_path / "w.duckdb", "visits", "raw")] == ["a", "b", "c", "d"]
    state = post(api, "/state/get", {"connectionId": con["connectionId"]})
    assert state["streamState"][0]["streamState"]["cursor"] == "2024-01-04T10:00:00"


def test_an_unreachable_postgres_source_fails_discovery_in_the_job_info(api):
    from devtools.airbyte_emulator import POSTGRES_SOURCE_DEFINITION_ID

    ws = post(api, "/workspaces/create", {"name": "W"})["workspaceId"]
    config = {"host": "127.0.0.1", "port": 1, "database": "d", "username": "u", "password": "p"}
    src = post(
        api,
        "/sources/create",
        {
            "workspaceId": ws,
            "name": "pg",
            "sourceDefinitionId": POSTGRES_SOURCE_DEFINITION_ID,
            "connectionConfiguration": config,
        },
    )
    discovered = post(api, "/sources/discover_schema", {"sourceId": src["sourceId"]})
    assert "catalog" not in discovered and discovered["jobInfo"]["succeeded"] is False
    assert "refused" in discovered["jobInfo"]["failureReason"]["externalMessage"]
