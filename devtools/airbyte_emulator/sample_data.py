"""Deterministic data of the emulator's "Sample Data" source (test double only).

The same ``count`` and ``seed`` always give the same rows, on any machine and
in any process (``random.Random`` seeded with a string is stable across runs).
Only the ``_airbyte_extracted_at`` metadata column, added by the writers, holds
the time of the sync.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

DEFAULT_COUNT = 10
DEFAULT_SEED = 42
MAX_COUNT = 100_000

ORDER_STATUSES = ("completed", "returned", "pending")

_FIRST_NAMES = (
    "Asha",
    "Bilal",
    "Chen",
    "Dara",
    "Elif",
    "Farah",
    "Gopal",
    "Hana",
    "Ines",
    "Jomo",
    "Kavya",
    "Luis",
    "Mei",
    "Nadia",
    "Omar",
    "Priya",
    "Quang",
    "Rosa",
    "Sipho",
    "Tara",
)
_LAST_NAMES = (
    "Abebe",
    "Banerjee",
    "Costa",
    "Dlamini",
    "Eze",
    "Fischer",
    "Gupta",
    "Haddad",
    "Ito",
    "Joshi",
    "Kamau",
    "Lopez",
    "Mensah",
    "Nair",
    "Okafor",
    "Park",
    "Reddy",
    "Silva",
    "Tanaka",
    "Usman",
)
_COUNTRIES = ("India", "Kenya", "Brazil", "Nigeria", "Indonesia", "Mexico", "Ghana", "Peru")

_CUSTOMERS_EPOCH = dt.datetime(2023, 1, 1)
_ORDERS_EPOCH = dt.datetime(2024, 1, 1)

# Column name -> (SQL type usable on both DuckDB and PostgreSQL, JSON schema)
METADATA_COLUMN = "_airbyte_extracted_at"

STREAM_COLUMNS: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "customers": [
        ("id", "BIGINT", {"type": "integer"}),
        ("name", "VARCHAR", {"type": "string"}),
        ("email", "VARCHAR", {"type": "string"}),
        ("country", "VARCHAR", {"type": "string"}),
        (
            "created_at",
            "TIMESTAMP",
            {"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"},
        ),
    ],
    "orders": [
        ("id", "BIGINT", {"type": "integer"}),
        ("customer_id", "BIGINT", {"type": "integer"}),
        ("amount", "NUMERIC(12,2)", {"type": "number"}),
        ("status", "VARCHAR", {"type": "string", "enum": list(ORDER_STATUSES)}),
        (
            "ordered_at",
            "TIMESTAMP",
            {"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"},
        ),
    ],
}
METADATA_SQL_TYPE = "TIMESTAMP"

STREAM_NAMES = tuple(STREAM_COLUMNS)


def _rng(seed: int, stream: str) -> random.Random:
    return random.Random(f"ddpui-sample:{seed}:{stream}")


def generate_customers(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[tuple]:
    """Rows (id, name, email, country, created_at) of the ``customers`` stream."""
    rng = _rng(seed, "customers")
    rows = []
    for cid in range(1, count + 1):
        first = rng.choice(_FIRST_NAMES)
        last = rng.choice(_LAST_NAMES)
        country = rng.choice(_COUNTRIES)
        created_at = _CUSTOMERS_EPOCH + dt.timedelta(seconds=rng.randint(0, 364 * 86400))
        email = f"{first}.{last}.{cid}@example.com".lower()
        rows.append((cid, f"{first} {last}", email, country, created_at))
    return rows


def generate_orders(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[tuple]:
    """Rows (id, customer_id, amount, status, ordered_at) of the ``orders`` stream.

    Every ``customer_id`` refers to a row of ``generate_customers(count, seed)``.
    """
    rng = _rng(seed, "orders")
    rows = []
    n_customers = max(count, 1)
    for oid in range(1, count + 1):
        customer_id = rng.randint(1, n_customers)
        amount = (Decimal(rng.randint(500, 50_000)) / 100).quantize(Decimal("0.01"))
        status = rng.choices(ORDER_STATUSES, weights=(70, 10, 20))[0]
        ordered_at = _ORDERS_EPOCH + dt.timedelta(seconds=rng.randint(0, 14 * 86400 - 1))
        rows.append((oid, customer_id, amount, status, ordered_at))
    return rows


_GENERATORS = {"customers": generate_customers, "orders": generate_orders}


def generate_stream(stream: str, count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[tuple]:
    """Rows of one stream of the sample source (data columns only)."""
    try:
        gen = _GENERATORS[stream]
    except KeyError:
        raise ValueError(f"unknown stream {stream!r}; known: {', '.join(STREAM_NAMES)}") from None
    return gen(count, seed)


def stream_json_schema(stream: str) -> dict[str, Any]:
    props = {name: dict(schema) for name, _sql, schema in STREAM_COLUMNS[stream]}
    return {"type": "object", "$schema": "http://json-schema.org/draft-07/schema#", "properties": props}


def column_names(stream: str, with_metadata: bool = True) -> list[str]:
    cols = [name for name, _sql, _schema in STREAM_COLUMNS[stream]]
    if with_metadata:
        cols.append(METADATA_COLUMN)
    return cols


def estimate_bytes(rows: list[tuple]) -> int:
    """A deterministic, rough byte count of rows (for ``bytesSynced``)."""
    return sum(len(",".join(str(v) for v in row)) + 1 for row in rows)
