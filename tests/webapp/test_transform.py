"""The transform page (src/pages/pipeline/transform.tsx, src/components/DBT/DBTTaskList.tsx,
CreateOrgTaskForm.tsx): W-37…W-44. Real runs on the session's worker where the row runs a task."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from ddpui.models import AuditEvent, OrgDataFlowv1, OrgPrefectBlockv1, OrgTask, TaskLock
from ddpui.prefect_client import ProxyNotFound, get_proxy

from .conftest import WebApp, settled_log_messages

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]

SYSTEM_SLUGS = ["git-pull", "dbt-clean", "dbt-deps", "dbt-run", "dbt-test", "dbt-docs-generate"]


def transform_list(webapp) -> dict[str, dict]:
    response = webapp.get("prefect/tasks/transform/")
    assert response.status_code == 200, response.content
    return {task["command"]: task for task in response.json()}


def follow(webapp, flow_run_id: str, timeout: float = 240) -> dict:
    """DBTTaskList.tsx's dbtRunWithDeployment: poll `state_type` until COMPLETED or FAILED."""
    deadline = time.monotonic() + timeout
    while True:
        run = webapp.get(f"prefect/flow_runs/{flow_run_id}").json()
        if (run.get("state_type") or "FAILED") in ("COMPLETED", "FAILED"):
            return run
        assert time.monotonic() < deadline, f"run {flow_run_id} still {run.get('state_type')}"
        time.sleep(0.5)


def test_w37_transform_list_has_the_fields_the_page_reads(idle_org):
    setup, webapp = idle_org

    tasks = webapp.get("prefect/tasks/transform/").json()

    assert [t["slug"] for t in tasks] == SYSTEM_SLUGS
    assert [t["seq"] for t in tasks] == list(range(len(SYSTEM_SLUGS)))
    for task in tasks:
        assert task["uuid"] and task["label"] and task["command"].split()[0] in ("git", "dbt")
        assert task["generated_by"] == "system" and task["generatedBy"] == "system" and task["lock"] is None
    by_slug = {t["slug"]: t for t in tasks}
    # dbt-run runs through its own deployment (the page says "No deployment found" without one)
    assert by_slug["dbt-run"]["deploymentId"]
    assert get_proxy().deployment(by_slug["dbt-run"]["deploymentId"]).get().parameters["config"]["tasks"][0][
        "commands"
    ] == ["dbt run"]
    assert all(by_slug[slug]["deploymentId"] is None for slug in SYSTEM_SLUGS if slug != "dbt-run")


def test_w38_creating_the_transform_tasks_again_changes_nothing(idle_org):
    setup, webapp = idle_org
    before = transform_list(webapp)
    calls = get_proxy().calls
    again = webapp.post("prefect/tasks/transform/", {})
    assert again.status_code == 200, again.content
    assert get_proxy().calls == calls
    assert transform_list(webapp) == before


# transaction=True: the two requests run in threads, each on its own connection, and must see each other's
# commits; serialized_rollback restores the master task list the flush at the end removes
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_w38_two_creates_at_once_make_one_set_and_no_5xx(idle_org):
    setup, webapp = idle_org
    assert webapp.delete("prefect/tasks/transform/").status_code == 200
    assert not OrgDataFlowv1.objects.filter(dataflow_type="manual", name__startswith="DBT").exists()
    statuses, barrier = [], threading.Barrier(2)

    def create():
        client = WebApp(webapp.token, webapp.org_slug)
        barrier.wait()
        try:
            statuses.append(client.post("prefect/tasks/transform/", {}).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert sorted(statuses) in ([200, 200], [200, 409]), statuses
    org_tasks = OrgTask.objects.filter(org__slug=setup["org_slug"], task__type__in=["git", "dbt"])
    assert sorted(org_tasks.values_list("task__slug", flat=True)) == sorted(SYSTEM_SLUGS)
    profiles = OrgPrefectBlockv1.objects.filter(org__slug=setup["org_slug"], block_type="dbt CLI Profile")
    assert profiles.count() == 1
    manual = OrgDataFlowv1.objects.filter(org__slug=setup["org_slug"], dataflow_orgtasks__orgtask__task__slug="dbt-run")
    assert manual.count() == 1
    # and Prefect holds exactly that one dbt-run deployment of the org
    deployments = get_proxy().deployments.filter(org_slug=setup["org_slug"])
    dbt_run_deployments = [d.deployment_id for d in deployments if "-dbt-run-" in d.name]
    assert dbt_run_deployments == [manual.get().deployment_id]


def test_w42_w43_the_master_list_and_each_tasks_flags_and_options(idle_org):
    setup, webapp = idle_org

    templates = webapp.get("data/tasks/")
    assert templates.status_code == 200, templates.content
    slugs = [t["slug"] for t in templates.json()]
    assert set(SYSTEM_SLUGS) | {"dbt-seed"} <= set(slugs) and "airbyte-sync" not in slugs

    config = webapp.get("data/tasks/dbt-run/config/").json()
    assert config == {"flags": ["full-refresh"], "options": ["select", "exclude"]}
    assert webapp.get("data/tasks/dbt-deps/config/").json() == {"flags": ["upgrade"], "options": ["add-package"]}
    assert webapp.get("data/tasks/git-pull/config/").json() == {"flags": [], "options": []}
    assert webapp.get("data/tasks/airbyte-sync/config/").status_code == 404
    assert webapp.get("data/tasks/no-such-task/config/").status_code == 404


def test_w44_w41_custom_task_create_with_task_slug_then_delete(idle_org):
    setup, webapp = idle_org

    created = webapp.post(
        "prefect/tasks/", {"task_slug": "dbt-run", "flags": ["full-refresh"], "options": {"select": "orders"}}
    )

    assert created.status_code == 200, created.content
    custom = transform_list(webapp)["dbt run --full-refresh --select orders"]
    assert custom["generated_by"] == "client" and custom["deploymentId"]
    parameters = get_proxy().deployment(custom["deploymentId"]).get().parameters
    assert parameters["config"]["tasks"][0]["commands"] == ["dbt run --full-refresh --select orders"]
    assert AuditEvent.objects.filter(action="task.created", object_id=custom["uuid"]).exists()
    # ddpui's own clients' field name is read too
    assert webapp.post("prefect/tasks/", {"taskSlug": "dbt-test", "flags": [], "options": {}}).status_code == 200
    assert webapp.post("prefect/tasks/", {"flags": []}).status_code == 422

    deleted = webapp.delete(f"prefect/tasks/{custom['uuid']}/")
    assert deleted.status_code == 200 and deleted.json()["success"] is True
    assert "dbt run --full-refresh --select orders" not in transform_list(webapp)
    with pytest.raises(ProxyNotFound):
        get_proxy().deployment(custom["deploymentId"]).get()
    assert not OrgDataFlowv1.objects.filter(deployment_id=custom["deploymentId"]).exists()


def test_w39_a_run_still_going_when_the_wait_ends_answers_running_and_keeps_its_lock(idle_org, settings):
    setup, webapp = idle_org
    settings.TASK_RUN_WAIT_SECONDS = 0.5  # the ad-hoc pool's run will not have ended by then
    uuid = transform_list(webapp)["git pull"]["uuid"]

    response = webapp.post(f"prefect/tasks/{uuid}/run/", {})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "running" and body["flow_run_id"] in body["result"][0]
    assert TaskLock.objects.get(orgtask__uuid=uuid).flow_run_id == body["flow_run_id"]
    # the page polls the list while any task is locked; the lock names who started it
    assert transform_list(webapp)["git pull"]["lock"]["lockedBy"] == webapp.get("currentuserv2").json()[0]["email"]
    assert webapp.post(f"prefect/tasks/{uuid}/run/", {}).status_code == 409


@pytest.mark.worker
def test_w39_w40_each_transform_task_runs_as_the_page_runs_it(ready_org, prefect_worker, settings):
    setup, webapp = ready_org
    settings.TASK_RUN_WAIT_SECONDS = 180
    tasks = transform_list(webapp)

    # W-39: git pull (and every task but dbt-run) is run and answered with its output
    pulled = webapp.post(f"prefect/tasks/{tasks['git pull']['uuid']}/run/", {})
    assert pulled.status_code == 200, pulled.content
    assert pulled.json()["status"] == "success", pulled.json()
    assert pulled.json()["result"] and pulled.json()["state_type"] == "COMPLETED"
    assert not TaskLock.objects.exists()  # the end of the run released the task

    # the models read the synced tables: sync the connection first, as the ingest page does
    sync = webapp.post(f"prefect/v1/flows/{setup['deployment_id']}/flow_run/", {}).json()["flow_run_id"]
    assert follow(webapp, sync)["state_type"] == "COMPLETED"

    # W-40: dbt run through its own deployment, followed to its end, its logs read
    started = webapp.post(f"prefect/v1/flows/{tasks['dbt run']['deploymentId']}/flow_run/", {})
    assert started.status_code == 200, started.content
    flow_run_id = started.json()["flow_run_id"]
    assert TaskLock.objects.get(orgtask__uuid=tasks["dbt run"]["uuid"]).flow_run_id == flow_run_id
    run = follow(webapp, flow_run_id)
    assert run["state_type"] == "COMPLETED", run["stateMessage"]
    messages = settled_log_messages(webapp, flow_run_id)
    assert any("customer_orders" in message for message in messages), messages[-20:]

    # W-39: dbt test answers its output too
    tested = webapp.post(f"prefect/tasks/{tasks['dbt test']['uuid']}/run/", {})
    assert tested.status_code == 200, tested.content
    assert tested.json()["status"] == "success", tested.json()
    assert any("PASS" in line for line in tested.json()["result"]), tested.json()["result"][-20:]
    assert not TaskLock.objects.exists()
