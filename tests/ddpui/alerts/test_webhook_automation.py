"""The Prefect automation behind our webhook posts state changes only: not the heartbeat every running run
emits every 30-180 s. An automation made by an earlier version (which posted heartbeats too) is brought up
to date by setup_prefect_webhook, once."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from prefect.events import Event
from prefect.events.clients import get_events_client

from ddpui.errors import DomainError
from ddpui.prefect_client import get_proxy
from tests.support.prefect_rest import prefect_request
from tests.support.webhook_capture import WebhookCapture

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]


def setup_webhook(name: str, url: str) -> str:
    out = StringIO()
    call_command("setup_prefect_webhook", "--name", name, "--url", url, stdout=out)
    return out.getvalue()


def automation_named(name: str) -> dict:
    found = prefect_request("POST", "automations/filter", json={"automations": {"name": {"any_": [name]}}}).json()
    return next(automation for automation in found if automation["name"] == name)


def make_it_old(name: str) -> None:
    """The automation as an earlier version made it: any prefect.flow-run.* event, heartbeats included."""
    automation = automation_named(name)
    old = {key: automation[key] for key in ("name", "description", "enabled", "trigger", "actions")}
    old["trigger"] = {key: value for key, value in old["trigger"].items() if key != "id"}
    old["trigger"]["match"] = {"prefect.resource.id": "prefect.flow-run.*"}
    prefect_request("PUT", f"automations/{automation['id']}", json=old, expect=(204,))


def heartbeat(flow_run_id: str) -> None:
    """What a running flow's process emits every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds."""

    async def emit() -> None:
        async with get_events_client() as client:
            await client.emit(
                Event(
                    event="prefect.flow-run.heartbeat",
                    resource={"prefect.resource.id": f"prefect.flow-run.{flow_run_id}", "prefect.resource.name": "x"},
                )
            )

    asyncio.run(emit())


def test_heartbeats_are_not_posted_and_an_old_automation_is_updated_once(alerting):
    ours, old = f"ddpui-test-{uuid.uuid4().hex[:8]}", f"ddpui-test-{uuid.uuid4().hex[:8]}"
    try:
        with WebhookCapture() as ours_receiver, WebhookCapture() as old_receiver:
            shown = setup_webhook(ours, ours_receiver.url)
            assert "trigger: prefect.flow-run.* of state changes only (no heartbeats)" in shown
            setup_webhook(old, old_receiver.url)
            make_it_old(old)

            flow_id = prefect_request("POST", "flows/", json={"name": f"heartbeats-{uuid.uuid4().hex[:6]}"}).json()[
                "id"
            ]
            run_id = prefect_request("POST", "flow_runs/", json={"flow_id": flow_id}).json()["id"]

            def about_run(request) -> bool:
                return request.json().get("flow_run_id") == run_id

            def posts(receiver) -> list[str]:
                return [
                    request.json()["message"].rsplit(" ", 1)[-1] for request in receiver.requests if about_run(request)
                ]

            def has_posts(receiver, count: int):
                return lambda _: len(posts(receiver)) >= count

            # the run is created Pending: both automations post that state change
            ours_receiver.wait_for(has_posts(ours_receiver, 1), timeout=60)
            old_receiver.wait_for(has_posts(old_receiver, 1), timeout=60)
            heartbeat(run_id)
            old_receiver.wait_for(has_posts(old_receiver, 2), timeout=60)  # the old trigger posts the heartbeat
            prefect_request("POST", f"flow_runs/{run_id}/set_state", json={"state": {"type": "RUNNING"}, "force": True})
            ours_receiver.wait_for(has_posts(ours_receiver, 2), timeout=60)
            old_receiver.wait_for(has_posts(old_receiver, 3), timeout=60)
            # a heartbeat's post names the run's current state: it reads as a second "Pending"
            assert posts(old_receiver) == ["Pending", "Pending", "Running"]
            assert posts(ours_receiver) == ["Pending", "Running"]  # the state changes only

        # an installation set up by the earlier version: running the command again updates it, once
        updated = setup_webhook(old, "http://127.0.0.1:9/webhooks/v1/notification/")
        assert f"automation '{old}'" in updated and "): updated" in updated
        again = setup_webhook(old, "http://127.0.0.1:9/webhooks/v1/notification/")
        assert again.count("): unchanged") == 2 and again.strip().endswith("nothing to change, already set up")
        assert automation_named(old)["trigger"]["match"] == {
            "prefect.resource.id": "prefect.flow-run.*",
            "prefect.state-type": "*",
        }
        assert get_proxy().flow_run_notifications(old).get().match["prefect.state-type"] == "*"
    finally:
        for name in (ours, old):
            with contextlib.suppress(DomainError):
                get_proxy().flow_run_notifications(name).delete()
