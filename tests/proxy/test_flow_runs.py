"""Flow runs through the proxy on deployments no worker polls: creation, reads, batch filter, cancel, retry."""

from __future__ import annotations

import json

import pytest
from prefect.client.schemas.actions import ArtifactCreate
from prefect.states import Completed, Failed

from proxy import flow_runs
from tests.proxy.conftest import make_deployment, unique

pytestmark = pytest.mark.prefect

UNKNOWN = "00000000-0000-0000-0000-000000000000"


def start_run(api, deployment_id: str, parameters: dict | None = None) -> str:
    body = {"parameters": parameters} if parameters is not None else None
    response = api.post(f"/proxy/deployments/{deployment_id}/flow_run", json=body)
    assert response.status_code == 201, response.text
    return response.json()["flow_run_id"]


def test_create_and_read_a_flow_run(api):
    deployment_id = make_deployment(api)
    response = api.post(
        f"/proxy/deployments/{deployment_id}/flow_run", json={"parameters": {"dbt_blocks": [{"blockName": "b"}]}}
    )
    assert response.status_code == 201, response.text
    flow_run_id, name = response.json()["flow_run_id"], response.json()["name"]

    run = api.get(f"/proxy/flow_runs/{flow_run_id}").json()
    assert (run["flow_run_id"], run["name"], run["deployment_id"]) == (flow_run_id, name, deployment_id)
    assert (run["state_type"], run["state_name"]) == ("SCHEDULED", "Scheduled")
    assert run["expected_start_time"] is not None
    assert run["start_time"] is None and run["end_time"] is None
    assert run["total_run_time"] == 0
    assert run["task_results"] is None
    # overrides are merged into the deployment's parameters key by key
    assert run["parameters"] == {
        "config": {"org_slug": "acme", "tasks": []},
        "dbt_blocks": [{"blockName": "b"}],
    }
    assert api.post(f"/proxy/deployments/{deployment_id}/flow_run").status_code == 201


def test_flow_run_errors(api):
    assert api.post(f"/proxy/deployments/{UNKNOWN}/flow_run", json={}).status_code == 404
    assert api.get(f"/proxy/flow_runs/{UNKNOWN}").status_code == 404
    assert api.get(f"/proxy/flow_runs/logs/{UNKNOWN}").status_code == 404
    assert api.post(f"/proxy/flow_runs/{UNKNOWN}/cancel").status_code == 404
    assert api.post(f"/proxy/flow_runs/{UNKNOWN}/retry").status_code == 404
    assert api.get(f"/proxy/flow_runs/logs/{UNKNOWN}", params={"limit": 500}).status_code == 422
    assert api.post("/proxy/flow_runs/filter", json={"limit_per_deployment": 1}).status_code == 422
    assert api.post("/proxy/flow_runs/filter", json={"state_types": ["DONE"]}).status_code == 422


def test_filter_returns_the_last_run_of_50_deployments_in_one_request(api, prefect, monkeypatch):
    org = unique("org")
    deployment_ids = [make_deployment(api, org_slug=org) for _ in range(50)]
    older = [start_run(api, deployment_id) for deployment_id in deployment_ids]
    newest = [start_run(api, deployment_id) for deployment_id in deployment_ids[:25]]
    failed_ids = older[25:35]
    for flow_run_id in failed_ids:
        prefect.set_flow_run_state(flow_run_id, Failed(), force=True)
    expected = dict(zip(deployment_ids, newest + older[25:], strict=True))

    response = api.post("/proxy/flow_runs/filter", json={"deployment_ids": deployment_ids, "limit_per_deployment": 1})
    assert response.status_code == 200, response.text
    runs = response.json()["flow_runs"]
    assert len(runs) == 50
    assert {run["deployment_id"]: run["flow_run_id"] for run in runs} == expected
    assert all(run["parameters"] is None for run in runs)

    # when Prefect's first page cannot hold every deployment's runs, the rest are read one by one
    monkeypatch.setattr(flow_runs, "PAGE_SIZE", 20)
    paged = api.post("/proxy/flow_runs/filter", json={"deployment_ids": deployment_ids, "limit_per_deployment": 1})
    assert {run["deployment_id"]: run["flow_run_id"] for run in paged.json()["flow_runs"]} == expected
    monkeypatch.undo()

    failed = api.post(
        "/proxy/flow_runs/filter",
        json={"deployment_ids": deployment_ids, "state_types": ["FAILED"], "limit": 200, "include_parameters": True},
    ).json()["flow_runs"]
    assert sorted(run["flow_run_id"] for run in failed) == sorted(failed_ids)
    assert all(run["parameters"]["config"]["org_slug"] == "acme" for run in failed)

    two_each = api.post(
        "/proxy/flow_runs/filter", json={"deployment_ids": deployment_ids[:3], "limit_per_deployment": 2}
    ).json()["flow_runs"]
    assert len(two_each) == 6


def test_filter_by_start_time_and_task_results(api, prefect):
    deployment_id = make_deployment(api)
    flow_run_id = start_run(api, deployment_id)
    prefect.set_flow_run_state(flow_run_id, Completed(), force=True)
    prefect.create_artifact(artifact=_table_artifact(flow_run_id, [{"seq": 0, "slug": "shell", "status": "success"}]))
    run = prefect.read_flow_run(flow_run_id)

    after = api.post(
        "/proxy/flow_runs/filter",
        json={
            "deployment_ids": [deployment_id],
            "start_after": run.start_time.isoformat(),
            "include_task_results": True,
        },
    ).json()["flow_runs"]
    assert [item["flow_run_id"] for item in after] == [flow_run_id]
    assert after[0]["task_results"] == [{"seq": 0, "slug": "shell", "status": "success"}]
    assert after[0]["state_type"] == "COMPLETED"

    before = api.post(
        "/proxy/flow_runs/filter", json={"deployment_ids": [deployment_id], "start_before": "2000-01-01T00:00:00Z"}
    ).json()["flow_runs"]
    assert before == []
    assert api.get(f"/proxy/flow_runs/{flow_run_id}").json()["task_results"] == [
        {"seq": 0, "slug": "shell", "status": "success"}
    ]


def _table_artifact(flow_run_id: str, rows: list[dict]) -> ArtifactCreate:
    """What the pipeline flow's create_table_artifact stores: the rows as a JSON string."""
    return ArtifactCreate(key="task-results", type="table", data=json.dumps(rows), flow_run_id=flow_run_id)


def test_cancel_a_scheduled_run(api):
    flow_run_id = start_run(api, make_deployment(api))
    response = api.post(f"/proxy/flow_runs/{flow_run_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json() == {"flow_run_id": flow_run_id, "state_type": "CANCELLED", "state_name": "Cancelled"}
    assert api.get(f"/proxy/flow_runs/{flow_run_id}").json()["state_type"] == "CANCELLED"
    again = api.post(f"/proxy/flow_runs/{flow_run_id}/cancel")
    assert again.status_code == 409
    assert "already finished" in again.json()["detail"]


def test_retry_reschedules_a_finished_run_and_refuses_an_unfinished_one(api):
    flow_run_id = start_run(api, make_deployment(api))
    refused = api.post(f"/proxy/flow_runs/{flow_run_id}/retry")
    assert refused.status_code == 409
    assert api.post(f"/proxy/flow_runs/{flow_run_id}/cancel").status_code == 200

    retried = api.post(f"/proxy/flow_runs/{flow_run_id}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json() == {"flow_run_id": flow_run_id, "state_type": "SCHEDULED", "state_name": "AwaitingRetry"}
    assert api.get(f"/proxy/flow_runs/{flow_run_id}").json()["state_name"] == "AwaitingRetry"


def test_logs_of_a_run_without_logs_yet(api):
    flow_run_id = start_run(api, make_deployment(api))
    response = api.get(f"/proxy/flow_runs/logs/{flow_run_id}")
    assert response.status_code == 200
    # nothing yet, but the run has not finished: there may be more later
    assert response.json() == {"logs": [], "offset": 0, "next_offset": 0}
