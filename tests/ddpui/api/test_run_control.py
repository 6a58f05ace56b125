"""Run control through the API and the admin, on real runs: a failed run resumed from its failed task runs
only that task and those after it; a cancelled run ends Cancelled with its Airbyte job cancelled, its locks
released and the canceller on record. Needs the session's Prefect worker."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from ddpui.models import PrefectFlowRun, TaskLock
from tests.ddpui.api.helpers import unique
from tests.support.orgsetup import make_sample_git_repo, sample_repo_commit, setup_org_via_api

pytestmark = [pytest.mark.django_db, pytest.mark.prefect, pytest.mark.worker]

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
BROKEN_MODEL = "select * from a_table_that_does_not_exist\n"


def wait_until(condition, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.5)
    return value


@pytest.fixture
def org(api, live, tmp_path):
    name = unique("Run Control")
    repo_url = make_sample_git_repo(tmp_path)
    setup = setup_org_via_api(
        api.client,
        email=f"runs-{name.split()[-1]}@example.org",
        password="run-control-password",
        org_name=name,
        warehouse_path_or_pg=tmp_path / "warehouse.duckdb",
        git_repo_url=repo_url,
    )
    return {**setup, "repo_url": repo_url}


def create_pipeline(api, org, transform_slugs: list[str]) -> str:
    body = {
        "name": unique("pipeline"),
        "connections": [{"id": org["connection_id"], "seq": 0}],
        "transformTasks": [
            {"uuid": org["transform_tasks"][slug], "seq": seq} for seq, slug in enumerate(transform_slugs, 1)
        ],
        "cron": None,
    }
    response = api.post("/api/prefect/v1/flows/", body, headers=org["headers"])
    assert response.status_code == 200, response.content
    return response.json()["deploymentId"]


def trigger(api, org, deployment_id: str) -> str:
    response = api.post(f"/api/prefect/v1/flows/{deployment_id}/flow_run/", headers=org["headers"])
    assert response.status_code == 200, response.content
    return response.json()["flow_run_id"]


def finished(api, org, flow_run_id: str) -> dict:
    def read():
        run = api.get(f"/api/prefect/flow_runs/{flow_run_id}", headers=org["headers"]).json()
        return run if run["stateType"] in TERMINAL else None

    return wait_until(read, f"flow run {flow_run_id} ends")


def sync_jobs(emulator, connection_id: str) -> list[dict]:
    return [job for job in emulator.state()["jobs"].values() if job["configId"] == connection_id]


def test_a_failed_run_resumes_from_its_failed_task(api, live, org, new_org, prefect_worker):
    deployment_id = create_pipeline(api, org, ["git-pull", "dbt-run", "dbt-test"])
    # the third task, dbt run, fails once: the org pushes a broken model (the worker runs its own copy)
    sample_repo_commit(org["repo_url"], "models/broken.sql", BROKEN_MODEL)

    original_id = trigger(api, org, deployment_id)
    original = finished(api, org, original_id)

    assert original["stateType"] == "FAILED"
    assert original["stateMessage"].startswith(
        "task dbt-run (seq 2) failed: dbt run --target default exited with code 1"
    )
    assert [(r["slug"], r["status"]) for r in original["taskResults"]] == [
        ("airbyte-sync", "success"),
        ("git-pull", "success"),
        ("dbt-run", "failed"),
        ("dbt-test", "skipped"),
    ]
    sample_repo_commit(org["repo_url"], "models/broken.sql", None)
    stranger = new_org()
    assert api.post(f"/api/prefect/flow_runs/{original_id}/retry", headers=stranger.headers).status_code == 404

    response = api.post(f"/api/prefect/flow_runs/{original_id}/retry", headers=org["headers"])

    assert response.status_code == 200, response.content
    retry = response.json()
    assert retry["retryOf"] == original_id and retry["flowRunId"] != original_id
    assert retry["deploymentId"] == deployment_id
    # the pipeline's locks are the retry's, as for any trigger
    refused = api.post(f"/api/prefect/v1/flows/{deployment_id}/flow_run/", headers=org["headers"])
    assert refused.status_code == 409 and retry["flowRunId"] in refused.json()["detail"]
    resumed = finished(api, org, retry["flowRunId"])
    assert resumed["stateType"] == "COMPLETED", resumed["stateMessage"]
    # only the failed task and those after it ran: no second sync, no second pull
    assert [(r["slug"], r["status"]) for r in resumed["taskResults"]] == [
        ("dbt-run", "success"),
        ("dbt-test", "success"),
    ]
    built = {node["unique_id"].split(".")[-1] for node in resumed["taskResults"][0]["nodes"]}
    assert {"customer_orders", "daily_revenue"} <= built
    assert len(sync_jobs(live["airbyte"], org["connection_id"])) == 1
    assert not TaskLock.objects.filter(flow_run_id=retry["flowRunId"]).exists()
    history = api.get(f"/api/prefect/v1/flows/{deployment_id}/flow_runs/history", headers=org["headers"]).json()
    assert [(run["flowRunId"], run["retryOf"]) for run in history] == [
        (retry["flowRunId"], original_id),
        (original_id, None),
    ]
    # a completed run has nothing to resume
    again = api.post(f"/api/prefect/flow_runs/{retry['flowRunId']}/retry", headers=org["headers"])
    assert again.status_code == 409 and "only a failed, crashed or cancelled run" in again.json()["detail"]


def test_a_cancelled_run_stops_its_sync_releases_its_locks_and_names_who_cancelled(api, live, org, prefect_worker):
    emulator = live["airbyte"]
    emulator.configure(sync_seconds=3600)
    deployment_id = create_pipeline(api, org, ["git-pull"])
    flow_run_id = trigger(api, org, deployment_id)
    wait_until(lambda: [job for job in sync_jobs(emulator, org["connection_id"]) if job["status"] == "running"], "sync")

    response = api.post(f"/api/prefect/flow_runs/{flow_run_id}/cancel", headers=org["headers"])

    assert response.status_code == 200, response.content
    user_email = response.json()["cancelledBy"]
    assert user_email.startswith("runs-") and user_email.endswith("@example.org")
    run = finished(api, org, flow_run_id)
    assert run["stateType"] == "CANCELLED" and run["cancelledBy"] == user_email
    assert [(r["slug"], r["status"]) for r in run["taskResults"]] == [
        ("airbyte-sync", "cancelled"),
        ("git-pull", "skipped"),
    ]
    assert [job["status"] for job in sync_jobs(emulator, org["connection_id"])] == ["cancelled"]
    assert not TaskLock.objects.filter(flow_run_id=flow_run_id).exists()

    # the admin: resume the cancelled run (its sync runs again), then cancel that run too
    operator = get_user_model().objects.create_superuser(
        username="operator", email="operator@example.org", password="x"
    )
    admin = Client()
    admin.force_login(operator)
    changelist = "/admin/ddpui/prefectflowrun/"
    record = PrefectFlowRun.objects.get(flow_run_id=flow_run_id)
    response = admin.post(changelist, {"action": "retry_runs", "_selected_action": [record.pk]}, follow=True)
    assert response.status_code == 200
    retry = PrefectFlowRun.objects.get(retry_of=flow_run_id)
    assert TaskLock.objects.filter(flow_run_id=retry.flow_run_id).count() == 2
    wait_until(
        lambda: len([job for job in sync_jobs(emulator, org["connection_id"]) if job["status"] == "running"]),
        "resumed sync",
    )
    response = admin.post(changelist, {"action": "cancel_runs", "_selected_action": [retry.pk]}, follow=True)
    assert response.status_code == 200
    run = finished(api, org, retry.flow_run_id)
    assert run["stateType"] == "CANCELLED" and run["cancelledBy"] == "operator@example.org"
    assert [job["status"] for job in sync_jobs(emulator, org["connection_id"])] == ["cancelled", "cancelled"]
    assert not TaskLock.objects.filter(flow_run_id=retry.flow_run_id).exists()
