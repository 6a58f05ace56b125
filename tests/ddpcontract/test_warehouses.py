"""The warehouse-type registry: each type's Airbyte destination configuration becomes its dbt profile, and what
either side lacks is named, never quoted. One row per warehouse type: adding a type adds its rows here."""

from __future__ import annotations

import json

import pytest

from ddpcontract.warehouses import (
    SECRET_FIELDS,
    WAREHOUSE_TYPES,
    WAREHOUSES,
    ProfileError,
    UnknownWarehouseType,
    WarehouseConfigError,
    WarehouseType,
    profile_target,
    warehouse_for,
)

SECRET = "s3cr3t-Value-9f2"
KEYFILE = {"type": "service_account", "project_id": "acme-proj", "private_key": SECRET, "client_email": "a@b"}

# (type, the warehouse's airbyteConfig, the dbt profile credentials the proxy derives from it)
DESTINATIONS = [
    (
        "postgres",
        {
            "host": "db.local",
            "port": "5433",
            "database": "wh",
            "username": "loader",
            "password": SECRET,
            "schema": "raw",
            "ssl_mode": {"mode": "disable"},
        },
        {"host": "db.local", "port": 5433, "user": "loader", "password": SECRET, "dbname": "wh"},
    ),
    ("duckdb", {"destination_path": "/data/acme.duckdb", "schema": "main"}, {"path": "/data/acme.duckdb"}),
    (
        "bigquery",
        {
            "project_id": "acme-proj",
            "dataset_id": "analytics",
            "dataset_location": "asia-south1",
            "credentials_json": json.dumps(KEYFILE),
        },
        {"project": "acme-proj", "keyfile_json": KEYFILE, "method": "service-account-json", "location": "asia-south1"},
    ),
    (
        "snowflake",
        {
            "host": "https://acme123.us-east-2.aws.snowflakecomputing.com",
            "role": "TRANSFORMER",
            "warehouse": "COMPUTE_WH",
            "database": "ANALYTICS",
            "schema": "RAW",
            "username": "LOADER",
            "credentials": {"auth_type": "Username and Password", "password": SECRET},
            "loading_method": {"method": "Internal Staging"},
        },
        {
            "account": "acme123.us-east-2.aws",
            "user": "LOADER",
            "role": "TRANSFORMER",
            "database": "ANALYTICS",
            "warehouse": "COMPUTE_WH",
            "password": SECRET,
        },
    ),
]


def test_every_warehouse_type_has_a_registry_entry_and_a_row_here():
    assert set(WAREHOUSES) == set(WarehouseType)
    assert sorted(row[0] for row in DESTINATIONS) == WAREHOUSE_TYPES
    assert {warehouse.destination for warehouse in WAREHOUSES.values()} == set(WAREHOUSE_TYPES)


@pytest.mark.parametrize(("wtype", "config", "credentials"), DESTINATIONS, ids=[row[0] for row in DESTINATIONS])
def test_a_destination_configuration_becomes_the_profile_credentials(wtype, config, credentials):
    warehouse = warehouse_for(wtype)
    warehouse.check_destination(config)
    assert warehouse.profile_credentials(config) == credentials
    assert warehouse.location(config) == ("asia-south1" if wtype == "bigquery" else None)


@pytest.mark.parametrize(("wtype", "config", "credentials"), DESTINATIONS, ids=[row[0] for row in DESTINATIONS])
def test_the_profile_json_renders_a_profiles_yml_with_the_credentials(wtype, config, credentials):
    profile = {
        "profile_name": "acme",
        "target": "prod",
        "type": wtype,
        "schema": "analytics",
        "credentials": credentials,
    }
    rendered = profile_target(json.dumps(profile)).profiles_yml()
    assert rendered == {
        "config": {},
        "acme": {
            "target": "prod",
            "outputs": {"prod": {"type": wtype, "schema": "analytics", "threads": 4, **credentials}},
        },
    }


@pytest.mark.parametrize(
    ("wtype", "config", "missing"),
    [
        ("postgres", {"host": "h", "port": 5432}, ["database", "username", "password"]),
        ("duckdb", {}, ["destination_path"]),
        ("bigquery", {"project_id": "p"}, ["dataset_id", "credentials_json"]),
        ("snowflake", {"host": "a.snowflakecomputing.com", "username": "u"}, ["warehouse", "database"]),
    ],
)
def test_a_destination_configuration_lacking_fields_names_them(wtype, config, missing):
    with pytest.raises(WarehouseConfigError) as refused:
        warehouse_for(wtype).check_destination(config)
    assert refused.value.missing == missing


@pytest.mark.parametrize(
    ("wtype", "config", "field", "problem"),
    [
        ("postgres", {"host": "h", "port": "fifty", "database": "d", "username": "u", "password": SECRET}, "port",
         "must be a number"),
        ("bigquery", {"project_id": "p", "dataset_id": "d", "credentials_json": f"{{{SECRET}"}, "credentials_json",
         "must be the service-account JSON (an object)"),
        ("snowflake", {"host": "a.snowflakecomputing.com", "warehouse": "W", "database": "D", "username": "u",
                       "credentials": {"auth_type": "OAuth2.0"}}, "credentials", "needs a password or a private_key"),
    ],
)  # fmt: skip
def test_a_wrong_value_is_named_by_its_field_and_never_quoted(wtype, config, field, problem):
    with pytest.raises(WarehouseConfigError) as refused:
        warehouse_for(wtype).check_destination(config)
    assert (refused.value.field, refused.value.problem) == (field, problem)
    assert SECRET not in str(refused.value)


def test_snowflake_takes_a_key_pair_instead_of_a_password():
    config = {**DESTINATIONS[3][1], "host": "acme123.snowflakecomputing.com"}
    config["credentials"] = {
        "auth_type": "Key Pair Authentication",
        "private_key": SECRET,
        "private_key_password": "pp",
    }
    credentials = warehouse_for("snowflake").profile_credentials(config)
    assert credentials["account"] == "acme123"
    assert (credentials["private_key"], credentials["private_key_passphrase"]) == (SECRET, "pp")
    assert "password" not in credentials


@pytest.mark.parametrize(
    ("wtype", "sent", "stored"),
    [
        ("postgres", {"host": "h", "username": "u", "password": "p", "database": "d"},
         {"host": "h", "port": 5432, "user": "u", "password": "p", "dbname": "d"}),
        ("bigquery", KEYFILE, {"project": "acme-proj", "keyfile_json": KEYFILE, "method": "service-account-json"}),
        ("duckdb", {"path": "/w.duckdb"}, {"path": "/w.duckdb"}),
        ("snowflake", {"account": "a", "username": "u", "password": "p", "database": "D", "warehouse": "W"},
         {"account": "a", "user": "u", "password": "p", "database": "D", "warehouse": "W"}),
    ],
)  # fmt: skip
def test_credentials_sent_directly_are_spelled_and_completed_as_the_profile_needs(wtype, sent, stored):
    warehouse = warehouse_for(wtype)
    assert warehouse.complete_credentials(warehouse.canonical_credentials(sent)) == stored


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"type": "postgres", "credentials": {"host": "h", "user": "u", "password": "p", "dbname": "d"}},
         "the postgres credentials lack port"),
        ({"type": "postgres", "credentials": {"host": "h", "port": "x", "user": "u", "password": "p", "dbname": "d"}},
         "the postgres credentials: port must be a number"),
        ({"type": "bigquery", "credentials": {"project": "p", "method": "service-account-json"}},
         "the bigquery credentials lack keyfile_json"),
        ({"type": "snowflake", "credentials": {"account": "a", "user": "u", "database": "D", "warehouse": "W"}},
         "the snowflake credentials: password or private_key is needed"),
        ({"type": "redshift", "credentials": {"host": "h"}}, "unsupported warehouse type 'redshift'"),
        ({"type": "duckdb", "credentials": ["path"]}, "credentials must be a JSON object"),
    ],
)  # fmt: skip
def test_a_profile_json_breaking_the_contract_is_refused(profile, message):
    with pytest.raises(ProfileError) as refused:
        profile_target({"profile_name": "acme", "target": "t", "schema": "s", **profile})
    assert message in str(refused.value)


def test_unknown_types_are_refused_and_the_secret_fields_are_known():
    with pytest.raises(UnknownWarehouseType):
        warehouse_for("oracle")
    assert {"password", "credentials_json", "keyfile_json", "private_key", "private_key_passphrase"} <= SECRET_FIELDS
    assert not {"host", "user", "project", "account"} & SECRET_FIELDS
