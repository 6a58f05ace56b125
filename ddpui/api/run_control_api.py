"""Run control: resume a failed pipeline run from its failed task."""

from __future__ import annotations

from ninja import Router

from ddpui.api.schemas import ERRORS
from ddpui.api.shapes import FlowRunOut, flow_run_out
from ddpui.auth import org_auth
from ddpui.services import run_control

router = Router(tags=["pipelines"])


@router.post(
    "/prefect/flow_runs/{flow_run_id}/retry",
    response={200: FlowRunOut, **ERRORS},
    auth=org_auth("pipelines:run"),
    summary="Resume a failed run from its failed task",
)
def retry_flow_run(request, flow_run_id: str):
    """A new run of the same pipeline that runs only the failed task and those after it (skipped or cancelled
    ones included), with the pipeline's locks taken as for any trigger. The answer is the new run; its
    `retryOf` names the original."""
    record = run_control.run_retry(org=request.auth.org, orguser=request.auth.orguser, flow_run_id=flow_run_id)
    return flow_run_out(record)
