"""Ad-hoc task runs: one git or dbt task on a worker, outside any pipeline (through a shared deployment)."""

from __future__ import annotations

from proxy import flow_runs, schemas
from proxy.dependencies import CREATED, Adhoc, Prefect, resource_router

router = resource_router(tags=["ad-hoc task runs"])


@router.post("/v1/flows/dbtcore/run/", **CREATED)
async def run_dbt_task(request: schemas.DbtTaskRun, client: Prefect, adhoc: Adhoc) -> schemas.FlowRunRef:
    return await flow_runs.adhoc_task_run(client, adhoc=adhoc, kind="dbt", org_slug=request.org_slug, task=request.task)


@router.post("/flows/shell/run/", **CREATED)
async def run_shell_task(request: schemas.ShellTaskRun, client: Prefect, adhoc: Adhoc) -> schemas.FlowRunRef:
    return await flow_runs.adhoc_task_run(
        client, adhoc=adhoc, kind="shell", org_slug=request.org_slug, task=request.task
    )
