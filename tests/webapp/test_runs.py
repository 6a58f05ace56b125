"""A run followed to its end as the web app follows it (W-29, W-30), then found again through the history and
its logs read page by page (W-52, W-53). Real runs on the session's Prefect worker."""

from __future__ import annotations

import time

import pytest

from ddpui.models import TaskLock

from .conftest import settled_log_messages

pytestmark = [pytest.mark.django_db, pytest.mark.prefect, pytest.mark.worker]


def follow(webapp, flow_run_id: str, timeout: float = 180) -> dict:
    """Connections.tsx / DBTTaskList.tsx: poll the run until `state_type` is COMPLETED or FAILED (a missing
    `state_type` counts as FAILED), reading the logs as it goes."""
    deadline = time.monotonic() + timeout
    while True:
        run = webapp.get(f"prefect/flow_runs/{flow_run_id}")
        assert run.status_code == 200, run.content
        state = run.json().get("state_type") or "FAILED"
        if state in ("COMPLETED", "FAILED"):
            return run.json()
        assert time.monotonic() < deadline, f"run {flow_run_id} still {state}"
        logs = webapp.get(f"prefect/flow_runs/{flow_run_id}/logs")
        assert logs.status_code == 200 and isinstance(logs.json()["logs"]["logs"], list)
        time.sleep(0.5)


def test_w29_w30_a_sync_is_followed_to_its_end_and_its_logs_read(ready_org, prefect_worker):
    setup, webapp = ready_org
    deployment_id = setup["deployment_id"]  # the connection's own deployment ("Sync" in Connections.tsx)

    started = webapp.post(f"prefect/v1/flows/{deployment_id}/flow_run/", {})
    assert started.status_code == 200, started.content
    flow_run_id = started.json()["flow_run_id"]

    run = follow(webapp, flow_run_id)

    assert run["state_type"] == "COMPLETED", run["stateMessage"]
    assert (run["id"], run["deployment_id"], run["state_name"]) == (flow_run_id, deployment_id, "Completed")
    assert run["stateType"] == "COMPLETED" and run["flowRunId"] == flow_run_id  # ddpui's fields stay
    assert not TaskLock.objects.filter(flow_run_id=flow_run_id).exists()  # the end released the sync's lock
    messages = settled_log_messages(webapp, flow_run_id)
    assert messages and any("airbyte-sync" in message for message in messages), messages[:20]

    # W-52 / W-53: "last logs" finds the run and pages through its logs by offset
    (last,) = webapp.get(f"prefect/flows/{deployment_id}/flow_runs/history?limit=1&fetchlogs=false").json()
    assert last["id"] == flow_run_id and last["status"] == "COMPLETED"
    first_page = webapp.get(f"prefect/flow_runs/{last['id']}/logs?offset=0").json()
    assert [line["message"] for line in first_page["logs"]["logs"]] == messages
    # the web app asks for the next page while a page holds 200 lines; past the end it gets an empty page
    past = webapp.get(f"prefect/flow_runs/{last['id']}/logs?offset={len(messages)}").json()
    assert past["logs"] == {"offset": len(messages), "logs": []} and past["next_offset"] is None
