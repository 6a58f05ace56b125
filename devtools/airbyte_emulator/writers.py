"""Warehouse writers of the Airbyte emulator (test double only).

They really write to the destination: a DuckDB file (``duckdb``) or a PostgreSQL database (``psycopg`` 3).
Connections are opened per job and closed as soon as the write is done, because DuckDB allows a single
writing process per file and dbt opens the same file afterwards. Snowflake is offered as a definition
only: its check and writes fail the way an unreachable account does.

Each stream is written per its destination sync mode: ``overwrite`` replaces the table's rows,
``append`` adds the rows, ``append_dedup`` replaces rows with the same primary key and adds the others.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import definitions, sample_data
from .sources import postgres_connect, postgres_error_message

METADATA_COLUMN = sample_data.METADATA_COLUMN
METADATA_SQL_TYPE = sample_data.METADATA_SQL_TYPE


@dataclass
class TableLoad:
    """One table to write: ``columns`` are (name, SQL type) of the data columns, ``rows`` their values."""

    table: str
    stream: str
    rows: list[tuple]
    columns: list[tuple[str, str]] = field(default_factory=list)
    mode: str = "overwrite"  # overwrite | append | append_dedup
    primary_key: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.columns and self.stream in sample_data.STREAM_COLUMNS:
            self.columns = [(name, sql) for name, sql, _ in sample_data.STREAM_COLUMNS[self.stream]]

    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns] + [METADATA_COLUMN]


class WriteError(Exception):
    """The destination could not be written (message is shown in the job logs)."""


_duckdb_locks: dict[str, threading.Lock] = {}
_duckdb_locks_guard = threading.Lock()


def _duckdb_lock(path: str) -> threading.Lock:
    with _duckdb_locks_guard:
        return _duckdb_locks.setdefault(path, threading.Lock())


def _qi(name: str) -> str:
    """Quote an identifier."""
    return '"' + name.replace('"', '""') + '"'


def _ddl(load: TableLoad) -> str:
    cols = [f"{_qi(name)} {sql}" for name, sql in load.columns]
    cols.append(f"{_qi(METADATA_COLUMN)} {METADATA_SQL_TYPE}")
    return ", ".join(cols)


def _same_columns(existing: Sequence[str], load: TableLoad) -> bool:
    return [c.lower() for c in existing] == [c.lower() for c in load.column_names()]


def _key_positions(load: TableLoad) -> list[int]:
    if not load.primary_key:
        raise WriteError(f"stream {load.stream}: append_dedup needs a primary key")
    names = [name for name, _ in load.columns]
    missing = [key for key in load.primary_key if key not in names]
    if missing:
        raise WriteError(f"stream {load.stream}: primary key column(s) {', '.join(missing)} not in the stream")
    return [names.index(key) for key in load.primary_key]


def _deduplicated(load: TableLoad) -> list[tuple]:
    """The last row of each primary key (the source emits newer versions later)."""
    positions = _key_positions(load)
    latest: dict[tuple, tuple] = {}
    for row in load.rows:
        latest[tuple(row[p] for p in positions)] = row
    return list(latest.values())


# --------------------------------------------------------------------------- DuckDB


def duckdb_path(config: dict[str, Any]) -> str:
    return os.path.abspath(os.path.expanduser(str(config["destination_path"])))


def _duckdb_connect(path: str, timeout_s: float = 15.0):
    """Open the file for writing, retrying while another process holds its lock."""
    import duckdb

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return duckdb.connect(path)
        except duckdb.IOException as exc:  # "Could not set lock on file"
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise WriteError(f"cannot open DuckDB file {path}: {exc}") from exc
            time.sleep(0.25)


def _duckdb_columns(con, schema: str, table: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
    ]


def _duckdb_insert(con, fq: str, rows: list[tuple], extracted_at: dt.datetime) -> None:
    if not rows:
        return
    ncols = len(rows[0]) + 1
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        ph = "(" + ", ".join(["?"] * ncols) + ")"
        params: list[Any] = []
        for row in chunk:
            params.extend(row)
            params.append(extracted_at)
        con.execute(f"INSERT INTO {fq} VALUES " + ", ".join([ph] * len(chunk)), params)


def _duckdb_write(
    config: dict[str, Any], schema: str, loads: list[TableLoad], extracted_at: dt.datetime, empty_only: bool
) -> None:
    path = duckdb_path(config)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with _duckdb_lock(path):
        con = _duckdb_connect(path)
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_qi(schema)}")
            for load in loads:
                fq = f"{_qi(schema)}.{_qi(load.table)}"
                existing = _duckdb_columns(con, schema, load.table)
                if empty_only or load.mode == "overwrite" or not existing:
                    con.execute(f"CREATE OR REPLACE TABLE {fq} ({_ddl(load)})")
                elif not _same_columns(existing, load):
                    raise WriteError(
                        f"table {schema}.{load.table} has other columns than stream {load.stream}: reset the connection"
                    )
                if empty_only:
                    continue
                rows = load.rows
                if load.mode == "append_dedup":
                    rows = _deduplicated(load)
                    positions = _key_positions(load)
                    match = " AND ".join(f"{_qi(load.primary_key[i])} = ?" for i in range(len(positions)))
                    for row in rows:
                        con.execute(f"DELETE FROM {fq} WHERE {match}", [row[p] for p in positions])
                _duckdb_insert(con, fq, rows, extracted_at)
            con.execute("COMMIT")
        except WriteError:
            raise
        except Exception as exc:
            raise WriteError(f"DuckDB write to {path} failed: {exc}") from exc
        finally:
            con.close()


def _duckdb_check(config: dict[str, Any]) -> tuple[bool, str]:
    path = duckdb_path(config)
    parent = os.path.dirname(path) or "."
    probe = parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.access(probe, os.W_OK):
        return False, f"An exception occurred: IOException('Cannot open file \"{path}\": Permission denied')"
    if os.path.isdir(path):
        return False, f"An exception occurred: IOException('Cannot open file \"{path}\": Is a directory')"
    return True, f"DuckDB file {path} is writable"


# --------------------------------------------------------------------------- Postgres


def _pg_write(
    config: dict[str, Any], schema: str, loads: list[TableLoad], extracted_at: dt.datetime, empty_only: bool
) -> None:
    try:
        conn = postgres_connect(config)
    except Exception as exc:
        raise WriteError(
            f"cannot connect to Postgres {config.get('host')}:{config.get('port')}: "
            f"{postgres_error_message(exc, config)}"
        ) from exc
    try:
        with conn.transaction():
            cur = conn.cursor()
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_qi(schema)}")
            for load in loads:
                fq = f"{_qi(schema)}.{_qi(load.table)}"
                cur.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                    (schema, load.table),
                )
                existing = [r[0] for r in cur.fetchall()]
                same = bool(existing) and _same_columns(existing, load)
                if empty_only or load.mode == "overwrite":
                    if same:
                        # keep the table so views built on it (dbt staging) stay valid
                        cur.execute(f"TRUNCATE TABLE {fq}")
                    else:
                        if existing:
                            cur.execute(f"DROP TABLE {fq} CASCADE")
                        cur.execute(f"CREATE TABLE {fq} ({_ddl(load)})")
                elif not existing:
                    cur.execute(f"CREATE TABLE {fq} ({_ddl(load)})")
                elif not same:
                    raise WriteError(
                        f"table {schema}.{load.table} has other columns than stream {load.stream}: reset the connection"
                    )
                if empty_only or not load.rows:
                    continue
                rows = load.rows
                if load.mode == "append_dedup":
                    rows = _deduplicated(load)
                    positions = _key_positions(load)
                    match = " AND ".join(f"{_qi(key)} = %s" for key in load.primary_key)
                    cur.executemany(f"DELETE FROM {fq} WHERE {match}", [tuple(r[p] for p in positions) for r in rows])
                ph = "(" + ", ".join(["%s"] * (len(rows[0]) + 1)) + ")"
                cur.executemany(f"INSERT INTO {fq} VALUES {ph}", [tuple(row) + (extracted_at,) for row in rows])
    except WriteError:
        raise
    except Exception as exc:
        raise WriteError(f"Postgres write failed: {exc}") from exc
    finally:
        conn.close()


def _pg_check(config: dict[str, Any]) -> tuple[bool, str]:
    try:
        conn = postgres_connect(config, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001 - every driver failure is a failed check
        return False, postgres_error_message(exc, config)
    try:
        conn.execute("SELECT 1")
    finally:
        conn.close()
    return True, "Successfully connected to the database"


# --------------------------------------------------------------------------- Snowflake


def _snowflake_check(config: dict[str, Any]) -> tuple[bool, str]:
    """Fails the way an unreachable account does: the emulator never leaves the machine."""
    return False, (
        "Could not connect with provided configuration. net.snowflake.client.jdbc.SnowflakeSQLException: "
        f"JDBC driver encountered communication error. Message: the Airbyte emulator cannot reach {config.get('host')}"
    )


# --------------------------------------------------------------------------- dispatch


def default_schema(definition_id: str, config: dict[str, Any]) -> str:
    schema = config.get("schema")
    if schema:
        return str(schema)
    return "public" if definition_id == definitions.POSTGRES_DESTINATION_DEFINITION_ID else "main"


def write_tables(
    definition_id: str,
    config: dict[str, Any],
    schema: str,
    loads: list[TableLoad],
    extracted_at: dt.datetime,
    empty_only: bool = False,
) -> None:
    """Write each table of ``loads`` in ``schema`` per its mode (or recreate it empty if ``empty_only``)."""
    if definition_id == definitions.DUCKDB_DESTINATION_DEFINITION_ID:
        _duckdb_write(config, schema, loads, extracted_at, empty_only)
    elif definition_id == definitions.POSTGRES_DESTINATION_DEFINITION_ID:
        _pg_write(config, schema, loads, extracted_at, empty_only)
    elif definition_id == definitions.SNOWFLAKE_DESTINATION_DEFINITION_ID:
        raise WriteError(_snowflake_check(config)[1])
    else:
        raise WriteError(f"unsupported destination definition {definition_id}")


def check_destination(definition_id: str, config: dict[str, Any]) -> tuple[bool, str]:
    if definition_id == definitions.DUCKDB_DESTINATION_DEFINITION_ID:
        return _duckdb_check(config)
    if definition_id == definitions.POSTGRES_DESTINATION_DEFINITION_ID:
        return _pg_check(config)
    if definition_id == definitions.SNOWFLAKE_DESTINATION_DEFINITION_ID:
        return _snowflake_check(config)
    return False, f"unsupported destination definition {definition_id}"
