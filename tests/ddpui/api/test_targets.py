"""dbt targets and several warehouses through the v1 API: created, read, updated and deleted with their profile
blocks (analysts read only); bad input (unknown names, taken names and schemas, a warehouse in use) answered 4xx
naming the problem with nothing left in Prefect; another org's targets are 404."""

from __future__ import annotations

import json

import pytest

from ddpui.models import DbtTarget, OrgPrefectBlockv1, OrgUser, OrgWarehouse
from ddpui.models.org import OrgUserRole
from tests.ddpui.api.helpers import add_dbt_workspace, add_transform_tasks, add_warehouse
from tests.factories import make_user, token_for
from tests.support.orgsetup import warehouse_request

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]

TARGETS = "/api/v1/dbt/targets/"


def test_targets_lifecycle_and_bad_input(api, live, new_org, tmp_path, repo_url, prefect):
    org = new_org()
    first = add_warehouse(api, org, tmp_path)
    add_dbt_workspace(api, org, repo_url, schema="analytics")
    add_transform_tasks(api, org)
    dev_warehouse = api.post(
        "/api/v1/organizations/warehouse/",
        warehouse_request(tmp_path / "dev.duckdb", name="Dev warehouse"),
        headers=org.headers,
    ).json()

    # every workspace has its default target: the workspace's schema in the default warehouse
    assert api.get(TARGETS, headers=org.headers).json() == [
        {
            "name": "default",
            "schema": "analytics",
            "isDefault": True,
            "warehouse": {"name": "warehouse", "wtype": "duckdb", "destinationId": first["destinationId"]},
            "profileBlock": f"{org.slug}-dbt-profile",
        }
    ]

    created = api.post(
        TARGETS,
        {"name": "dev", "schema": "dev_analytics", "destinationId": dev_warehouse["destinationId"]},
        headers=org.headers,
    )
    assert created.status_code == 200, created.content
    assert created.json()["profileBlock"] == f"{org.slug}-dbt-profile-dev"
    profile = json.loads(prefect.secret_value(f"{org.slug}-dbt-profile-dev"))
    assert (profile["target"], profile["schema"], profile["type"]) == ("dev", "dev_analytics", "duckdb")
    assert profile["credentials"]["path"].endswith("dev.duckdb")

    blocks_before = prefect.block_names(org.slug)
    refused = [
        (api.post(TARGETS, {"name": "Dev Two", "schema": "x"}, headers=org.headers), 400, "cannot name a target"),
        (api.post(TARGETS, {"name": "dev", "schema": "other"}, headers=org.headers), 409, "target named 'dev'"),
        # a schema is a target's own in its warehouse, whatever the case
        (
            api.post(TARGETS, {"name": "prod", "schema": "ANALYTICS"}, headers=org.headers),
            409,
            "target 'default' already builds in schema 'analytics' of the warehouse 'warehouse'",
        ),
        (
            api.post(TARGETS, {"name": "prod", "schema": "p", "destinationId": "nope"}, headers=org.headers),
            400,
            "destinationId nope is not one of your organization's warehouses",
        ),
        (api.post(TARGETS, {"name": "prod", "schema": "a b"}, headers=org.headers), 400, "plain SQL identifier"),
    ]
    for response, status, detail in refused:
        assert response.status_code == status, response.content
        assert detail in response.json()["detail"]
    assert prefect.block_names(org.slug) == blocks_before  # nothing half-created
    assert DbtTarget.objects.filter(dbt__org__slug=org.slug).count() == 2

    # a pipeline names its target: an unknown one is a 400 listing the workspace's targets
    tasks = {t["slug"]: t["uuid"] for t in api.get("/api/prefect/tasks/transform/", headers=org.headers).json()}
    pipeline = {"name": "dev pipeline", "transformTasks": [{"uuid": tasks["dbt-run"], "seq": 1}], "cron": None}
    unknown = api.post("/api/prefect/v1/flows/", {**pipeline, "target": "staging"}, headers=org.headers)
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == "unknown target 'staging': your dbt workspace's targets are default, dev"
    made = api.post("/api/prefect/v1/flows/", {**pipeline, "target": "dev"}, headers=org.headers)
    assert made.status_code == 200, made.content
    assert made.json()["target"] == "dev"
    # the detail, the list and the overview show the pipeline's target
    detail = api.get(f"/api/prefect/v1/flows/{made.json()['deploymentId']}", headers=org.headers).json()
    listed = api.get("/api/prefect/v1/flows/", headers=org.headers).json()
    overview = api.get("/api/dashboard/v1", headers=org.headers).json()
    assert (detail["target"], [p["target"] for p in listed], [p["target"] for p in overview]) == (
        "dev",
        ["dev"],
        ["dev"],
    )
    deployment = prefect.deployment(made.json()["deploymentId"])
    (dbt_run,) = deployment["parameters"]["config"]["tasks"]
    assert (dbt_run["target"], dbt_run["cli_profile_block"]) == ("dev", f"{org.slug}-dbt-profile-dev")
    assert dbt_run["repository"] == {
        "git_url_block": f"{org.slug}-git-pull-url",
        "branch": "main",
        "org_slug": org.slug,
        "target": "dev",
    }

    # a target whose warehouse an operator deleted (the API refuses to) runs nothing until it gets another one
    DbtTarget.objects.filter(dbt__org__slug=org.slug, name="dev").update(warehouse=None)
    orphan = api.post("/api/prefect/v1/flows/", {**pipeline, "name": "x", "target": "dev"}, headers=org.headers)
    assert orphan.status_code == 400
    assert orphan.json()["detail"].startswith("target 'dev' has no warehouse (its warehouse was deleted)")
    DbtTarget.objects.filter(dbt__org__slug=org.slug, name="dev").update(
        warehouse=OrgWarehouse.objects.get(airbyte_destination_id=dev_warehouse["destinationId"])
    )

    # a warehouse a target builds in stays; a target a pipeline runs on stays
    in_use = api.delete(f"/api/v1/organizations/warehouses/{dev_warehouse['destinationId']}/", headers=org.headers)
    assert in_use.status_code == 409
    assert in_use.json()["detail"].startswith("the warehouse 'Dev warehouse' is used by the dbt target(s) dev:")
    used = api.delete(f"{TARGETS}dev/", headers=org.headers)
    assert used.status_code == 409
    assert used.json()["detail"] == "target 'dev' is used by the pipeline(s) dev pipeline: move or delete them first"
    assert api.delete(f"{TARGETS}default/", headers=org.headers).status_code == 409

    # an analyst reads the targets and changes none
    analyst = make_user()
    OrgUser.objects.create(user=analyst, org=org.org, role=OrgUserRole.ANALYST)
    as_analyst = {"HTTP_AUTHORIZATION": f"Bearer {token_for(analyst)}", "HTTP_X_DALGO_ORG": org.slug}
    assert [t["name"] for t in api.get(TARGETS, headers=as_analyst).json()] == ["default", "dev"]
    assert api.post(TARGETS, {"name": "qa", "schema": "qa"}, headers=as_analyst).status_code == 403
    assert api.delete(f"{TARGETS}dev/", headers=as_analyst).status_code == 403

    # another org sees none of it
    stranger = new_org()
    assert api.get(f"{TARGETS}dev/", headers=stranger.headers).status_code == 404
    assert api.put(f"{TARGETS}dev/", {"schema": "x"}, headers=stranger.headers).status_code == 404

    # dev moves to the default warehouse (its profile follows), so its own warehouse can go
    moved = api.put(f"{TARGETS}dev/", {"schema": "dev", "destinationId": first["destinationId"]}, headers=org.headers)
    assert moved.status_code == 200, moved.content
    assert moved.json()["warehouse"]["name"] == "warehouse"
    profile = json.loads(prefect.secret_value(f"{org.slug}-dbt-profile-dev"))
    assert profile["schema"] == "dev" and profile["credentials"]["path"].endswith(f"{org.slug}.duckdb")
    gone = api.delete(f"/api/v1/organizations/warehouses/{dev_warehouse['destinationId']}/", headers=org.headers)
    assert gone.status_code == 200, gone.content

    assert api.delete(f"/api/prefect/v1/flows/{made.json()['deploymentId']}", headers=org.headers).status_code == 200
    assert api.delete(f"{TARGETS}dev/", headers=org.headers).status_code == 200
    assert f"{org.slug}-dbt-profile-dev" not in prefect.block_names(org.slug)
    assert not OrgPrefectBlockv1.objects.filter(org__slug=org.slug, block_name=f"{org.slug}-dbt-profile-dev").exists()
    assert [t["name"] for t in api.get(TARGETS, headers=org.headers).json()] == ["default"]
