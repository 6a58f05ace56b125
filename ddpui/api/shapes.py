"""JSON shapes shared by several routers, written once: a lock, a flow run (ours or Prefect's as the proxy
reports it). Services return objects; these turn them into what the web app reads (WEBAPP_CONTRACT.md),
with ddpui's own fields kept beside the web app's."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import pydantic

from ddpcontract import proxy_api as api
from ddpui.models.flow_runs import PrefectFlowRun


class LockOut(pydantic.BaseModel):
    """A lock (`ddpui.services.locks.LockState`). `lockedBy` is never null: a user's e-mail, or "system" for a
    scheduled run's lock. A plain pydantic model (not a ninja Schema): lists of 1,000 pipelines build it."""

    model_config = pydantic.ConfigDict(from_attributes=True, populate_by_name=True)

    status: Literal["queued", "running", "locked"]
    flowRunId: str | None = pydantic.Field(alias="flow_run_id")
    lockedBy: str = pydantic.Field(alias="locked_by")
    lockedAt: datetime = pydantic.Field(alias="locked_at")
    lockingPipeline: str | None = pydantic.Field(alias="locking_pipeline")
    target: str | None = None  # the dbt target the locked task runs on (null for a sync)


def prefect_run_out(run: api.FlowRun | None) -> dict[str, Any] | None:
    """A run as the proxy reports it (snake_case, kept) plus the names the web app reads: `id`, `status` (the
    state type, e.g. COMPLETED), `startTime`, `expectedStartTime`, `totalRunTime`."""
    if run is None:
        return None
    reported = run.model_dump(mode="json")
    return {
        **reported,
        "id": reported["flow_run_id"],
        "status": reported["state_type"],
        "startTime": reported["start_time"],
        "expectedStartTime": reported["expected_start_time"],
        "endTime": reported["end_time"],
        "totalRunTime": reported["total_run_time"] or 0,
    }


class FlowRunOut(pydantic.BaseModel):
    """Our record of a run: ddpui's camelCase fields and, beside them, the names the web app reads."""

    flowRunId: str
    id: str
    name: str
    deploymentId: str | None
    deployment_id: str | None
    stateType: str
    state_type: str
    status: str
    stateName: str
    state_name: str
    stateMessage: str
    expectedStartTime: datetime | None
    startTime: datetime | None
    endTime: datetime | None
    totalRunTime: float
    taskResults: list[dict[str, Any]]
    retryOf: str | None = pydantic.Field(None, description="the failed run this one resumes (POST .../retry)")
    cancelledBy: str | None = pydantic.Field(None, description="who cancelled the run through the API or the admin")
    target: str | None = pydantic.Field(None, description="the dbt target its git and dbt tasks ran on (null: none)")


def flow_run_out(record: PrefectFlowRun) -> dict[str, Any]:
    return {
        "flowRunId": record.flow_run_id,
        "id": record.flow_run_id,
        "name": record.name,
        "deploymentId": record.deployment_id,
        "deployment_id": record.deployment_id,
        "stateType": record.state_type,
        "state_type": record.state_type,
        "status": record.state_type,
        "stateName": record.state_name,
        "state_name": record.state_name,
        "stateMessage": record.state_message,
        "expectedStartTime": record.expected_start_time,
        "startTime": record.start_time,
        "endTime": record.end_time,
        "totalRunTime": record.total_run_time,
        "taskResults": record.task_results or [],
        "retryOf": record.retry_of,
        "cancelledBy": record.cancelled_by or None,
        "target": record.target_name or None,
    }
