"""Connector definitions offered by the Airbyte emulator (test double only).

One source ("Sample Data", deterministic rows) and two destinations
("Postgres", "DuckDB"). The ids are fixed so tests and demos can refer to them.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from . import sample_data

SAMPLE_SOURCE_DEFINITION_ID = "5a3b1e00-d0d0-4e3a-9000-000000000001"
POSTGRES_DESTINATION_DEFINITION_ID = "5a3b1e00-d0d0-4e3a-9000-000000000101"
DUCKDB_DESTINATION_DEFINITION_ID = "5a3b1e00-d0d0-4e3a-9000-000000000102"

EMULATOR_TAG = "0.1.0-emulator"

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

SOURCE_DEFINITIONS: list[dict[str, Any]] = [
    {
        "sourceDefinitionId": SAMPLE_SOURCE_DEFINITION_ID,
        "name": "Sample Data",
        "dockerRepository": "ddpui-devtools/source-sample-data",
        "dockerImageTag": EMULATOR_TAG,
        "documentationUrl": "https://example.invalid/ddpui/devtools#sample-data",
        "icon": None,
        "sourceType": "api",
        "releaseStage": "custom",
        "protocolVersion": "0.2.0",
    }
]

DESTINATION_DEFINITIONS: list[dict[str, Any]] = [
    {
        "destinationDefinitionId": POSTGRES_DESTINATION_DEFINITION_ID,
        "name": "Postgres",
        "dockerRepository": "airbyte/destination-postgres",
        "dockerImageTag": EMULATOR_TAG,
        "documentationUrl": "https://docs.airbyte.com/integrations/destinations/postgres",
        "icon": None,
        "releaseStage": "custom",
        "protocolVersion": "0.2.0",
    },
    {
        "destinationDefinitionId": DUCKDB_DESTINATION_DEFINITION_ID,
        "name": "DuckDB",
        "dockerRepository": "airbyte/destination-duckdb",
        "dockerImageTag": EMULATOR_TAG,
        "documentationUrl": "https://docs.airbyte.com/integrations/destinations/duckdb",
        "icon": None,
        "releaseStage": "custom",
        "protocolVersion": "0.2.0",
    },
]

SOURCE_SPECS: dict[str, dict[str, Any]] = {
    SAMPLE_SOURCE_DEFINITION_ID: {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Sample Data Spec",
        "type": "object",
        "required": [],
        "additionalProperties": True,
        "properties": {
            "count": {
                "title": "Rows per stream",
                "type": "integer",
                "minimum": 0,
                "maximum": sample_data.MAX_COUNT,
                "default": sample_data.DEFAULT_COUNT,
                "order": 0,
            },
            "seed": {
                "title": "Seed",
                "description": "Same count and seed give the same rows.",
                "type": "integer",
                "default": sample_data.DEFAULT_SEED,
                "order": 1,
            },
        },
    }
}

DESTINATION_SPECS: dict[str, dict[str, Any]] = {
    POSTGRES_DESTINATION_DEFINITION_ID: {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Postgres Destination Spec",
        "type": "object",
        "required": ["host", "port", "database", "schema", "username"],
        "additionalProperties": True,
        "properties": {
            "host": {"title": "Host", "type": "string", "order": 0},
            "port": {"title": "Port", "type": "integer", "minimum": 0, "maximum": 65536, "default": 5432, "order": 1},
            "database": {"title": "DB Name", "type": "string", "order": 2},
            "schema": {"title": "Default Schema", "type": "string", "default": "public", "order": 3},
            "username": {"title": "User", "type": "string", "order": 4},
            "password": {"title": "Password", "type": "string", "airbyte_secret": True, "order": 5},
        },
    },
    DUCKDB_DESTINATION_DEFINITION_ID: {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "DuckDB Destination Spec",
        "type": "object",
        "required": ["destination_path"],
        "additionalProperties": True,
        "properties": {
            "destination_path": {
                "title": "Destination DB",
                "description": "Path of the DuckDB file on the emulator's machine (parent directories are created).",
                "type": "string",
                "order": 0,
            },
            "schema": {"title": "Destination Schema", "type": "string", "default": "main", "order": 1},
        },
    },
}

SECRET_MASK = "**********"


def source_definition(definition_id: str) -> dict[str, Any] | None:
    for d in SOURCE_DEFINITIONS:
        if d["sourceDefinitionId"] == definition_id:
            return copy.deepcopy(d)
    return None


def destination_definition(definition_id: str) -> dict[str, Any] | None:
    for d in DESTINATION_DEFINITIONS:
        if d["destinationDefinitionId"] == definition_id:
            return copy.deepcopy(d)
    return None


def secret_keys(spec: dict[str, Any]) -> list[str]:
    return [k for k, v in spec.get("properties", {}).items() if v.get("airbyte_secret")]


def _check_type(key: str, value: Any, prop: dict[str, Any]) -> str | None:
    expected = prop.get("type")
    if expected == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            # accept integer-like strings (UIs often send ports as strings)
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                return None
            return f"'{key}' must be an integer"
        if "minimum" in prop and value < prop["minimum"]:
            return f"'{key}' must be >= {prop['minimum']}"
        if "maximum" in prop and value > prop["maximum"]:
            return f"'{key}' must be <= {prop['maximum']}"
    elif expected == "string" and not isinstance(value, str):
        return f"'{key}' must be a string"
    return None


def validate_config(spec: dict[str, Any], config: Any) -> list[str]:
    """Problems of a connectionConfiguration against a spec (empty list = valid)."""
    if not isinstance(config, dict):
        return ["connectionConfiguration must be a JSON object"]
    problems = []
    for key in spec.get("required", []):
        if key not in config or config[key] in (None, ""):
            problems.append(f"missing required key '{key}'")
    for key, prop in spec.get("properties", {}).items():
        if key in config and config[key] is not None:
            msg = _check_type(key, config[key], prop)
            if msg:
                problems.append(msg)
    schema = config.get("schema")
    if isinstance(schema, str) and schema and not _IDENT.match(schema):
        problems.append("'schema' must be a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)")
    path = config.get("destination_path")
    if isinstance(path, str) and path.startswith("md:"):
        problems.append("MotherDuck paths are not supported by the emulator")
    return problems


def is_identifier(name: str) -> bool:
    return bool(_IDENT.match(name or ""))


def discover_catalog(source_definition_id: str) -> dict[str, Any]:
    """The catalog of a source definition, every stream selected, full refresh overwrite."""
    streams = []
    for name in sample_data.STREAM_NAMES:
        streams.append(
            {
                "stream": {
                    "name": name,
                    "jsonSchema": sample_data.stream_json_schema(name),
                    "supportedSyncModes": ["full_refresh"],
                    "sourceDefinedCursor": False,
                    "defaultCursorField": [],
                    "sourceDefinedPrimaryKey": [["id"]],
                    "namespace": None,
                },
                "config": {
                    "syncMode": "full_refresh",
                    "cursorField": [],
                    "destinationSyncMode": "overwrite",
                    "primaryKey": [["id"]],
                    "aliasName": name,
                    "selected": True,
                    "fieldSelectionEnabled": False,
                },
            }
        )
    return {"streams": streams}
