"""The flow-run notification automation and its webhook block: an idempotent upsert that never shows the
secret, and a real Prefect server that posts a flow run's state changes to the webhook URL with it."""

from __future__ import annotations

import json
import uuid

import pytest

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


def webhook_blocks_named(prefect_server, name: str) -> list[dict]:
    response = prefect_request(
        "POST",
        f"{prefect_server.api_url}/block_documents/filter",
        json={"block_documents": {"name": {"any_": [name]}}, "block_types": {"slug": {"any_": ["custom-webhook"]}}},
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
    # the secret: not in our answers, not in what Prefect's API shows, only in the block's masked secrets
    for text in (first.text, read.text, json.dumps(automations_named(prefect_server, name))):
        assert SECRET not in text
    document = webhook_blocks_named(prefect_server, name)[0]
    assert SECRET not in json.dumps(document)
    assert document["data"]["headers"] == {HEADER: "{{webhook_secret}}"}
    assert document["data"]["secrets"] == {"webhook_secret": "********"}

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


def test_the_automation_posts_a_flow_runs_state_changes_with_the_secret(api, prefect):
    """Prefect's own triggers and actions services (running in `prefect server start`) deliver it."""
    name = unique("notify")
    with WebhookCapture() as capture:
        assert api.put(PATH, json=body(name, url=capture.url)).status_code == 200
        try:
            flow_id = prefect.create_flow_from_name(unique("notified-flow"))
            run_id = str(prefect.request("POST", "/flow_runs/", json={"flow_id": str(flow_id)}).json()["id"])
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
    assert f"with id {run_id} entered state Running" in payload["message"]
