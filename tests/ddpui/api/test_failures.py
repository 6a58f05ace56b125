"""A failure at any external step leaves nothing half-done: no orphan rows, Airbyte objects, blocks or
deployments. Failures are injected for real: the emulator marked unavailable, the proxy pointed at a
dead port, or Prefect refusing the call (a block name already taken, an unknown work pool)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.db import DatabaseError
from django.utils.text import slugify

from ddpui.models import (
    DataflowOrgTask,
    DbtTarget,
    Org,
    OrgDataFlowv1,
    OrgDbt,
    OrgPrefectBlockv1,
    OrgTask,
    OrgWarehouse,
    TaskLock,
)
from ddpui.prefect_client import get_proxy
from devtools.processes import free_port
from tests.ddpui.api.helpers import add_connection, add_dbt_workspace, add_source, add_warehouse, unique
from tests.factories import make_org, make_orguser, make_user, token_for
from tests.support.orgsetup import warehouse_request

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]


@pytest.fixture
def proxy_down(settings):
    def down():
        settings.PROXY_URL = f"http://127.0.0.1:{free_port()}"

    return down


def workspaces_named(emulator, name: str) -> list:
    return [w for w in emulator.state()["workspaces"].values() if w["name"] == name]


def objects_in(emulator, kind: str, workspace_id: str) -> list:
    return [o for o in emulator.state()[kind].values() if o.get("workspaceId") == workspace_id]


# ------------------------------------------------------------------------------------------ organizations


# (a block name already taken in Prefect is no failure: the org is created beside it, see
# tests/reliability/test_create_races.py)
@pytest.mark.parametrize("failure", ["airbyte down", "proxy down"])
def test_org_create_failure_leaves_nothing(api, live, emulator, prefect, proxy_down, failure):
    name = unique("Failing Org")
    slug = slugify(name)
    if failure == "airbyte down":
        emulator.configure(unavailable=True)
    else:
        proxy_down()
    response = api.post(
        "/api/v1/organizations/", {"name": name}, headers={"HTTP_AUTHORIZATION": f"Bearer {token_for(make_user())}"}
    )
    assert response.status_code == 503, response.content
    assert not Org.objects.filter(slug=slug).exists()
    emulator.configure(unavailable=False)
    assert workspaces_named(emulator, slug) == []
    assert prefect.block_names(slug) == set()


def test_workspace_attach_failure_leaves_nothing(api, live, emulator, proxy_down):
    org = make_org(unique("Bare"))
    manager = make_orguser(org, "account-manager")
    proxy_down()
    response = api.post(
        "/api/airbyte/v1/workspace/",
        {"name": f"ws-{org.slug}"},
        headers={"HTTP_AUTHORIZATION": f"Bearer {token_for(manager.user)}", "HTTP_X_DALGO_ORG": org.slug},
    )
    assert response.status_code == 503
    org.refresh_from_db()
    assert org.airbyte_workspace_id is None
    assert workspaces_named(emulator, f"ws-{org.slug}") == []


# ------------------------------------------------------------------------------------------ warehouse


@pytest.mark.parametrize("failure", ["airbyte down", "proxy down", "credentials name taken"])
def test_warehouse_create_failure_leaves_nothing(api, new_org, emulator, prefect, proxy_down, tmp_path, failure):
    org = new_org()
    taken = None
    if failure == "airbyte down":
        emulator.configure(unavailable=True)
    elif failure == "proxy down":
        proxy_down()
    else:  # the credentials block is the last external step: the destination must go
        taken = get_proxy().blocks.secret.create(blockName=f"{org.slug}-warehouse-credentials", secret="someone else's")
    response = api.post(
        "/api/v1/organizations/warehouse/", warehouse_request(tmp_path / "w.duckdb"), headers=org.headers
    )
    assert response.status_code == {"airbyte down": 503, "proxy down": 503, "credentials name taken": 502}[failure]
    emulator.configure(unavailable=False)
    assert objects_in(emulator, "destinations", org.org.airbyte_workspace_id) == []
    assert not OrgWarehouse.objects.filter(org__slug=org.slug).exists()
    assert list(OrgPrefectBlockv1.objects.filter(org__slug=org.slug).values_list("block_type", flat=True)) == [
        "Airbyte Server"
    ]
    expected_blocks = {f"{org.slug}-airbyte-server"} | ({f"{org.slug}-warehouse-credentials"} if taken else set())
    assert prefect.block_names(org.slug) == expected_blocks
    if taken:  # the block we did not create is left alone
        assert prefect.secret_value(f"{org.slug}-warehouse-credentials") == "someone else's"


def test_warehouse_update_with_the_proxy_down_changes_nothing(
    api, new_org, emulator, prefect, proxy_down, pg_like_config
):
    org = new_org()
    destination_id = api.post(
        "/api/v1/organizations/warehouse/", {"wtype": "postgres", "airbyteConfig": pg_like_config}, headers=org.headers
    ).json()["destinationId"]
    proxy_down()
    response = api.put(
        f"/api/airbyte/v1/destinations/{destination_id}/",
        {"name": "renamed", "airbyteConfig": {**pg_like_config, "host": "new-host", "password": "new-password"}},
        headers=org.headers,
    )
    assert response.status_code == 503
    stored = emulator.state()["destinations"][destination_id]
    assert stored["connectionConfiguration"] == pg_like_config
    assert stored["name"] != "renamed"
    assert json.loads(prefect.secret_value(f"{org.slug}-warehouse-credentials")) == pg_like_config


@pytest.mark.parametrize("failure", ["airbyte down", "proxy down"])
def test_warehouse_delete_failure_deletes_nothing(api, new_org, emulator, prefect, proxy_down, tmp_path, failure):
    org = new_org()
    destination_id = add_warehouse(api, org, tmp_path)["destinationId"]
    if failure == "airbyte down":
        emulator.configure(unavailable=True)
    else:
        proxy_down()
    assert api.delete("/api/v1/organizations/warehouses/", headers=org.headers).status_code == 503
    emulator.configure(unavailable=False)
    assert destination_id in emulator.state()["destinations"]
    assert OrgWarehouse.objects.filter(org__slug=org.slug).exists()
    assert f"{org.slug}-warehouse-credentials" in prefect.block_names(org.slug)


# ------------------------------------------------------------------------------------------ connections


@pytest.mark.parametrize("failure", ["airbyte down", "proxy down", "unknown work pool"])
def test_connection_create_failure_leaves_nothing(
    api, new_org, emulator, prefect, proxy_down, tmp_path, settings, failure
):
    org = new_org()
    add_warehouse(api, org, tmp_path)
    source_id = add_source(api, org)
    if failure == "airbyte down":
        emulator.configure(unavailable=True)
    elif failure == "proxy down":
        proxy_down()
    else:
        settings.PREFECT_WORK_POOL = "no-such-pool"
    response = api.post("/api/airbyte/v1/connections/", {"name": "c", "sourceId": source_id}, headers=org.headers)
    assert response.status_code == {"airbyte down": 503, "proxy down": 503, "unknown work pool": 502}[failure]
    if failure == "unknown work pool":
        assert 'Work pool "no-such-pool" not found' in response.json()["detail"]
    emulator.configure(unavailable=False)
    assert objects_in(emulator, "connections", org.org.airbyte_workspace_id) == []
    assert not OrgTask.objects.filter(org__slug=org.slug).exists()
    assert not OrgDataFlowv1.objects.filter(org__slug=org.slug).exists()
    assert prefect.deployments(org.slug) == []


@pytest.mark.parametrize("failure", ["airbyte down", "proxy down"])
def test_connection_delete_failure_deletes_nothing(api, new_org, emulator, prefect, proxy_down, tmp_path, failure):
    org = new_org()
    add_warehouse(api, org, tmp_path)
    connection = add_connection(api, org, add_source(api, org))
    if failure == "airbyte down":
        emulator.configure(unavailable=True)
    else:
        proxy_down()
    response = api.delete(f"/api/airbyte/v1/connections/{connection['connectionId']}", headers=org.headers)
    assert response.status_code == 503
    emulator.configure(unavailable=False)
    assert connection["connectionId"] in emulator.state()["connections"]
    assert prefect.deployment(connection["deploymentId"]) is not None
    assert OrgTask.objects.filter(uuid=connection["orgtaskUuid"]).exists()
    assert DataflowOrgTask.objects.filter(dataflow__deployment_id=connection["deploymentId"]).exists()


# ------------------------------------------------------------------------------------------ dbt and tasks


@pytest.mark.parametrize("failure", ["proxy down", "secret name taken"])
def test_dbt_workspace_failure_leaves_no_clone_block_or_row(
    api, new_org, prefect, proxy_down, tmp_path, repo_url, settings, failure
):
    org = new_org()
    add_warehouse(api, org, tmp_path)
    taken = None
    if failure == "proxy down":
        proxy_down()
    else:
        taken = get_proxy().blocks.secret.create(blockName=f"{org.slug}-git-pull-url", secret="not ours")
    response = api.post("/api/dbt/workspace/", {"gitrepoUrl": repo_url, "defaultSchema": "d"}, headers=org.headers)
    assert response.status_code == (503 if failure == "proxy down" else 502)
    assert not list((Path(settings.CLIENT_DBT_ROOT) / org.slug).glob("*dbtrepo*"))  # no clone, no staging copy
    assert not OrgDbt.objects.filter(org__slug=org.slug).exists()
    assert OrgPrefectBlockv1.objects.filter(org__slug=org.slug, block_name=f"{org.slug}-git-pull-url").count() == 0
    if taken:
        assert prefect.secret_value(f"{org.slug}-git-pull-url") == "not ours"


@pytest.mark.parametrize("failure", ["proxy down", "profile name taken", "tasks not saved"])
def test_transform_create_failure_makes_no_tasks_and_leaves_no_profile(
    api, new_org, prefect, proxy_down, tmp_path, repo_url, monkeypatch, failure
):
    org = new_org()
    add_warehouse(api, org, tmp_path)
    add_dbt_workspace(api, org, repo_url)
    taken = None
    if failure == "proxy down":
        proxy_down()
    elif failure == "profile name taken":
        taken = get_proxy().blocks.secret.create(blockName=f"{org.slug}-dbt-profile", secret="not ours")
    else:  # the profile block is made, then the database refuses the tasks: the block must go

        def refuse(*args, **kwargs):
            raise DatabaseError("disk full")

        monkeypatch.setattr(OrgTask.objects, "bulk_create", refuse)
    response = api.post("/api/prefect/tasks/transform/", headers=org.headers)
    assert response.status_code == {"proxy down": 503, "profile name taken": 502, "tasks not saved": 500}[failure]
    assert not OrgTask.objects.filter(org__slug=org.slug).exists()
    assert DbtTarget.objects.get(dbt__org__slug=org.slug).profile_block is None
    assert not OrgPrefectBlockv1.objects.filter(org__slug=org.slug, block_type="dbt CLI Profile").exists()
    if failure != "proxy down":
        assert (f"{org.slug}-dbt-profile" in prefect.block_names(org.slug)) == (taken is not None)
    if taken:
        assert prefect.secret_value(f"{org.slug}-dbt-profile") == "not ours"


def test_task_run_failure_releases_the_lock(api, ready_org, proxy_down):
    org, uuid = ready_org["org"], ready_org["tasks"]["git-pull"]
    proxy_down()
    response = api.post(f"/api/prefect/tasks/{uuid}/run/", headers=org.headers)
    assert response.status_code == 503
    assert "unreachable" in response.json()["detail"]
    assert not TaskLock.objects.filter(orgtask__uuid=uuid).exists()


def test_dbt_workspace_delete_failure_deletes_nothing(api, ready_org, proxy_down, settings):
    org = ready_org["org"]
    proxy_down()
    assert api.delete("/api/dbt/workspace/", headers=org.headers).status_code == 503
    dbt = OrgDbt.objects.get(org__slug=org.slug)
    assert Path(dbt.project_dir).exists()
    assert OrgTask.objects.filter(org__slug=org.slug, task__type="dbt").count() == 5
