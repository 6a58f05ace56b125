"""Connector definitions offered by the Airbyte emulator (test double only).

Two sources ("Sample Data", deterministic rows with two incremental-capable streams; "Postgres", reading
real tables) and three destinations ("Postgres", "DuckDB", "Snowflake"). Their specifications are JSON
Schemas in the shape Airbyte's connectors declare them (field names, `airbyte_secret`, `order`, `oneOf`
groups with a `const` discriminator), and configurations are validated against them the way Airbyte
does, with Airbyte's message format. The ids are fixed so tests and demos can refer to them.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema

from . import sample_data

SAMPLE_SOURCE_DEFINITION_ID = "5a3b1e00-d0d0-4e3a-9000-000000000001"
POSTGRES_SOURCE_DEFINITION_ID = "5a3b1e00-d0d0-4e3a-9000-000000000002"
POSTGRES_DESTINATION_DEFINITION_ID = "5a3b1e00-d0d0-4e3a-9000-000000000101"
DUCKDB_DESTINATION_DEFINITION_ID = "5a3b1e00-d0d0-4e3a-9000-000000000102"
SNOWFLAKE_DESTINATION_DEFINITION_ID = "5a3b1e00-d0d0-4e3a-9000-000000000103"

EMULATOR_TAG = "0.1.0-emulator"
SECRET_MASK = "**********"
JSON_SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _icon(letters: str, colour: str) -> str:
    """A small SVG badge (the emulator ships no vendor logos)."""
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32" viewBox="0 0 32 32">'
        f'<rect width="32" height="32" rx="6" fill="{colour}"/>'
        f'<text x="16" y="21" font-family="sans-serif" font-size="12" fill="#fff" text-anchor="middle">{letters}</text>'
        "</svg>"
    )


def _definition(kind: str, definition_id: str, name: str, repository: str, docs: str, icon: str, **extra) -> dict:
    return {
        f"{kind}DefinitionId": definition_id,
        "name": name,
        "dockerRepository": repository,
        "dockerImageTag": EMULATOR_TAG,
        "documentationUrl": docs,
        "icon": icon,
        "protocolVersion": "0.2.0",
        "releaseStage": "generally_available",
        "supportLevel": "certified",
        "custom": False,
        **extra,
    }


SOURCE_DEFINITIONS: list[dict[str, Any]] = [
    _definition(
        "source",
        SAMPLE_SOURCE_DEFINITION_ID,
        "Sample Data",
        "ddpui-devtools/source-sample-data",
        "https://example.invalid/ddpui/devtools#sample-data",
        _icon("SD", "#6b5bd6"),
        sourceType="api",
        releaseStage="custom",
        supportLevel="community",
    ),
    _definition(
        "source",
        POSTGRES_SOURCE_DEFINITION_ID,
        "Postgres",
        "airbyte/source-postgres",
        "https://docs.airbyte.com/integrations/sources/postgres",
        _icon("PG", "#336791"),
        sourceType="database",
    ),
]

DESTINATION_DEFINITIONS: list[dict[str, Any]] = [
    _definition(
        "destination",
        POSTGRES_DESTINATION_DEFINITION_ID,
        "Postgres",
        "airbyte/destination-postgres",
        "https://docs.airbyte.com/integrations/destinations/postgres",
        _icon("PG", "#336791"),
    ),
    _definition(
        "destination",
        DUCKDB_DESTINATION_DEFINITION_ID,
        "DuckDB",
        "airbyte/destination-duckdb",
        "https://docs.airbyte.com/integrations/destinations/duckdb",
        _icon("DU", "#d6a400"),
    ),
    _definition(
        "destination",
        SNOWFLAKE_DESTINATION_DEFINITION_ID,
        "Snowflake",
        "airbyte/destination-snowflake",
        "https://docs.airbyte.com/integrations/destinations/snowflake",
        _icon("SF", "#29b5e8"),
    ),
]


def _ssl_modes(*modes: tuple[str, str]) -> dict[str, Any]:
    return {
        "title": "SSL modes",
        "description": "SSL connection modes.",
        "type": "object",
        "order": 7,
        "oneOf": [
            {
                "title": mode,
                "description": description,
                "required": ["mode"],
                "additionalProperties": True,
                "properties": {"mode": {"type": "string", "const": mode, "order": 0}},
            }
            for mode, description in modes
        ],
    }


_SSL_MODES = (
    ("disable", "Disables encryption of communication between Airbyte and the database."),
    ("allow", "Enables encryption only when required by the database."),
    ("prefer", "Allows unencrypted connections only if the database does not support encryption."),
    ("require", "Always require encryption. The connection fails if the database does not support it."),
)

_SAMPLE_SOURCE_SPEC: dict[str, Any] = {
    "$schema": JSON_SCHEMA_DRAFT,
    "title": "Sample Data Spec",
    "type": "object",
    "required": [],
    "additionalProperties": True,
    "properties": {
        "count": {
            "title": "Rows per stream",
            "description": "How many rows each stream has.",
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

_POSTGRES_SOURCE_SPEC: dict[str, Any] = {
    "$schema": JSON_SCHEMA_DRAFT,
    "title": "Postgres Source Spec",
    "type": "object",
    "required": ["host", "port", "database", "username"],
    "additionalProperties": True,
    "properties": {
        "host": {"title": "Host", "description": "Hostname of the database.", "type": "string", "order": 0},
        "port": {
            "title": "Port",
            "description": "Port of the database.",
            "type": "integer",
            "minimum": 0,
            "maximum": 65536,
            "default": 5432,
            "examples": ["5432"],
            "order": 1,
        },
        "database": {"title": "Database Name", "description": "Name of the database.", "type": "string", "order": 2},
        "schemas": {
            "title": "Schemas",
            "description": "The list of schemas (case sensitive) to sync from. Defaults to public.",
            "type": "array",
            "items": {"type": "string"},
            "minItems": 0,
            "uniqueItems": True,
            "default": ["public"],
            "order": 3,
        },
        "username": {
            "title": "Username",
            "description": "Username to access the database.",
            "type": "string",
            "order": 4,
        },
        "password": {
            "title": "Password",
            "description": "Password associated with the username.",
            "type": "string",
            "airbyte_secret": True,
            "order": 5,
        },
        "jdbc_url_params": {
            "title": "JDBC URL Parameters (Advanced)",
            "description": "Additional properties to pass to the JDBC URL string (key=value pairs separated by &).",
            "type": "string",
            "order": 6,
        },
        "ssl_mode": _ssl_modes(*_SSL_MODES),
        "replication_method": {
            "title": "Update Method",
            "description": "Configures how data is extracted from the database.",
            "type": "object",
            "order": 8,
            "default": "Standard",
            "oneOf": [
                {
                    "title": "Detect Changes with Xmin System Column",
                    "description": "Incremental syncs use the xmin system column (not supported by the emulator).",
                    "required": ["method"],
                    "additionalProperties": True,
                    "properties": {"method": {"type": "string", "const": "Xmin", "order": 0}},
                },
                {
                    "title": "Scan Changes with User Defined Cursor",
                    "description": "Incremental syncs read the rows whose cursor column grew since the last sync.",
                    "required": ["method"],
                    "additionalProperties": True,
                    "properties": {"method": {"type": "string", "const": "Standard", "order": 0}},
                },
            ],
        },
    },
}

_POSTGRES_DESTINATION_SPEC: dict[str, Any] = {
    "$schema": JSON_SCHEMA_DRAFT,
    "title": "Postgres Destination Spec",
    "type": "object",
    "required": ["host", "port", "username", "database", "schema"],
    "additionalProperties": True,
    "properties": {
        "host": {"title": "Host", "description": "Hostname of the database.", "type": "string", "order": 0},
        "port": {
            "title": "Port",
            "description": "Port of the database.",
            "type": "integer",
            "minimum": 0,
            "maximum": 65536,
            "default": 5432,
            "examples": ["5432"],
            "order": 1,
        },
        "database": {"title": "DB Name", "description": "Name of the database.", "type": "string", "order": 2},
        "schema": {
            "title": "Default Schema",
            "description": "The default schema tables are written to if the source does not specify one.",
            "type": "string",
            "examples": ["public"],
            "default": "public",
            "order": 3,
        },
        "username": {
            "title": "User",
            "description": "Username to use to access the database.",
            "type": "string",
            "order": 4,
        },
        "password": {
            "title": "Password",
            "description": "Password associated with the username.",
            "type": "string",
            "airbyte_secret": True,
            "order": 5,
        },
        "ssl_mode": _ssl_modes(*_SSL_MODES),
        "jdbc_url_params": {
            "title": "JDBC URL Params",
            "description": "Additional properties to pass to the JDBC URL string (key=value pairs separated by &).",
            "type": "string",
            "order": 8,
        },
    },
}

_DUCKDB_DESTINATION_SPEC: dict[str, Any] = {
    "$schema": JSON_SCHEMA_DRAFT,
    "title": "Destination Duckdb",
    "type": "object",
    "required": ["destination_path"],
    "additionalProperties": True,
    "properties": {
        "motherduck_api_key": {
            "title": "MotherDuck API Key",
            "description": "API key to use for authentication to a MotherDuck database.",
            "type": "string",
            "airbyte_secret": True,
            "order": 2,
        },
        "destination_path": {
            "title": "Destination DB",
            "description": "Path to the .duckdb file (on the emulator's machine; parent directories are created).",
            "type": "string",
            "examples": ["/local/destination.duckdb"],
            "order": 0,
        },
        "schema": {
            "title": "Destination Schema",
            "description": "Database schema, default for duckdb is main.",
            "type": "string",
            "examples": ["main"],
            "order": 1,
        },
    },
}

_SNOWFLAKE_DESTINATION_SPEC: dict[str, Any] = {
    "$schema": JSON_SCHEMA_DRAFT,
    "title": "Snowflake Destination Spec",
    "type": "object",
    "required": ["host", "role", "warehouse", "database", "schema", "username"],
    "additionalProperties": True,
    "properties": {
        "host": {
            "title": "Host",
            "description": "The host domain of the snowflake instance (must include the account, region, cloud "
            "environment, and end with snowflakecomputing.com).",
            "type": "string",
            "examples": ["accountname.us-east-2.aws.snowflakecomputing.com"],
            "pattern": r"^(http(s)?:\/\/)?([^./?#]+\.)?([^./?#]+\.)?([^./?#]+\.)?([^./?#]+\.snowflakecomputing\.com)$",
            "order": 0,
        },
        "role": {
            "title": "Role",
            "description": "Enter the role that you want to use to access Snowflake.",
            "type": "string",
            "examples": ["AIRBYTE_ROLE"],
            "order": 1,
        },
        "warehouse": {
            "title": "Warehouse",
            "description": "Enter the name of the warehouse that you want to sync data into.",
            "type": "string",
            "examples": ["AIRBYTE_WAREHOUSE"],
            "order": 2,
        },
        "database": {
            "title": "Database",
            "description": "Enter the name of the database you want to sync data into.",
            "type": "string",
            "examples": ["AIRBYTE_DATABASE"],
            "order": 3,
        },
        "schema": {
            "title": "Default Schema",
            "description": "Enter the name of the default schema.",
            "type": "string",
            "examples": ["AIRBYTE_SCHEMA"],
            "order": 4,
        },
        "username": {
            "title": "Username",
            "description": "Enter the name of the user you want to use to access the database.",
            "type": "string",
            "examples": ["AIRBYTE_USER"],
            "order": 5,
        },
        "credentials": {
            "title": "Authorization Method",
            "description": "",
            "type": "object",
            "order": 6,
            "oneOf": [
                {
                    "title": "Key Pair Authentication",
                    "type": "object",
                    "required": ["private_key"],
                    "additionalProperties": True,
                    "properties": {
                        "auth_type": {"type": "string", "const": "Key Pair Authentication", "order": 0},
                        "private_key": {
                            "title": "Private Key",
                            "description": "RSA Private key to use for Snowflake connection.",
                            "type": "string",
                            "airbyte_secret": True,
                            "multiline": True,
                            "order": 1,
                        },
                        "private_key_password": {
                            "title": "Passphrase",
                            "description": "Passphrase for private key",
                            "type": "string",
                            "airbyte_secret": True,
                            "order": 2,
                        },
                    },
                },
                {
                    "title": "Username and Password",
                    "type": "object",
                    "required": ["password"],
                    "additionalProperties": True,
                    "properties": {
                        "auth_type": {"type": "string", "const": "Username and Password", "order": 0},
                        "password": {
                            "title": "Password",
                            "description": "Enter the password associated with the username.",
                            "type": "string",
                            "airbyte_secret": True,
                            "order": 1,
                        },
                    },
                },
            ],
        },
        "jdbc_url_params": {
            "title": "JDBC URL Params",
            "description": "Enter the additional properties to pass to the JDBC URL string when connecting to the "
            "database (formatted as key=value pairs separated by the symbol &).",
            "type": "string",
            "order": 7,
        },
        "loading_method": {
            "title": "Data Staging Method",
            "description": "Select a data staging method",
            "type": "object",
            "order": 8,
            "oneOf": [
                {
                    "title": "Select another option",
                    "description": "Select another option",
                    "required": ["method"],
                    "additionalProperties": True,
                    "properties": {"method": {"title": "", "type": "string", "const": "Standard", "order": 0}},
                },
                {
                    "title": "Recommended Internal Staging",
                    "description": "Recommended: data is staged in a Snowflake internal stage before loading.",
                    "required": ["method"],
                    "additionalProperties": True,
                    "properties": {"method": {"title": "", "type": "string", "const": "Internal Staging", "order": 0}},
                },
            ],
        },
        "raw_data_schema": {
            "title": "Raw Table Schema Name",
            "description": "The schema to write raw tables into (default: airbyte_internal).",
            "type": "string",
            "order": 10,
        },
    },
}

SOURCE_SPECS: dict[str, dict[str, Any]] = {
    SAMPLE_SOURCE_DEFINITION_ID: _SAMPLE_SOURCE_SPEC,
    POSTGRES_SOURCE_DEFINITION_ID: _POSTGRES_SOURCE_SPEC,
}

DESTINATION_SPECS: dict[str, dict[str, Any]] = {
    POSTGRES_DESTINATION_DEFINITION_ID: _POSTGRES_DESTINATION_SPEC,
    DUCKDB_DESTINATION_DEFINITION_ID: _DUCKDB_DESTINATION_SPEC,
    SNOWFLAKE_DESTINATION_DEFINITION_ID: _SNOWFLAKE_DESTINATION_SPEC,
}

# what each destination accepts per stream, as its specification's supportedDestinationSyncModes says
DESTINATION_SYNC_MODES: dict[str, list[str]] = {
    POSTGRES_DESTINATION_DEFINITION_ID: ["overwrite", "append", "append_dedup"],
    DUCKDB_DESTINATION_DEFINITION_ID: ["overwrite", "append", "append_dedup"],
    SNOWFLAKE_DESTINATION_DEFINITION_ID: ["overwrite", "append", "append_dedup"],
}


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


def secret_paths(spec: dict[str, Any]) -> list[tuple[str, ...]]:
    """Paths (key tuples) of every `airbyte_secret` property, nested `oneOf` groups included."""
    found: list[tuple[str, ...]] = []

    def walk(schema: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, prop in (schema.get("properties") or {}).items():
            if not isinstance(prop, dict):
                continue
            if prop.get("airbyte_secret"):
                found.append((*prefix, key))
            for option in prop.get("oneOf") or []:
                walk(option, (*prefix, key))
            if prop.get("type") == "object" and prop.get("properties"):
                walk(prop, (*prefix, key))

    walk(spec, ())
    return sorted(set(found))


# ---------------------------------------------------------------------------- validation, as Airbyte does it

_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    type(None): "null",
}


def _path(parts) -> str:
    text = "$"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _message(error: jsonschema.ValidationError) -> str:
    """One problem in the wording of Airbyte's JSON validator ("$.port: string found, integer expected")."""
    where = _path(error.absolute_path)
    validator, expected = error.validator, error.validator_value
    if validator == "required":
        present = error.instance if isinstance(error.instance, dict) else {}
        missing = [key for key in expected if key not in present]
        return ", ".join(f"{_path([*error.absolute_path, key])}: is missing but it is required" for key in missing)
    if validator == "type":
        found = _JSON_TYPES.get(type(error.instance), type(error.instance).__name__)
        wanted = expected if isinstance(expected, str) else "/".join(expected)
        return f"{where}: {found} found, {wanted} expected"
    if validator == "minimum":
        return f"{where}: must have a minimum value of {expected}"
    if validator == "maximum":
        return f"{where}: must have a maximum value of {expected}"
    if validator in ("enum", "const"):
        values = expected if validator == "enum" else [expected]
        return f"{where}: does not have a value in the enumeration {values}"
    if validator == "pattern":
        return f"{where}: does not match the regex pattern {expected}"
    if validator == "oneOf":
        return f"{where}: should be valid to one and only one schema, but 0 are valid"
    if validator == "additionalProperties":
        return f"{where}: is not defined in the schema and the schema does not allow additional properties"
    return f"{where}: does not meet the {validator} constraint"


def spec_problems(spec: dict[str, Any], config: Any) -> list[str]:
    """What a connectionConfiguration breaks in a specification (an empty list: it fits)."""
    if not isinstance(config, dict):
        return ["$: " + _JSON_TYPES.get(type(config), "value") + " found, object expected"]
    validator = jsonschema.Draft7Validator(spec)
    return sorted({_message(error) for error in validator.iter_errors(config)})


def validation_message(problems: list[str]) -> str:
    return (
        "The provided configuration does not fulfill the specification. Errors: json schema validation failed "
        "when comparing the data to the json schema. \nErrors: " + ", ".join(problems)
    )


def connector_problems(config: dict[str, Any]) -> list[str]:
    """What the emulator itself cannot honour, beyond the specification."""
    problems = []
    schema = config.get("schema")
    if isinstance(schema, str) and schema and not _IDENT.match(schema):
        problems.append("$.schema: must be a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*) in the emulator")
    path = config.get("destination_path")
    if isinstance(path, str) and path.startswith(("md:", "motherduck:")):
        problems.append("$.destination_path: MotherDuck paths are not supported by the emulator")
    return problems


def validate_config(spec: dict[str, Any], config: Any) -> list[str]:
    """Problems of a connectionConfiguration against a spec (empty list = valid)."""
    problems = spec_problems(spec, config)
    if not problems and isinstance(config, dict):
        problems = connector_problems(config)
    return problems


def is_identifier(name: str) -> bool:
    return bool(_IDENT.match(name or ""))
