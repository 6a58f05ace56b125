"""Sets an organization up through the API only, as a new user would: for tests that need a ready org.

    repo_url = make_sample_git_repo(tmp_path)
    org = setup_org_via_api(client, email=..., password=..., org_name=..., warehouse_path_or_pg=tmp_path / "wh.duckdb",
                            git_repo_url=repo_url)
    client.get("/api/airbyte/v1/connections", **org["headers"])

Needs the `live_services` fixture (the real proxy and the Airbyte emulator behind the Django settings).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from django.contrib.auth import get_user_model

from devtools.airbyte_emulator import SAMPLE_SOURCE_DEFINITION_ID

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DBT_PROJECT = REPO_ROOT / "devtools" / "sample_dbt_project"
# the schema the sample dbt project reads its sources from (see docs/devtools.md)
SOURCE_SCHEMA = "airbyte_raw"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "ddpui tests",
    "GIT_AUTHOR_EMAIL": "tests@ddpui.invalid",
    "GIT_COMMITTER_NAME": "ddpui tests",
    "GIT_COMMITTER_EMAIL": "tests@ddpui.invalid",
}


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_IDENTITY}, check=True, capture_output=True)


def make_sample_git_repo(tmp_path: Path) -> str:
    """A local bare repository holding devtools/sample_dbt_project on branch main; returns its file:// URL."""
    bare, author = tmp_path / "sample-dbt.git", tmp_path / "sample-dbt-author"
    _git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    shutil.copytree(
        SAMPLE_DBT_PROJECT, author, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb*")
    )
    _git("init", "-q", "-b", "main", cwd=author)
    _git("add", "-A", cwd=author)
    _git("commit", "-q", "-m", "sample dbt project", cwd=author)
    _git("push", "-q", str(bare), "main", cwd=author)
    return bare.as_uri()


def sample_repo_commit(repo_url: str, path: str, text: str | None) -> None:
    """Commits a change to the sample repository made by make_sample_git_repo (`text` None deletes `path`) and
    pushes it: the workers' copies see it at their next run, as they would a change pushed by the org."""
    bare = Path(repo_url.removeprefix("file://"))
    author = bare.parent / "sample-dbt-author"
    target = author / path
    if text is None:
        _git("rm", "-q", path, cwd=author)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        _git("add", path, cwd=author)
    _git("commit", "-q", "-m", f"change {path}", cwd=author)
    _git("push", "-q", str(bare), "main", cwd=author)


def warehouse_request(warehouse_path_or_pg: Path | str | dict, *, name: str = "warehouse") -> dict:
    """The body of POST /api/v1/organizations/warehouse/: DuckDB for a path, PostgreSQL for a dict
    with host, port, database, username, password. The sync writes into SOURCE_SCHEMA."""
    if isinstance(warehouse_path_or_pg, dict):
        pg = warehouse_path_or_pg
        config = {key: pg[key] for key in ("host", "port", "database", "username", "password")}
        return {"wtype": "postgres", "name": name, "airbyteConfig": {**config, "schema": SOURCE_SCHEMA}}
    return {
        "wtype": "duckdb",
        "name": name,
        "airbyteConfig": {"destination_path": str(warehouse_path_or_pg), "schema": SOURCE_SCHEMA},
    }


def _call(client, method: str, path: str, body: dict | None = None, **headers) -> dict | list:
    response = getattr(client, method)(path, body, content_type="application/json", **headers)
    assert response.status_code == 200, f"{method.upper()} {path} -> {response.status_code}: {response.content[:500]}"
    return response.json()


def setup_org_via_api(
    client,
    *,
    email: str,
    password: str,
    org_name: str,
    warehouse_path_or_pg: Path | str | dict,
    git_repo_url: str,
    git_access_token: str | None = None,
    dbt_schema: str = "analytics",
    source_rows: int = 20,
    connection_name: str = "sample data",
) -> dict:
    """Login, organization, warehouse, a Sample Data source, a connection, the dbt workspace and the
    transform tasks, each through its endpoint. The user is created first if it does not exist (there is
    no sign-up endpoint). Returns the ids, the token and the request headers for later calls."""
    users = get_user_model()
    if not users.objects.filter(username=email.lower()).exists():
        users.objects.create_user(username=email.lower(), email=email.lower(), password=password)
    token = _call(client, "post", "/api/v1/login/", {"email": email, "password": password})["token"]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    org = _call(client, "post", "/api/v1/organizations/", {"name": org_name}, **auth)
    headers = {**auth, "HTTP_X_DALGO_ORG": org["slug"]}
    warehouse = _call(
        client, "post", "/api/v1/organizations/warehouse/", warehouse_request(warehouse_path_or_pg), **headers
    )
    source = _call(
        client,
        "post",
        "/api/airbyte/sources/",
        {"name": "sample", "sourceDefId": SAMPLE_SOURCE_DEFINITION_ID, "config": {"count": source_rows, "seed": 7}},
        **headers,
    )
    connection_body = {"name": connection_name, "sourceId": source["sourceId"]}
    connection = _call(client, "post", "/api/airbyte/v1/connections/", connection_body, **headers)
    dbt_body = {"gitrepoUrl": git_repo_url, "defaultSchema": dbt_schema}
    if git_access_token:
        dbt_body["gitrepoAccessToken"] = git_access_token
    dbt = _call(client, "post", "/api/dbt/workspace/", dbt_body, **headers)
    tasks = _call(client, "post", "/api/prefect/tasks/transform/", **headers)
    return {
        "token": token,
        "headers": headers,
        "org_slug": org["slug"],
        "org_name": org["name"],
        "workspace_id": org["airbyte_workspace_id"],
        "destination_id": warehouse["destinationId"],
        "source_id": source["sourceId"],
        "connection_id": connection["connectionId"],
        "deployment_id": connection["deploymentId"],
        "sync_task_uuid": connection["orgtaskUuid"],
        "transform_tasks": {task["slug"]: task["uuid"] for task in tasks},
        "project_dir": dbt["project_dir"],
        "warehouse": warehouse_path_or_pg,
    }
