"""Source connectors of the Airbyte emulator (test double only): what a check, a discovery and a read do.

"Sample Data" generates its two streams (sample_data); "Postgres" really connects to the database it is
given, discovers its tables and reads their rows. Both support incremental reads with a user-defined
cursor: a read returns the rows whose cursor value is greater than the connection's saved state.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import definitions as defs
from . import sample_data

SYNC_MODES = ["full_refresh", "incremental"]


class ConnectorError(Exception):
    """The connector failed: the message is what Airbyte would report for it."""


@dataclass
class Column:
    name: str
    sql_type: str  # a type both DuckDB and PostgreSQL accept
    json_schema: dict[str, Any]


@dataclass
class Stream:
    name: str
    columns: list[Column]
    namespace: str | None = None
    primary_key: list[list[str]] = field(default_factory=list)
    default_cursor_field: list[str] = field(default_factory=list)

    def column(self, name: str) -> Column | None:
        return next((column for column in self.columns if column.name == name), None)

    def catalog_entry(self) -> dict[str, Any]:
        """The stream as discover_schema returns it: every stream selected, full refresh overwrite."""
        return {
            "stream": {
                "name": self.name,
                "jsonSchema": {
                    "type": "object",
                    "$schema": defs.JSON_SCHEMA_DRAFT,
                    "properties": {column.name: dict(column.json_schema) for column in self.columns},
                },
                "supportedSyncModes": list(SYNC_MODES),
                "sourceDefinedCursor": False,
                "defaultCursorField": list(self.default_cursor_field),
                "sourceDefinedPrimaryKey": [list(key) for key in self.primary_key],
                "namespace": self.namespace,
            },
            "config": {
                "syncMode": "full_refresh",
                "cursorField": list(self.default_cursor_field),
                "destinationSyncMode": "overwrite",
                "primaryKey": [list(key) for key in self.primary_key],
                "aliasName": self.name,
                "selected": True,
                "fieldSelectionEnabled": False,
            },
        }


# ---------------------------------------------------------------------------- cursor values and state


def state_value(value: Any) -> Any:
    """A cursor value as saved in the connection state (JSON)."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def cursor_value(column: Column, saved: Any) -> Any:
    """A saved cursor value back in the column's Python type, to compare rows with."""
    if saved is None:
        return None
    kind, fmt = column.json_schema.get("type"), column.json_schema.get("format")
    if kind == "integer":
        return int(saved)
    if kind == "number":
        return decimal.Decimal(str(saved))
    if fmt == "date-time":
        return dt.datetime.fromisoformat(str(saved))
    if fmt == "date":
        return dt.date.fromisoformat(str(saved))
    return str(saved)


def _comparable(value: Any) -> Any:
    if isinstance(value, float):
        return decimal.Decimal(str(value))
    return value


@dataclass
class Read:
    rows: list[tuple]
    state: Any  # the cursor value to save after this read (None: nothing to save)


def _incremental(stream: Stream, rows: list[tuple], cursor_field: str, saved: Any) -> Read:
    column = stream.column(cursor_field)
    if column is None:
        raise ConnectorError(f"Cursor field {cursor_field} does not exist in stream {stream.name}.")
    index = stream.columns.index(column)
    floor = cursor_value(column, saved)
    kept = [row for row in rows if row[index] is not None and (floor is None or _comparable(row[index]) > floor)]
    newest = max((row[index] for row in kept), default=None)
    return Read(rows=kept, state=state_value(newest) if newest is not None else saved)


# ---------------------------------------------------------------------------- Sample Data


class SampleDataSource:
    def check(self, config: dict[str, Any]) -> tuple[bool, str]:
        return True, "Sample Data source is available"

    def streams(self, config: dict[str, Any]) -> list[Stream]:
        cursors = {"customers": ["created_at"], "orders": ["ordered_at"]}
        return [
            Stream(
                name=name,
                columns=[Column(n, sql, schema) for n, sql, schema in sample_data.STREAM_COLUMNS[name]],
                primary_key=[["id"]],
                default_cursor_field=cursors.get(name, []),
            )
            for name in sample_data.STREAM_NAMES
        ]

    def read(self, config: dict[str, Any], stream: Stream, cursor_field: str | None, saved: Any) -> Read:
        count = int(config.get("count", sample_data.DEFAULT_COUNT))
        seed = int(config.get("seed", sample_data.DEFAULT_SEED))
        rows = sample_data.generate_stream(stream.name, count, seed)
        if cursor_field:
            return _incremental(stream, rows, cursor_field, saved)
        return Read(rows=rows, state=None)


# ---------------------------------------------------------------------------- Postgres


_SERVER_REFUSALS = (
    ("password authentication failed", "28P01"),
    ("no password supplied", "28P01"),
    ('role "', "28000"),
    ('database "', "3D000"),
    ("no pg_hba.conf entry", "28000"),
)


def postgres_error_message(error: Exception, config: dict[str, Any]) -> str:
    """The message Airbyte's JDBC connectors give for a failed connection ("State code: ...; Message: ...")."""
    text = " ".join(str(error).split())
    lowered = text.lower()
    # libpq reports the server's refusal of a connection without a SQLSTATE: derive it from the message
    sqlstate = getattr(error, "sqlstate", None)
    for fragment, code in _SERVER_REFUSALS:
        if not sqlstate and fragment in lowered:
            sqlstate = code
    if sqlstate:
        server = text.split("failed: ", 1)[-1] if "failed: " in text else text
        return f"State code: {sqlstate}; Error code: 0; Message: FATAL: {server.removeprefix('FATAL:').strip()}"
    host, port = config.get("host"), config.get("port")
    if "connection refused" in lowered:
        return (
            f"State code: 08001; Message: Connection to {host}:{port} refused. Check that the hostname and port "
            "are correct and that the postmaster is accepting TCP/IP connections."
        )
    if "resolve" in lowered or "translate host name" in lowered or "name or service" in lowered:
        return f"State code: 08001; Message: The connection attempt failed. Unknown host: {host}"
    if "timeout" in lowered or "timed out" in lowered:
        return f"State code: 08001; Message: The connection attempt to {host}:{port} timed out."
    return f"State code: 08001; Message: {text}"


def postgres_connect(config: dict[str, Any], connect_timeout: int = 5):
    import psycopg

    kwargs = dict(
        host=str(config["host"]),
        port=int(config.get("port") or 5432),
        dbname=str(config["database"]),
        user=str(config["username"]),
        connect_timeout=connect_timeout,
    )
    if config.get("password"):
        kwargs["password"] = str(config["password"])
    ssl_mode = config.get("ssl_mode")
    if isinstance(ssl_mode, dict):
        ssl_mode = ssl_mode.get("mode")
    if isinstance(ssl_mode, str) and ssl_mode:
        kwargs["sslmode"] = ssl_mode
    return psycopg.connect(**kwargs)


_INTEGER_TYPES = {"smallint", "integer", "bigint"}
_FLOAT_TYPES = {"real", "double precision"}


def _postgres_column(name: str, data_type: str) -> Column:
    if data_type in _INTEGER_TYPES:
        return Column(name, "BIGINT", {"type": "integer"})
    if data_type == "numeric":
        return Column(name, "NUMERIC(38,9)", {"type": "number"})
    if data_type in _FLOAT_TYPES:
        return Column(name, "FLOAT8", {"type": "number"})
    if data_type == "boolean":
        return Column(name, "BOOLEAN", {"type": "boolean"})
    if data_type == "date":
        return Column(name, "DATE", {"type": "string", "format": "date"})
    if data_type == "timestamp without time zone":
        schema = {"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"}
        return Column(name, "TIMESTAMP", schema)
    if data_type == "timestamp with time zone":
        schema = {"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"}
        return Column(name, "TIMESTAMPTZ", schema)
    return Column(name, "VARCHAR", {"type": "string"})


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresSource:
    def _connect(self, config: dict[str, Any]):
        try:
            return postgres_connect(config)
        except Exception as exc:  # noqa: BLE001 - every driver failure is a failed check
            raise ConnectorError(postgres_error_message(exc, config)) from exc

    @staticmethod
    def _schemas(config: dict[str, Any]) -> list[str]:
        return list(config.get("schemas") or ["public"])

    def check(self, config: dict[str, Any]) -> tuple[bool, str]:
        method = (config.get("replication_method") or {}).get("method", "Standard")
        if method != "Standard":
            return False, f"Update method {method} is not supported by the Airbyte emulator: use Standard"
        try:
            conn = self._connect(config)
        except ConnectorError as exc:
            return False, str(exc)
        try:
            found = {
                row[0]
                for row in conn.execute(
                    "SELECT schema_name FROM information_schema.schemata WHERE schema_name = ANY(%s)",
                    (self._schemas(config),),
                )
            }
        finally:
            conn.close()
        missing = [schema for schema in self._schemas(config) if schema not in found]
        if missing:
            return False, f"Schema(s) {', '.join(missing)} not found in database {config.get('database')}"
        return True, "Successfully connected to the database"

    def streams(self, config: dict[str, Any]) -> list[Stream]:
        conn = self._connect(config)
        try:
            columns = conn.execute(
                "SELECT c.table_schema, c.table_name, c.column_name, c.data_type "
                "FROM information_schema.columns c JOIN information_schema.tables t "
                "ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
                "WHERE c.table_schema = ANY(%s) AND t.table_type IN ('BASE TABLE', 'VIEW') "
                "ORDER BY c.table_schema, c.table_name, c.ordinal_position",
                (self._schemas(config),),
            ).fetchall()
            keys = conn.execute(
                "SELECT k.table_schema, k.table_name, k.column_name FROM information_schema.table_constraints c "
                "JOIN information_schema.key_column_usage k ON k.constraint_name = c.constraint_name "
                "AND k.table_schema = c.table_schema AND k.table_name = c.table_name "
                "WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = ANY(%s) ORDER BY k.ordinal_position",
                (self._schemas(config),),
            ).fetchall()
        finally:
            conn.close()
        streams: dict[tuple[str, str], Stream] = {}
        for schema, table, name, data_type in columns:
            stream = streams.setdefault((schema, table), Stream(name=table, columns=[], namespace=schema))
            stream.columns.append(_postgres_column(name, data_type))
        for schema, table, name in keys:
            if (schema, table) in streams:
                streams[(schema, table)].primary_key.append([name])
        return list(streams.values())

    def read(self, config: dict[str, Any], stream: Stream, cursor_field: str | None, saved: Any) -> Read:
        selected = ", ".join(
            f"{_quote(c.name)}::text" if c.sql_type == "VARCHAR" else _quote(c.name) for c in stream.columns
        )
        table = f"{_quote(stream.namespace or 'public')}.{_quote(stream.name)}"
        conn = self._connect(config)
        try:
            rows = [tuple(_plain(v) for v in row) for row in conn.execute(f"SELECT {selected} FROM {table}")]
        except Exception as exc:  # noqa: BLE001
            raise ConnectorError(postgres_error_message(exc, config)) from exc
        finally:
            conn.close()
        if cursor_field:
            return _incremental(stream, rows, cursor_field, saved)
        return Read(rows=rows, state=None)


def _plain(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


CONNECTORS = {
    defs.SAMPLE_SOURCE_DEFINITION_ID: SampleDataSource(),
    defs.POSTGRES_SOURCE_DEFINITION_ID: PostgresSource(),
}


def connector(definition_id: str):
    return CONNECTORS[definition_id]
