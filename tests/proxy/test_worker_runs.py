"""Runs started through the proxy, executed by the session's real process worker (prefect_flows.py)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from prefect_shell import ShellOperation

from tests.proxy.conftest import TEST_WORK_POOL, make_deployment, shell_task, unique, wait_for_run

pytestmark = [pytest.mark.prefect, pytest.mark.worker]

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_PROJECT = REPO_ROOT / "devtools" / "sample_dbt_project"


def start(api, deployment_id: str) -> str:
    response = api.post(f"/proxy/deployments/{deployment_id}/flow_run", json={})
    assert response.status_code == 201, response.text
    return response.json()["flow_run_id"]


def pipeline(*commands: str) -> dict:
    return {"config": {"org_slug": "acme", "tasks": [shell_task(*commands)]}}


@pytest.fixture(scope="module")
def started(api, prefect_worker, tmp_path_factory) -> dict:
    """Every run the tests below watch, started together so that the worker runs them side by side.

    A flow run's process takes several seconds to start here (importing prefect_flows.py and dbt), so
    starting the runs one test at a time would make this module several times slower.
    """
    assert prefect_worker.pool == TEST_WORK_POOL
    runs: dict = {}
    # deployments on PROXY_WORK_POOL, the pool the worker polls
    runs["pipeline"] = start(
        api, make_deployment(api, pool=None, parameters=pipeline("echo hello-from-the-proxy-test"))
    )
    runs["failing"] = start(api, make_deployment(api, pool=None, parameters=pipeline("exit 3")))
    runs["sleeping"] = start(api, make_deployment(api, pool=None, parameters=pipeline("sleep 120")))

    legacy_block = unique("legacy-shell")
    ShellOperation(commands=["echo legacy-block-ran"]).save(legacy_block)
    switching = make_deployment(api, pool=None, parameters=pipeline("echo pipeline-ran"))
    switched = api.patch(
        f"/proxy/v1/deployments/{switching}/entrypoint",
        json={
            "entrypoint": "prefect_flows.py:legacy_pipeline_flow",
            "parameters": {"dbt_blocks": [{"blockName": legacy_block, "blockType": "Shell Operation", "seq": 0}]},
        },
    )
    assert switched.status_code == 200, switched.text
    runs.update(switching=switching, legacy_block=legacy_block, legacy=start(api, switching))

    project = tmp_path_factory.mktemp("adhoc") / "dbtrepo"
    shutil.copytree(SAMPLE_PROJECT, project)
    profile_name = unique("adhoc-duck")
    created = api.post(
        "/proxy/blocks/dbtcli/profile/",
        json={
            "cli_profile_block_name": profile_name,
            "profile": {"name": "ddpui", "target": "dev"},
            "wtype": "duckdb",
            "target_schema": "analytics",
            "credentials": {"path": str(project.parent / "warehouse.duckdb")},
        },
    )
    assert created.status_code == 201, created.text
    runs["org"] = org = unique("org")
    shell = api.post("/proxy/flows/shell/run/", json={"org_slug": org, "task": shell_task("echo adhoc-shell-ok")})
    assert shell.status_code == 201, shell.text
    dbt_task = {
        "seq": 0,
        "type": "dbt Core Operation",
        "slug": "dbt-debug",
        "commands": ["dbt debug --connection"],
        "cli_profile_block": profile_name,
        "project_dir": str(project),
        "working_dir": str(project),
        "env": {},
    }
    dbt = api.post("/proxy/v1/flows/dbtcore/run/", json={"org_slug": org, "task": dbt_task})
    assert dbt.status_code == 201, dbt.text
    runs.update(adhoc_shell=shell.json()["flow_run_id"], adhoc_dbt=dbt.json()["flow_run_id"])
    return runs


def all_logs(api, flow_run_id: str, page: int = 5) -> list[dict]:
    logs, offset = [], 0
    while offset is not None:
        response = api.get(f"/proxy/flow_runs/logs/{flow_run_id}", params={"offset": offset, "limit": page})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["offset"] == offset
        logs.extend(body["logs"])
        offset = body["next_offset"]
    return logs


def test_a_deployment_created_through_the_proxy_runs_the_pipeline_flow_to_completion(api, started):
    flow_run_id = started["pipeline"]
    run = wait_for_run(api, flow_run_id)
    assert (run["state_type"], run["state_name"]) == ("COMPLETED", "Completed"), run["state_message"]
    assert run["start_time"] and run["end_time"] and run["total_run_time"] > 0
    [result] = run["task_results"]
    assert (result["seq"], result["slug"], result["status"]) == (0, "shell", "success")

    time.sleep(2.5)  # the flow process ships its last logs in batches
    logs = all_logs(api, flow_run_id)
    messages = [line["message"] for line in logs]
    assert any("hello-from-the-proxy-test" in message for message in messages), messages
    assert any(line["task_run_id"] for line in logs)  # the task run's logs are included
    assert any(line["task_run_id"] is None for line in logs)  # and the flow run's own
    assert [line["timestamp"] for line in logs] == sorted(line["timestamp"] for line in logs)
    assert {line["flow_run_id"] for line in logs} == {flow_run_id}


def test_adhoc_shell_and_dbt_tasks_run_on_the_worker(api, prefect, started):
    org = started["org"]
    for kind in ("shell", "dbt"):
        flow_run_id = started[f"adhoc_{kind}"]
        flow_run = prefect.read_flow_run(flow_run_id)
        deployment = prefect.read_deployment(flow_run.deployment_id)
        assert deployment.name == f"adhoc-{kind}-{TEST_WORK_POOL}"
        assert (deployment.work_pool_name, deployment.entrypoint) == (TEST_WORK_POOL, "prefect_flows.py:pipeline_flow")
        assert org in flow_run.tags
        assert flow_run.parameters["config"]["org_slug"] == org
        run = wait_for_run(api, flow_run_id)
        assert run["state_type"] == "COMPLETED", (kind, run["state_message"])
        assert run["task_results"][0]["status"] == "success"

    again = api.post("/proxy/flows/shell/run/", json={"org_slug": org, "task": shell_task("true")})
    assert again.status_code == 201
    assert (
        prefect.read_flow_run(again.json()["flow_run_id"]).deployment_id
        == prefect.read_flow_run(started["adhoc_shell"]).deployment_id
    )


def test_adhoc_runs_refuse_a_task_of_the_wrong_type(api):
    wrong_type = {"org_slug": "a", "task": {"type": "dbt Core Operation"}}
    assert api.post("/proxy/flows/shell/run/", json=wrong_type).status_code == 422
    dbt_as_shell = {"org_slug": "a", "task": shell_task("dbt run")}
    assert api.post("/proxy/v1/flows/dbtcore/run/", json=dbt_as_shell).status_code == 422


def test_retry_runs_a_failed_run_again(api, prefect, started):
    flow_run_id = started["failing"]
    assert wait_for_run(api, flow_run_id)["state_type"] == "FAILED"

    retried = api.post(f"/proxy/flow_runs/{flow_run_id}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["state_name"] == "AwaitingRetry"
    run = wait_for_run(api, flow_run_id)
    assert run["state_type"] == "FAILED"
    assert "exit code 3" in run["state_message"]
    assert prefect.read_flow_run(flow_run_id).run_count == 2


def test_cancel_stops_a_running_run(api, started):
    flow_run_id = started["sleeping"]
    wait_for_run(api, flow_run_id, states={"RUNNING"})

    cancelled = api.post(f"/proxy/flow_runs/{flow_run_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state_type"] == "CANCELLING"
    assert api.post(f"/proxy/flow_runs/{flow_run_id}/cancel").json()["state_type"] in {"CANCELLING", "CANCELLED"}
    run = wait_for_run(api, flow_run_id, timeout=60)
    assert run["state_type"] == "CANCELLED"


def test_switching_the_entrypoint_keeps_the_deployment_runnable(api, started):
    legacy_run = wait_for_run(api, started["legacy"])
    assert legacy_run["state_type"] == "COMPLETED", legacy_run["state_message"]
    assert legacy_run["task_results"][0]["slug"] == started["legacy_block"]

    back = api.patch(
        f"/proxy/v1/deployments/{started['switching']}/entrypoint",
        json={"entrypoint": "prefect_flows.py:pipeline_flow", "parameters": pipeline("echo pipeline-ran")},
    )
    assert back.status_code == 200, back.text
    pipeline_run = wait_for_run(api, start(api, started["switching"]))
    assert pipeline_run["state_type"] == "COMPLETED", pipeline_run["state_message"]
    assert pipeline_run["task_results"][0]["slug"] == "shell"
