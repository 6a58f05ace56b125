"""A new user sets an organization up from nothing, through the API only, to a runnable connection and
transform tasks; what it leaves in Airbyte and Prefect is what the design says, and no secret is exposed."""

from __future__ import annotations

import json
import uuid

import pytest
from django.conf import settings
from django.core import serializers

from ddpui.models import (
    DataflowOrgTask,
    DbtTarget,
    Org,
    OrgDataFlowv1,
    OrgDbt,
    OrgPrefectBlockv1,
    OrgTask,
    OrgWarehouse,
)
from tests.ddpui.api.helpers import add_source, unique
from tests.support.orgsetup import make_sample_git_repo, setup_org_via_api

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]

PASSWORD = "new-user-password"


def test_new_user_sets_up_an_org_from_nothing(api, live, prefect, tmp_path):
    repo_url = make_sample_git_repo(tmp_path)
    setup = setup_org_via_api(
        api.client,
        email=f"{unique('owner').replace(' ', '-')}@example.org",
        password=PASSWORD,
        org_name=unique("Acme Trust"),
        warehouse_path_or_pg=tmp_path / "warehouse.duckdb",
        git_repo_url=repo_url,
    )
    slug, headers = setup["org_slug"], setup["headers"]

    # the rows: org, warehouse (references only), dbt workspace, sync + transform tasks, manual dataflow
    warehouse = OrgWarehouse.objects.get(org__slug=slug)
    assert warehouse.credentials_block_name == f"{slug}-warehouse-credentials"
    assert warehouse.airbyte_destination_id == setup["destination_id"]
    dbt = OrgDbt.objects.get(org__slug=slug)
    assert (dbt.gitrepo_url, dbt.gitrepo_branch) == (repo_url, "main")
    # one target, the default: the workspace's schema, the warehouse, the profile block
    (target,) = DbtTarget.objects.filter(dbt=dbt)
    assert (target.name, target.is_default, target.schema) == ("default", True, "analytics")
    assert target.warehouse == warehouse
    assert target.profile_block.block_name == f"{slug}-dbt-profile"
    assert sorted(OrgPrefectBlockv1.objects.filter(org__slug=slug).values_list("block_name", flat=True)) == sorted(
        [f"{slug}-airbyte-server", f"{slug}-warehouse-credentials", f"{slug}-dbt-profile", f"{slug}-git-pull-url"]
    )
    assert sorted(setup["transform_tasks"]) == sorted(
        ["git-pull", "dbt-clean", "dbt-deps", "dbt-run", "dbt-test", "dbt-docs-generate"]
    )
    # the connection's manual dataflow (the dbt-run task has one of its own too)
    manual = OrgDataFlowv1.objects.get(
        org__slug=slug, dataflow_type="manual", dataflow_orgtasks__orgtask__task__slug="airbyte-sync"
    )
    assert manual.deployment_id == setup["deployment_id"]
    link = DataflowOrgTask.objects.get(dataflow=manual)
    assert (link.seq, link.orgtask.connection_id) == (0, setup["connection_id"])

    # the same blocks exist in Prefect, and the deployment runs exactly this connection's sync
    assert prefect.block_names(slug) == set(
        OrgPrefectBlockv1.objects.filter(org__slug=slug).values_list("block_name", flat=True)
    )
    deployment = prefect.deployment(setup["deployment_id"])
    tasks = deployment["parameters"]["config"]["tasks"]
    assert [(t["slug"], t["connection_id"], t["airbyte_server_block"]) for t in tasks] == [
        ("airbyte-sync", setup["connection_id"], f"{slug}-airbyte-server")
    ]
    assert deployment["work_pool_name"] == settings.PREFECT_WORK_POOL

    # the dbt profile, made by the transform tasks from the warehouse's credentials block, is named after
    # the dbt project's profile and uses the workspace's schema
    profile = json.loads(prefect.secret_value(f"{slug}-dbt-profile"))
    assert (profile["profile_name"], profile["type"], profile["schema"]) == ("ddpui", "duckdb", "analytics")
    assert profile["credentials"] == {"path": str(setup["warehouse"])}
    assert prefect.secret_value(f"{slug}-git-pull-url") == repo_url

    # the list pages a UI shows next
    connections = api.get("/api/airbyte/v1/connections", headers=headers).json()
    assert [(c["name"], c["connectionId"], c["status"], c["deploymentId"]) for c in connections] == [
        ("sample data", setup["connection_id"], "active", setup["deployment_id"])
    ]
    source = connections[0]["source"]  # the list gained the web app's sourceName (and definition, icon)
    assert (source["sourceId"], source["name"], source["sourceName"]) == (setup["source_id"], "sample", "Sample Data")
    assert connections[0]["lastRun"] is None and connections[0]["lock"] is None
    transform = api.get("/api/prefect/tasks/transform/", headers=headers).json()
    assert [t["slug"] for t in transform] == [
        "git-pull",
        "dbt-clean",
        "dbt-deps",
        "dbt-run",
        "dbt-test",
        "dbt-docs-generate",
    ]
    assert [t["seq"] for t in transform] == list(range(6))
    assert api.get("/api/dbt/dbt_workspace", headers=headers).json()["default_schema"] == "analytics"


def test_secrets_never_reach_tables_responses_or_parameters(api, new_org, prefect, pg_like_config):
    """A PostgreSQL warehouse with a distinctive password and a git token: neither appears in any row,
    response or deployment parameter; only the Secret blocks hold them."""
    password, token = pg_like_config["password"], f"ghp-{uuid.uuid4().hex}"
    org = new_org()
    responses = [
        api.post(
            "/api/v1/organizations/warehouse/",
            {"wtype": "postgres", "name": "pg", "airbyteConfig": pg_like_config},
            headers=org.headers,
        )
    ]
    assert responses[0].status_code == 200, responses[0].content
    responses.append(api.get("/api/v1/organizations/warehouses", headers=org.headers))
    assert responses[-1].json()["warehouses"][0]["airbyteConfig"]["password"] == "**********"
    connection = api.post(
        "/api/airbyte/v1/connections/", {"name": "c", "sourceId": add_source(api, org)}, headers=org.headers
    )
    responses += [connection, api.get("/api/airbyte/v1/connections", headers=org.headers)]
    failed_clone = api.post(
        "/api/dbt/workspace/",
        {"gitrepoUrl": "https://127.0.0.1:9/acme/dbt.git", "gitrepoAccessToken": token, "defaultSchema": "dbt"},
        headers=org.headers,
    )
    assert failed_clone.status_code == 400
    responses.append(failed_clone)
    for response in responses:
        assert password not in response.content.decode() and token not in response.content.decode()
    assert password not in json.dumps(prefect.deployment(connection.json()["deploymentId"])["parameters"])
    rows = [
        *Org.objects.filter(slug=org.slug),
        *OrgWarehouse.objects.all(),
        *OrgPrefectBlockv1.objects.all(),
        *OrgTask.objects.all(),
        *OrgDataFlowv1.objects.all(),
    ]
    dump = serializers.serialize("json", rows)
    assert password not in dump and token not in dump
    assert json.loads(prefect.secret_value(f"{org.slug}-warehouse-credentials"))["password"] == password
    # no dbt profile yet: the transform tasks make it, from the credentials block, server-side in the proxy
    assert f"{org.slug}-dbt-profile" not in prefect.block_names(org.slug)
