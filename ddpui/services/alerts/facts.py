"""What an alert says, gathered from our own records when the event is raised (database reads only, inside
the transaction that raises it): the org, the pipeline or connection, the run, the failing task or tests."""

from __future__ import annotations

import re
from datetime import datetime

from ddpcontract.flows import TaskStatus
from ddpcontract.tasks import TaskSlug, TaskType
from ddpui.models.dataflows import DataflowOrgTask, OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.org import Org
from ddpui.models.tasks import OrgTask

SYNC_SLUG = TaskSlug.AIRBYTE_SYNC
# the flows' message for a sync that did not succeed: "sync of connection <id> (job <n>) failed: <Airbyte's reason>"
_SYNC_FAILURE = re.compile(r"^sync of connection \S+ \(job (?P<job>\d+)\) (?P<status>\w+): (?P<reason>.+)$", re.S)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def connection_names(*, org: Org, connection_ids: list[str]) -> dict[str, str]:
    """connection id -> its name (the name of its manual sync dataflow, which follows the connection's)."""
    if not connection_ids:
        return {}
    return dict(
        DataflowOrgTask.objects.filter(
            orgtask__org=org,
            orgtask__connection_id__in=connection_ids,
            dataflow__dataflow_type=OrgDataFlowv1.DataflowType.MANUAL,
        ).values_list("orgtask__connection_id", "dataflow__name")
    )


def _short_node_name(unique_id: str) -> str:
    """`test.project.not_null_orders_id.1a2b3c` -> `not_null_orders_id`; `model.project.orders` -> `orders`."""
    parts = str(unique_id or "").split(".")
    if len(parts) >= 4 and parts[0] == "test" and re.fullmatch(r"[0-9a-f]{6,}", parts[-1]):
        parts = parts[:-1]
    return parts[-1] if len(parts) >= 3 else str(unique_id)


def failing_tests(task_results: list[dict]) -> list[dict]:
    """The dbt tests that failed (or errored) in the run: name, the models they test, dbt's message."""
    found = []
    for result in task_results or []:
        if result.get("status") != TaskStatus.DBT_TEST_FAILED:
            continue
        for node in result.get("nodes") or []:
            if node.get("status") not in ("fail", "error") or not str(node.get("unique_id", "")).startswith("test."):
                continue
            found.append(
                {
                    "test": _short_node_name(node["unique_id"]),
                    "unique_id": node["unique_id"],
                    "models": [_short_node_name(model) for model in node.get("models") or []],
                    "message": str(node.get("message") or ""),
                    "task": result.get("slug"),
                }
            )
    return found


def _failed_task(record: PrefectFlowRun, names: dict[str, str]) -> dict | None:
    result = next((r for r in record.task_results or [] if r.get("status") == TaskStatus.FAILED), None)
    if result is None:
        return None
    failed = {
        "slug": result.get("slug"),
        "seq": result.get("seq"),
        "type": result.get("type"),
        "message": str(result.get("message") or ""),
    }
    if result.get("type") == TaskType.AIRBYTE_CONNECTION or result.get("connection_id"):
        connection_id = str(result.get("connection_id") or "")
        failed["connection_id"] = connection_id
        failed["connection_name"] = names.get(connection_id)
        failed["job_id"] = result.get("job_id")
        match = _SYNC_FAILURE.match(failed["message"])
        if match:
            failed["job_id"] = failed["job_id"] or int(match.group("job"))
            failed["airbyte_reason"] = match.group("reason").strip()
    return failed


def run_facts(record: PrefectFlowRun) -> dict:
    """Everything an alert about this run says, from our records (a few queries, no I/O)."""
    org = record.org
    dataflow = (
        OrgDataFlowv1.objects.filter(deployment_id=record.deployment_id).first() if record.deployment_id else None
    )
    connection_ids = [str(r["connection_id"]) for r in record.task_results or [] if r.get("connection_id")]
    if dataflow is not None and dataflow.dataflow_type == OrgDataFlowv1.DataflowType.MANUAL:
        kind = "sync"
        connection_ids += list(
            OrgTask.objects.filter(dataflow_orgtasks__dataflow=dataflow, task__slug=SYNC_SLUG)
            .exclude(connection_id=None)
            .values_list("connection_id", flat=True)
        )
    else:
        kind = "pipeline" if dataflow is not None else "task"
    names = connection_names(org=org, connection_ids=sorted(set(connection_ids)))
    return {
        "org": org.name,
        "org_slug": org.slug,
        "kind": kind,
        "pipeline": dataflow.name if dataflow else None,
        "dataflow_id": dataflow.id if dataflow else None,
        "deployment_id": record.deployment_id,
        "flow_run_id": record.flow_run_id,
        "flow_run_name": record.name,
        "flow_run_pk": record.pk,
        "state_type": record.state_type,
        "state_name": record.state_name or record.state_type.title(),
        "state_message": record.state_message,
        "expected_start_time": _iso(record.expected_start_time),
        "start_time": _iso(record.start_time),
        "end_time": _iso(record.end_time),
        "connections": names,
        "failed_task": _failed_task(record, names),
        "failed_tests": failing_tests(record.task_results),
        "tasks": [
            {"slug": r.get("slug"), "seq": r.get("seq"), "status": r.get("status")} for r in record.task_results or []
        ],
    }
