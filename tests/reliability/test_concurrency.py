"""Every write path survives concurrency, on SQLite (WAL, IMMEDIATE transactions, a busy timeout) and on
PostgreSQL: notifications while runs start and end, concurrent triggers, concurrent reads that record run
states. Zero 5xx, and afterwards our records agree with Prefect. bench/concurrency.py prints the figures."""

from __future__ import annotations

import os

import pytest
from django.core import mail
from django.test import Client

from ddpui.models import PrefectFlowRun, TaskLock
from tests.ddpui.pipelines.conftest import make_pipeline_org
from tests.factories import auth_headers, make_orgtask

from .concurrency import WEBHOOK, concurrent_reads, webhook_storm
from .conftest import assert_locks_and_runs_consistent

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.prefect,
    pytest.mark.slow,
]

SECRET = "concurrency-webhook-secret"
# the figure; DDPUI_STORM_DELIVERIES changes it for a quick local run (CI keeps 2,000)
STORM_DELIVERIES = int(os.environ.get("DDPUI_STORM_DELIVERIES", "2000"))


@pytest.fixture
def storm_org(idle_pool, settings):
    settings.WEBHOOK_SECRET = SECRET
    return make_pipeline_org("Concurrency Org", connections=0)


def _deliver_once_each(run_ids) -> None:
    client = Client()
    for run_id in run_ids:
        response = client.post(WEBHOOK, {"flow_run_id": run_id}, "application/json", HTTP_X_DDPUI_WEBHOOK_SECRET=SECRET)
        assert response.status_code == 200, response.content


def test_two_thousand_notifications_from_eight_threads_while_runs_start_and_end(storm_org):
    org, orguser, _, _ = storm_org
    figures = webhook_storm(org=org, orguser=orguser, make_orgtask=make_orgtask, deliveries=STORM_DELIVERIES)
    print(figures.line())
    assert figures.server_errors() == 0, figures.line()
    assert set(figures.statuses["notification"]) == {200}, figures.line()
    assert set(figures.statuses["trigger"]) <= {200, 409}, figures.line()
    assert figures.statuses["trigger"][200] >= 6, figures.line()
    # one last notification for every run, as Prefect sends for each state: records and locks agree with it
    _deliver_once_each(figures.run_ids)
    assert_locks_and_runs_consistent()
    assert not TaskLock.objects.exists()
    failed = PrefectFlowRun.objects.filter(state_type__in=["FAILED", "CRASHED"]).count()
    assert failed >= 2
    assert len(mail.outbox) == failed  # exactly one failure e-mail per failed or crashed run


def test_fifty_concurrent_reads_during_a_run(storm_org):
    org, orguser, _, _ = storm_org
    figures = concurrent_reads(org=org, orguser=orguser, make_orgtask=make_orgtask)
    print(figures.line())
    assert figures.server_errors() == 0, figures.line()
    assert all(set(counter) == {200} for counter in figures.statuses.values()), figures.line()
    assert sum(figures.total(kind) for kind in figures.statuses) == 50
    # one more read after the end: the record says Completed and the lock is gone
    response = Client().get(f"/api/prefect/flow_runs/{figures.run_ids[0]}", **auth_headers(orguser, org.slug))
    assert response.status_code == 200, response.content
    assert PrefectFlowRun.objects.get(flow_run_id=figures.run_ids[0]).state_type == "COMPLETED"
    assert not TaskLock.objects.exists()
