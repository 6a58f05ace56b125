"""Deployments made and changed through the proxy, checked by reading them straight from Prefect."""

from __future__ import annotations

import re
import uuid

import pytest
from prefect.client.schemas.schedules import CronSchedule

from ddpcontract.proxy_api import UNIQUE_BASE_MAX
from proxy import deployments
from proxy.settings import REPO_ROOT
from tests.proxy.conftest import IDLE_POOL, TEST_WORK_POOL, make_deployment, unique

pytestmark = pytest.mark.prefect

CONFIG = {
    "config": {"org_slug": "acme", "tasks": [{"seq": 0, "type": "Shell Operation", "slug": "s", "commands": ["true"]}]}
}


def test_create_deployment_as_prefect_sees_it(api, prefect):
    name = unique("acme-pipeline")
    response = api.post(
        "/proxy/v1/deployments/",
        json={
            "deployment_name": name,
            "org_slug": "acme",
            "parameters": CONFIG,
            "cron": "30 2 * * *",
            "timezone": "Asia/Kolkata",
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name

    deployment = prefect.read_deployment(response.json()["deployment_id"])
    assert deployment.name == name
    assert prefect.read_flow(deployment.flow_id).name == "pipeline"
    assert deployment.tags == ["acme"]
    assert deployment.parameters == CONFIG
    assert deployment.entrypoint == "prefect_flows.py:pipeline_flow"
    assert deployment.work_pool_name == TEST_WORK_POOL  # PROXY_WORK_POOL
    assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}]
    assert not deployment.paused
    [schedule] = deployment.schedules
    assert isinstance(schedule.schedule, CronSchedule)
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("30 2 * * *", "Asia/Kolkata", True)


def test_read_deployment(api):
    deployment_id = make_deployment(api, cron="0 1 * * *", org_slug="beta")
    response = api.get(f"/proxy/deployments/{deployment_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["deployment_id"] == deployment_id
    assert body["tags"] == ["beta"]
    assert (body["cron"], body["timezone"], body["is_schedule_active"]) == ("0 1 * * *", "UTC", True)
    assert body["entrypoint"] == "prefect_flows.py:pipeline_flow"
    assert body["work_pool_name"] == IDLE_POOL
    assert body["parameters"]["config"]["org_slug"] == "acme"
    assert api.get("/proxy/deployments/00000000-0000-0000-0000-000000000000").status_code == 404


def test_create_deployment_refuses_bad_input(api):
    base = {"deployment_name": unique("d"), "org_slug": "acme", "parameters": {}, "work_pool_name": IDLE_POOL}
    assert api.post("/proxy/v1/deployments/", json={**base, "cron": "not a cron"}).status_code == 422
    assert (
        api.post("/proxy/v1/deployments/", json={**base, "cron": "* * * * *", "timezone": "Mars/Olympus"}).status_code
        == 422
    )
    assert api.post("/proxy/v1/deployments/", json={**base, "entrypoint": "other.py:flow"}).status_code == 422
    assert api.post("/proxy/v1/deployments/", json={**base, "deployment_name": "a/b"}).status_code == 422
    assert (
        api.post("/proxy/v1/deployments/", json={k: v for k, v in base.items() if k != "org_slug"}).status_code == 422
    )


def test_a_second_deployment_with_the_same_name_gets_409(api):
    name = unique("dup")
    make_deployment(api, deployment_name=name)
    response = api.post(
        "/proxy/v1/deployments/",
        json={"deployment_name": name, "org_slug": "other", "parameters": {}, "work_pool_name": IDLE_POOL},
    )
    assert response.status_code == 409
    assert name in response.json()["detail"]


def test_a_unique_suffix_makes_a_new_name_every_time_without_looking_the_name_up(api, prefect, monkeypatch):
    base = unique("pipe")
    existing = make_deployment(api, deployment_name=base, parameters=CONFIG)

    async def no_lookup(*args, **kwargs):
        raise AssertionError("the name was looked up")

    monkeypatch.setattr(deployments, "_exists_by_name", no_lookup)
    body = {"deployment_name": base, "org_slug": "acme", "parameters": {}, "work_pool_name": IDLE_POOL}
    made = [api.post("/proxy/v1/deployments/", json={**body, "unique_suffix": True}) for _ in range(2)]
    assert [response.status_code for response in made] == [201, 201], [response.text for response in made]
    names = [response.json()["name"] for response in made]
    assert all(re.fullmatch(re.escape(base) + "-[0-9a-f]{32}", name) for name in names), names
    assert names[0] != names[1]
    for response in made:
        assert prefect.read_deployment(response.json()["deployment_id"]).name == response.json()["name"]
    assert prefect.read_deployment(existing).parameters == CONFIG  # the deployment named `base` is untouched

    # without the suffix the name is looked up (here: the lookup refuses, so the create fails, making nothing)
    assert api.post("/proxy/v1/deployments/", json={**body, "deployment_name": unique("pipe")}).status_code == 500


@pytest.mark.parametrize(("length", "status"), [(UNIQUE_BASE_MAX, 201), (UNIQUE_BASE_MAX + 1, 422)])
def test_a_unique_suffix_leaves_the_name_within_200_characters(api, prefect, length, status):
    base = unique("long").ljust(length, "x")
    response = api.post(
        "/proxy/v1/deployments/",
        json={
            "deployment_name": base,
            "org_slug": "acme",
            "parameters": {},
            "work_pool_name": IDLE_POOL,
            "unique_suffix": True,
        },
    )
    assert response.status_code == status, response.text
    if status == 201:
        assert len(response.json()["name"]) == 200
        assert prefect.read_deployment(response.json()["deployment_id"]).name == response.json()["name"]
    else:
        assert f"at most {UNIQUE_BASE_MAX} characters with unique_suffix" in response.text


def test_update_keeps_the_schedule_when_cron_is_left_out_and_removes_it_when_null(api, prefect):
    deployment_id = make_deployment(api, cron="0 3 * * *", timezone="Europe/Paris")

    response = api.put(f"/proxy/v1/deployments/{deployment_id}", json={"parameters": CONFIG})
    assert response.status_code == 200, response.text
    assert (response.json()["cron"], response.json()["timezone"]) == ("0 3 * * *", "Europe/Paris")
    deployment = prefect.read_deployment(deployment_id)
    assert deployment.parameters == CONFIG
    assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]

    response = api.put(f"/proxy/v1/deployments/{deployment_id}", json={"cron": "15 4 * * 1"})
    assert (response.json()["cron"], response.json()["timezone"]) == ("15 4 * * 1", "Europe/Paris")
    response = api.put(f"/proxy/v1/deployments/{deployment_id}", json={"timezone": "America/New_York"})
    assert (response.json()["cron"], response.json()["timezone"]) == ("15 4 * * 1", "America/New_York")
    [schedule] = prefect.read_deployment(deployment_id).schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("15 4 * * 1", "America/New_York")

    response = api.put(f"/proxy/v1/deployments/{deployment_id}", json={"cron": None})
    assert response.status_code == 200
    assert response.json()["cron"] is None
    assert prefect.read_deployment(deployment_id).schedules == []
    assert prefect.read_deployment(deployment_id).parameters == CONFIG

    assert api.put(f"/proxy/v1/deployments/{deployment_id}", json={"timezone": "UTC"}).status_code == 422
    assert api.put(f"/proxy/v1/deployments/{deployment_id}", json={"cron": "bad"}).status_code == 422
    unknown = "00000000-0000-0000-0000-000000000000"
    assert api.put(f"/proxy/v1/deployments/{unknown}", json={"cron": None}).status_code == 404


def test_pause_and_resume_the_schedule(api, prefect):
    deployment_id = make_deployment(api, cron="0 5 * * *")
    paused = api.post(f"/proxy/deployments/{deployment_id}/set_schedule/inactive")
    assert paused.status_code == 200
    assert paused.json() == {"deployment_id": deployment_id, "is_schedule_active": False}
    assert prefect.read_deployment(deployment_id).paused is True
    assert api.get(f"/proxy/deployments/{deployment_id}").json()["is_schedule_active"] is False

    assert api.post(f"/proxy/deployments/{deployment_id}/set_schedule/active").json()["is_schedule_active"] is True
    assert prefect.read_deployment(deployment_id).paused is False

    assert api.post(f"/proxy/deployments/{deployment_id}/set_schedule/sometimes").status_code == 422
    unknown = "00000000-0000-0000-0000-000000000000"
    assert api.post(f"/proxy/deployments/{unknown}/set_schedule/active").status_code == 404


def test_switch_the_entrypoint(api, prefect):
    deployment_id = make_deployment(api)
    response = api.patch(
        f"/proxy/v1/deployments/{deployment_id}/entrypoint",
        json={"entrypoint": "prefect_flows.py:legacy_pipeline_flow", "parameters": {"dbt_blocks": []}},
    )
    assert response.status_code == 200, response.text
    deployment = prefect.read_deployment(deployment_id)
    assert deployment.entrypoint == "prefect_flows.py:legacy_pipeline_flow"
    assert deployment.parameters == {"dbt_blocks": []}

    # a switch that would leave a parameter the flow does not take is refused
    back = make_deployment(api)
    refused = api.patch(
        f"/proxy/v1/deployments/{back}/entrypoint",
        json={"entrypoint": "prefect_flows.py:legacy_pipeline_flow", "parameters": {"unexpected": 1}},
    )
    assert refused.status_code == 422
    assert "unexpected" in refused.json()["detail"]
    # old + new parameters together are accepted by the legacy flow (migration phase 1)
    kept = api.patch(
        f"/proxy/v1/deployments/{back}/entrypoint", json={"entrypoint": "prefect_flows.py:legacy_pipeline_flow"}
    )
    assert kept.status_code == 200, kept.text
    assert api.patch(f"/proxy/v1/deployments/{back}/entrypoint", json={"entrypoint": "x.py:y"}).status_code == 422
    unknown = "00000000-0000-0000-0000-000000000000"
    assert (
        api.patch(
            f"/proxy/v1/deployments/{unknown}/entrypoint", json={"entrypoint": "prefect_flows.py:pipeline_flow"}
        ).status_code
        == 404
    )


def test_filter_deployments_by_org_and_ids(api):
    org = unique("org")
    ids = [make_deployment(api, org_slug=org) for _ in range(3)]
    other = make_deployment(api)

    by_org = api.post("/proxy/deployments/filter", json={"org_slug": org})
    assert by_org.status_code == 200
    assert sorted(d["deployment_id"] for d in by_org.json()["deployments"]) == sorted(ids)

    by_ids = api.post("/proxy/deployments/filter", json={"deployment_ids": [ids[0], other]})
    assert sorted(d["deployment_id"] for d in by_ids.json()["deployments"]) == sorted([ids[0], other])

    both = api.post("/proxy/deployments/filter", json={"org_slug": org, "deployment_ids": [ids[0], other]})
    assert [d["deployment_id"] for d in both.json()["deployments"]] == [ids[0]]
    assert api.post("/proxy/deployments/filter", json={"deployment_ids": []}).json() == {"deployments": []}
    assert api.post("/proxy/deployments/filter", json={"deployment_ids": ["nope"]}).status_code == 422


def test_delete_deployment(api, prefect):
    deployment_id = make_deployment(api)
    response = api.delete(f"/proxy/deployments/{deployment_id}")
    assert response.status_code == 200
    assert response.json() == {"deployment_id": deployment_id, "deleted": True}
    assert api.get(f"/proxy/deployments/{deployment_id}").status_code == 404
    assert api.delete(f"/proxy/deployments/{deployment_id}").status_code == 404


def test_schedule_states_name_only_the_paused_and_the_missing(api, prefect, monkeypatch):
    active, paused, deleted = (make_deployment(api, cron="0 6 * * *") for _ in range(3))
    assert api.post(f"/proxy/deployments/{paused}/set_schedule/inactive").status_code == 200
    assert api.delete(f"/proxy/deployments/{deleted}").status_code == 200
    never = str(uuid.uuid4())

    def states(ids: list[str]) -> dict:
        response = api.post("/proxy/deployments/schedule_states", json={"deployment_ids": ids})
        assert response.status_code == 200, response.text
        return {key: sorted(value) for key, value in response.json().items()}

    assert states([active]) == {"paused": [], "missing": []}
    assert states([active, paused, active]) == {"paused": [paused], "missing": []}
    assert states([active, paused, deleted, never]) == {"paused": [paused], "missing": sorted([deleted, never])}
    assert states([]) == {"paused": [], "missing": []}
    # more paused (or existing) deployments than one page of Prefect's holds are all found
    monkeypatch.setattr("proxy.deployments.PAGE_SIZE", 2)
    many = [make_deployment(api) for _ in range(3)]
    for deployment_id in many:
        api.post(f"/proxy/deployments/{deployment_id}/set_schedule/inactive")
    assert states([active, *many]) == {"paused": sorted(many), "missing": []}
    assert states([active, *many, never]) == {"paused": sorted(many), "missing": [never]}
    assert api.post("/proxy/deployments/schedule_states", json={"deployment_ids": ["nope"]}).status_code == 422
