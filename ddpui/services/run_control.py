"""Run control: resuming a failed pipeline run from its failed task, and cancelling a run on record of who did.

A retry is a new flow run of the same deployment whose task config holds only the tasks still to do — the
failed ones and those that never ran or were stopped (skipped, cancelled) — taken from the original run's own
parameters, so it repeats exactly what was asked then. The pipeline's locks are taken as for any trigger,
and the new run's record names the run it resumes (`retry_of`).
"""

from __future__ import annotations

from django.db import transaction

from ddpcontract.flows import TaskStatus
from ddpcontract.states import StateType
from ddpui.errors import Conflict
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.org import Org, OrgUser
from ddpui.prefect_client import get_proxy
from ddpui.services import runs
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.selectors import dataflow_orgtasks

# a run that ended in one of these states can be resumed
RESUMABLE_STATES = frozenset({StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
# a task with one of these results runs again in the retry
_TO_RUN_AGAIN = frozenset({TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED})


def resume_tasks(tasks: list[dict], results: list[dict]) -> list[dict]:
    """The tasks of a failed run's config to run again, in seq order: every task whose result is failed,
    skipped or cancelled, or that has no result. With no results at all (the run crashed before it could
    publish them) every task runs again. A dbt task runs again whole."""
    ordered = sorted(tasks, key=lambda task: task.get("seq", 0))
    if not results:
        return ordered
    finished = {result.get("seq") for result in results if result.get("status") not in _TO_RUN_AGAIN}
    return [task for task in ordered if task.get("seq") not in finished]


def _resumable(*, org: Org, flow_run_id: str) -> tuple[PrefectFlowRun, OrgDataFlowv1, dict]:
    """The run (refreshed from Prefect), its pipeline and the parameters it ran with; Conflict if it cannot be
    resumed."""
    original = runs.run_get(org=org, flow_run_id=flow_run_id)  # 404 unless it is the org's
    state = original.state_name or original.state_type
    if original.state_type not in RESUMABLE_STATES:
        raise Conflict(
            f"flow run {flow_run_id} is {state}: only a failed, crashed or cancelled run can be resumed "
            "(trigger the pipeline to run it again)"
        )
    dataflow = OrgDataFlowv1.objects.filter(org=org, deployment_id=original.deployment_id or "").first()
    if dataflow is None:
        raise Conflict(f"flow run {flow_run_id} is not a run of one of your pipelines: only those can be resumed")
    parameters = get_proxy().flow_run(flow_run_id).state().parameters or {}
    config = parameters.get("config")
    if not isinstance(config, dict) or not config.get("tasks"):
        raise Conflict(
            f"flow run {flow_run_id} ran the legacy block parameters, which cannot be resumed task by task: "
            "trigger the pipeline instead"
        )
    return original, dataflow, config


def run_retry(*, org: Org, orguser: OrgUser | None, flow_run_id: str, actor: str | None = None) -> PrefectFlowRun:
    """Starts a run of the failed run's pipeline that runs its failed task and everything after it.

    Started like any pipeline run (runs.run_start: the pipeline's locks all or none, the record, the audit
    row); raises NotFound (not the org's run), Conflict (not resumable, nothing to resume, or the pipeline's
    tasks are locked by another run — TaskLocked, naming the holder)."""
    original, dataflow, config = _resumable(org=org, flow_run_id=flow_run_id)
    tasks = resume_tasks(config["tasks"], original.task_results or [])
    if not tasks:
        raise Conflict(f"every task of flow run {flow_run_id} succeeded: there is nothing to resume")
    parameters = {"config": {**config, "tasks": tasks}}
    record = runs.run_start(
        org=org, orguser=orguser, orgtasks=dataflow_orgtasks(dataflow), dataflow=dataflow, parameters=parameters
    )
    with transaction.atomic():
        record.retry_of = original.flow_run_id
        record.save(update_fields=["retry_of", "updated_at"])
        audit_record(
            org=org,
            orguser=orguser,
            actor=actor,
            action=AuditAction.RUN_RETRIED,
            object_type="flow_run",
            object_id=record.flow_run_id,
            details={
                "retry_of": original.flow_run_id,
                "pipeline": dataflow.name,
                "tasks": [f"{task.get('slug')} (seq {task.get('seq')})" for task in tasks],
            },
        )
    return record


def run_cancel(*, org: Org, orguser: OrgUser | None, flow_run_id: str, actor: str | None = None) -> PrefectFlowRun:
    """Cancels the run (runs.run_cancel) and records who asked, the user's e-mail or `actor` (the admin's),
    when the run is now being cancelled — a run that had already ended some other way keeps no canceller."""
    record = runs.run_cancel(org=org, orguser=orguser, flow_run_id=flow_run_id)
    who = orguser.user.email if orguser is not None else (actor or "system")
    cancelling = [StateType.CANCELLING.value, StateType.CANCELLED.value]
    PrefectFlowRun.objects.filter(pk=record.pk, cancelled_by="", state_type__in=cancelling).update(cancelled_by=who)
    record.refresh_from_db()
    return record
