"""The flow-run notification automation and its webhook block: an idempotent upsert that never shows the
secret, and a real Prefect server that posts a flow run's state changes to the webhook URL with it."""

from __future__ import annotations

import json
import uuid

import pytest
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from tests.proxy.conftest import unique
from tests.support.prefect_rest import prefect_request
from tests.support.webhook_capture import WebhookCapture

pytestmark = pytest.mark.prefect

PATH = "/proxy/automations/flow-run-notifications/"
HEADER = "X-Ddpui-Webhook-Secret"
SECRET = "whs-7c1e93a0b4"  # distinctive, so a leak is easy to spot


def body(name: str, url: str = "http://127.0.0.1:9/webhooks/v1/notification/", secret: str = SECRET) -> dict:
    return {"name": name, "url": url, "secret_header_name": HEADER, "secret": secret}


def automations_named(prefect_server, name: str) -> list[dict]:
    response = prefect_request(
        "POST", f"{prefect_server.api_url}/automations/filter", json={"automations": {"name": {"any_": [name]}}}
    )
    return [automation for automation in response.json() if automation["name"] == name]


def webhook_blocks_named(prefect_server, name: str, slug: str = "webhook") -> list[dict]:
    response = prefect_request(
        "POST",
        f"{prefect_server.api_url}/block_documents/filter",
        json={"block_documents": {"name": {"any_": [name]}}, "block_types": {"slug": {"any_": [slug]}}},
    )
    return response.json()


def test_setup_is_idempotent_and_never_shows_the_secret(api, prefect_server):
    name = unique("notify")
    first = api.put(PATH, json=body(name))
    assert first.status_code == 200, first.text
    created = first.json()
    assert (created["block_change"], created["automation_change"], created["duplicates_removed"]) == (
        "created",
        "created",
        0,
    )
    assert (created["name"], created["block_name"], created["enabled"], created["events"]) == (
        name,
        name,
        True,
        ["prefect.flow-run.*"],
    )
    assert (created["url"], created["secret_header_name"]) == ("http://127.0.0.1:9/webhooks/v1/notification/", HEADER)

    again = api.put(PATH, json=body(name)).json()
    assert (again["block_change"], again["automation_change"]) == ("unchanged", "unchanged")
    assert (again["automation_id"], again["block_id"]) == (created["automation_id"], created["block_id"])
    assert len(automations_named(prefect_server, name)) == 1
    assert len(webhook_blocks_named(prefect_server, name)) == 1

    read = api.get(f"{PATH}{name}")
    assert read.status_code == 200
    assert read.json() == {key: created[key] for key in read.json()}
    # the secret: not in our answers, not in what Prefect's API shows, only in the block's masked headers
    for text in (first.text, read.text, json.dumps(automations_named(prefect_server, name))):
        assert SECRET not in text
    document = webhook_blocks_named(prefect_server, name)[0]
    assert SECRET not in json.dumps(document)
    assert document["data"]["headers"] == {"Content-Type": "********", HEADER: "********"}
    assert document["data"]["url"] == "********"
    (action,) = automations_named(prefect_server, name)[0]["actions"]
    assert (action["type"], action["block_document_id"]) == ("call-webhook", created["block_id"])

    rotated = api.put(PATH, json=body(name, secret="a-new-secret")).json()
    assert (rotated["block_change"], rotated["automation_change"]) == ("updated", "unchanged")
    assert rotated["block_id"] == created["block_id"]
    moved = api.put(PATH, json=body(name, url="http://127.0.0.1:9/other/", secret="a-new-secret")).json()
    assert (moved["block_change"], moved["url"]) == ("updated", "http://127.0.0.1:9/other/")

    deleted = api.delete(f"{PATH}{name}")
    assert deleted.status_code == 200
    assert deleted.json() == {"name": name, "automations_deleted": 1, "block_deleted": True}
    assert automations_named(prefect_server, name) == [] and webhook_blocks_named(prefect_server, name) == []
    assert api.get(f"{PATH}{name}").status_code == 404
    assert api.delete(f"{PATH}{name}").status_code == 404


def test_a_duplicate_automation_of_the_same_name_is_removed(api, prefect_server):
    name = unique("notify")
    created = api.put(PATH, json=body(name)).json()
    original = automations_named(prefect_server, name)[0]
    copy = {key: original[key] for key in ("name", "description", "enabled", "trigger", "actions")}
    copy["trigger"] = {key: value for key, value in copy["trigger"].items() if key != "id"}
    prefect_request("POST", f"{prefect_server.api_url}/automations/", json=copy)
    assert len(automations_named(prefect_server, name)) == 2

    fixed = api.put(PATH, json=body(name)).json()
    assert (fixed["automation_change"], fixed["duplicates_removed"]) == ("unchanged", 1)
    assert len(automations_named(prefect_server, name)) == 1
    assert fixed["block_id"] == created["block_id"]
    api.delete(f"{PATH}{name}")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Not A Block Name"}, "name"),
        ({"url": "not a url"}, "url"),
        ({"url": "ftp://127.0.0.1/x"}, "url"),
        ({"secret": ""}, "secret"),
        ({"secret_header_name": "X Bad: header"}, "secret_header_name"),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_requests_are_422(api, change, field):
    response = api.put(PATH, json={**body(unique("notify")), **change})
    assert response.status_code == 422
    assert field in response.json()["detail"]
    assert SECRET not in response.text


def legacy_setup(prefect, name: str, url: str) -> tuple[str, str]:
    """What an earlier version wrote: a Custom Webhook notification block and a send-notification automation."""
    block_id = CustomWebhookNotificationBlock(
        name=name,
        url=url,
        headers={HEADER: "{{webhook_secret}}"},
        json_data={"flow_run_id": "{{body}}", "message": "{{subject}}"},
        secrets={"webhook_secret": SECRET},
    ).save(name=name, client=prefect)
    automation = prefect.create_automation(
        AutomationCore(
            name=name,
            trigger=EventTrigger(
                match={"prefect.resource.id": "prefect.flow-run.*"},
                expect={"prefect.flow-run.*"},
                posture=Posture.Reactive,
                threshold=1,
                within=0,
            ),
            actions=[SendNotification(block_document_id=block_id, subject="{{ flow_run.name }}", body="x")],
        )
    )
    return str(block_id), str(automation)


def test_an_earlier_versions_notification_block_is_replaced_and_deleted(api, prefect, prefect_server):
    name = unique("notify")
    legacy_block, legacy_automation = legacy_setup(prefect, name, "http://127.0.0.1:9/webhooks/v1/notification/")

    moved = api.put(PATH, json=body(name)).json()
    assert (moved["block_change"], moved["automation_change"], moved["legacy_block_removed"]) == (
        "created",
        "updated",
        True,
    )
    assert moved["automation_id"] == legacy_automation and moved["block_id"] != legacy_block
    (automation,) = automations_named(prefect_server, name)
    assert [action["type"] for action in automation["actions"]] == ["call-webhook"]
    assert webhook_blocks_named(prefect_server, name, slug="custom-webhook") == []
    again = api.put(PATH, json=body(name)).json()
    assert (again["block_change"], again["automation_change"], again["legacy_block_removed"]) == (
        "unchanged",
        "unchanged",
        False,
    )

    # a delete also removes a leftover of an earlier version (here: made again by hand)
    other = unique("other")
    other_block, other_automation = legacy_setup(prefect, other, "http://127.0.0.1:9/x/")  # another name
    try:
        CustomWebhookNotificationBlock(name=name, url="http://127.0.0.1:9/x/").save(name=name, client=prefect)
        deleted = api.delete(f"{PATH}{name}").json()
        assert deleted == {"name": name, "automations_deleted": 1, "block_deleted": True}
        assert webhook_blocks_named(prefect_server, name, slug="custom-webhook") == []
        assert webhook_blocks_named(prefect_server, name) == []
        assert [block["id"] for block in webhook_blocks_named(prefect_server, other, slug="custom-webhook")] == [
            other_block
        ]  # left alone
    finally:
        prefect.delete_automation(uuid.UUID(other_automation))
        prefect.delete_block_document(uuid.UUID(other_block))


def test_the_automation_posts_a_flow_runs_state_changes_with_the_secret(api, prefect):
    """Prefect's own triggers and actions services (running in `prefect server start`) deliver it; the
    message is JSON-quoted whatever the run's name holds."""
    name = unique("notify")
    run_name = 'a "quoted" \\ run <name>'
    with WebhookCapture() as capture:
        assert api.put(PATH, json=body(name, url=capture.url)).status_code == 200
        try:
            flow_id = prefect.create_flow_from_name(unique("notified-flow"))
            created = prefect.request("POST", "/flow_runs/", json={"flow_id": str(flow_id), "name": run_name})
            run_id = str(created.json()["id"])
            prefect.request(
                "POST", f"/flow_runs/{run_id}/set_state", json={"state": {"type": "RUNNING"}, "force": True}
            )

            def running(request) -> bool:
                payload = request.json()
                return payload.get("flow_run_id") == run_id and payload["message"].endswith("entered state Running")

            delivered = capture.wait_for(running, timeout=60)
        finally:
            api.delete(f"{PATH}{name}")
    assert delivered.method == "POST" and delivered.path == "/webhooks/v1/notification/"
    assert delivered.header(HEADER) == SECRET
    assert delivered.header("Content-Type") == "application/json"
    payload = delivered.json()
    assert uuid.UUID(payload["flow_run_id"]) == uuid.UUID(run_id)
    assert payload["message"] == f"Flow run {run_name} with id {run_id} entered state Running"
