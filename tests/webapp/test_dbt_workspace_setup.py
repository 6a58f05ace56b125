"""The transform page's dbt set-up as the web app drives it (W-32…W-36): no workspace yet, the set-up as a
background task with its progress polled, the schema and the repository changed.

The set-up runs in a thread once its request has committed, so the tests that watch it run are
transactional (serialized_rollback keeps the master task list for the tests after them)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from ddpui.models import AuditEvent, Org, OrgDbt, OrgPrefectBlockv1, TaskProgress
from ddpui.services import background
from tests.support.orgsetup import make_sample_git_repo
from tests.support.prefect_rest import prefect_client

from .conftest import WebApp
from .ingest_support import create_warehouse, duckdb_config, signed_in_org

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]
transactional = pytest.mark.django_db(transaction=True, serialized_rollback=True)

NO_WORKSPACE = {"error": "no dbt workspace has been configured"}


def setup_body(repo_url: str, schema: str = "analytics") -> dict:
    """DBTSetup.tsx's createWorkspace payload (no token typed)."""
    return {"gitrepoUrl": repo_url, "dbtVersion": "1.4.5", "profile": {"name": "dbt", "target_configs_schema": schema}}


def progress_until_done(webapp: WebApp, task_id: str, timeout: float = 60) -> list[dict]:
    """DBTSetup's checkProgress: GET tasks/{id} until the last step is completed or failed."""
    deadline = time.monotonic() + timeout
    while True:
        response = webapp.get(f"tasks/{task_id}")
        assert response.status_code == 200, response.content
        progress = response.json()["progress"]
        if progress and progress[-1]["status"] in ("completed", "failed"):
            return progress
        assert time.monotonic() < deadline, progress
        time.sleep(0.1)


@pytest.fixture
def webapp(live_services, tmp_path):
    webapp = signed_in_org()
    create_warehouse(webapp, duckdb_config(tmp_path / "w.duckdb"))
    return webapp


@pytest.fixture
def prefect_secret(prefect_server):
    client = prefect_client()

    def value(name: str) -> str | None:
        response = client.get(
            f"/block_types/slug/secret/block_documents/name/{name}", params={"include_secrets": "true"}
        )
        return None if response.status_code == 404 else response.raise_for_status().json()["data"]["value"]

    return value


def test_w32_without_a_workspace_the_page_gets_200_and_the_error_it_checks(live_services):
    webapp = signed_in_org()
    response = webapp.get("dbt/dbt_workspace")
    assert response.status_code == 200 and response.json() == NO_WORKSPACE


@transactional
def test_w33_w34_setup_answers_a_task_id_at_once_and_its_progress_ends_completed(webapp, tmp_path, prefect_secret):
    repo_url = make_sample_git_repo(tmp_path)
    response = webapp.post("dbt/workspace/", setup_body(repo_url))
    assert response.status_code == 200, response.content
    task_id = response.json()["task_id"]
    progress = progress_until_done(webapp, task_id)
    assert [step["stepnum"] for step in progress] == list(range(1, len(progress) + 1))
    assert progress[0]["message"] == f"cloning {repo_url}" and progress[0]["status"] == "running"
    assert progress[-1]["status"] == "completed", progress
    workspace = webapp.get("dbt/dbt_workspace").json()
    assert (workspace["gitrepo_url"], workspace["default_schema"]) == (repo_url, "analytics")
    assert (Path(workspace["project_dir"]) / "dbt_project.yml").exists()
    assert prefect_secret(f"{webapp.org_slug}-git-pull-url") == repo_url
    assert AuditEvent.objects.filter(org__slug=webapp.org_slug, action="dbt_workspace.created").count() == 1
    # what the page does next (W-38): the transform tasks, with the profile, from the new workspace
    assert webapp.post("prefect/tasks/transform/", {}).status_code == 200


@transactional
def test_w34_a_clone_that_fails_is_the_last_step_with_its_reason_and_nothing_is_left(webapp, tmp_path, prefect_secret):
    missing = tmp_path / "nowhere.git"
    response = webapp.post("dbt/workspace/", setup_body(str(missing)))
    assert response.status_code == 200, response.content
    progress = progress_until_done(webapp, response.json()["task_id"])
    assert progress[-1]["status"] == "failed"
    assert progress[-1]["message"].startswith(f"git clone of {missing} failed: ")
    assert webapp.get("dbt/dbt_workspace").json() == NO_WORKSPACE
    assert not list((Path(settings.CLIENT_DBT_ROOT) / webapp.org_slug).glob("*dbtrepo*"))
    assert not OrgPrefectBlockv1.objects.filter(
        org__slug=webapp.org_slug, block_type="Secret", block_name__endswith="git-pull-url"
    ).exists()
    assert prefect_secret(f"{webapp.org_slug}-git-pull-url") is None
    # and the org can try again at once
    again = webapp.post("dbt/workspace/", setup_body(make_sample_git_repo(tmp_path)))
    assert progress_until_done(webapp, again.json()["task_id"])[-1]["status"] == "completed"


def test_w33_what_can_be_told_at_once_is_a_4xx_before_any_task(webapp):
    bad_url = webapp.post("dbt/workspace/", setup_body("--upload-pack=touch /tmp/x"))
    assert bad_url.status_code == 400 and "gitrepoUrl must be a git URL" in bad_url.json()["detail"]
    bad_schema = webapp.post("dbt/workspace/", setup_body("/tmp/r.git", schema="a;b"))
    assert bad_schema.status_code == 400 and "plain SQL identifier" in bad_schema.json()["detail"]
    no_schema = webapp.post("dbt/workspace/", {"gitrepoUrl": "/tmp/r.git", "dbtVersion": "1.4.5"})
    assert no_schema.status_code == 422 and "target_configs_schema" in no_schema.json()["detail"]
    assert not TaskProgress.objects.filter(org__slug=webapp.org_slug).exists()


def test_w33_without_a_warehouse_the_setup_is_refused(live_services, tmp_path):
    webapp = signed_in_org()
    response = webapp.post("dbt/workspace/", setup_body(make_sample_git_repo(tmp_path)))
    assert response.status_code == 400 and "no warehouse" in response.json()["detail"]


@transactional
def test_w33_two_setups_at_once_give_one_task_and_one_409(webapp, tmp_path):
    repo_url = make_sample_git_repo(tmp_path)
    other = WebApp(webapp.token, webapp.org_slug)
    start, answers = threading.Barrier(2), []

    def post(client: WebApp) -> None:
        close_old_connections()
        try:
            start.wait()
            answers.append(client.post("dbt/workspace/", setup_body(repo_url)))
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(client,)) for client in (webapp, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answer.status_code for answer in answers) == [200, 409], [a.content for a in answers]
    accepted = next(answer for answer in answers if answer.status_code == 200)
    assert progress_until_done(webapp, accepted.json()["task_id"])[-1]["status"] == "completed"
    assert OrgDbt.objects.filter(org__slug=webapp.org_slug).count() == 1
    blocks = OrgPrefectBlockv1.objects.filter(org__slug=webapp.org_slug, block_name__endswith="git-pull-url")
    assert blocks.count() == 1


def test_w34_a_task_whose_process_stopped_is_reported_failed_and_blocks_nothing(webapp, tmp_path):
    org = Org.objects.get(slug=webapp.org_slug)
    stale = TaskProgress.objects.create(
        org=org,
        kind="dbt-workspace-setup",
        resource="dbt-workspace",
        steps=[{"stepnum": 1, "status": "running", "message": "cloning /x"}],
        heartbeat_at=timezone.now() - background.STALE_AFTER - dt.timedelta(seconds=1),
    )
    response = webapp.get(f"tasks/{stale.task_id}")
    assert response.status_code == 200
    last = response.json()["progress"][-1]
    assert last["status"] == "failed" and last["message"].startswith("ddpui stopped while this task ran")
    assert response.json()["status"] == "failed"
    # a new set-up is accepted (inline here: ddpui's body)
    created = webapp.post("dbt/workspace/", {"gitrepoUrl": make_sample_git_repo(tmp_path), "defaultSchema": "d"})
    assert created.status_code == 200, created.content


def test_w34_another_orgs_task_or_an_unknown_id_is_404(webapp, live_services):
    task = TaskProgress.objects.create(
        org=Org.objects.get(slug=webapp.org_slug), kind="dbt-workspace-setup", resource="dbt-workspace"
    )
    stranger = signed_in_org()
    assert stranger.get(f"tasks/{task.task_id}").status_code == 404
    assert webapp.get("tasks/not-a-uuid").status_code == 404
    assert webapp.get(f"tasks/{task.task_id}").status_code == 200


def test_w35_schema_update_with_the_web_apps_body(webapp, tmp_path):
    created = webapp.post(
        "dbt/workspace/", {"gitrepoUrl": make_sample_git_repo(tmp_path), "defaultSchema": "analytics"}
    )
    assert created.status_code == 200, created.content
    response = webapp.put("dbt/v1/schema/", {"target_configs_schema": "reporting"})
    assert response.status_code == 200, response.content
    assert webapp.get("dbt/dbt_workspace").json()["default_schema"] == "reporting"
    assert webapp.put("dbt/v1/schema/", {"target_configs_schema": "a b"}).status_code == 400
    assert webapp.put("dbt/v1/schema/", {}).status_code == 422
    assert AuditEvent.objects.filter(org__slug=webapp.org_slug, action="dbt_workspace.schema_changed").exists()


@transactional
def test_w36_change_repository_replaces_the_clone_and_the_pull_url(webapp, tmp_path, prefect_secret):
    first = make_sample_git_repo(tmp_path)
    webapp.post("dbt/workspace/", {"gitrepoUrl": first, "defaultSchema": "analytics"})
    (tmp_path / "second").mkdir()
    second = make_sample_git_repo(tmp_path / "second")
    response = webapp.put("dbt/github/", {"gitrepoUrl": second, "gitrepoAccessToken": ""})
    assert response.status_code == 200, response.content
    progress = progress_until_done(webapp, response.json()["task_id"])
    assert progress[-1]["status"] == "completed", progress
    workspace = webapp.get("dbt/dbt_workspace").json()
    assert workspace["gitrepo_url"] == second
    assert prefect_secret(f"{webapp.org_slug}-git-pull-url") == second
    assert (Path(workspace["project_dir"]) / "dbt_project.yml").exists()
    origin = (Path(workspace["project_dir"]) / ".git" / "config").read_text()
    assert second in origin and first not in origin
    # a repository that cannot be cloned leaves the workspace as it was
    failed = webapp.put("dbt/github/", {"gitrepoUrl": str(tmp_path / "nowhere.git")})
    assert progress_until_done(webapp, failed.json()["task_id"])[-1]["status"] == "failed"
    assert webapp.get("dbt/dbt_workspace").json()["gitrepo_url"] == second
    assert prefect_secret(f"{webapp.org_slug}-git-pull-url") == second
    assert (Path(workspace["project_dir"]) / "dbt_project.yml").exists()
    changes = AuditEvent.objects.filter(org__slug=webapp.org_slug, action="dbt_workspace.repository_changed")
    assert [row.details for row in changes] == [{"from": first, "to": second}]  # the failed change wrote none


def test_w36_without_a_workspace_the_change_is_404(webapp):
    response = webapp.put("dbt/github/", {"gitrepoUrl": "/tmp/r.git", "gitrepoAccessToken": ""})
    assert response.status_code == 404 and "no dbt workspace" in response.json()["detail"]
