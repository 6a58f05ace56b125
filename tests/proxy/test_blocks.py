"""Blocks saved through the proxy load back with `Block.load` and never expose a secret through Prefect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from airbyte_prefect.server import AirbyteServer
from prefect.blocks.system import Secret

from tests.proxy.conftest import unique
from tests.support.prefect_rest import prefect_request

pytestmark = pytest.mark.prefect

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_PROJECT = REPO_ROOT / "devtools" / "sample_dbt_project"
PASSWORD = "pw-5f1c0e7a9d"  # distinctive, so a leak is easy to spot


def raw_block_document(prefect_server, block_id: str) -> dict:
    """What anyone with access to Prefect's API sees (no include_secrets)."""
    return prefect_request("GET", f"{prefect_server.api_url}/block_documents/{block_id}").json()


def block_schema_count(prefect_server, slug: str) -> int:
    response = prefect_request(
        "POST",
        f"{prefect_server.api_url}/block_schemas/filter",
        json={"block_schemas": {"block_type_id": {"any_": [block_type_id(prefect_server, slug)]}}},
    )
    return len(response.json())


def block_type_id(prefect_server, slug: str) -> str:
    return prefect_request("GET", f"{prefect_server.api_url}/block_types/slug/{slug}").json()["id"]


# ---------------------------------------------------------------- Airbyte server


def test_airbyte_server_block_round_trip(api, prefect_server):
    name = unique("airbyte")
    create = {
        "blockName": name,
        "serverHost": "airbyte.local",
        "serverPort": 8000,
        "username": "airbyte",
        "password": PASSWORD,
    }
    created = api.post("/proxy/blocks/airbyte/server/", json=create)
    assert created.status_code == 201, created.text
    block_id = created.json()["block_id"]
    assert created.json()["block_name"] == name

    loaded = AirbyteServer.load(name)
    assert (loaded.server_host, loaded.server_port, loaded.username) == ("airbyte.local", 8000, "airbyte")
    assert loaded.password.get_secret_value() == PASSWORD
    assert loaded.base_url == "http://airbyte.local:8000/api/v1"

    assert api.post("/proxy/blocks/airbyte/server/", json=create).status_code == 409

    updated = api.put("/proxy/blocks/airbyte/server/", json={"blockName": name, "serverPort": 8001, "apiVersion": "v2"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["block_id"] == block_id
    loaded = AirbyteServer.load(name)
    assert (loaded.server_port, loaded.api_version) == (8001, "v2")
    assert loaded.password.get_secret_value() == PASSWORD  # untouched fields keep their value

    read = api.get("/proxy/blocks/airbyte/server/", params={"blockName": name})
    assert read.status_code == 200
    assert read.json() == {
        "block_id": block_id,
        "block_name": name,
        "serverHost": "airbyte.local",
        "serverPort": 8001,
        "username": "airbyte",
        "apiVersion": "v2",
        "useSsl": False,
    }
    assert PASSWORD not in json.dumps(raw_block_document(prefect_server, block_id))


def test_airbyte_server_errors(api):
    assert api.get("/proxy/blocks/airbyte/server/", params={"blockName": "missing"}).status_code == 404
    assert api.get("/proxy/blocks/airbyte/server/").status_code == 422
    assert api.put("/proxy/blocks/airbyte/server/", json={"blockName": "missing", "serverPort": 1}).status_code == 404
    invalid = {"blockName": unique("ab"), "serverHost": "h", "serverPort": 70000, "username": "u", "password": "p"}
    assert api.post("/proxy/blocks/airbyte/server/", json=invalid).status_code == 422


def test_resaving_a_block_does_not_create_another_schema(api, prefect_server):
    name = unique("airbyte")
    body = {"blockName": name, "serverHost": "h", "serverPort": 1, "username": "u", "password": "p"}
    assert api.post("/proxy/blocks/airbyte/server/", json=body).status_code == 201
    airbyte_schemas = block_schema_count(prefect_server, "airbyte-server")
    secret = {"blockName": unique("secret"), "secret": "s"}
    assert api.put("/proxy/blocks/secret/", json=secret).status_code == 200
    secret_schemas = block_schema_count(prefect_server, "secret")

    for port in (2, 3):
        assert api.put("/proxy/blocks/airbyte/server/", json={"blockName": name, "serverPort": port}).status_code == 200
        assert api.put("/proxy/blocks/secret/", json=secret).status_code == 200
    body["blockName"] = unique("airbyte")
    assert api.post("/proxy/blocks/airbyte/server/", json=body).status_code == 201

    assert block_schema_count(prefect_server, "airbyte-server") == airbyte_schemas
    assert block_schema_count(prefect_server, "secret") == secret_schemas


# ---------------------------------------------------------------- secrets


def test_secret_block_round_trip(api, prefect_server):
    name = unique("git-url")
    created = api.post("/proxy/blocks/secret/", json={"blockName": name, "secret": f"https://x:{PASSWORD}@git/repo"})
    assert created.status_code == 201, created.text
    block_id = created.json()["block_id"]
    assert Secret.load(name).get() == f"https://x:{PASSWORD}@git/repo"

    again = api.post("/proxy/blocks/secret/", json={"blockName": name, "secret": "other"})
    assert again.status_code == 409
    assert Secret.load(name).get() == f"https://x:{PASSWORD}@git/repo"

    upserted = api.put("/proxy/blocks/secret/", json={"blockName": name, "secret": "rotated"})
    assert upserted.status_code == 200
    assert upserted.json() == {"block_id": block_id, "block_name": name}
    assert Secret.load(name).get() == "rotated"

    new_name = unique("upserted")
    assert api.put("/proxy/blocks/secret/", json={"blockName": new_name, "secret": PASSWORD}).status_code == 200
    assert Secret.load(new_name).get() == PASSWORD

    read = api.get(f"/proxy/blocks/secret/{name}")
    assert read.json() == {"block_id": block_id, "block_name": name}
    assert raw_block_document(prefect_server, block_id)["data"] == {"value": "********"}
    assert api.get("/proxy/blocks/secret/no-such-secret").status_code == 404
    assert api.get("/proxy/blocks/secret/No_Such").status_code == 422


MASK = "**********"


def test_a_json_secret_updated_with_masked_values_keeps_the_stored_ones(api, prefect_server):
    """As Airbyte's update does: a configuration sent back with its secrets masked keeps them, at any depth."""
    name = unique("warehouse-credentials")
    stored = {
        "host": "db.example",
        "password": PASSWORD,
        "tunnel_method": {"tunnel_method": "SSH_PASSWORD_AUTH", "tunnel_user_password": "tunnel-pw"},
        "keys": [{"id": 1, "secret": "k1"}, {"id": 2, "secret": "k2"}],
        "dropped": "old",
    }
    block_id = api.put("/proxy/blocks/secret/", json={"blockName": name, "secret": json.dumps(stored)}).json()[
        "block_id"
    ]
    sent = {
        "host": "db2.example",
        "password": MASK,
        "tunnel_method": {"tunnel_method": "SSH_PASSWORD_AUTH", "tunnel_user_password": MASK},
        "keys": [{"id": 1, "secret": MASK}, {"id": 2, "secret": "k2-new"}],
        "port": 5433,
    }
    response = api.patch("/proxy/blocks/secret/", json={"blockName": name, "secret": sent})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "block_id": block_id,
        "block_name": name,
        "kept": ["password", "tunnel_method.tunnel_user_password", "keys.0.secret"],
    }
    assert PASSWORD not in response.text and "tunnel-pw" not in response.text
    assert Secret.load(name).get() == {  # the new object: what was left out is gone, masked values kept
        "host": "db2.example",
        "password": PASSWORD,
        "tunnel_method": {"tunnel_method": "SSH_PASSWORD_AUTH", "tunnel_user_password": "tunnel-pw"},
        "keys": [{"id": 1, "secret": "k1"}, {"id": 2, "secret": "k2-new"}],
        "port": 5433,
    }
    assert raw_block_document(prefect_server, block_id)["data"] == {"value": "********"}

    # a new password replaces the stored one
    api.patch("/proxy/blocks/secret/", json={"blockName": name, "secret": {**sent, "password": "rotated"}})
    assert Secret.load(name).get()["password"] == "rotated"


def test_masked_values_with_nothing_to_keep_are_refused(api):
    name = unique("warehouse-credentials")
    api.put("/proxy/blocks/secret/", json={"blockName": name, "secret": json.dumps({"password": PASSWORD})})
    unknown = api.patch("/proxy/blocks/secret/", json={"blockName": name, "secret": {"token": MASK}})
    assert unknown.status_code == 422
    assert unknown.json()["detail"].startswith("token is masked (**********) but the secret holds no value there")
    assert Secret.load(name).get() == {"password": PASSWORD}  # nothing written

    plain = unique("plain")
    api.put("/proxy/blocks/secret/", json={"blockName": plain, "secret": "not json"})
    refused = api.patch("/proxy/blocks/secret/", json={"blockName": plain, "secret": {"password": MASK}})
    assert refused.status_code == 422 and "does not hold a JSON object" in refused.json()["detail"]
    assert api.patch("/proxy/blocks/secret/", json={"blockName": unique("none"), "secret": {}}).status_code == 404
    assert api.patch("/proxy/blocks/secret/", json={"blockName": name, "secret": "text"}).status_code == 422


def test_delete_block(api):
    name = unique("doomed")
    block_id = api.post("/proxy/blocks/secret/", json={"blockName": name, "secret": "s"}).json()["block_id"]
    deleted = api.delete(f"/proxy/blocks/{block_id}")
    assert deleted.status_code == 200
    assert deleted.json() == {"block_id": block_id, "deleted": True}
    assert api.get(f"/proxy/blocks/secret/{name}").status_code == 404
    assert api.delete(f"/proxy/blocks/{block_id}").status_code == 404
    assert api.delete("/proxy/blocks/not-a-uuid").status_code == 422


# ---------------------------------------------------------------- dbt CLI profile


def postgres_profile(name: str) -> dict:
    return {
        "cli_profile_block_name": name,
        "profile": {"name": "acme", "target": "default"},
        "wtype": "postgres",
        "target_schema": "analytics",
        # Django's spelling (username / database) is accepted and stored as dbt's (user / dbname)
        "credentials": {"host": "db.local", "port": "5432", "username": "acme", "password": PASSWORD, "database": "wh"},
    }


def test_dbt_cli_profile_is_a_secret_holding_the_profile_json(api, prefect_server):
    name = unique("acme-profile")
    created = api.post("/proxy/blocks/dbtcli/profile/", json=postgres_profile(name))
    assert created.status_code == 201, created.text
    block_id = created.json()["block_id"]

    assert Secret.load(name).get() == {
        "profile_name": "acme",
        "target": "default",
        "type": "postgres",
        "schema": "analytics",
        "threads": 4,
        "credentials": {"host": "db.local", "port": 5432, "user": "acme", "password": PASSWORD, "dbname": "wh"},
    }
    document = raw_block_document(prefect_server, block_id)
    assert document["block_type"]["slug"] == "secret"
    assert PASSWORD not in json.dumps(document)

    read = api.get("/proxy/blocks/dbtcli/profile/", params={"block_name": name})
    assert read.status_code == 200
    assert read.json() == {
        "block_id": block_id,
        "block_name": name,
        "profile_name": "acme",
        "target": "default",
        "wtype": "postgres",
        "target_schema": "analytics",
        "threads": 4,
        "bqlocation": None,
    }
    assert api.post("/proxy/blocks/dbtcli/profile/", json=postgres_profile(name)).status_code == 409


def test_dbt_cli_profile_update_merges_credentials_and_schema(api):
    name = unique("acme-profile")
    assert api.post("/proxy/blocks/dbtcli/profile/", json=postgres_profile(name)).status_code == 201

    updated = api.put(
        "/proxy/blocks/dbtcli/profile/",
        json={"cli_profile_block_name": name, "target_schema": "staging", "credentials": {"password": "new-pw"}},
    )
    assert updated.status_code == 200, updated.text
    profile = Secret.load(name).get()
    assert profile["schema"] == "staging"
    assert profile["credentials"] == {
        "host": "db.local",
        "port": 5432,
        "user": "acme",
        "password": "new-pw",
        "dbname": "wh",
    }

    only_schema = api.put("/proxy/blocks/dbtcli/profile/", json={"cli_profile_block_name": name, "target_schema": "x"})
    assert only_schema.status_code == 200
    assert Secret.load(name).get()["credentials"]["password"] == "new-pw"

    missing = api.put("/proxy/blocks/dbtcli/profile/", json={"cli_profile_block_name": "nope", "target_schema": "x"})
    assert missing.status_code == 404
    switch_without_credentials = api.put(
        "/proxy/blocks/dbtcli/profile/", json={"cli_profile_block_name": name, "wtype": "duckdb"}
    )
    assert switch_without_credentials.status_code == 422


def test_dbt_cli_profile_validation(api):
    body = postgres_profile(unique("bad"))
    del body["credentials"]["host"]
    response = api.post("/proxy/blocks/dbtcli/profile/", json=body)
    assert response.status_code == 422
    assert "host" in response.json()["detail"]
    body = postgres_profile(unique("bad"))
    body["wtype"] = "snowflake"
    assert api.post("/proxy/blocks/dbtcli/profile/", json=body).status_code == 422
    assert api.get("/proxy/blocks/dbtcli/profile/", params={"block_name": "nope"}).status_code == 404

    plain_secret = unique("plain")
    api.put("/proxy/blocks/secret/", json={"blockName": plain_secret, "secret": "not a profile"})
    assert api.get("/proxy/blocks/dbtcli/profile/", params={"block_name": plain_secret}).status_code == 404


def warehouse_secret(api, config) -> str:
    """A warehouse credentials block as Django writes it: the Airbyte destination configuration as JSON."""
    name = unique("acme-warehouse-credentials")
    value = config if isinstance(config, str) else json.dumps(config)
    assert api.put("/proxy/blocks/secret/", json={"blockName": name, "secret": value}).status_code == 200
    return name


def profile_from_block(name: str, credentials_block: str, wtype: str = "postgres") -> dict:
    return {
        "cli_profile_block_name": name,
        "profile": {"name": "acme"},
        "wtype": wtype,
        "target_schema": "analytics",
        "credentials_block_name": credentials_block,
    }


def test_dbt_cli_profile_from_the_warehouse_credentials_block(api, prefect_server):
    """The proxy reads the credentials Secret itself: the caller sends only block names."""
    destination = {
        "host": "db.local",
        "port": 5433,
        "database": "wh",
        "username": "loader",
        "password": PASSWORD,
        "schema": "raw",
        "ssl_mode": {"mode": "disable"},
    }
    credentials_block = warehouse_secret(api, destination)
    name = unique("acme-profile")
    created = api.post("/proxy/blocks/dbtcli/profile/", json=profile_from_block(name, credentials_block))
    assert created.status_code == 201, created.text
    assert PASSWORD not in created.text
    profile = Secret.load(name).get()
    # only what dbt needs, in dbt's spelling: Airbyte-only keys (schema, ssl_mode) stay behind
    assert profile["credentials"] == {
        "host": "db.local",
        "port": 5433,
        "user": "loader",
        "password": PASSWORD,
        "dbname": "wh",
    }
    assert (profile["type"], profile["schema"], profile["profile_name"]) == ("postgres", "analytics", "acme")
    assert PASSWORD not in json.dumps(raw_block_document(prefect_server, created.json()["block_id"]))

    # new warehouse credentials: the block is rewritten, then the profile re-reads it (other fields kept)
    api.put(
        "/proxy/blocks/secret/",
        json={"blockName": credentials_block, "secret": json.dumps({**destination, "password": "rotated"})},
    )
    api.put("/proxy/blocks/dbtcli/profile/", json={"cli_profile_block_name": name, "target_schema": "marts"})
    updated = api.put(
        "/proxy/blocks/dbtcli/profile/",
        json={"cli_profile_block_name": name, "credentials_block_name": credentials_block},
    )
    assert updated.status_code == 200, updated.text
    profile = Secret.load(name).get()
    assert (profile["credentials"]["password"], profile["schema"]) == ("rotated", "marts")


def test_dbt_cli_profile_from_duckdb_and_bigquery_credentials_blocks(api):
    duckdb = unique("duck-profile")
    block = warehouse_secret(api, {"destination_path": "/data/acme.duckdb", "schema": "main"})
    assert (
        api.post("/proxy/blocks/dbtcli/profile/", json=profile_from_block(duckdb, block, "duckdb")).status_code == 201
    )
    assert Secret.load(duckdb).get()["credentials"] == {"path": "/data/acme.duckdb"}

    keyfile = {"type": "service_account", "project_id": "acme-proj", "private_key": PASSWORD}
    bigquery = unique("bq-profile")
    block = warehouse_secret(
        api,
        {
            "project_id": "acme-proj",
            "dataset_id": "analytics",
            "dataset_location": "asia-south1",
            "credentials_json": json.dumps(keyfile),  # Airbyte keeps the service account as a JSON string
        },
    )
    created = api.post("/proxy/blocks/dbtcli/profile/", json=profile_from_block(bigquery, block, "bigquery"))
    assert created.status_code == 201, created.text
    assert Secret.load(bigquery).get()["credentials"] == {
        "project": "acme-proj",
        "keyfile_json": keyfile,
        "method": "service-account-json",
        "location": "asia-south1",
    }
    read = api.get("/proxy/blocks/dbtcli/profile/", params={"block_name": bigquery}).json()
    assert read["bqlocation"] == "asia-south1" and PASSWORD not in json.dumps(read)


def test_dbt_cli_profile_credentials_block_errors(api):
    name = unique("acme-profile")
    both = {**postgres_profile(name), "credentials_block_name": "some-block"}
    neither = {key: value for key, value in postgres_profile(name).items() if key != "credentials"}
    for body in (both, neither):
        response = api.post("/proxy/blocks/dbtcli/profile/", json=body)
        assert response.status_code == 422 and "credentials_block_name" in response.json()["detail"]

    missing = api.post("/proxy/blocks/dbtcli/profile/", json=profile_from_block(name, unique("nowhere")))
    assert missing.status_code == 422 and "no secret block named" in missing.json()["detail"]
    not_json = api.post("/proxy/blocks/dbtcli/profile/", json=profile_from_block(name, warehouse_secret(api, "x")))
    assert not_json.status_code == 422 and "does not hold a warehouse configuration" in not_json.json()["detail"]
    incomplete = warehouse_secret(api, {"host": "db.local", "username": "u", "password": PASSWORD})
    lacking = api.post("/proxy/blocks/dbtcli/profile/", json=profile_from_block(name, incomplete))
    assert lacking.status_code == 422 and lacking.json()["detail"].endswith("lacks database")
    assert PASSWORD not in lacking.text
    assert api.get("/proxy/blocks/dbtcli/profile/", params={"block_name": name}).status_code == 404  # nothing saved

    assert api.post("/proxy/blocks/dbtcli/profile/", json=postgres_profile(name)).status_code == 201
    both_in_update = api.put(
        "/proxy/blocks/dbtcli/profile/",
        json={"cli_profile_block_name": name, "credentials": {"password": "x"}, "credentials_block_name": incomplete},
    )
    assert both_in_update.status_code == 422
    refused = api.put(
        "/proxy/blocks/dbtcli/profile/", json={"cli_profile_block_name": name, "credentials_block_name": incomplete}
    )
    assert refused.status_code == 422
    assert Secret.load(name).get()["credentials"]["dbname"] == "wh"  # the saved profile is untouched


def test_bigquery_profile_takes_the_service_account_json(api):
    name = unique("bq-profile")
    keyfile = {"type": "service_account", "project_id": "acme-proj", "private_key": PASSWORD, "client_email": "a@b"}
    created = api.post(
        "/proxy/blocks/dbtcli/profile/",
        json={
            "cli_profile_block_name": name,
            "profile": {"name": "acme", "target": "prod"},
            "wtype": "bigquery",
            "target_schema": "analytics",
            "credentials": keyfile,
            "bqlocation": "asia-south1",
        },
    )
    assert created.status_code == 201, created.text
    assert Secret.load(name).get()["credentials"] == {
        "project": "acme-proj",
        "keyfile_json": keyfile,
        "method": "service-account-json",
        "location": "asia-south1",
    }
    read = api.get("/proxy/blocks/dbtcli/profile/", params={"block_name": name}).json()
    assert (read["wtype"], read["target"], read["bqlocation"]) == ("bigquery", "prod", "asia-south1")
    assert PASSWORD not in json.dumps(read)


def test_a_profile_saved_by_the_proxy_renders_a_working_profiles_yml(api, tmp_path):
    """The flow's own builder turns the loaded JSON into a DbtCliProfile; dbt accepts its profiles.yml."""
    from prefect_flows import build_dbt_cli_profile

    name = unique("duck-profile")
    database = tmp_path / "warehouse.duckdb"
    created = api.post(
        "/proxy/blocks/dbtcli/profile/",
        json={
            "cli_profile_block_name": name,
            "profile": {"name": "ddpui", "target": "dev"},  # the sample project's profile name
            "wtype": "duckdb",
            "target_schema": "analytics",
            "credentials": {"path": str(database)},
        },
    )
    assert created.status_code == 201, created.text
    profile = build_dbt_cli_profile(Secret.load(name).get())
    rendered = profile.get_profile()
    assert rendered["ddpui"] == {
        "target": "dev",
        "outputs": {"dev": {"type": "duckdb", "schema": "analytics", "threads": 4, "path": str(database)}},
    }
    profiles_dir = tmp_path / "profiles"
    profiles_dir.mkdir()
    (profiles_dir / "profiles.yml").write_text(yaml.safe_dump(rendered))
    env = {
        **os.environ,
        "DBT_PROFILES_DIR": str(profiles_dir),
        "DBT_LOG_PATH": str(tmp_path / "logs"),
        "DBT_TARGET_PATH": str(tmp_path / "target"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    dbt = str(Path(sys.executable).parent / "dbt")
    debug = subprocess.run(
        [dbt, "debug", "--connection", "--project-dir", str(SAMPLE_PROJECT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert debug.returncode == 0, debug.stdout[-3000:]
    assert "OK connection ok" in debug.stdout
