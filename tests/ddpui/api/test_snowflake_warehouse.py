"""Snowflake as a warehouse type, end to end through the registry (no live Snowflake: the rendering is tested).

The API takes the Airbyte destination configuration, the Airbyte emulator keeps it (its Snowflake definition
has Airbyte's specification), the transform tasks make the dbt profile from the credentials block in the
proxy, and the flow renders that profile into the profiles.yml a dbt task would write.
"""

from __future__ import annotations

import json
import uuid

import pytest

from ddpui.flows.profiles import render_profile
from ddpui.models import OrgWarehouse
from tests.ddpui.api.helpers import add_dbt_workspace

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]


def snowflake_config(**credentials) -> dict:
    return {
        "host": "acme123.eu-west-1.aws.snowflakecomputing.com",
        "role": "TRANSFORMER",
        "warehouse": "COMPUTE_WH",
        "database": "ANALYTICS",
        "schema": "RAW",
        "username": "LOADER",
        "credentials": credentials or {"auth_type": "Username and Password", "password": f"sf-{uuid.uuid4().hex}"},
        "loading_method": {"method": "Internal Staging"},
    }


def create(api, org, config: dict):
    return api.post(
        "/api/organizations/warehouse/", {"wtype": "snowflake", "airbyteConfig": config}, headers=org.headers
    )


def test_a_snowflake_warehouse_becomes_a_snowflake_dbt_profile(api, new_org, prefect, repo_url):
    org = new_org()
    config = snowflake_config()
    password = config["credentials"]["password"]

    created = create(api, org, config)
    assert created.status_code == 200, created.content
    assert created.json()["wtype"] == "snowflake" and password not in created.content.decode()
    listed = api.get("/api/organizations/warehouses", headers=org.headers)
    assert listed.status_code == 200 and password not in listed.content.decode()
    assert listed.json()["warehouses"][0]["airbyteConfig"]["credentials"]["password"] == "**********"
    assert OrgWarehouse.objects.get(org__slug=org.slug).wtype == "snowflake"

    add_dbt_workspace(api, org, repo_url)
    response = api.post("/api/prefect/tasks/transform/", headers=org.headers)
    assert response.status_code == 200, response.content
    assert password not in response.content.decode()

    profile = json.loads(prefect.secret_value(f"{org.slug}-dbt-profile"))
    assert profile == {
        "profile_name": "ddpui",
        "target": "default",
        "type": "snowflake",
        "schema": "analytics",
        "threads": 4,
        "credentials": {
            "account": "acme123.eu-west-1.aws",
            "user": "LOADER",
            "role": "TRANSFORMER",
            "database": "ANALYTICS",
            "warehouse": "COMPUTE_WH",
            "password": password,
        },
    }
    assert render_profile(profile)["ddpui"]["outputs"]["default"] == {
        "type": "snowflake",
        "schema": "analytics",
        "threads": 4,
        "account": "acme123.eu-west-1.aws",
        "user": "LOADER",
        "role": "TRANSFORMER",
        "database": "ANALYTICS",
        "warehouse": "COMPUTE_WH",
        "password": password,
    }


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"warehouse": None}, "airbyteConfig for a snowflake warehouse needs warehouse"),
        ({"host": "", "username": ""}, "airbyteConfig for a snowflake warehouse needs host, username"),
        ({"credentials": {"auth_type": "OAuth2.0"}}, "airbyteConfig.credentials needs a password or a private_key"),
    ],
)
def test_a_snowflake_body_without_what_dbt_needs_is_refused_before_anything_is_written(
    api, new_org, prefect, change, detail
):
    org = new_org()
    config = {key: value for key, value in {**snowflake_config(), **change}.items() if value is not None}
    response = create(api, org, config)
    assert response.status_code == 400, response.content
    assert detail in response.json()["detail"]
    assert not OrgWarehouse.objects.filter(org__slug=org.slug).exists()
    assert f"{org.slug}-warehouse-credentials" not in prefect.block_names(org.slug)
