"""The pipelines page (src/components/Flows/*.tsx, src/pages/pipeline/orchestrate.tsx): W-45…W-53, on a pool no
worker polls (runs stay scheduled). A real run followed to its end is in test_runs.py."""

from __future__ import annotations

import uuid

import pytest

from ddpui.models import AuditEvent, DataflowOrgTask, OrgDataFlowv1, OrgTask, PrefectFlowRun
from ddpui.prefect_client import ProxyNotFound, get_proxy
from ddpui.services import locks
from ddpui.services.selectors import dataflow_orgtasks

from .conftest import pipeline_body

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]

SYSTEM_SLUGS = ["git-pull", "dbt-clean", "dbt-deps", "dbt-run", "dbt-test", "dbt-docs-generate"]


def create_pipeline(webapp, setup, name="nightly", **overrides) -> str:
    body = {**pipeline_body(webapp, name, [setup["connection_id"]]), **overrides}
    response = webapp.post("prefect/v1/flows/", body)
    assert response.status_code == 200, response.content
    assert response.json()["name"] == name  # the success toast names it
    return response.json()["deploymentId"]


def listed(webapp) -> dict[str, dict]:
    response = webapp.get("prefect/v1/flows/")
    assert response.status_code == 200, response.content
    return {item["name"]: item for item in response.json()}


def test_w47_create_keeps_every_dbt_task_the_web_app_selects(idle_org):
    setup, webapp = idle_org
    deployment_id = create_pipeline(webapp, setup)

    dataflow = OrgDataFlowv1.objects.get(deployment_id=deployment_id)
    assert [t.task.slug for t in dataflow_orgtasks(dataflow)] == ["airbyte-sync", *SYSTEM_SLUGS]
    parameters = get_proxy().deployment(deployment_id).get().parameters
    assert [task["slug"] for task in parameters["config"]["tasks"]] == ["airbyte-sync", *SYSTEM_SLUGS]


def test_w45_pipeline_list_status_and_last_run(idle_org):
    setup, webapp = idle_org
    deployment_id = create_pipeline(webapp, setup)

    item = listed(webapp)["nightly"]
    assert (item["cron"], item["deploymentId"], item["status"], item["isScheduleActive"]) == (
        "0 1 * * *",
        deployment_id,
        True,
        True,
    )
    assert item["lastRun"] is None and item["lock"] is None and item["isRunning"] is False

    run_id = webapp.post(f"prefect/v1/flows/{deployment_id}/flow_run/", {}).json()["flow_run_id"]
    item = listed(webapp)["nightly"]
    # Flows.tsx: spinner and "Triggered by: <trimEmail(lock.lockedBy)>", the last run's time and status
    assert item["isRunning"] is True
    assert item["lock"]["lockedBy"] == setup_email(webapp) and item["lock"]["lockedAt"]
    assert item["lock"]["status"] == "queued" and item["lock"]["flowRunId"] == run_id
    last_run = item["lastRun"]
    assert last_run["id"] == run_id and last_run["status"] == "SCHEDULED"
    assert last_run["expectedStartTime"] and last_run["startTime"] is None  # "startTime || expectedStartTime"
    assert last_run["state_type"] == "SCHEDULED" and last_run["flow_run_id"] == run_id  # ddpui's fields stay

    assert webapp.post(f"prefect/flows/{deployment_id}/set_schedule/inactive", {}).status_code == 200
    assert listed(webapp)["nightly"]["status"] is False


def setup_email(webapp) -> str:
    return webapp.get("currentuserv2").json()[0]["email"]


def test_w45_a_scheduled_runs_lock_names_the_system_and_another_pipelines_lock_is_not_running(idle_org):
    setup, webapp = idle_org
    nightly = create_pipeline(webapp, setup)
    hourly = create_pipeline(webapp, setup, name="hourly", cron="0 * * * *")
    # what the webhook does when Prefect starts a scheduled run: the run's own locks, taken by nobody
    dataflow = OrgDataFlowv1.objects.get(deployment_id=nightly)
    run = get_proxy().deployment(nightly).create_run()
    locks.locks_acquire(orgtasks=dataflow_orgtasks(dataflow), flow_run_id=run.id, dataflow=dataflow)

    items = listed(webapp)
    assert items["nightly"]["lock"]["lockedBy"] == "system"  # trimEmail("system") == "system"
    assert items["nightly"]["isRunning"] is True
    # the other pipeline shares the tasks: locked (a lock icon), but not running
    assert items["hourly"]["lock"]["lockedBy"] == "system" and items["hourly"]["lock"]["status"] == "locked"
    assert items["hourly"]["isRunning"] is False
    assert webapp.post(f"prefect/v1/flows/{hourly}/flow_run/", {}).status_code == 409


def test_w46_detail_restores_the_edit_form(idle_org):
    setup, webapp = idle_org
    deployment_id = create_pipeline(webapp, setup)

    response = webapp.get(f"prefect/v1/flows/{deployment_id}")

    assert response.status_code == 200, response.content
    detail = response.json()
    assert (detail["name"], detail["cron"], detail["isScheduleActive"], detail["dbtTransform"]) == (
        "nightly",
        "0 1 * * *",
        True,
        "yes",
    )
    assert [(c["id"], c["name"]) for c in detail["connections"]] == [(setup["connection_id"], "sample data")]
    assert all(isinstance(c["seq"], int) for c in detail["connections"])


def test_w48_update_as_the_edit_form_sends_it_keeps_the_dbt_tasks(idle_org):
    setup, webapp = idle_org
    deployment_id = create_pipeline(webapp, setup)
    detail = webapp.get(f"prefect/v1/flows/{deployment_id}").json()
    body = pipeline_body(webapp, "nightly renamed", [c["id"] for c in detail["connections"]], cron="30 2 * * 1,3")

    response = webapp.put(f"prefect/v1/flows/{deployment_id}", body)

    assert response.status_code == 200, response.content
    dataflow = OrgDataFlowv1.objects.get(deployment_id=deployment_id)
    assert dataflow.name == "nightly renamed" and dataflow.cron == "30 2 * * 1,3"
    assert [t.task.slug for t in dataflow_orgtasks(dataflow)] == ["airbyte-sync", *SYSTEM_SLUGS]
    assert webapp.get(f"prefect/v1/flows/{deployment_id}").json()["dbtTransform"] == "yes"


def test_w49_set_schedule_on_the_web_apps_path(idle_org):
    setup, webapp = idle_org
    deployment_id = create_pipeline(webapp, setup)

    paused = webapp.post(f"prefect/flows/{deployment_id}/set_schedule/inactive", {})
    assert paused.status_code == 200, paused.content
    assert get_proxy().deployment(deployment_id).get().is_schedule_active is False
    resumed = webapp.post(f"prefect/flows/{deployment_id}/set_schedule/active", {})
    assert resumed.status_code == 200
    assert get_proxy().deployment(deployment_id).get().is_schedule_active is True
    assert webapp.post(f"prefect/flows/{deployment_id}/set_schedule/never", {}).status_code == 422
    assert webapp.post(f"prefect/flows/{uuid.uuid4()}/set_schedule/active", {}).status_code == 404
    actions = list(
        AuditEvent.objects.filter(object_id=deployment_id, action__startswith="pipeline.schedule").values_list(
            "action", flat=True
        )
    )
    assert sorted(actions) == ["pipeline.schedule_paused", "pipeline.schedule_resumed"]


def test_w50_delete_answers_success(idle_org):
    setup, webapp = idle_org
    deployment_id = create_pipeline(webapp, setup)
    response = webapp.delete(f"prefect/v1/flows/{deployment_id}")
    assert response.status_code == 200 and response.json()["success"] is True
    assert not OrgDataFlowv1.objects.filter(deployment_id=deployment_id).exists()
    with pytest.raises(ProxyNotFound):
        get_proxy().deployment(deployment_id).get()


def test_w51_w52_w53_run_then_last_logs(idle_org):
    setup, webapp = idle_org
    deployment_id = create_pipeline(webapp, setup)

    started = webapp.post(f"prefect/v1/flows/{deployment_id}/flow_run/", {})
    assert started.status_code == 200, started.content
    run_id = started.json()["flow_run_id"]

    # "last logs": the newest run's id, then its logs
    history = webapp.get(f"prefect/flows/{deployment_id}/flow_runs/history?limit=1&fetchlogs=false")
    assert history.status_code == 200, history.content
    (last,) = history.json()
    assert last["id"] == run_id and last["status"] == "SCHEDULED" and last["state_name"] == "Scheduled"
    assert last["flowRunId"] == run_id and "taskResults" in last  # ddpui's fields stay
    logs = webapp.get(f"prefect/flow_runs/{last['id']}/logs?offset=0")
    assert logs.status_code == 200, logs.content
    body = logs.json()
    assert body["logs"]["offset"] == 0 and isinstance(body["logs"]["logs"], list)
    assert "next_offset" in body


def test_w47_w48_cron_fields_out_of_range_are_a_400_naming_the_field(idle_org):
    setup, webapp = idle_org
    for cron, field in (("61 25 * * *", "minute"), ("99 99 99 99 99", "minute"), ("0 24 * * *", "hour")):
        response = webapp.post("prefect/v1/flows/", pipeline_body(webapp, "bad", [setup["connection_id"]], cron=cron))
        assert response.status_code == 400, (cron, response.content)
        assert field in response.json()["detail"] and cron in response.json()["detail"]
    assert not OrgDataFlowv1.objects.filter(org__slug=setup["org_slug"], dataflow_type="orchestrate").exists()

    deployment_id = create_pipeline(webapp, setup)
    body = pipeline_body(webapp, "nightly", [setup["connection_id"]], cron="0 24 * * *")
    response = webapp.put(f"prefect/v1/flows/{deployment_id}", body)
    assert response.status_code == 400 and "hour" in response.json()["detail"]
    assert get_proxy().deployment(deployment_id).get().cron == "0 1 * * *"


def test_w47_w48_a_seq_outside_0_to_10000_is_a_422(idle_org):
    setup, webapp = idle_org
    body = pipeline_body(webapp, "nightly", [setup["connection_id"]])
    body["connections"][0]["seq"] = 10_001
    response = webapp.post("prefect/v1/flows/", body)
    assert response.status_code == 422 and "seq" in response.json()["detail"]
    body["connections"][0]["seq"] = 1
    body["transformTasks"][0]["seq"] = -1
    assert webapp.post("prefect/v1/flows/", body).status_code == 422
    assert not DataflowOrgTask.objects.filter(dataflow__dataflow_type="orchestrate").exists()


def test_w51_run_records_the_run_and_a_second_run_is_a_409_naming_the_holder(idle_org):
    setup, webapp = idle_org
    deployment_id = create_pipeline(webapp, setup)
    run_id = webapp.post(f"prefect/v1/flows/{deployment_id}/flow_run/", {}).json()["flow_run_id"]
    assert PrefectFlowRun.objects.get(flow_run_id=run_id).state_type == "SCHEDULED"
    second = webapp.post(f"prefect/v1/flows/{deployment_id}/flow_run/", {})
    assert second.status_code == 409 and run_id in second.json()["detail"]
    sync = OrgTask.objects.get(connection_id=setup["connection_id"])
    assert locks.locks_status(orgtask_ids=[sync.id])[sync.id].flow_run_id == run_id
