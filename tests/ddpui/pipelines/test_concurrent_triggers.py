"""20 concurrent triggers start exactly one run: nineteen 409s, no 5xx — on SQLite (WAL, IMMEDIATE
transactions, a busy timeout) and on PostgreSQL (row-level concurrency). Each trigger is a thread with its own
database connection, released together by tests/reliability/concurrency.py's barrier."""

import pytest
from django.test import Client

from ddpui.models import PrefectFlowRun, TaskLock
from tests.factories import auth_headers
from tests.reliability.concurrency import concurrent_triggers

from .conftest import make_pipeline_org

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.prefect]


def _create(orguser, name, tasks):
    body = {"name": name, "transformTasks": [{"uuid": str(t.uuid), "seq": i} for i, t in enumerate(tasks)]}
    response = Client().post("/api/prefect/v1/flows/", body, content_type="application/json", **auth_headers(orguser))
    assert response.status_code == 200, response.content
    return response.json()["deploymentId"]


def _trigger_concurrently(orguser, deployment_ids: list[str], count: int = 20) -> list[int]:
    figures = concurrent_triggers(org=orguser.org, orguser=orguser, deployment_ids=deployment_ids, count=count)
    print(figures.line())
    return sorted(figures.statuses["trigger"].elements())


def test_twenty_concurrent_triggers_of_one_pipeline_start_one_run(live_services):
    org, orguser, syncs, t = make_pipeline_org("Concurrent Org")
    deployment_id = _create(orguser, "one", [t["dbt-run"], t["dbt-test"]])
    statuses = _trigger_concurrently(orguser, [deployment_id])
    assert sorted(statuses) == [200] + [409] * 19
    assert PrefectFlowRun.objects.filter(deployment_id=deployment_id).count() == 1
    run_id = PrefectFlowRun.objects.get(deployment_id=deployment_id).flow_run_id
    assert set(TaskLock.objects.values_list("flow_run_id", flat=True)) == {run_id}


def test_concurrent_triggers_of_two_pipelines_sharing_a_task_start_one_run(live_services):
    org, orguser, syncs, t = make_pipeline_org("Shared Task Org")
    first = _create(orguser, "first", [t["dbt-run"], t["dbt-test"]])
    second = _create(orguser, "second", [t["dbt-deps"], t["dbt-run"]])
    statuses = _trigger_concurrently(orguser, [first, second])
    assert sorted(statuses) == [200] + [409] * 19
    assert PrefectFlowRun.objects.filter(deployment_id__in=[first, second]).count() == 1
    assert TaskLock.objects.values("flow_run_id").distinct().count() == 1
