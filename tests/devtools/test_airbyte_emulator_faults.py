"""The emulator's injected faults (devtools/airbyte_emulator/faults.py): each kind fails one request as a real
Airbyte would, only on the routes named, and a restart window drops every request until it ends."""

from __future__ import annotations

import time

import httpx
import pytest

from devtools.airbyte_emulator import EmulatorServer


@pytest.fixture(scope="module")
def emulator():
    with EmulatorServer(host="127.0.0.1", port=0, username="airbyte", password="password") as server:
        yield server


@pytest.fixture
def api(emulator):
    emulator.reset()
    with httpx.Client(base_url=emulator.api_url, auth=("airbyte", "password"), timeout=5) as client:
        yield client


def outcome(api: httpx.Client, route: str, body: dict | None = None) -> int | str:
    try:
        return api.post(f"/{route}/", json=body or {}).status_code
    except httpx.TransportError:
        return "dropped"


def workspaces(emulator) -> int:
    return len(emulator.state()["workspaces"])


def test_each_fault_fails_one_request_of_the_named_routes_in_order(emulator, api):
    emulator.configure(faults=[502, "reset", "lost", 503], fault_routes=["workspaces/create"])

    assert outcome(api, "workspaces/list") == 200  # another route: untouched
    assert outcome(api, "workspaces/create", {"name": "a"}) == 502
    assert outcome(api, "workspaces/create", {"name": "b"}) == "dropped"
    assert workspaces(emulator) == 0  # neither was handled
    assert outcome(api, "workspaces/create", {"name": "c"}) == "dropped"
    assert workspaces(emulator) == 1  # "lost": handled, only the answer is gone
    assert outcome(api, "workspaces/create", {"name": "d"}) == 503
    assert outcome(api, "workspaces/create", {"name": "e"}) == 200
    assert emulator.configure()["faults"] == []


def test_a_restart_window_drops_every_request_until_it_ends(emulator, api):
    control = httpx.post(f"{emulator.url}/_emulator/config", json={"restart_seconds": 0.5}, timeout=5)
    assert control.status_code == 200 and control.json()["restart_seconds"] > 0
    assert outcome(api, "workspaces/list") == "dropped"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{emulator.api_url}/health", timeout=5)
    deadline = time.monotonic() + 10
    while outcome(api, "workspaces/list") == "dropped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert emulator.configure()["restart_seconds"] == 0


@pytest.mark.parametrize(
    "controls",
    [{"faults": [404]}, {"faults": ["slow"]}, {"faults": 502}, {"fault_routes": "jobs/get"}, {"restart_seconds": -1}],
)
def test_invalid_fault_controls_are_refused(emulator, controls):
    response = httpx.post(f"{emulator.url}/_emulator/config", json=controls, timeout=5)
    assert response.status_code == 422
    with pytest.raises(ValueError):
        emulator.configure(**controls)


def test_reset_clears_the_faults(emulator, api):
    emulator.configure(faults=[500], fault_routes=["jobs/get"], restart_seconds=30)
    emulator.reset()
    controls = emulator.configure()
    assert (controls["faults"], controls["fault_routes"], controls["restart_seconds"]) == ([], [], 0)
    assert outcome(api, "workspaces/list") == 200
