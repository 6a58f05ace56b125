"""The proxy's block-migration routes: legacy blocks described without secrets, and the dbt profile of a legacy
DbtCoreOperation converted to the Secret-JSON profile inside the proxy (the caller never sees the password)."""

from __future__ import annotations

import json
import secrets
import uuid

import httpx
import pytest
from prefect.client.orchestration import get_client

from devtools.legacy_install import save_block
from tests.conftest import PROXY_TEST_TOKEN
from tests.support.prefect_rest import prefect_client

pytestmark = pytest.mark.prefect


def _classes():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from prefect_dbt.cli.commands import DbtCoreOperation
        from prefect_dbt.cli.configs import TargetConfigs
        from prefect_dbt.cli.credentials import DbtCliProfile
    return DbtCoreOperation, DbtCliProfile, TargetConfigs


@pytest.fixture
def proxy(proxy_server):
    with httpx.Client(
        base_url=proxy_server, headers={"Authorization": f"Bearer {PROXY_TEST_TOKEN}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def postgres_dbt_block(prefect_server, tmp_path) -> dict:
    """A legacy DbtCoreOperation whose named DbtCliProfile holds a postgres password (in clear, as they did)."""
    DbtCoreOperation, DbtCliProfile, TargetConfigs = _classes()
    prefix = f"route-{uuid.uuid4().hex[:8]}"
    password = f"pw-{secrets.token_hex(8)}"
    with get_client(sync_client=True) as client:
        profile_id = save_block(
            client,
            DbtCliProfile,
            f"{prefix}-profile",
            {
                "name": "acme",
                "target": "prod",
                "target_configs": {
                    "type": "postgres",
                    "schema": "analytics",
                    "threads": 2,
                    "extras": {
                        "host": "db.internal",
                        "port": 5433,
                        "user": "acme",
                        "password": password,
                        "dbname": "wh",
                    },
                    "block_type_slug": TargetConfigs.get_block_type_slug(),
                },
            },
        )
        save_block(
            client,
            DbtCoreOperation,
            f"{prefix}-dbt-run",
            {
                "commands": ["dbt run --select tag:daily"],
                "project_dir": str(tmp_path),
                "working_dir": str(tmp_path),
                "dbt_cli_profile": {"$ref": {"block_document_id": profile_id}},
            },
        )
        save_block(client, DbtCoreOperation, f"{prefix}-no-profile", {"commands": ["dbt run"], "project_dir": "/x"})
    return {"prefix": prefix, "password": password, "profile_id": profile_id}


def test_describe_gives_the_facts_of_legacy_blocks_without_their_credentials(proxy, postgres_dbt_block):
    prefix = postgres_dbt_block["prefix"]
    names = [f"{prefix}-dbt-run", f"{prefix}-profile", f"{prefix}-missing"]
    response = proxy.post("/proxy/legacy/blocks/describe", json={"block_names": names})
    assert response.status_code == 200, response.text
    assert postgres_dbt_block["password"] not in response.text and "db.internal" not in response.text
    body = response.json()
    assert body["missing"] == [f"{prefix}-missing"]
    blocks = {block["block_name"]: block for block in body["blocks"]}
    operation = blocks[f"{prefix}-dbt-run"]
    assert (operation["block_type"], operation["commands"]) == ("dbt Core Operation", ["dbt run --select tag:daily"])
    assert operation["dbt_cli_profile"] == {
        "block_id": postgres_dbt_block["profile_id"],
        "block_name": f"{prefix}-profile",
        "profile_name": "acme",
        "target": "prod",
        "wtype": "postgres",
        "target_schema": "analytics",
        "threads": 2,
    }
    assert blocks[f"{prefix}-profile"]["block_type"] == "dbt CLI Profile"
    assert proxy.post("/proxy/legacy/blocks/describe", json={"block_names": ["Not A Name"]}).status_code == 422


def test_profile_from_dbtcore_writes_a_masked_secret_json_and_never_answers_with_the_password(
    proxy, postgres_dbt_block
):
    prefix, password = postgres_dbt_block["prefix"], postgres_dbt_block["password"]
    body = {"dbtcore_block_name": f"{prefix}-dbt-run", "cli_profile_block_name": f"{prefix}-new-profile"}
    created = proxy.post("/proxy/blocks/dbtcli/profile/from_dbtcore/", json=body)
    assert created.status_code == 201, created.text
    assert password not in created.text
    assert {key: created.json()[key] for key in ("block_name", "profile_name", "target", "wtype", "target_schema")} == {
        "block_name": f"{prefix}-new-profile",
        "profile_name": "acme",
        "target": "prod",
        "wtype": "postgres",
        "target_schema": "analytics",
    }
    api = prefect_client()
    path = f"/block_types/slug/secret/block_documents/name/{prefix}-new-profile"
    assert password not in api.get(path).text  # masked without include_secrets
    value = api.get(path, params={"include_secrets": True}).json()["data"]["value"]
    assert isinstance(value, str)  # a JSON string (a Secret holding an object is shown in clear)
    assert json.loads(value) == {
        "profile_name": "acme",
        "target": "prod",
        "type": "postgres",
        "schema": "analytics",
        "threads": 2,
        "credentials": {"host": "db.internal", "port": 5433, "user": "acme", "password": password, "dbname": "wh"},
    }
    again = proxy.post("/proxy/blocks/dbtcli/profile/from_dbtcore/", json=body)
    assert again.status_code == 409
    overridden = proxy.post(
        "/proxy/blocks/dbtcli/profile/from_dbtcore/",
        json={**body, "cli_profile_block_name": f"{prefix}-other", "profile": {"name": "x"}, "target_schema": "dbt"},
    )
    assert (overridden.json()["profile_name"], overridden.json()["target"], overridden.json()["target_schema"]) == (
        "x",
        "default",
        "dbt",
    )


def test_profile_from_dbtcore_names_what_is_wrong(proxy, postgres_dbt_block):
    prefix = postgres_dbt_block["prefix"]
    route = "/proxy/blocks/dbtcli/profile/from_dbtcore/"
    unknown = proxy.post(route, json={"dbtcore_block_name": f"{prefix}-nope", "cli_profile_block_name": f"{prefix}-p"})
    assert unknown.status_code == 404 and f"{prefix}-nope" in unknown.json()["detail"]
    no_profile = proxy.post(
        route, json={"dbtcore_block_name": f"{prefix}-no-profile", "cli_profile_block_name": f"{prefix}-p"}
    )
    assert no_profile.status_code == 422 and "has no dbt CLI profile" in no_profile.json()["detail"]
    assert httpx.post(proxy.base_url.join(route), json={}).status_code == 401
