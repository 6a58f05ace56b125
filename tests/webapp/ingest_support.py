"""Set-up shared by the ingest contract tests: a new org with the web app signed in as its account manager,
and the bodies the web app's forms send (src/components/Destinations, Sources, Connections)."""

from __future__ import annotations

import uuid

from django.contrib.auth import get_user_model
from psycopg.conninfo import conninfo_to_dict

from devtools.airbyte_emulator import DUCKDB_DESTINATION_DEFINITION_ID, SAMPLE_SOURCE_DEFINITION_ID

from .conftest import WebApp, unique_email


def signed_in_org(name: str | None = None) -> WebApp:
    """A new user signs in, creates an org (W-01, W-03) and picks it, as the web app does."""
    email, password = unique_email("ingest"), "ingest-password-1"
    get_user_model().objects.create_user(username=email, email=email, password=password)
    webapp = WebApp()
    assert webapp.sign_in(email, password).status_code == 200
    created = webapp.post("v1/organizations/", {"name": name or f"Ingest {uuid.uuid4().hex[:8]}"})
    assert created.status_code == 200, created.content
    webapp.org_slug = created.json()["slug"]
    return webapp


def duckdb_config(path) -> dict:
    """What CreateDestinationForm sends for DuckDB: the form's fields and `port: Number(undefined)`, which
    JSON.stringify writes as null."""
    return {"destination_path": str(path), "schema": "airbyte_raw", "port": None}


def postgres_config(dsn: str, **changes) -> dict:
    params = conninfo_to_dict(dsn)
    config = {
        "host": params.get("host", "127.0.0.1"),
        "port": int(params.get("port", 5432)),
        "database": params.get("dbname", "postgres"),
        "schema": "airbyte_raw",
        "username": params.get("user", "postgres"),
        "password": params.get("password", ""),
        "ssl_mode": {"mode": "disable"},
    }
    return {**config, **changes}


def create_warehouse(webapp: WebApp, config: dict, *, definition_id=DUCKDB_DESTINATION_DEFINITION_ID, label="DuckDB"):
    """CreateDestinationForm: a check, then the create with the definition's label lower-cased as wtype."""
    body = {"name": "warehouse", "destinationDefId": definition_id, "config": config}
    check = webapp.post("airbyte/destinations/check_connection/", body)
    assert check.status_code == 200 and check.json()["status"] == "succeeded", check.content
    created = webapp.post(
        "organizations/warehouse/",
        {"wtype": label.lower(), "name": "warehouse", "destinationDefId": definition_id, "airbyteConfig": config},
    )
    assert created.status_code == 200, created.content
    return webapp.get("organizations/warehouses").json()["warehouses"][0]


def create_source(webapp: WebApp, *, count: int = 5, name: str = "sample") -> dict:
    """CreateSourceForm: a check, then the create; the source as the list shows it."""
    body = {"name": name, "sourceDefId": SAMPLE_SOURCE_DEFINITION_ID, "config": {"count": count, "seed": 42}}
    check = webapp.post("airbyte/sources/check_connection/", body)
    assert check.status_code == 200 and check.json()["status"] == "succeeded", check.content
    assert webapp.post("airbyte/sources/", body).status_code == 200
    return next(source for source in webapp.get("airbyte/sources").json() if source["name"] == name)


def form_streams(catalog: dict, choices: dict[str, dict]) -> list[dict]:
    """The `streams` CreateConnectionForm posts: every stream of the catalog with the form's defaults
    (not selected, full_refresh, append, cursor = default or ''), overridden by `choices` per stream."""
    streams = []
    for entry in catalog["streams"]:
        stream, config = entry["stream"], entry["config"]
        # setupInitialStreamsState: the default cursor, then the catalog's own choice when it has one
        cursor = (stream.get("defaultCursorField") or [""])[0]
        if "cursorField" in config:
            cursor = config["cursorField"][0] if config["cursorField"] else ""
        streams.append(
            {
                "name": stream["name"],
                "supportsIncremental": "incremental" in stream["supportedSyncModes"],
                "selected": False,
                "syncMode": "full_refresh",
                "destinationSyncMode": "append",
                "cursorField": cursor,
                **choices.get(stream["name"], {}),
            }
        )
    return streams
