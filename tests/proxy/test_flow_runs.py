"""Flow runs through the proxy on deployments no worker polls: creation, reads, batch filter, cancel, retry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.schemas.actions import ArtifactCreate
from prefect.states import Completed, Failed, Running

from proxy import flow_runs
from tests.proxy.conftest import make_deployment, unique
from tests.support.prefect_rest import prefect_request

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


def test_a_run_is_read_with_its_task_results_only_when_asked_for(api, prefect):
    deployment_id = make_deployment(api)
    flow_run_id = start_run(api, deployment_id)
    prefect.set_flow_run_state(flow_run_id, Completed(), force=True)
    prefect.create_artifact(artifact=_table_artifact(flow_run_id, [{"seq": 0, "slug": "shell", "status": "success"}]))

    plain = api.get(f"/proxy/flow_runs/{flow_run_id}")
    assert plain.status_code == 200, plain.text
    assert (plain.json()["state_type"], plain.json()["task_results"]) == ("COMPLETED", None)
    with_results = api.get(f"/proxy/flow_runs/{flow_run_id}", params={"include_task_results": "true"}).json()
    assert with_results["task_results"] == [{"seq": 0, "slug": "shell", "status": "success"}]
    assert {**with_results, "task_results": None} == plain.json()
    # a run without the artifact yet: null either way
    unpublished = start_run(api, deployment_id)
    assert (
        api.get(f"/proxy/flow_runs/{unpublished}", params={"include_task_results": True}).json()["task_results"] is None
    )
    assert api.get(f"/proxy/flow_runs/{UNKNOWN}", params={"include_task_results": True}).status_code == 404


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
    # an offset Prefect's database cannot hold is the caller's mistake (found by the fuzzing: it was a 500)
    too_far = api.get(f"/proxy/flow_runs/logs/{flow_run_id}", params={"offset": 2**31})
    assert too_far.status_code == 422 and "offset" in too_far.text
    at_limit = api.get(f"/proxy/flow_runs/logs/{flow_run_id}", params={"offset": 2**31 - 1})
    assert at_limit.status_code == 200 and at_limit.json()["logs"] == []


def _log(flow_run_id: str, message: str, at: datetime) -> dict:
    return {"name": "test", "level": 20, "message": message, "timestamp": at.isoformat(), "flow_run_id": flow_run_id}


def test_logs_include_subflows_at_any_depth_and_end_once_the_run_has_finished(api, prefect):
    """A run's subflows (a child, and the child's child) log into their own flow runs: the proxy pages over all
    of them, oldest first; while the run goes on there may be more, once it has finished the last page says so."""
    deployment_id = make_deployment(api)
    parent = start_run(api, deployment_id)
    child = _subflow_run(parent)
    grandchild = _subflow_run(child)
    other = start_run(api, deployment_id)  # logs of an unrelated run stay out
    start = datetime.now(UTC)
    lines = [(parent, "p0"), (child, "c1"), (grandchild, "g2"), (parent, "p3"), (other, "x"), (child, "c4")]
    prefect_request(
        "POST", "/logs/", json=[_log(run, text, start + timedelta(seconds=i)) for i, (run, text) in enumerate(lines)]
    )

    first = api.get(f"/proxy/flow_runs/logs/{parent}", params={"limit": 3}).json()
    assert [line["message"] for line in first["logs"]] == ["p0", "c1", "g2"]
    assert [line["flow_run_id"] for line in first["logs"]] == [parent, child, grandchild]
    assert first["next_offset"] == 3
    rest = api.get(f"/proxy/flow_runs/logs/{parent}", params={"offset": 3, "limit": 3}).json()
    assert [line["message"] for line in rest["logs"]] == ["p3", "c4"]
    assert rest["next_offset"] == 5  # not finished: more may come

    prefect.set_flow_run_state(parent, Completed(), force=True)
    done = api.get(f"/proxy/flow_runs/logs/{parent}", params={"offset": 3, "limit": 3}).json()
    assert [line["message"] for line in done["logs"]] == ["p3", "c4"]
    assert done["next_offset"] is None
    full_page = api.get(f"/proxy/flow_runs/logs/{parent}", params={"limit": 5}).json()
    assert full_page["next_offset"] == 5  # a full page: read on to be sure
    # a subflow's own logs: itself and its child only
    assert [line["message"] for line in api.get(f"/proxy/flow_runs/logs/{child}").json()["logs"]] == [
        "c1",
        "g2",
        "c4",
    ]


def test_an_ended_runs_logs_are_paged_in_one_prefect_call_until_the_proxy_retries_it(api, prefect):
    """Once a run and its subflows have ended, the proxy remembers the family for a while: later pages are read
    without looking the run up again (so a state set behind the proxy's back is not seen), and a retry through
    the proxy forgets it at once."""
    deployment_id = make_deployment(api)
    parent = start_run(api, deployment_id)
    child = _subflow_run(parent)
    start = datetime.now(UTC)
    prefect_request("POST", "/logs/", json=[_log(parent, "p0", start), _log(child, "c1", start + timedelta(seconds=1))])
    prefect.set_flow_run_state(child, Completed(), force=True)
    prefect.set_flow_run_state(parent, Completed(), force=True)

    first = api.get(f"/proxy/flow_runs/logs/{parent}").json()
    assert [line["message"] for line in first["logs"]] == ["p0", "c1"] and first["next_offset"] is None

    # a line logged later by the subflow is still found: the family is remembered, not the page
    prefect_request("POST", "/logs/", json=[_log(child, "c2", start + timedelta(seconds=2))])
    prefect.set_flow_run_state(parent, Running(), force=True)  # seen only by reading the run again
    remembered = api.get(f"/proxy/flow_runs/logs/{parent}", params={"offset": 2}).json()
    assert [line["message"] for line in remembered["logs"]] == ["c2"]
    assert remembered["next_offset"] is None  # the run was not read again

    prefect.set_flow_run_state(parent, Completed(), force=True)
    assert api.post(f"/proxy/flow_runs/{parent}/retry").status_code == 200
    after_retry = api.get(f"/proxy/flow_runs/logs/{parent}", params={"offset": 3}).json()
    assert after_retry == {"logs": [], "offset": 3, "next_offset": 3}  # running again: more may come


def test_ended_families_forget_after_their_time_and_beyond_their_size(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(flow_runs.time, "monotonic", lambda: clock[0])
    families = flow_runs.EndedFamilies(ttl=30, size=2)
    families.remember("a", ["a1"])
    families.remember("b", [])
    assert families.get("a") == ["a1"] and families.get("b") == []
    families.remember("c", [])  # over size: the oldest remembered goes
    assert families.get("a") is None and families.get("c") == []
    clock[0] += 30.5
    assert families.get("b") is None and families.get("c") is None
    families.remember("d", ["d1"])
    families.forget("d")
    assert families.get("d") is None


def _subflow_run(parent_flow_run_id: str) -> str:
    """A flow run started from inside another, as Prefect records a subflow: a task run in the parent stands
    for it (parent_task_run_id)."""
    task_run = prefect_request(
        "POST",
        "/task_runs/",
        json={"flow_run_id": parent_flow_run_id, "task_key": "subflow", "dynamic_key": unique("k"), "name": "sub"},
    ).json()
    flow = prefect_request("POST", "/flows/", json={"name": "subflow"}).json()
    return prefect_request(
        "POST",
        "/flow_runs/",
        json={"flow_id": flow["id"], "name": unique("sub"), "parent_task_run_id": task_run["id"]},
    ).json()["id"]
