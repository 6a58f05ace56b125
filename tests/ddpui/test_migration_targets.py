"""Migrations 0009-0011 (issue 19) on a database made by the migrations before them: every existing dbt workspace
becomes a workspace with one default target holding its schema, its org's warehouse and its profile block; the
pipelines and manual dataflows running git or dbt tasks run on it, and the locks of running git and dbt tasks are
its locks. Then back again."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

BEFORE = [("ddpui", "0008_alerts")]
AFTER = [("ddpui", "0011_workspace_fields_to_targets")]


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


def _apps(targets):
    return MigrationExecutor(connection).loader.project_state(targets).apps


def test_each_workspace_becomes_one_default_target_and_its_runs_and_locks_follow():
    leaf = MigrationExecutor(connection).loader.graph.leaf_nodes("ddpui")
    _migrate(BEFORE)
    old = _apps(BEFORE)
    Org, OrgWarehouse, OrgDbt = (old.get_model("ddpui", name) for name in ("Org", "OrgWarehouse", "OrgDbt"))
    OrgPrefectBlockv1, Task, OrgTask = (
        old.get_model("ddpui", name) for name in ("OrgPrefectBlockv1", "Task", "OrgTask")
    )
    OrgDataFlowv1, DataflowOrgTask, TaskLock = (
        old.get_model("ddpui", name) for name in ("OrgDataFlowv1", "DataflowOrgTask", "TaskLock")
    )
    acme = Org.objects.create(name="Acme", slug="acme")
    warehouse = OrgWarehouse.objects.create(org=acme, wtype="postgres", name="wh", credentials_block_name="acme-wc")
    profile = OrgPrefectBlockv1.objects.create(
        org=acme, block_type="dbt CLI Profile", block_id="p1", block_name="acme-dbt-profile"
    )
    OrgDbt.objects.create(
        org=acme, project_dir="/x/acme/dbtrepo", default_schema="analytics", target_type="postgres",
        cli_profile_block=profile,
    )  # fmt: skip
    # an org whose workspace has no profile yet, and one without a workspace
    bare = Org.objects.create(name="Bare", slug="bare")
    OrgDbt.objects.create(org=bare, project_dir="/x/bare/dbtrepo", default_schema=None)
    none = Org.objects.create(name="None", slug="none")
    tasks = {task.slug: task for task in Task.objects.all()}
    run = OrgTask.objects.create(org=acme, task=tasks["dbt-run"])
    sync = OrgTask.objects.create(org=acme, task=tasks["airbyte-sync"], connection_id="c1")
    pipeline = OrgDataFlowv1.objects.create(org=acme, name="daily", deployment_id="d1", deployment_name="p-d1")
    DataflowOrgTask.objects.create(dataflow=pipeline, orgtask=sync, seq=0)
    DataflowOrgTask.objects.create(dataflow=pipeline, orgtask=run, seq=1)
    syncs_only = OrgDataFlowv1.objects.create(org=acme, name="sync", deployment_id="d2", deployment_name="m-d2")
    DataflowOrgTask.objects.create(dataflow=syncs_only, orgtask=sync, seq=0)
    TaskLock.objects.create(orgtask=run, flow_run_id="r1")
    TaskLock.objects.create(orgtask=sync, flow_run_id="r1")
    other_sync = OrgTask.objects.create(org=none, task=tasks["airbyte-sync"], connection_id="c2")

    _migrate(AFTER)
    new = _apps(AFTER)
    DbtTarget = new.get_model("ddpui", "DbtTarget")
    (target,) = DbtTarget.objects.filter(dbt__org__slug="acme")
    assert (target.name, target.is_default, target.schema) == ("default", True, "analytics")
    assert (target.warehouse_id, target.profile_block_id) == (warehouse.id, profile.id)
    (bare_target,) = DbtTarget.objects.filter(dbt__org__slug="bare")
    assert (bare_target.schema, bare_target.warehouse_id, bare_target.profile_block_id) == ("", None, None)
    assert not DbtTarget.objects.filter(dbt__org__slug="none").exists()
    dataflows = dict(new.get_model("ddpui", "OrgDataFlowv1").objects.values_list("name", "target_id"))
    assert dataflows == {"daily": target.id, "sync": None}
    locks = new.get_model("ddpui", "TaskLock").objects
    assert dict(locks.values_list("orgtask_id", "target_id")) == {run.id: target.id, sync.id: None}
    OrgDbt = new.get_model("ddpui", "OrgDbt")
    assert not {"default_schema", "target_type", "cli_profile_block"} & {f.name for f in OrgDbt._meta.get_fields()}
    # several warehouses per org now (the first stays the default)
    dev_warehouse = new.get_model("ddpui", "OrgWarehouse").objects.create(
        org_id=acme.id, wtype="duckdb", name="dev", credentials_block_name="acme-dev-wc"
    )
    # a task locks once per target: another target of the workspace takes its own lock
    dev = DbtTarget.objects.create(dbt_id=target.dbt_id, name="dev", schema="dev", warehouse_id=dev_warehouse.id)
    locks.create(orgtask_id=run.id, target_id=dev.id, flow_run_id="r2")
    dev.delete()
    dev_warehouse.delete()  # one warehouse per org again before going back
    locks.create(orgtask_id=run.id, target_id=DbtTarget.objects.create(
        dbt_id=target.dbt_id, name="stage", schema="stage", warehouse_id=warehouse.id
    ).id, flow_run_id="r3")  # fmt: skip

    _migrate(BEFORE)  # and back: the default target's values return to the workspace, one lock per task
    back = _apps(BEFORE)
    acme_dbt = back.get_model("ddpui", "OrgDbt").objects.get(org__slug="acme")
    assert (acme_dbt.default_schema, acme_dbt.target_type, acme_dbt.cli_profile_block_id) == (
        "analytics",
        "postgres",
        profile.id,
    )
    assert set(back.get_model("ddpui", "TaskLock").objects.values_list("flow_run_id", flat=True)) == {"r1"}
    assert other_sync.id in back.get_model("ddpui", "OrgTask").objects.values_list("id", flat=True)
    _migrate(leaf)
