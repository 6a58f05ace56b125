"""Development and production at once, on a worker that never saw the org (issues 19 item 4, 20 item 2).

Through the API an org sets up `dev` (its own warehouse and schema) beside its default target, makes a pipeline
of the same git and dbt tasks on each, and triggers both together: the same tasks on two targets are not
exclusive, the same pipeline again is (409). Django's clone is removed first, so the worker can only run from
the git URL: each target gets its own copy in the worker's cache, and each model lands in its target's schema.
Needs the session's Prefect worker."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from ddpui.flows.workspace import cache_root
from tests.ddpui.api.helpers import add_dbt_workspace, add_transform_tasks, add_warehouse
from tests.support.orgsetup import _git, warehouse_request

pytestmark = [pytest.mark.django_db, pytest.mark.prefect, pytest.mark.worker]

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# one model that says which target built it: no sources, so no sync is needed
PROJECT = {
    "dbt_project.yml": 'name: tiny\nversion: "1.0.0"\nconfig-version: 2\nprofile: tiny\nmodel-paths: ["models"]\n',
    "models/built_by.sql": "{{ config(materialized='table') }}\nselect '{{ target.name }}' as target_name\n",
}


def tiny_repo(tmp_path: Path) -> str:
    bare, author = tmp_path / "tiny.git", tmp_path / "tiny-author"
    _git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    for path, text in PROJECT.items():
        (author / path).parent.mkdir(parents=True, exist_ok=True)
        (author / path).write_text(text)
    _git("init", "-q", "-b", "main", cwd=author)
    _git("add", "-A", cwd=author)
    _git("commit", "-q", "-m", "tiny dbt project", cwd=author)
    _git("push", "-q", str(bare), "main", cwd=author)
    return bare.as_uri()


def built_by(path: Path, schema: str) -> list[tuple]:
    connection = duckdb.connect(str(path), read_only=True)
    try:
        return connection.execute(f"select target_name from {schema}.built_by").fetchall()
    finally:
        connection.close()


def test_dev_and_prod_pipelines_run_at_once_on_a_worker_without_the_repository(
    api, live, new_org, tmp_path, prefect_worker
):
    org = new_org()
    add_warehouse(api, org, tmp_path)
    dev_path = tmp_path / "dev.duckdb"
    dev_warehouse = api.post(
        "/api/v1/organizations/warehouse/", warehouse_request(dev_path, name="dev"), headers=org.headers
    ).json()
    workspace = add_dbt_workspace(api, org, tiny_repo(tmp_path), schema="analytics")
    tasks = add_transform_tasks(api, org)
    dev = {"name": "dev", "schema": "dev_analytics", "destinationId": dev_warehouse["destinationId"]}
    assert api.post("/api/v1/dbt/targets/", dev, headers=org.headers).status_code == 200

    def pipeline(name: str, target: str | None, cron: str) -> str:
        body = {
            "name": name,
            "transformTasks": [{"uuid": tasks["git-pull"], "seq": 1}, {"uuid": tasks["dbt-run"], "seq": 2}],
            "cron": cron,
        }
        response = api.post("/api/prefect/v1/flows/", {**body, "target": target}, headers=org.headers)
        assert response.status_code == 200, response.content
        return response.json()["deploymentId"]

    prod_id = pipeline("prod", None, "0 3 * * *")  # no target named: the default one
    dev_id = pipeline("dev", "dev", "30 * * * *")
    listed = api.get("/api/prefect/v1/flows/", headers=org.headers).json()
    assert sorted((p["name"], p["target"], p["cron"]) for p in listed) == [
        ("dev", "dev", "30 * * * *"),
        ("prod", "default", "0 3 * * *"),
    ]

    # the worker has never seen the org, and Django's clone is gone: only the git URL is left to run from
    assert not (cache_root() / org.slug).exists()
    shutil.rmtree(workspace["project_dir"])

    def trigger(deployment_id: str):
        return api.post(f"/api/prefect/v1/flows/{deployment_id}/flow_run/", headers=org.headers)

    prod_run = trigger(prod_id)
    dev_run = trigger(dev_id)  # the same git pull and dbt run, on another target: not locked out
    assert prod_run.status_code == 200 and dev_run.status_code == 200, (prod_run.content, dev_run.content)
    again = trigger(prod_id)  # the same tasks on the same target are exclusive
    assert again.status_code == 409
    assert "on target default is locked by" in again.json()["detail"]
    # a one-off task run names its target: the locked one is refused, an unknown one too
    one_off = f"/api/prefect/tasks/{tasks['dbt-run']}/run/"
    on_dev = api.post(one_off, {"target": "dev"}, headers=org.headers)
    assert on_dev.status_code == 409 and "on target dev is locked by" in on_dev.json()["detail"]
    unknown = api.post(one_off, {"target": "qa"}, headers=org.headers)
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == "unknown target 'qa': your dbt workspace's targets are default, dev"

    runs = {}
    deadline = time.monotonic() + 240
    for name, response in (("default", prod_run), ("dev", dev_run)):
        flow_run_id = response.json()["flow_run_id"]
        while (run := api.get(f"/api/prefect/flow_runs/{flow_run_id}", headers=org.headers).json())[
            "stateType"
        ] not in TERMINAL:
            assert time.monotonic() < deadline, f"the {name} run is still {run['stateName']}"
            time.sleep(0.5)
        runs[name] = run
    for name, run in runs.items():
        assert run["stateType"] == "COMPLETED", (name, run["stateMessage"], run["taskResults"])
        assert run["target"] == name

    # each model in its own target's schema and warehouse, built with its target's profile
    assert built_by(tmp_path / f"{org.slug}.duckdb", "analytics") == [("default",)]  # add_warehouse's file
    assert built_by(dev_path, "dev_analytics") == [("dev",)]
    history = api.get(f"/api/prefect/v1/flows/{dev_id}/flow_runs/history", headers=org.headers).json()
    assert [(run["id"], run["target"]) for run in history] == [(dev_run.json()["flow_run_id"], "dev")]

    # one copy per target in the worker's cache, cloned from the git URL (no token on disk)
    for target in ("default", "dev"):
        copy = cache_root() / org.slug / target / "dbtrepo"
        assert (copy / "models" / "built_by.sql").is_file()
        origin = subprocess.run(["git", "remote", "get-url", "origin"], cwd=copy, capture_output=True, text=True)
        assert origin.stdout.strip().endswith("tiny.git")
