"""Load: 200 webhook deliveries for 50 runs, from 8 threads at once, end in exactly the state that
delivering them one after the other does, on SQLite and on PostgreSQL (real row locks between the threads).
The throughput figure is measured by bench/webhook_load.py, never asserted here."""

from __future__ import annotations

import pytest
from django.core import mail

from tests.ddpui.pipelines.conftest import make_pipeline_org
from tests.factories import make_orgtask

from .webhook_load import build_scenario

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.prefect,
    pytest.mark.slow,
]

SECRET = "load-test-webhook-secret"


def test_concurrent_deliveries_end_as_sequential_ones(idle_pool, settings):
    settings.WEBHOOK_SECRET = SECRET
    org, orguser, _, _ = make_pipeline_org("Load Org", connections=0)
    scenario = build_scenario(org=org, orguser=orguser, make_orgtask=make_orgtask, webhook_secret=SECRET)

    statuses, _ = scenario.deliver(threads=1)
    assert statuses == [200] * 200
    sequential = scenario.end_state()
    sequential_mail = sorted(message.subject for message in mail.outbox)
    assert len(sequential["runs"]) == 50
    assert {run["state_type"] for run in sequential["runs"].values()} == {
        "COMPLETED",
        "FAILED",
        "CRASHED",
        "CANCELLED",
        "RUNNING",
    }
    # the live runs hold their pipelines' locks, and only they do
    running = {run_id for run_id, run in sequential["runs"].items() if run["state_type"] == "RUNNING"}
    assert {flow_run_id for _, flow_run_id, _ in sequential["locks"]} == running

    scenario.restore_initial()
    mail.outbox.clear()
    statuses, _ = scenario.deliver(threads=8)
    assert statuses == [200] * 200
    assert scenario.end_state() == sequential
    assert sorted(message.subject for message in mail.outbox) == sequential_mail  # one e-mail per failed run
