"""The pipeline overview (src/pages/pipeline/index.tsx, W-54) and the pipeline list's cost (W-45): the same number
of SQL queries and proxy calls for 1 pipeline and for many."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ddpui.models import OrgDataFlowv1, OrgUser
from ddpui.prefect_client import get_proxy
from ddpui.services import locks
from ddpui.services.selectors import dataflow_orgtasks
from tests.factories import make_dataflow, make_orgtask

from .conftest import pipeline_body

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]


def measure(webapp, path: str) -> tuple[int, int, list]:
    proxy = get_proxy()
    before = proxy.calls
    with CaptureQueriesContext(connection) as queries:
        response = webapp.get(path)
    assert response.status_code == 200, response.content
    return len(queries), proxy.calls - before, response.json()


def add_pipelines(org, count: int, orguser, start: int = 0) -> None:
    """Pipelines whose deployment ids Prefect does not know (the pages still ask the proxy for their runs, in
    one call), half of them locked by a run."""
    for n in range(start, start + count):
        task = make_orgtask(org, "dbt-run", generated_by="client", parameters={"options": {"select": f"m{n}"}})
        dataflow = make_dataflow(org, name=f"p{n:03d}", orgtasks=[task], deployment_id=str(uuid.uuid4()))
        if n % 2 == 0:
            locks.locks_acquire(orgtasks=[task], locked_by=orguser, dataflow=dataflow, flow_run_id=str(uuid.uuid4()))


def test_w54_overview_lists_each_pipeline_with_its_runs_and_lock(idle_org):
    setup, webapp = idle_org
    created = webapp.post("prefect/v1/flows/", pipeline_body(webapp, "nightly", [setup["connection_id"]]))
    assert created.status_code == 200, created.content
    deployment_id = created.json()["deploymentId"]
    assert webapp.get("dashboard/v1").json()[0]["runs"] == []  # "No runs found for this pipeline"
    run_ids = []
    for _ in range(2):
        run_ids.append(webapp.post(f"prefect/v1/flows/{deployment_id}/flow_run/", {}).json()["flow_run_id"])
        # a run that is not running any more: cancel it so the next one can start
        if len(run_ids) == 1:
            assert webapp.post(f"prefect/flow_runs/{run_ids[0]}/cancel", {}).status_code == 200

    response = webapp.get("dashboard/v1")

    assert response.status_code == 200, response.content
    (overview,) = response.json()
    assert overview["name"] == "nightly" and overview["deploymentId"] == deployment_id
    assert overview["lock"]["lockedBy"] and overview["lock"]["flowRunId"] == run_ids[1]  # "Currently running"
    runs = overview["runs"]
    assert [run["id"] for run in runs] == list(reversed(run_ids))  # newest first
    assert [run["status"] for run in runs] == ["SCHEDULED", "CANCELLED"]
    for run in runs:
        # the bar chart: name, status, state_name, startTime (the expected start until it starts), run time
        assert run["name"] and run["state_name"] and run["startTime"] and isinstance(run["totalRunTime"], float)


def test_w54_overview_costs_the_same_queries_and_proxy_calls_for_1_and_40_pipelines(idle_org):
    setup, webapp = idle_org
    org = OrgDataFlowv1.objects.get(deployment_id=setup["deployment_id"]).org
    orguser = OrgUser.objects.get(org=org)
    add_pipelines(org, 1, orguser)
    one = measure(webapp, "dashboard/v1")
    add_pipelines(org, 39, orguser, start=1)
    forty = measure(webapp, "dashboard/v1")

    assert (len(one[2]), len(forty[2])) == (1, 40)
    assert one[:2] == forty[:2]
    assert one[1] == 1 and one[0] <= 10
    assert all(item["runs"] == [] for item in forty[2])
    assert [bool(item["lock"]) for item in forty[2][:4]] == [True, False, True, False]


def test_w45_pipeline_list_costs_the_same_with_locks_held_for_1_and_40_pipelines(idle_org):
    setup, webapp = idle_org
    org = OrgDataFlowv1.objects.get(deployment_id=setup["deployment_id"]).org
    orguser = OrgUser.objects.get(org=org)
    add_pipelines(org, 1, orguser)
    one = measure(webapp, "prefect/v1/flows/")
    add_pipelines(org, 39, orguser, start=1)
    forty = measure(webapp, "prefect/v1/flows/")

    assert (len(one[2]), len(forty[2])) == (1, 40)
    assert one[:2] == forty[:2]
    assert one[1] == 2 and one[0] <= 10
    locked = forty[2][0]
    assert locked["isRunning"] is True and locked["lock"]["lockedBy"] == orguser.user.email
    assert locked["lock"]["status"] == "locked"  # its run is unknown to Prefect and to our records


def test_w54_a_scheduled_runs_lock_shows_as_the_system(idle_org):
    setup, webapp = idle_org
    created = webapp.post("prefect/v1/flows/", pipeline_body(webapp, "nightly", [setup["connection_id"]]))
    deployment_id = created.json()["deploymentId"]
    dataflow = OrgDataFlowv1.objects.get(deployment_id=deployment_id)
    run = get_proxy().deployment(deployment_id).create_run()
    locks.locks_acquire(orgtasks=dataflow_orgtasks(dataflow), flow_run_id=run.id, dataflow=dataflow)
    (overview,) = webapp.get("dashboard/v1").json()
    assert overview["lock"]["lockedBy"] == "system" and overview["lock"]["status"] == "queued"
