"""dbt workspace, transform tasks, custom dbt tasks and one-off task runs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from ddpui.models import DbtTarget, OrgDataFlowv1, OrgDbt, OrgPrefectBlockv1, OrgTask, TaskLock
from ddpui.prefect_client import get_proxy
from ddpui.services import locks
from tests.ddpui.api.helpers import (
    add_connection,
    add_dbt_workspace,
    add_source,
    add_transform_tasks,
    add_warehouse,
    audited,
)
from tests.factories import make_dataflow

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]

TOKEN = "ghp_secretToken0123456789"


@pytest.fixture
def org_with_warehouse(api, new_org, tmp_path):
    org = new_org()
    add_warehouse(api, org, tmp_path)
    return org


@pytest.fixture
def org_with_dbt(api, org_with_warehouse, repo_url):
    add_dbt_workspace(api, org_with_warehouse, repo_url)
    return org_with_warehouse


@pytest.fixture
def org_with_tasks(api, org_with_dbt):
    return org_with_dbt, add_transform_tasks(api, org_with_dbt)


def orgtask(uuid: str) -> OrgTask:
    return OrgTask.objects.select_related("task").get(uuid=uuid)


# ------------------------------------------------------------------------------------------ dbt workspace


def test_dbt_workspace_clones_and_stores_the_url_as_a_secret(api, org_with_warehouse, repo_url, prefect, live):
    org = org_with_warehouse
    response = api.post(
        "/api/dbt/workspace/", {"gitrepoUrl": repo_url, "defaultSchema": "analytics"}, headers=org.headers
    )
    assert response.status_code == 200, response.content
    body = response.json()
    project_dir = Path(body["project_dir"])
    assert project_dir == Path(settings.CLIENT_DBT_ROOT) / org.slug / "dbtrepo"
    assert (project_dir / "dbt_project.yml").exists()
    assert body == {
        "gitrepo_url": repo_url,
        "gitrepo_branch": "main",  # the branch the clone is on: the remote's default
        "default_schema": "analytics",
        "target_type": "duckdb",
        "project_dir": str(project_dir),
        "gitrepo_access_token_secret": f"{org.slug}-git-pull-url",
        "cli_profile_block": None,
    }
    assert prefect.secret_value(f"{org.slug}-git-pull-url") == repo_url
    assert api.get("/api/dbt/dbt_workspace", headers=org.headers).json() == body
    again = api.post("/api/dbt/workspace/", {"gitrepoUrl": repo_url, "defaultSchema": "x"}, headers=org.headers)
    assert again.status_code == 409 and "already has a dbt workspace" in again.json()["detail"]


def test_token_goes_into_the_secret_url_only(api, org_with_warehouse, prefect, monkeypatch):
    """An https repository with a token: the clone uses https://oauth2:TOKEN@host/path, the row and the
    response keep the plain URL, and the clone's own remote holds no token."""
    org = org_with_warehouse
    seen = {}
    real_run = subprocess.run

    def fake_git(args, **kwargs):
        if args[:2] == ["git", "clone"]:
            seen["url"] = args[-2]
            Path(args[-1]).mkdir(parents=True)
            return subprocess.CompletedProcess(args, 0, "", "")
        if args[:3] == ["git", "remote", "set-url"]:
            seen["origin"] = args[-1]
            return subprocess.CompletedProcess(args, 0, "", "")
        return real_run(args, **kwargs)

    monkeypatch.setattr("ddpui.services.dbt_workspace.subprocess.run", fake_git)
    response = api.post(
        "/api/dbt/workspace/",
        {"gitrepoUrl": "https://git.example.org/acme/dbt.git", "gitrepoAccessToken": TOKEN, "defaultSchema": "dbt"},
        headers=org.headers,
    )
    assert response.status_code == 200, response.content
    assert seen == {
        "url": f"https://oauth2:{TOKEN}@git.example.org/acme/dbt.git",
        "origin": "https://git.example.org/acme/dbt.git",
    }
    assert TOKEN not in response.content.decode()
    assert OrgDbt.objects.get(org__slug=org.slug).gitrepo_url == "https://git.example.org/acme/dbt.git"
    assert prefect.secret_value(f"{org.slug}-git-pull-url") == seen["url"]


def test_failed_clone_is_400_with_the_token_redacted_and_nothing_left(api, org_with_warehouse, prefect, tmp_path):
    org = org_with_warehouse
    url = "https://127.0.0.1:9/acme/dbt.git"
    response = api.post(
        "/api/dbt/workspace/",
        {"gitrepoUrl": url, "gitrepoAccessToken": TOKEN, "defaultSchema": "dbt"},
        headers=org.headers,
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith(f"git clone of {url} failed: ") and TOKEN not in detail
    missing = api.post(
        "/api/dbt/workspace/",
        {"gitrepoUrl": str(tmp_path / "nowhere.git"), "defaultSchema": "dbt"},
        headers=org.headers,
    )
    assert missing.status_code == 400 and "does not exist" in missing.json()["detail"]
    assert not OrgDbt.objects.filter(org__slug=org.slug).exists()
    assert not list((Path(settings.CLIENT_DBT_ROOT) / org.slug).glob("*dbtrepo*"))  # no clone, no staging copy
    assert f"{org.slug}-git-pull-url" not in prefect.block_names(org.slug)


def test_git_messages_that_echo_the_tokenised_url_are_redacted(api, org_with_warehouse, monkeypatch):
    def failing_git(args, **kwargs):
        url = args[-2]
        return subprocess.CompletedProcess(args, 128, "", f"fatal: could not read from '{url}': auth failed")

    monkeypatch.setattr("ddpui.services.dbt_workspace.subprocess.run", failing_git)
    response = api.post(
        "/api/dbt/workspace/",
        {"gitrepoUrl": "https://git.example.org/a/b.git", "gitrepoAccessToken": TOKEN, "defaultSchema": "d"},
        headers=org_with_warehouse.headers,
    )
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "git clone of https://git.example.org/a/b.git failed: fatal: could not read from '***': auth failed"
    )


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"gitrepoUrl": "--upload-pack=touch /tmp/x", "defaultSchema": "d"}, 400, "gitrepoUrl must be a git URL"),
        ({"gitrepoUrl": "ext::sh -c id", "defaultSchema": "d"}, 400, "gitrepoUrl"),
        ({"gitrepoUrl": "https://u:p@host/r.git", "defaultSchema": "d"}, 400, "not in gitrepoUrl"),
        ({"gitrepoUrl": "/tmp/r.git", "gitrepoAccessToken": "t", "defaultSchema": "d"}, 400, "http(s)"),
        ({"gitrepoUrl": "/tmp/r.git", "defaultSchema": "bad schema"}, 400, "schema"),
        ({"gitrepoUrl": "/tmp/r.git"}, 422, "defaultSchema"),
    ],
)
def test_invalid_dbt_workspace_requests(api, org_with_warehouse, body, status, detail):
    response = api.post("/api/dbt/workspace/", body, headers=org_with_warehouse.headers)
    assert response.status_code == status, response.content
    assert detail in response.json()["detail"]


def test_dbt_workspace_needs_a_warehouse(api, new_org, repo_url):
    org = new_org()
    response = api.post("/api/dbt/workspace/", {"gitrepoUrl": repo_url, "defaultSchema": "d"}, headers=org.headers)
    assert response.status_code == 400 and "no warehouse" in response.json()["detail"]
    missing = api.get("/api/dbt/dbt_workspace", headers=org.headers)
    # the web app's contract (W-32): "none yet" is a 200 with an error field, not a 404
    assert missing.status_code == 200 and missing.json() == {"error": "no dbt workspace has been configured"}


def test_schema_update_moves_the_workspace_and_the_linked_profile(api, org_with_tasks, prefect):
    org, _ = org_with_tasks
    response = api.put("/api/dbt/v1/schema/", {"targetConfigs": {"schema": "reporting"}}, headers=org.headers)
    assert response.status_code == 200, response.content
    assert response.json()["default_schema"] == "reporting"
    assert json.loads(prefect.secret_value(f"{org.slug}-dbt-profile"))["schema"] == "reporting"
    bad = api.put("/api/dbt/v1/schema/", {"targetConfigs": {"schema": "a;b"}}, headers=org.headers)
    assert bad.status_code == 400
    assert api.put("/api/dbt/v1/schema/", {"targetConfigs": {}}, headers=org.headers).status_code == 422
    assert audited(org, "dbt_workspace.schema_changed") == {"from": "analytics", "to": "reporting", "target": "default"}


def test_dbt_workspace_delete_removes_clone_secret_profile_tasks_and_row(api, org_with_tasks, prefect):
    org, tasks = org_with_tasks
    project_dir = Path(OrgDbt.objects.get(org__slug=org.slug).project_dir)
    response = api.delete("/api/dbt/workspace/", headers=org.headers)
    assert response.status_code == 200, response.content
    assert not project_dir.exists()
    assert not OrgDbt.objects.filter(org__slug=org.slug).exists()
    assert not OrgTask.objects.filter(uuid__in=tasks.values()).exists()
    assert prefect.block_names(org.slug) == {f"{org.slug}-airbyte-server", f"{org.slug}-warehouse-credentials"}
    assert set(OrgPrefectBlockv1.objects.filter(org__slug=org.slug).values_list("block_name", flat=True)) == {
        f"{org.slug}-airbyte-server",
        f"{org.slug}-warehouse-credentials",
    }
    assert api.delete("/api/dbt/workspace/", headers=org.headers).status_code == 404
    audited(org, "dbt_workspace.created")
    audited(org, "dbt_workspace.deleted")
    # with nothing left on it, the warehouse can go too
    assert api.delete("/api/v1/organizations/warehouses/", headers=org.headers).status_code == 200


def test_dbt_workspace_in_use_cannot_be_deleted(api, org_with_tasks):
    org, tasks = org_with_tasks
    make_dataflow(org.org, name="nightly", orgtasks=[orgtask(tasks["dbt-run"])])
    response = api.delete("/api/dbt/workspace/", headers=org.headers)
    assert response.status_code == 409
    assert "used by the pipeline(s) nightly" in response.json()["detail"]
    assert OrgDbt.objects.filter(org__slug=org.slug).exists()


@pytest.mark.parametrize("role", ["analyst"])
def test_analysts_cannot_write_dbt_or_tasks(api, new_org, role):
    org = new_org(role=role)
    assert api.get("/api/prefect/tasks/transform/", headers=org.headers).status_code == 200
    for method, path in [
        ("post", "/api/dbt/workspace/"),
        ("put", "/api/dbt/v1/schema/"),
        ("delete", "/api/dbt/workspace/"),
        ("post", "/api/prefect/tasks/transform/"),
        ("delete", "/api/prefect/tasks/transform/"),
        ("post", "/api/prefect/tasks/"),
        ("delete", "/api/prefect/tasks/00000000-0000-0000-0000-000000000000/"),
        ("post", "/api/prefect/tasks/00000000-0000-0000-0000-000000000000/run/"),
    ]:
        response = (
            api.delete(path, headers=org.headers)
            if method == "delete"
            else getattr(api, method)(path, {}, headers=org.headers)
        )
        assert response.status_code == 403, (method, path)


# ------------------------------------------------------------------------------------------ transform tasks


def test_transform_tasks_need_a_dbt_workspace(api, org_with_warehouse):
    response = api.post("/api/prefect/tasks/transform/", headers=org_with_warehouse.headers)
    assert response.status_code == 400 and "no dbt workspace" in response.json()["detail"]


def test_transform_tasks_create_makes_the_profile_from_the_warehouse_block(api, org_with_dbt, prefect):
    org = org_with_dbt
    assert f"{org.slug}-dbt-profile" not in prefect.block_names(org.slug)
    response = api.post("/api/prefect/tasks/transform/", headers=org.headers)
    assert response.status_code == 200, response.content
    warehouse_config = json.loads(prefect.secret_value(f"{org.slug}-warehouse-credentials"))
    profile = json.loads(prefect.secret_value(f"{org.slug}-dbt-profile"))
    assert profile == {
        "profile_name": "ddpui",  # what the sample project's dbt_project.yml asks for
        "target": "default",
        "type": "duckdb",
        "schema": "analytics",  # the workspace's
        "threads": 4,
        "credentials": {"path": warehouse_config["destination_path"]},
    }
    row = OrgPrefectBlockv1.objects.get(org__slug=org.slug, block_type="dbt CLI Profile")
    assert DbtTarget.objects.get(dbt__org__slug=org.slug, is_default=True).profile_block == row
    assert row.block_name == f"{org.slug}-dbt-profile"


def test_transform_tasks_create_is_idempotent(api, org_with_dbt, prefect):
    org = org_with_dbt
    first = api.post("/api/prefect/tasks/transform/", headers=org.headers).json()
    proxy_calls = get_proxy().calls
    second = api.post("/api/prefect/tasks/transform/", headers=org.headers)
    assert second.status_code == 200
    assert second.json() == first
    assert get_proxy().calls == proxy_calls
    assert OrgTask.objects.filter(org__slug=org.slug).count() == 6
    assert [(t["slug"], t["command"], t["seq"]) for t in first] == [
        ("git-pull", "git pull", 0),
        ("dbt-clean", "dbt clean", 1),
        ("dbt-deps", "dbt deps", 2),
        ("dbt-run", "dbt run", 3),
        ("dbt-test", "dbt test", 4),
        ("dbt-docs-generate", "dbt docs generate", 5),
    ]
    default_target = DbtTarget.objects.get(dbt__org__slug=org.slug, is_default=True)
    assert default_target.profile_block.block_name == f"{org.slug}-dbt-profile"
    # dbt run's own deployment, named by the proxy (a unique suffix); Django stores Prefect's name
    [dbt_run] = [task for task in first if task["slug"] == "dbt-run"]
    stored = OrgDataFlowv1.objects.get(org__slug=org.slug, deployment_id=dbt_run["deploymentId"]).deployment_name
    assert re.fullmatch(f"manual-{org.slug}-dbt-run-[0-9a-f]{{32}}", stored), stored
    assert prefect.deployment(dbt_run["deploymentId"])["name"] == stored


def test_transform_tasks_delete_refused_while_used_or_locked(api, org_with_tasks, prefect):
    org, tasks = org_with_tasks
    pipeline = make_dataflow(org.org, name="daily", orgtasks=[orgtask(tasks["dbt-test"])])
    used = api.delete("/api/prefect/tasks/transform/", headers=org.headers)
    assert used.status_code == 409 and "used by the pipeline(s) daily" in used.json()["detail"]
    pipeline.delete()
    locks.locks_acquire(orgtasks=[orgtask(tasks["git-pull"])], flow_run_id="f0000000-0000-0000-0000-00000000000a")
    locked = api.delete("/api/prefect/tasks/transform/", headers=org.headers)
    assert locked.status_code == 409 and "locked by run f0000000-0000-0000-0000-00000000000a" in locked.json()["detail"]
    listed = api.get("/api/prefect/tasks/transform/", headers=org.headers).json()
    assert listed[0]["lock"]["flowRunId"] == "f0000000-0000-0000-0000-00000000000a"
    TaskLock.objects.all().delete()
    assert api.delete("/api/prefect/tasks/transform/", headers=org.headers).status_code == 200
    assert not OrgTask.objects.filter(org__slug=org.slug).exists()
    assert DbtTarget.objects.get(dbt__org__slug=org.slug, is_default=True).profile_block is None
    assert not OrgPrefectBlockv1.objects.filter(org__slug=org.slug, block_type="dbt CLI Profile").exists()
    assert f"{org.slug}-dbt-profile" not in prefect.block_names(org.slug)
    audited(org, "tasks.transform_deleted")  # the refused deletes wrote none
    # made again, profile included
    assert api.post("/api/prefect/tasks/transform/", headers=org.headers).status_code == 200
    assert json.loads(prefect.secret_value(f"{org.slug}-dbt-profile"))["type"] == "duckdb"


# ------------------------------------------------------------------------------------------ custom tasks


def test_custom_dbt_task(api, org_with_tasks):
    org, _ = org_with_tasks
    response = api.post(
        "/api/prefect/tasks/",
        {"taskSlug": "dbt-run", "flags": ["full-refresh"], "options": {"select": "orders+"}},
        headers=org.headers,
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["command"], body["generated_by"]) == ("dbt run --full-refresh --select orders+", "client")
    listed = api.get("/api/prefect/tasks/transform/", headers=org.headers).json()
    assert body["uuid"] in [t["uuid"] for t in listed]
    audited(org, "tasks.transform_created")
    audited(org, "task.created", body["uuid"])


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"taskSlug": "dbt-run", "flags": ["full-refresh; rm -rf /"]}, 400, "flag 'full-refresh; rm -rf /'"),
        ({"taskSlug": "dbt-run", "flags": ["--full-refresh"]}, 400, "without '--'"),
        ({"taskSlug": "dbt-run", "options": {"select": "orders && id"}}, 400, "'orders && id' is not allowed"),
        ({"taskSlug": "dbt-run", "options": {"select": "$(id)"}}, 400, "not allowed"),
        ({"taskSlug": "dbt-run", "options": {"select": ["a", "`id`"]}}, 400, "not allowed"),
        ({"taskSlug": "dbt-run", "options": {"se lect": "a"}}, 400, "option 'se lect'"),
        ({"taskSlug": "dbt-run", "options": {"vars": {"a": 1}}}, 400, "plain words"),
        ({"taskSlug": "git-pull"}, 400, "only dbt tasks"),
        ({"taskSlug": "dbt-launch"}, 400, "unknown task 'dbt-launch'"),
        ({"flags": []}, 422, "taskSlug"),
    ],
)
def test_invalid_custom_tasks(api, org_with_dbt, body, status, detail):
    response = api.post("/api/prefect/tasks/", body, headers=org_with_dbt.headers)
    assert response.status_code == status, response.content
    assert detail in response.json()["detail"]


def test_task_delete_refused_while_locked_or_in_a_pipeline(api, org_with_tasks):
    org, tasks = org_with_tasks
    uuid = tasks["dbt-test"]
    locks.locks_acquire(orgtasks=[orgtask(uuid)], flow_run_id="f0000000-0000-0000-0000-00000000000b")
    locked = api.delete(f"/api/prefect/tasks/{uuid}/", headers=org.headers)
    assert locked.status_code == 409 and "locked" in locked.json()["detail"]
    TaskLock.objects.all().delete()
    make_dataflow(org.org, name="weekly", orgtasks=[orgtask(uuid)])
    used = api.delete(f"/api/prefect/tasks/{uuid}/", headers=org.headers)
    assert used.status_code == 409 and "weekly" in used.json()["detail"]
    deleted = api.delete(f"/api/prefect/tasks/{tasks['dbt-docs-generate']}/", headers=org.headers)
    assert deleted.status_code == 200
    assert api.get(f"/api/prefect/tasks/{tasks['dbt-docs-generate']}/", headers=org.headers).status_code == 404
    audited(org, "task.deleted", tasks["dbt-docs-generate"])  # the refused deletes wrote none


def test_sync_tasks_are_deleted_and_run_through_their_connection(api, org_with_warehouse):
    org = org_with_warehouse
    connection = add_connection(api, org, add_source(api, org))
    delete = api.delete(f"/api/prefect/tasks/{connection['orgtaskUuid']}/", headers=org.headers)
    assert delete.status_code == 400 and "delete the connection instead" in delete.json()["detail"]
    run = api.post(f"/api/prefect/tasks/{connection['orgtaskUuid']}/run/", headers=org.headers)
    assert run.status_code == 400 and "connection's deployment" in run.json()["detail"]


# ------------------------------------------------------------------------------------------ one-off runs


def test_task_run_locks_the_task_and_returns_the_flow_run(api, org_with_tasks, prefect):
    org, tasks = org_with_tasks
    uuid = tasks["dbt-deps"]
    response = api.post(f"/api/prefect/tasks/{uuid}/run/", headers=org.headers)
    assert response.status_code == 200, response.content
    flow_run_id = response.json()["flow_run_id"]
    lock = TaskLock.objects.get(orgtask__uuid=uuid)
    assert (lock.flow_run_id, lock.locked_by.user) == (flow_run_id, org.user)
    run = prefect.http.get(f"/flow_runs/{flow_run_id}").json()
    task = run["parameters"]["config"]["tasks"][0]
    assert (task["slug"], task["commands"], task["cli_profile_block"]) == (
        "dbt-deps",
        ["dbt deps"],
        f"{org.slug}-dbt-profile",
    )
    assert org.slug in run["tags"]
    again = api.post(f"/api/prefect/tasks/{uuid}/run/", headers=org.headers)
    assert again.status_code == 409 and f"locked by run {flow_run_id}" in again.json()["detail"]
    listed = {t["slug"]: t for t in api.get("/api/prefect/tasks/transform/", headers=org.headers).json()}
    assert listed["dbt-deps"]["lock"]["flowRunId"] == flow_run_id
    assert listed["dbt-run"]["lock"] is None
    assert audited(org, "task.run_triggered", uuid) == {
        "flow_run_id": flow_run_id,
        "slug": "dbt-deps",
        "target": "default",
    }
    get_proxy().flow_run(flow_run_id).cancel()  # no worker should spend time on it later


def test_task_run_without_a_profile_is_400_and_takes_no_lock(api, org_with_tasks):
    org, tasks = org_with_tasks
    DbtTarget.objects.filter(dbt__org__slug=org.slug).update(profile_block=None)
    response = api.post(f"/api/prefect/tasks/{tasks['dbt-run']}/run/", headers=org.headers)
    assert response.status_code == 400 and "no dbt CLI profile" in response.json()["detail"]
    assert not TaskLock.objects.exists()
