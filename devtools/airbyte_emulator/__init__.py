"""Airbyte emulator: a labelled TEST DOUBLE of the Airbyte config API (``/api/v1``).

This package is a development and test tool. It is NEVER imported by product
code; ddpui talks to it over HTTP exactly as it would talk to a real Airbyte
server. It implements the subset of the config API that ddpui and the
``airbyte-prefect`` package use (workspaces, connector definitions and specs,
checks, discovery, sources, destinations, connections, sync/reset jobs, job logs), and its sync jobs
really write a small deterministic dataset into a DuckDB file or a PostgreSQL
database. Test-only control endpoints live under ``/_emulator/``.

In-process use::

    from devtools.airbyte_emulator import EmulatorServer

    with EmulatorServer(port=0) as srv:         # srv.url == "http://127.0.0.1:PORT"
        srv.configure(sync_seconds=0.2, fail_next_syncs=1)

Command line::

    python -m devtools.airbyte_emulator --host 127.0.0.1 --port 8001 \\
        [--username airbyte --password password] [--state-file PATH]

See docs/devtools.md.
"""

from .definitions import (
    DUCKDB_DESTINATION_DEFINITION_ID,
    POSTGRES_DESTINATION_DEFINITION_ID,
    POSTGRES_SOURCE_DEFINITION_ID,
    SAMPLE_SOURCE_DEFINITION_ID,
    SNOWFLAKE_DESTINATION_DEFINITION_ID,
)
from .sample_data import generate_stream
from .server import EmulatorServer

__all__ = [
    "EmulatorServer",
    "SAMPLE_SOURCE_DEFINITION_ID",
    "POSTGRES_SOURCE_DEFINITION_ID",
    "POSTGRES_DESTINATION_DEFINITION_ID",
    "DUCKDB_DESTINATION_DEFINITION_ID",
    "SNOWFLAKE_DESTINATION_DEFINITION_ID",
    "generate_stream",
]
