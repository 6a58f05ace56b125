"""The Prefect notification webhook and the lock reconciler, against the real Prefect server."""

import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from ddpui.models import PrefectFlowRun, TaskLock
from ddpui.prefect_client import get_proxy
from ddpui.services import locks
from tests.factories import auth_headers
from tests.support.prefect_rest import prefect_request, prefect_set_state

from .pipelines.conftest import make_pipeline_org

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]

SECRET = "test-webhook-secret"
IDLE_POOL = "ddpui-idle"  # no worker polls it: runs stay where the test puts them


@pytest.fixture
def webhook(settings, live_services):
    settings.WEBHOOK_SECRET = SECRET
    settings.PREFECT_WORK_POOL = IDLE_POOL
    prefect_request("POST", "work_pools/", json={"name": IDLE_POOL, "type": "process"}, expect=(201, 409))
    client = Client()

    def post(body, secret=SECRET, content_type="application/json"):
        headers = {"HTTP_X_DDPUI_WEBHOOK_SECRET": secret} if secret is not None else {}
        return client.post("/webhooks/v1/notification/", body, content_type=content_type, **headers)

    return post


def set_state(flow_run_id: str, state_type: str) -> None:
    prefect_set_state(flow_run_id, state_type)


def make_pipeline(orguser, t, name="nightly"):
    body = {"name": name, "transformTasks": [{"uuid": str(t["dbt-run"].uuid), "seq": 0}]}
    response = Client().post("/api/prefect/v1/flows/", body, content_type="application/json", **auth_headers(orguser))
    assert response.status_code == 200, response.content
    return response.json()["deploymentId"]


def trigger(orguser, deployment_id):
    response = Client().post(f"/api/prefect/v1/flows/{deployment_id}/flow_run/", **auth_headers(orguser))
    assert response.status_code == 200, response.content
    return response.json()["flow_run_id"]


def test_refuses_without_configured_secret(settings, live_services):
    settings.WEBHOOK_SECRET = ""
    response = Client().post("/webhooks/v1/notification/", {"flow_run_id": "x"}, content_type="application/json")
    assert response.status_code == 401 and "WEBHOOK_SECRET" in response.json()["detail"]


def test_bad_secret_malformed_body_and_unknown_run(webhook):
    assert webhook({"flow_run_id": "00000000-0000-0000-0000-000000000001"}, secret="wrong").status_code == 401
    assert webhook({"flow_run_id": "00000000-0000-0000-0000-000000000001"}, secret=None).status_code == 401
    for body in [{"nothing": "here"}, {"flow_run_id": "not-a-uuid"}, ""]:
        response = webhook(body)
        assert response.status_code == 400, body
        assert "detail" in response.json()
    unknown = webhook({"flow_run_id": "00000000-0000-0000-0000-000000000001"})
    assert unknown.status_code == 200 and "unknown" in unknown.json()["outcome"]
    assert not PrefectFlowRun.objects.exists()


def test_terminal_state_releases_locks_idempotently_and_out_of_order(webhook):
    org, orguser, _, t = make_pipeline_org()
    run_id = trigger(orguser, make_pipeline(orguser, t))
    assert TaskLock.objects.filter(flow_run_id=run_id).count() == 1
    set_state(run_id, "RUNNING")
    assert webhook({"flow_run_id": run_id, "state": {"type": "RUNNING"}}).status_code == 200
    assert PrefectFlowRun.objects.get(flow_run_id=run_id).state_type == "RUNNING"
    assert TaskLock.objects.filter(flow_run_id=run_id).count() == 1  # the trigger's lock, not a second one

    set_state(run_id, "COMPLETED")
    message = f"Flow run brave-fox with id {run_id} entered state Completed"
    first = webhook(message, content_type="text/plain")
    assert first.status_code == 200 and "Completed" in first.json()["outcome"]
    assert not TaskLock.objects.exists()
    record = PrefectFlowRun.objects.get(flow_run_id=run_id)
    assert record.state_type == "COMPLETED" and record.end_time is not None

    # duplicates and a late "Pending" change nothing; the webhook trusts Prefect, not the body
    snapshot = PrefectFlowRun.objects.filter(flow_run_id=run_id).values().get()
    for body in [{"message": message}, {"flow_run_id": run_id, "state": {"type": "PENDING"}}]:
        assert webhook(body).json()["outcome"] == "no change"
    assert PrefectFlowRun.objects.filter(flow_run_id=run_id).values().get() == snapshot
    assert not TaskLock.objects.exists()
    # the next trigger succeeds
    assert trigger(orguser, record.deployment_id)


def test_scheduled_run_takes_locks_or_is_cancelled_when_a_task_is_held(webhook):
    org, orguser, _, t = make_pipeline_org()
    first = make_pipeline(orguser, t, "first")
    second = make_pipeline(orguser, t, "second")  # shares dbt-run with the first
    holder = trigger(orguser, first)
    set_state(holder, "RUNNING")

    scheduled = get_proxy().deployment(second).create_run()  # as Prefect's scheduler would: not through our API
    set_state(scheduled.id, "PENDING")
    response = webhook({"flow_run_id": scheduled.id})
    assert response.status_code == 200
    assert "overlap" in response.json()["outcome"] and holder in response.json()["outcome"]
    state = get_proxy().flow_run(scheduled.id).state().state_type
    assert state in {"CANCELLING", "CANCELLED"}
    record = PrefectFlowRun.objects.get(flow_run_id=scheduled.id)
    assert holder in record.state_message
    assert set(TaskLock.objects.values_list("flow_run_id", flat=True)) == {holder}

    # once the holder is done, a scheduled run of the other pipeline takes the locks for itself
    set_state(holder, "COMPLETED")
    webhook({"flow_run_id": holder})
    later = get_proxy().deployment(second).create_run()
    set_state(later.id, "RUNNING")
    assert webhook({"flow_run_id": later.id}).json()["outcome"] == "locked for the scheduled run"
    assert set(TaskLock.objects.values_list("flow_run_id", flat=True)) == {later.id}


def test_reconciler_repairs_lost_webhooks_deleted_runs_and_stale_locks(webhook):
    org, orguser, _, t = make_pipeline_org()
    finished = trigger(orguser, make_pipeline(orguser, t, "finished"))
    set_state(finished, "COMPLETED")  # its webhook is lost
    deleted = trigger(orguser, make_pipeline(orguser, {"dbt-run": t["dbt-test"]}, "deleted"))
    prefect_request("DELETE", f"flow_runs/{deleted}", expect=(204,))
    stale = locks.locks_acquire(orgtasks=[t["dbt-deps"]])
    TaskLock.objects.filter(id=stale[0].id).update(locked_at=timezone.now() - timedelta(hours=1))
    fresh = locks.locks_acquire(orgtasks=[t["git-pull"]])  # a trigger in progress: within the grace period

    out = StringIO()
    call_command("reconcile_locks", stdout=out)
    text = out.getvalue()
    assert "never got a flow run" in text and f"run {deleted} is unknown to Prefect" in text and finished in text
    assert list(TaskLock.objects.values_list("id", flat=True)) == [fresh[0].id]
    assert PrefectFlowRun.objects.get(flow_run_id=finished).state_type == "COMPLETED"
    again = StringIO()
    call_command("reconcile_locks", stdout=again)
    assert "nothing to do" in again.getvalue()


@pytest.mark.worker
def test_failed_run_emails_managers_with_the_failing_task(
    webhook, settings, prefect_worker, django_capture_on_commit_callbacks
):
    settings.PREFECT_WORK_POOL = prefect_worker.pool
    org, orguser, _, t = make_pipeline_org("Failing Org")  # its dbt project does not exist on disk
    body = {"name": "broken", "transformTasks": [{"uuid": str(t["git-pull"].uuid), "seq": 0}]}
    deployment_id = (
        Client()
        .post("/api/prefect/v1/flows/", body, content_type="application/json", **auth_headers(orguser))
        .json()["deploymentId"]
    )
    run_id = trigger(orguser, deployment_id)
    deadline = time.monotonic() + 180
    while get_proxy().flow_run(run_id).state().state_type not in {"FAILED", "CRASHED", "COMPLETED"}:
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.3)
    with django_capture_on_commit_callbacks(execute=True):
        response = webhook({"flow_run_id": run_id})
    assert response.status_code == 200
    assert PrefectFlowRun.objects.get(flow_run_id=run_id).state_type == "FAILED"
    assert not TaskLock.objects.exists()
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == [orguser.user.email]
    assert org.name in email.subject and "broken" in email.subject
    assert "git-pull" in email.body and "Last log lines" in email.body
    with django_capture_on_commit_callbacks(execute=True):
        webhook({"flow_run_id": run_id})
    assert len(mail.outbox) == 1  # a duplicate notification sends nothing more


@pytest.mark.parametrize("first_observer", ["api read", "reconciler", "webhook"])
def test_a_failure_is_emailed_once_whoever_records_it_first(
    webhook, first_observer, django_capture_on_commit_callbacks
):
    org, orguser, _, t = make_pipeline_org("Once Org")
    run_id = trigger(orguser, make_pipeline(orguser, t, "nightly"))
    set_state(run_id, "RUNNING")
    set_state(run_id, "FAILED")
    with django_capture_on_commit_callbacks(execute=True):
        if first_observer == "api read":
            response = Client().get(f"/api/prefect/flow_runs/{run_id}", **auth_headers(orguser))
            assert response.status_code == 200, response.content
        elif first_observer == "reconciler":
            call_command("reconcile_locks", stdout=StringIO())
        else:
            assert webhook({"flow_run_id": run_id}).status_code == 200
    assert PrefectFlowRun.objects.get(flow_run_id=run_id).state_type == "FAILED"
    assert len(mail.outbox) == 1 and "nightly" in mail.outbox[0].subject
    with django_capture_on_commit_callbacks(execute=True):  # later observers send nothing more
        assert webhook({"flow_run_id": run_id}).status_code == 200
        assert Client().get(f"/api/prefect/flow_runs/{run_id}", **auth_headers(orguser)).status_code == 200
        call_command("reconcile_locks", stdout=StringIO())
    assert len(mail.outbox) == 1
    assert not TaskLock.objects.exists()


def test_a_trigger_refused_by_a_finished_run_heals_the_lost_end_at_once(webhook):
    org, orguser, _, t = make_pipeline_org("Heal Org")
    deployment_id = make_pipeline(orguser, t, "nightly")
    first = trigger(orguser, deployment_id)
    set_state(first, "RUNNING")
    running = Client().post(f"/api/prefect/v1/flows/{deployment_id}/flow_run/", **auth_headers(orguser))
    assert running.status_code == 409 and first in running.json()["detail"]  # a live holder still wins
    set_state(first, "COMPLETED")  # its notification is lost
    second = trigger(orguser, deployment_id)  # not 409: the holder's run is over
    assert PrefectFlowRun.objects.get(flow_run_id=first).state_type == "COMPLETED"
    assert set(TaskLock.objects.values_list("flow_run_id", flat=True)) == {second}
