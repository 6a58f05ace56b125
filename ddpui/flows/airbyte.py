"""Airbyte tasks: trigger a sync through an in-memory AirbyteConnection and wait for it, within a limit."""

from __future__ import annotations

import math
import time
from contextlib import suppress

import httpx
from airbyte_prefect.connections import AirbyteConnection
from airbyte_prefect.exceptions import AirbyteSyncJobTimeout
from airbyte_prefect.server import AirbyteServer

from ddpcontract.tasks import AirbyteTaskConfig
from ddpui.flows.attempts import TaskFailed, TaskTimedOut
from ddpui.flows.redaction import add_secret

DEFAULT_AIRBYTE_POLL_SECONDS = 5


def _cancel_airbyte_job(connection: AirbyteConnection, job_id: int) -> None:
    """Best effort: a sync we stopped waiting for should not keep running in Airbyte."""
    server = connection.airbyte_server
    with suppress(httpx.HTTPError):
        httpx.post(
            f"{server.base_url}/jobs/cancel/",
            json={"id": job_id},
            auth=(server.username, server.password.get_secret_value()),
            timeout=connection.timeout,
        )


def run_airbyte(connection: AirbyteConnection, limit_seconds: float | None) -> dict:
    """Trigger a sync and wait for it; `limit_seconds` bounds the whole sync."""
    connection_id = str(connection.connection_id)
    started = time.monotonic()
    try:
        sync = connection.trigger()
    except Exception as error:  # noqa: BLE001 - any Airbyte failure ends this attempt
        raise TaskFailed(f"could not trigger a sync of connection {connection_id}: {error}") from None
    if limit_seconds is not None:
        remaining = limit_seconds - (time.monotonic() - started)
        connection.max_wait_seconds = max(1, math.ceil(remaining))
    try:
        sync.wait_for_completion()
        result = sync.fetch_result()
    except AirbyteSyncJobTimeout:
        _cancel_airbyte_job(connection, sync.job_id)
        raise TaskTimedOut(
            f"sync of connection {connection_id} (job {sync.job_id}) did not finish within {limit_seconds:g} seconds",
            details={"job_id": sync.job_id, "connection_id": connection_id},
        ) from None
    except Exception as error:  # noqa: BLE001
        raise TaskFailed(
            f"sync of connection {connection_id} (job {sync.job_id}) failed: {error}",
            details={"job_id": sync.job_id, "connection_id": connection_id},
        ) from None
    return {
        "message": f"job {result.job_id} {result.job_status}, {result.records_synced} records synced",
        "connection_id": connection_id,
        "job_id": result.job_id,
        "job_status": str(result.job_status),
        "records_synced": result.records_synced,
    }


def airbyte_connection(task: AirbyteTaskConfig) -> AirbyteConnection:
    """The connection of the task, with the server block loaded (its password registered as a secret)."""
    server = AirbyteServer.load(task.airbyte_server_block)
    add_secret(server.password.get_secret_value())
    return AirbyteConnection(
        airbyte_server=server,
        connection_id=task.connection_id,
        poll_interval_s=task.poll_interval_s or DEFAULT_AIRBYTE_POLL_SECONDS,
    )


def airbyte_limit(task: AirbyteTaskConfig) -> float | None:
    """The limit of the whole sync: the smaller of the task's `timeout` and `timeout_seconds`."""
    limits = [float(value) for value in (task.timeout, task.timeout_seconds) if value]
    return min(limits) if limits else None
