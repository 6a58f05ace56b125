"""Flow runs: start, read (with the flow's per-task results), filter in batches, logs, cancel and retry."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.states import Cancelled, Cancelling, Scheduled

from ddpcontract.flows import RESULTS_ARTIFACT_KEY
from ddpcontract.states import TERMINAL_STATES
from ddpcontract.tasks import PipelineConfig, TaskConfig
from proxy import schemas
from proxy.deployments import PAGE_SIZE, AdhocDeployments
from proxy.errors import Conflict, NotFound
from proxy.prefect_api import prefect_json

# Prefect's client shares 16 connections; more concurrent calls would only queue inside it.
MAX_CONCURRENT_PREFECT_CALLS = 16


class EndedFamilies:
    """Runs seen ended, with their subflows also ended, and the ids of those subflows: what a logs read needs
    besides the page itself, remembered per proxy process for `ttl` seconds (at most `size` runs, the oldest
    forgotten first).

    An ended run's family no longer changes, so reading the pages of its logs costs one Prefect call instead of
    two. Only a retry makes an ended run run again: this process forgets the run when it retries it, and another
    proxy process's answer may say the logs are complete for at most `ttl` seconds after the retry.
    """

    def __init__(self, *, ttl: float = 30.0, size: int = 4096):
        self.ttl, self.size = ttl, size
        self._runs: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()

    def get(self, flow_run_id: str) -> list[str] | None:
        """The ended run's subflow ids, or None when it is not remembered (or no longer)."""
        found = self._runs.get(flow_run_id)
        if found is None:
            return None
        if found[0] < time.monotonic():
            del self._runs[flow_run_id]
            return None
        return found[1]

    def remember(self, flow_run_id: str, subflow_ids: list[str]) -> None:
        self._runs.pop(flow_run_id, None)
        self._runs[flow_run_id] = (time.monotonic() + self.ttl, list(subflow_ids))
        while len(self._runs) > self.size:
            self._runs.popitem(last=False)

    def forget(self, flow_run_id: str) -> None:
        self._runs.pop(flow_run_id, None)


def _parse_table(data: Any) -> list[dict[str, Any]] | None:
    """A table artifact's data (a JSON string) as a list of rows."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        return data
    if isinstance(data, dict) and all(isinstance(column, list) for column in data.values()):
        columns = list(data)
        return [dict(zip(columns, values, strict=True)) for values in zip(*data.values(), strict=False)]
    return None


def flow_run_view(
    flow_run: dict[str, Any], *, include_parameters: bool = True, task_results: Any = None
) -> schemas.FlowRun:
    """The proxy's view of a flow run as Prefect's API returns it (JSON)."""
    state = flow_run.get("state") or {}
    return schemas.FlowRun(
        flow_run_id=flow_run["id"],
        name=flow_run["name"],
        deployment_id=flow_run.get("deployment_id"),
        state_type=state.get("type"),
        state_name=state.get("name"),
        state_message=state.get("message"),
        start_time=flow_run.get("start_time"),
        end_time=flow_run.get("end_time"),
        expected_start_time=flow_run.get("expected_start_time"),
        total_run_time=flow_run.get("total_run_time") or 0.0,
        parameters=flow_run.get("parameters") if include_parameters else None,
        task_results=task_results,
    )


async def _task_results(client: PrefectClient, flow_run_ids: list[Any]) -> dict[str, list[dict[str, Any]] | None]:
    """The newest "task-results" table of each run (keyed by run id as a string), in one Prefect call."""
    artifact_filter = ArtifactFilter(
        key=ArtifactFilterKey(any_=[RESULTS_ARTIFACT_KEY]), flow_run_id=ArtifactFilterFlowRunId(any_=flow_run_ids)
    )
    artifacts = await prefect_json(
        client,
        "POST",
        "/artifacts/filter",
        json={
            "artifacts": artifact_filter.model_dump(mode="json", exclude_unset=True),
            "sort": "CREATED_DESC",
            "limit": PAGE_SIZE,
        },
    )
    results: dict[str, list[dict[str, Any]] | None] = {}
    for artifact in artifacts:
        flow_run_id = artifact.get("flow_run_id")
        if flow_run_id is not None and flow_run_id not in results:
            results[flow_run_id] = _parse_table(artifact.get("data"))
    return results


async def _read(client: PrefectClient, flow_run_id: UUID) -> dict[str, Any]:
    return await prefect_json(
        client, "GET", f"/flow_runs/{flow_run_id}", not_found=f"no flow run with id {flow_run_id}"
    )


async def _read_runs(
    client: PrefectClient,
    run_filter: FlowRunFilter,
    *,
    deployment_ids: list[UUID] | None = None,
    limit: int = PAGE_SIZE,
    sort: str = "START_TIME_DESC",
) -> list[dict[str, Any]]:
    body: dict[str, Any] = {
        "flow_runs": run_filter.model_dump(mode="json", exclude_unset=True),
        "sort": sort,
        "limit": limit,
    }
    if deployment_ids:
        body["deployments"] = DeploymentFilter(id=DeploymentFilterId(any_=deployment_ids)).model_dump(
            mode="json", exclude_unset=True
        )
    return await prefect_json(client, "POST", "/flow_runs/filter", json=body)


async def flow_run_create(
    client: PrefectClient, *, deployment_id: UUID, parameters: dict[str, Any] | None, tags: list[str] | None = None
) -> schemas.FlowRunRef:
    # Prefect schedules the run for now; parameters are merged key by key into the deployment's
    flow_run = await prefect_json(
        client,
        "POST",
        f"/deployments/{deployment_id}/create_flow_run",
        json={"parameters": parameters or {}, "tags": tags or []},
        not_found=f"no deployment with id {deployment_id}",
    )
    return schemas.FlowRunRef(flow_run_id=flow_run["id"], name=flow_run["name"])


async def adhoc_task_run(
    client: PrefectClient, *, adhoc: AdhocDeployments, kind: str, org_slug: str, task: TaskConfig
) -> schemas.FlowRunRef:
    """Start one task on a worker through the shared ad-hoc deployment of its kind; returns at once."""
    parameters = PipelineConfig(org_slug=org_slug, tasks=[task]).parameters(with_defaults=True)
    tags = [org_slug, f"adhoc-{kind}"]
    deployment_id = await adhoc.deployment_id(client, kind=kind)
    try:
        return await flow_run_create(client, deployment_id=deployment_id, parameters=parameters, tags=tags)
    except NotFound:
        # someone deleted the ad-hoc deployment since this proxy remembered it: make it again, once
        adhoc.forget(kind)
        deployment_id = await adhoc.deployment_id(client, kind=kind)
        return await flow_run_create(client, deployment_id=deployment_id, parameters=parameters, tags=tags)


async def flow_run_read(
    client: PrefectClient, *, flow_run_id: UUID, include_task_results: bool = False
) -> schemas.FlowRun:
    """One Prefect call; the flow's results table (a second, concurrent call) only when asked for."""
    if not include_task_results:
        return flow_run_view(await _read(client, flow_run_id))
    flow_run, task_results = await asyncio.gather(_read(client, flow_run_id), _task_results(client, [flow_run_id]))
    return flow_run_view(flow_run, task_results=task_results.get(flow_run["id"]))


def _run_filter(request: schemas.FlowRunFilter, now: datetime) -> FlowRunFilter:
    run_filter = FlowRunFilter()
    if request.flow_run_ids:
        run_filter.id = FlowRunFilterId(any_=request.flow_run_ids)
    if request.state_types:
        run_filter.state = FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType(t) for t in request.state_types])
        )
    if request.start_after or request.start_before:
        run_filter.start_time = FlowRunFilterStartTime(after_=request.start_after, before_=request.start_before)
    if not request.include_future:
        run_filter.expected_start_time = FlowRunFilterExpectedStartTime(before_=now)
    return run_filter


async def _newest_runs_per_deployment(
    client: PrefectClient, run_filter: FlowRunFilter, deployment_ids: list[UUID], per_deployment: int
) -> list[dict[str, Any]]:
    """The newest `per_deployment` runs of each deployment, in as few Prefect calls as possible.

    One call reads the newest runs of all the deployments together; a deployment whose runs did not all fit
    in that page (only possible when the page came back full) gets a call of its own, made concurrently.
    """
    newest = {str(deployment_id): [] for deployment_id in deployment_ids}
    page = await _read_runs(client, run_filter, deployment_ids=deployment_ids)
    for flow_run in page:
        runs = newest.get(flow_run.get("deployment_id"))
        if runs is not None and len(runs) < per_deployment:
            runs.append(flow_run)
    if len(page) == PAGE_SIZE:
        unsure = [deployment_id for deployment_id in deployment_ids if len(newest[str(deployment_id)]) < per_deployment]
        gate = asyncio.Semaphore(MAX_CONCURRENT_PREFECT_CALLS)

        async def read_one(deployment_id: UUID) -> None:
            async with gate:
                newest[str(deployment_id)] = await _read_runs(
                    client, run_filter, deployment_ids=[deployment_id], limit=per_deployment
                )

        await asyncio.gather(*(read_one(deployment_id) for deployment_id in unsure))
    return [flow_run for runs in newest.values() for flow_run in runs]


async def flow_runs_filter(client: PrefectClient, *, request: schemas.FlowRunFilter) -> schemas.FlowRunList:
    """Newest first (by start time, or expected start for runs not started yet)."""
    run_filter = _run_filter(request, datetime.now(UTC))
    if request.limit_per_deployment is not None:
        deployment_ids = list(dict.fromkeys(request.deployment_ids))
        flow_runs = await _newest_runs_per_deployment(client, run_filter, deployment_ids, request.limit_per_deployment)
    else:
        flow_runs = await _read_runs(client, run_filter, deployment_ids=request.deployment_ids, limit=request.limit)
    task_results: dict[str, Any] = {}
    if request.include_task_results and flow_runs:
        task_results = await _task_results(client, [flow_run["id"] for flow_run in flow_runs])
    return schemas.FlowRunList(
        flow_runs=[
            flow_run_view(
                flow_run, include_parameters=request.include_parameters, task_results=task_results.get(flow_run["id"])
            )
            for flow_run in flow_runs
        ]
    )


async def _family(client: PrefectClient, flow_run_id: UUID) -> tuple[dict[str, Any], list[str], bool]:
    """The run's id and state type, the ids of its subflow runs at any depth, and whether those all ended.

    One Prefect call finds the run and its direct children together (id = run OR parent = run), reading only
    ids and state types; deeper levels cost a call each, and only when there are children.
    """
    family_filter = FlowRunFilter(
        id=FlowRunFilterId(any_=[flow_run_id]),
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]),
        operator="or_",
    )
    found = await _read_ids_and_states(client, family_filter)
    run = next((item for item in found if item["id"] == str(flow_run_id)), None)
    if run is None:
        raise NotFound(f"no flow run with id {flow_run_id}")
    descendants: list[str] = []
    subflows_ended = True
    level = [item for item in found if item["id"] != str(flow_run_id)]
    while level:
        descendants.extend(item["id"] for item in level)
        subflows_ended = subflows_ended and all(item.get("state_type") in TERMINAL_STATES for item in level)
        children = await _read_ids_and_states(
            client, FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[i["id"] for i in level]))
        )
        level = [child for child in children if child["id"] not in descendants]
    return run, descendants, subflows_ended


async def _read_ids_and_states(client: PrefectClient, run_filter: FlowRunFilter) -> list[dict[str, Any]]:
    """`[{id, state_type, ...}]` of the matching runs: Prefect's minimal flow-run read (its UI's run history)."""
    return await prefect_json(
        client,
        "POST",
        "/ui/flow_runs/history",
        json={
            "flow_runs": run_filter.model_dump(mode="json", exclude_unset=True),
            "sort": "ID_DESC",
            "limit": PAGE_SIZE,
        },
    )


async def _logs_page(client: PrefectClient, flow_run_ids: list[Any], offset: int, limit: int) -> list[dict[str, Any]]:
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids))
    return await prefect_json(
        client,
        "POST",
        "/logs/filter",
        json={
            "logs": log_filter.model_dump(mode="json", exclude_unset=True),
            "sort": "TIMESTAMP_ASC",
            "offset": offset,
            "limit": limit,
        },
    )


async def flow_run_logs(
    client: PrefectClient,
    *,
    flow_run_id: UUID,
    offset: int,
    limit: int,
    ended: EndedFamilies | None = None,
) -> schemas.FlowRunLogs:
    """The run's logs, its task runs' and its subflows', oldest first, one page.

    The page of the run's own logs is read while the run's state and subflows are looked up (two concurrent
    Prefect calls); only a run that has subflows has its page read again, with theirs. A run `ended` remembers
    (it and its subflows seen ended) costs one call: its page.
    """
    subflow_ids = ended.get(str(flow_run_id)) if ended is not None else None
    if subflow_ids is not None:
        logs = await _logs_page(client, [flow_run_id, *subflow_ids], offset, limit)
        finished = True
    else:
        (run, subflow_ids, subflows_ended), logs = await asyncio.gather(
            _family(client, flow_run_id), _logs_page(client, [flow_run_id], offset, limit)
        )
        if subflow_ids:
            logs = await _logs_page(client, [flow_run_id, *subflow_ids], offset, limit)
        finished = run.get("state_type") in TERMINAL_STATES
        if ended is not None and finished and subflows_ended:
            ended.remember(str(flow_run_id), subflow_ids)
    more = len(logs) == limit or not finished
    return schemas.FlowRunLogs(
        logs=[
            schemas.LogLine(
                timestamp=log["timestamp"],
                level=log["level"],
                level_name=_level_name(log["level"]),
                message=log["message"],
                flow_run_id=log.get("flow_run_id"),
                task_run_id=log.get("task_run_id"),
            )
            for log in logs
        ],
        offset=offset,
        next_offset=offset + len(logs) if more else None,
    )


def _level_name(level: int) -> str:
    for threshold, name in ((50, "CRITICAL"), (40, "ERROR"), (30, "WARNING"), (20, "INFO"), (10, "DEBUG")):
        if level >= threshold:
            return name
    return "NOTSET"


async def _propose(client: PrefectClient, flow_run_id: UUID, state, *, action: str) -> schemas.FlowRunStateChange:
    result = await client.set_flow_run_state(flow_run_id, state)
    if result.status != SetStateStatus.ACCEPT:
        reason = getattr(result.details, "reason", None) or result.status.value
        raise Conflict(f"Prefect refused to {action} flow run {flow_run_id}: {reason}")
    new_state = result.state or state
    return schemas.FlowRunStateChange(
        flow_run_id=flow_run_id, state_type=new_state.type.value, state_name=new_state.name
    )


async def flow_run_cancel(client: PrefectClient, *, flow_run_id: UUID) -> schemas.FlowRunStateChange:
    """A run not yet picked up is Cancelled at once; a started one goes Cancelling and its worker stops it."""
    state = (await _read(client, flow_run_id)).get("state") or {}
    state_type = state.get("type")
    if state_type in (None, StateType.SCHEDULED):
        cancelled = Cancelled(message="Cancelled through the ddpui proxy")
        return await _propose(client, flow_run_id, cancelled, action="cancel")
    if state_type in TERMINAL_STATES:
        raise Conflict(f"flow run {flow_run_id} has already finished ({state.get('name')})")
    if state_type == StateType.CANCELLING:
        return schemas.FlowRunStateChange(flow_run_id=flow_run_id, state_type=state_type, state_name=state["name"])
    cancelling = Cancelling(message="Cancelled through the ddpui proxy")
    return await _propose(client, flow_run_id, cancelling, action="cancel")


async def flow_run_retry(
    client: PrefectClient, *, flow_run_id: UUID, ended: EndedFamilies | None = None
) -> schemas.FlowRunStateChange:
    """Runs the same flow run again (same id, same parameters), as Prefect's UI "Retry" does."""
    if ended is not None:
        ended.forget(str(flow_run_id))
    flow_run = await _read(client, flow_run_id)
    state = flow_run.get("state") or {}
    if state.get("type") not in TERMINAL_STATES:
        raise Conflict(f"flow run {flow_run_id} has not finished ({state.get('name', 'no state')}); cancel it first")
    if flow_run.get("deployment_id") is None:
        raise Conflict(f"flow run {flow_run_id} has no deployment, so no worker could run it again")
    retry = Scheduled(scheduled_time=datetime.now(UTC), name="AwaitingRetry", message="Retried through the ddpui proxy")
    return await _propose(client, flow_run_id, retry, action="retry")
