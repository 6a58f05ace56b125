"""The dbt profile contract (Secret block JSON -> profiles.yml) and the removal of secrets from run logs.

No Prefect server needed: these exercise the pure parts of the flows (ddpui/flows).
"""

from __future__ import annotations

import json
import logging

import pytest

from ddpcontract.warehouses import profile_target
from ddpui.flows.profiles import ProfileError, render_profile
from ddpui.flows.redaction import redacted_logging, register_credential_secrets, register_url_secret
from ddpui.flows.shell import git_pull_command

KEYFILE = {
    "type": "service_account",
    "project_id": "acme-analytics",
    "private_key_id": "0123456789abcdef",
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvAIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
    "client_email": "dbt@acme-analytics.iam.gserviceaccount.com",
    "client_id": "1234567890",
    "token_uri": "https://oauth2.googleapis.com/token",
}


def bigquery_profile(**changes) -> dict:
    profile = {
        "profile_name": "acme",
        "target": "prod",
        "type": "bigquery",
        "schema": "analytics",
        "threads": 8,
        "credentials": {
            "project": "acme-analytics",
            "method": "service-account-json",
            "keyfile_json": KEYFILE,
            "location": "EU",
        },
    }
    profile.update(changes)
    return profile


def test_bigquery_profile_renders_the_service_account_json_profile():
    assert render_profile(bigquery_profile()) == {
        "config": {},
        "acme": {
            "target": "prod",
            "outputs": {
                "prod": {
                    "type": "bigquery",
                    "schema": "analytics",  # dbt-bigquery reads schema as the dataset
                    "threads": 8,
                    "project": "acme-analytics",
                    "method": "service-account-json",
                    "keyfile_json": KEYFILE,
                    "location": "EU",
                }
            },
        },
    }


def test_profile_json_may_be_a_string_and_keyfile_json_too():
    profile = bigquery_profile()
    profile["credentials"] = {**profile["credentials"], "keyfile_json": json.dumps(KEYFILE)}
    del profile["threads"]
    del profile["credentials"]["location"]

    output = render_profile(json.dumps(profile))["acme"]["outputs"]["prod"]

    assert output["keyfile_json"] == KEYFILE
    assert output["threads"] == 4
    assert "location" not in output


def test_postgres_and_duckdb_profiles_render_their_credentials():
    postgres = render_profile(
        {
            "profile_name": "acme",
            "target": "default",
            "type": "postgres",
            "schema": "analytics",
            "credentials": {"host": "db", "port": "5432", "user": "u", "password": "p4ssw0rd", "dbname": "wh"},
        }
    )
    assert postgres["acme"]["outputs"]["default"] == {
        "type": "postgres",
        "schema": "analytics",
        "threads": 4,
        "host": "db",
        "port": 5432,
        "user": "u",
        "password": "p4ssw0rd",
        "dbname": "wh",
    }
    duckdb = render_profile(
        {"profile_name": "a", "target": "t", "type": "duckdb", "schema": "s", "credentials": {"path": "/w.duckdb"}}
    )
    assert duckdb["a"]["outputs"]["t"] == {"type": "duckdb", "schema": "s", "threads": 4, "path": "/w.duckdb"}


@pytest.mark.parametrize(
    ("wtype", "credentials"),
    [
        ("postgres", {"host": "db", "port": 5432, "user": "u", "password": "p4ssw0rd", "dbname": "wh"}),
        ("duckdb", {"path": "/w.duckdb"}),
        ("bigquery", {"project": "acme-analytics", "method": "service-account-json", "keyfile_json": KEYFILE}),
        (
            "snowflake",
            {"account": "acme123.us-east-2.aws", "user": "LOADER", "role": "TRANSFORMER", "database": "ANALYTICS",
             "warehouse": "COMPUTE_WH", "private_key": "-----BEGIN PRIVATE KEY-----", "private_key_passphrase": "pp"},
        ),
    ],
)  # fmt: skip
def test_every_warehouse_types_profile_renders_as_the_registry_says(wtype, credentials):
    """prefect-dbt's DbtCliProfile (what a dbt task writes) gives the registry's profiles.yml, for every type."""
    profile = {
        "profile_name": "acme",
        "target": "prod",
        "type": wtype,
        "schema": "analytics",
        "credentials": credentials,
    }
    assert render_profile(profile) == profile_target(profile).profiles_yml()
    assert render_profile(profile)["acme"]["outputs"]["prod"]["type"] == wtype


def test_the_secret_fields_of_every_warehouse_type_are_redacted():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    logger = logging.getLogger("prefect")
    keep = Keep()
    logger.addHandler(keep)
    try:
        with redacted_logging():
            register_credential_secrets(
                {"account": "acme123", "private_key": "pk-Secr3t-Key", "private_key_passphrase": "Passphr4se"}
            )
            logger.warning("connecting to %s with %s and %s", "acme123", "pk-Secr3t-Key", "Passphr4se")
    finally:
        logger.removeHandler(keep)
    assert records == ["connecting to acme123 with *** and ***"]


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (bigquery_profile(type="redshift"), "unsupported warehouse type 'redshift'"),
        (bigquery_profile(credentials={"project": "p", "method": "service-account-json"}), "lack keyfile_json"),
        ({"type": "duckdb", "credentials": {"path": "x"}}, "lacks profile_name, target, schema"),
        ("{not json", "not valid JSON"),
    ],
)
def test_invalid_profiles_are_refused_with_a_clear_message(profile, expected):
    with pytest.raises(ProfileError, match=expected):
        render_profile(profile)


def test_profile_errors_name_missing_keys_but_never_values():
    profile = bigquery_profile()
    del profile["credentials"]["project"]
    with pytest.raises(ProfileError) as error:
        render_profile(profile)
    assert "project" in str(error.value)
    assert KEYFILE["private_key"] not in str(error.value)


def test_a_tokenised_git_url_is_redacted_in_every_form_git_prints_it():
    url = "https://oauth2:glpat-Secr3tT0ken@git.example.org/acme/dbt.git"
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    logger = logging.getLogger("prefect")  # run loggers' records pass the same filter (without the API handler)
    keep = Keep()
    logger.addHandler(keep)
    try:
        with redacted_logging():
            register_url_secret(url)
            logger.warning("From %s", "https://git.example.org/acme/dbt")
            logger.warning("fatal: unable to access '%s/': auth failed", url)
            logger.warning("token %s", "glpat-Secr3tT0ken")
        logger.warning("after the run: %s", "glpat-Secr3tT0ken is no longer registered")
    finally:
        logger.removeHandler(keep)

    assert records[:3] == ["From ***", "fatal: unable to access '***/': auth failed", "token ***"]
    assert records[3].startswith("after the run: glpat")


def test_git_pull_commands_are_pointed_at_the_url_variable():
    assert git_pull_command("git pull") == 'git pull "$DDPUI_GIT_PULL_URL" "$(git rev-parse --abbrev-ref HEAD)"'
    assert git_pull_command("git pull --ff-only origin main") == ('git pull --ff-only "$DDPUI_GIT_PULL_URL" main')
    assert git_pull_command("dbt deps") == "dbt deps"
