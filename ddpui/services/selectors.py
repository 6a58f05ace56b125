"""Reads that are reused. Every selector takes the org explicitly, so a cross-org read cannot happen."""

from __future__ import annotations

import uuid as uuid_module

from ddpui.errors import NotFound
from ddpui.models.dataflows import DataflowOrgTask, OrgDataFlowv1
from ddpui.models.org import Org
from ddpui.models.tasks import OrgTask


def orgtask_get(*, org: Org, orgtask_uuid: str) -> OrgTask:
    try:
        parsed = uuid_module.UUID(str(orgtask_uuid))
    except ValueError:
        raise NotFound(f"task {orgtask_uuid} not found") from None
    task = OrgTask.objects.select_related("task").filter(org=org, uuid=parsed).first()
    if task is None:
        raise NotFound(f"task {orgtask_uuid} not found")
    return task


def dataflow_get(*, org: Org, deployment_id: str) -> OrgDataFlowv1:
    """A pipeline or a manual dataflow (a connection's sync, a task's deployment) of the org, by deployment id."""
    dataflow = OrgDataFlowv1.objects.select_related("target").filter(org=org, deployment_id=str(deployment_id)).first()
    if dataflow is None:
        raise NotFound(f"pipeline {deployment_id} not found")
    return dataflow


def dataflow_orgtasks(dataflow: OrgDataFlowv1) -> list[OrgTask]:
    """The dataflow's org tasks in run order."""
    return [
        link.orgtask
        for link in DataflowOrgTask.objects.filter(dataflow=dataflow).select_related("orgtask__task").order_by("seq")
    ]


def manual_dataflows_of(*, org: Org, orgtask_ids) -> dict[int, OrgDataFlowv1]:
    """orgtask id -> the manual dataflow (the deployment that runs only that task), for the tasks that have
    one: a connection's sync task, a dbt-run task. One query."""
    links = DataflowOrgTask.objects.filter(
        orgtask_id__in=list(orgtask_ids),
        dataflow__org=org,
        dataflow__dataflow_type=OrgDataFlowv1.DataflowType.MANUAL,
    ).select_related("dataflow")
    return {link.orgtask_id: link.dataflow for link in links}
