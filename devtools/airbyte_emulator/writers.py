"""Warehouse writers of the Airbyte emulator (test double only).

They really write to the destination: a DuckDB file (``duckdb``) or a
PostgreSQL database (``psycopg`` 3). Connections are opened per job and closed
as soon as the write is done, because DuckDB allows a single writing process
per file and dbt opens the same file afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import definitions, sample_data


@dataclass
class TableLoad:
    """One table to (re)create: ``rows`` are data columns of ``stream``."""

    table: str
    stream: str
    rows: list[tuple]


class WriteError(Exception):
    """The destination could not be written (message is shown in the job logs)."""


_duckdb_locks: dict[str, threading.Lock] = {}
_duckdb_locks_guard = threading.Lock()


def _duckdb_lock(path: str) -> threading.Lock:
    with _duckdb_locks_guard:
        return _duckdb_locks.setdefault(path, threading.Lock())


def _qi(name: str) -> str:
    """Quote an identifier (names are validated as plain identifiers beforehand)."""
    return '"' + name.replace('"', '""') + '"'


def _ddl(stream: str) -> str:
    cols = [f"{_qi(n)} {sql}" for n, sql, _ in sample_data.STREAM_COLUMNS[stream]]
    cols.append(f"{_qi(sample_data.METADATA_COLUMN)} {sample_data.METADATA_SQL_TYPE}")
    return ", ".join(cols)


def _same_columns(existing: Sequence[str], stream: str) -> bool:
    return [c.lower() for c in existing] == sample_data.column_names(stream)


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
                con.execute(f"CREATE OR REPLACE TABLE {fq} ({_ddl(load.stream)})")
                if empty_only or not load.rows:
                    continue
                ncols = len(load.rows[0]) + 1
                for start in range(0, len(load.rows), 500):
                    chunk = load.rows[start : start + 500]
                    ph = "(" + ", ".join(["?"] * ncols) + ")"
                    params: list[Any] = []
                    for row in chunk:
                        params.extend(row)
                        params.append(extracted_at)
                    con.execute(f"INSERT INTO {fq} VALUES " + ", ".join([ph] * len(chunk)), params)
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
        return False, f"directory {probe} is not writable"
    if os.path.isdir(path):
        return False, f"{path} is a directory"
    return True, f"DuckDB file {path} is writable"


# --------------------------------------------------------------------------- Postgres


def _pg_connect(config: dict[str, Any], connect_timeout: int = 5):
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


def _pg_write(
    config: dict[str, Any], schema: str, loads: list[TableLoad], extracted_at: dt.datetime, empty_only: bool
) -> None:
    try:
        conn = _pg_connect(config)
    except Exception as exc:
        raise WriteError(f"cannot connect to Postgres {config.get('host')}:{config.get('port')}: {exc}") from exc
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
                if existing and _same_columns(existing, load.stream):
                    # keep the table so views built on it (dbt staging) stay valid
                    cur.execute(f"TRUNCATE TABLE {fq}")
                else:
                    if existing:
                        cur.execute(f"DROP TABLE {fq} CASCADE")
                    cur.execute(f"CREATE TABLE {fq} ({_ddl(load.stream)})")
                if empty_only or not load.rows:
                    continue
                ph = "(" + ", ".join(["%s"] * (len(load.rows[0]) + 1)) + ")"
                cur.executemany(f"INSERT INTO {fq} VALUES {ph}", [tuple(row) + (extracted_at,) for row in load.rows])
    except WriteError:
        raise
    except Exception as exc:
        raise WriteError(f"Postgres write failed: {exc}") from exc
    finally:
        conn.close()


def _pg_check(config: dict[str, Any]) -> tuple[bool, str]:
    try:
        conn = _pg_connect(config, connect_timeout=3)
    except Exception as exc:
        return False, f"cannot connect to Postgres: {exc}"
    try:
        conn.execute("SELECT 1")
    finally:
        conn.close()
    return True, "connected to Postgres"


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
    """Replace each table of ``loads`` in ``schema`` (or create it empty if ``empty_only``)."""
    if definition_id == definitions.DUCKDB_DESTINATION_DEFINITION_ID:
        _duckdb_write(config, schema, loads, extracted_at, empty_only)
    elif definition_id == definitions.POSTGRES_DESTINATION_DEFINITION_ID:
        _pg_write(config, schema, loads, extracted_at, empty_only)
    else:
        raise WriteError(f"unsupported destination definition {definition_id}")


def check_destination(definition_id: str, config: dict[str, Any]) -> tuple[bool, str]:
    if definition_id == definitions.DUCKDB_DESTINATION_DEFINITION_ID:
        return _duckdb_check(config)
    if definition_id == definitions.POSTGRES_DESTINATION_DEFINITION_ID:
        return _pg_check(config)
    return False, f"unsupported destination definition {definition_id}"
