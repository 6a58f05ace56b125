"""migrate_blocks_to_tasks and verify_block_migration against a legacy installation on real Prefect, proxy and
Airbyte emulator (no worker: the runs are in test_legacy_runs.py)."""

from __future__ import annotations

import json
import secrets
from io import StringIO

import pytest
from django.core.management import call_command

from ddpui.models import (
    BlockLock,
    DataflowOrgTask,
    DbtTarget,
    Org,
    OrgDataFlow,
    OrgDataFlowv1,
    OrgDbt,
    OrgPrefectBlock,
    OrgPrefectBlockv1,
    OrgTask,
)
from ddpui.prefect_client.client import Deployment, PrefectProxy, ProxyError
from tests.migration.conftest import snapshot

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]

LEGACY = "prefect_flows.py:legacy_pipeline_flow"
PIPELINE = "prefect_flows.py:pipeline_flow"


def dataflow_slugs(org: Org, name: str) -> list[str]:
    links = DataflowOrgTask.objects.filter(dataflow__org=org, dataflow__name=name).select_related("orgtask__task")
    return [
        link.orgtask.command_text() if link.orgtask.task.type != "airbyte" else link.orgtask.connection_id
        for link in links.order_by("seq")
    ]


def test_dry_run_of_every_step_changes_nothing_in_django_or_prefect(legacy, commands, prefect_state):
    steps = [["--phase", "1"], ["--phase", "2"], ["--switch-entrypoint"], ["--phase", "3", "--confirm"]]
    for step in steps:
        before = snapshot(prefect_state)
        output = commands.migrate_ok(*step, "--all", "--dry-run")
        assert "dry run" in output and "would " in output, output
        assert snapshot(prefect_state) == before, step
        commands.migrate_ok(*step, "--all")
    assert not OrgPrefectBlock.objects.exists()


def test_every_step_run_twice_changes_nothing_the_second_time(legacy, commands, prefect_state):
    for step in (["--phase", "1"], ["--phase", "2"], ["--switch-entrypoint"], ["--phase", "3", "--confirm"]):
        first = commands.migrate_ok(*step, "--all")
        assert "migrated" in first, first
        before = snapshot(prefect_state)
        second = commands.migrate_ok(*step, "--all")
        assert "nothing to do" in second and "done:" not in second, second
        assert snapshot(prefect_state) == before, step
    rollback = commands.migrate_ok("--rollback-entrypoint", "--org", legacy[0].slug)
    assert "no legacy rows left" in rollback


def test_phase_1_records_the_server_block_and_manual_syncs_with_old_and_new_parameters(legacy, commands, prefect_state):
    output = commands.migrate_ok("--phase", "1", "--all")
    assert "[1/2]" in output and "summary:" in output
    for install in legacy:
        org = Org.objects.get(slug=install.slug)
        server = OrgPrefectBlockv1.objects.get(org=org, block_type="Airbyte Server")
        assert server.block_name == f"{install.slug}-airbyte-server"
        assert server.block_id == OrgPrefectBlock.objects.get(org=org, block_type="Airbyte Server").block_id
        for connection_name, connection_id in install.connections.items():
            dataflow = OrgDataFlowv1.objects.get(deployment_id=install.deployments[connection_name])
            assert (dataflow.org, dataflow.dataflow_type, dataflow.name) == (org, "manual", connection_name)
            assert dataflow_slugs(org, connection_name) == [connection_id]
            deployment = prefect_state.deployment(dataflow.deployment_id)
            assert deployment["entrypoint"] == LEGACY  # still the legacy flow
            parameters = deployment["parameters"]
            block = OrgPrefectBlock.objects.get(org=org, block_type="Airbyte Connection", display_name=connection_name)
            assert parameters["airbyte_blocks"] == [{"blockName": block.block_name, "seq": 0}]
            assert [task["connection_id"] for task in parameters["config"]["tasks"]] == [connection_id]
            assert parameters["config"]["tasks"][0]["airbyte_server_block"] == server.block_name
        # the pipelines are phase 2's
        assert not OrgDataFlowv1.objects.filter(org=org, dataflow_type="orchestrate").exists()
        assert "config" not in prefect_state.deployment(install.deployments["Nightly"])["parameters"]


def test_phase_2_converts_the_profile_in_the_proxy_and_keeps_the_order_of_every_pipeline(
    legacy, commands, prefect_state
):
    commands.migrate_ok("--phase", "1", "--all")
    commands.migrate_ok("--phase", "2", "--all")
    install = legacy[0]
    org = Org.objects.get(slug=install.slug)
    profile = OrgPrefectBlockv1.objects.get(org=org, block_type="dbt CLI Profile")
    # the workspace's default target takes the legacy profile's block and target name
    assert DbtTarget.objects.get(dbt__org=org, is_default=True).profile_block == profile
    assert DbtTarget.objects.get(dbt__org=org, is_default=True).name == "dev"
    value = prefect_state.secret_value(profile.block_name)
    assert isinstance(value, str)  # a JSON string: Prefect masks it (an object would be shown in clear)
    assert '"profile_name": "ddpui"' in value and '"target": "dev"' in value and str(install.warehouse_path) in value
    secrets = set(OrgPrefectBlockv1.objects.filter(org=org, block_type="Secret").values_list("block_name", flat=True))
    assert secrets == {f"{install.slug}-git-pull-url", f"{install.slug}-warehouse-credentials"}
    sample, copy = install.connections["Sample data"], install.connections["Sample data copy"]
    assert dataflow_slugs(org, "Nightly") == [
        sample,
        copy,
        "git pull",
        "dbt deps",
        "dbt run",
        "dbt test",
        "dbt docs generate",
    ]
    assert dataflow_slugs(org, "Orders hourly") == [sample, "git pull", "dbt run --select +customer_orders"]
    assert dataflow_slugs(org, "Manual dbt") == ["git pull", "dbt clean", "dbt deps", "dbt run", "dbt test"]
    custom = OrgTask.objects.get(org=org, task__slug="dbt-run", generated_by="client")
    assert custom.parameters == {"flags": [], "options": {"select": "+customer_orders"}}
    # one task per connection and per command, shared by the pipelines
    assert OrgTask.objects.filter(org=org, task__slug="airbyte-sync").count() == 2
    assert OrgTask.objects.filter(org=org, task__slug="git-pull").count() == 1
    nightly = OrgDataFlowv1.objects.get(deployment_id=install.deployments["Nightly"])
    assert (nightly.dataflow_type, nightly.cron, nightly.timezone) == ("orchestrate", "0 2 * * *", "Asia/Kolkata")
    parameters = prefect_state.deployment(nightly.deployment_id)["parameters"]
    assert [entry["blockName"] for entry in parameters["dbt_blocks"]][0] == f"{install.slug}-git-pull"
    assert [task["slug"] for task in parameters["config"]["tasks"]] == [
        "airbyte-sync",
        "airbyte-sync",
        "git-pull",
        "dbt-deps",
        "dbt-run",
        "dbt-test",
        "dbt-docs-generate",
    ]
    assert parameters["config"]["tasks"][2]["env"] == {"secret-git-pull-url-block": f"{install.slug}-git-pull-url"}
    assert {task.get("cli_profile_block") for task in parameters["config"]["tasks"][3:]} == {profile.block_name}
    ok, output = commands.verify("--all")
    assert ok, output
    assert output.count("ok   ") == 10


def test_a_failure_mid_org_rolls_that_org_back_in_django_and_prefect_and_the_other_org_migrates(
    legacy, commands, prefect_state, monkeypatch
):
    commands.migrate_ok("--phase", "1", "--all")
    failing, other = legacy
    before = snapshot(prefect_state)
    before_rows = {
        model: list(model.objects.filter(org__slug=failing.slug).order_by("pk").values())
        for model in (OrgPrefectBlockv1, OrgTask, OrgDataFlowv1, OrgDbt)
    }
    broken = failing.deployments["Orders hourly"]  # the last deployment phase 2 updates for that org
    original_update = Deployment.update

    def update(self, **kwargs):
        if self.id == broken and "config" in (kwargs.get("parameters") or {}):
            raise ProxyError("Prefect refused the call (502): injected failure")
        return original_update(self, **kwargs)

    monkeypatch.setattr(Deployment, "update", update)
    succeeded, output = commands.migrate("--phase", "2", "--all")
    assert not succeeded
    assert f"{failing.slug}  FAILED: Prefect refused the call (502): injected failure (rolled back" in output, output
    assert "1 org(s) failed" in output
    # the failing org: its rows and its deployments are as before, and the profile Secret made for it is gone
    after_rows = {
        model: list(model.objects.filter(org__slug=failing.slug).order_by("pk").values())
        for model in (OrgPrefectBlockv1, OrgTask, OrgDataFlowv1, OrgDbt)
    }
    assert after_rows == before_rows
    after = snapshot(prefect_state)
    failing_ids = set(failing.deployments.values())
    assert [d[3:] for d in after["deployments"] if d[0] in failing_ids] == [
        d[3:] for d in before["deployments"] if d[0] in failing_ids
    ]
    assert f"{failing.slug}-dbt-profile" not in prefect_state.block_names()
    # the other org went through
    assert f"{other.slug}-dbt-profile" in prefect_state.block_names()
    # its five deployments, plus the own (manual) deployment its custom `dbt run --select` task gets
    assert OrgDataFlowv1.objects.filter(org__slug=other.slug).count() == 6
    # once the cause is gone, the failed org migrates
    monkeypatch.setattr(Deployment, "update", original_update)
    output = commands.migrate_ok("--phase", "2", "--all")
    assert f"{failing.slug}  migrated" in output and f"{other.slug}  nothing to do" in output


def test_the_entrypoint_switch_is_reversible_until_the_cleanup(legacy, commands, prefect_state):
    install = legacy[0]
    ok, output = commands.migrate("--switch-entrypoint", "--org", install.slug)
    assert not ok and "BLOCKED" in output and "phase 1" in output
    commands.migrate_ok("--phase", "1", "--org", install.slug)
    commands.migrate_ok("--phase", "2", "--org", install.slug)
    parameters = {d: prefect_state.deployment(d)["parameters"] for d in install.deployments.values()}
    commands.migrate_ok("--switch-entrypoint", "--org", install.slug)
    assert {prefect_state.deployment(d)["entrypoint"] for d in install.deployments.values()} == {PIPELINE}
    output = commands.migrate_ok("--rollback-entrypoint", "--org", install.slug)
    assert output.count("done: point back") == 5
    for deployment_id in install.deployments.values():
        deployment = prefect_state.deployment(deployment_id)
        assert deployment["entrypoint"] == LEGACY
        assert deployment["parameters"] == parameters[deployment_id]  # old + new: the legacy flow runs the old
    assert "nothing to do" in commands.migrate_ok("--rollback-entrypoint", "--org", install.slug)
    commands.migrate_ok("--switch-entrypoint", "--org", install.slug)
    assert {prefect_state.deployment(d)["entrypoint"] for d in install.deployments.values()} == {PIPELINE}
    # the other org was never touched
    assert {prefect_state.deployment(d)["entrypoint"] for d in legacy[1].deployments.values()} == {LEGACY}


def test_verify_reports_each_planted_difference_and_blocks_the_switch(legacy, commands):
    commands.migrate_ok("--phase", "1", "--all")
    commands.migrate_ok("--phase", "2", "--all")
    assert commands.verify("--all")[0]
    install = legacy[0]
    nightly = OrgDataFlowv1.objects.get(deployment_id=install.deployments["Nightly"])
    links = {
        link.orgtask.task.slug: link
        for link in DataflowOrgTask.objects.filter(dataflow=nightly).select_related("orgtask__task")
    }
    run_seq, test_seq = links["dbt-run"].seq, links["dbt-test"].seq
    DataflowOrgTask.objects.filter(id=links["dbt-run"].id).update(seq=99)
    DataflowOrgTask.objects.filter(id=links["dbt-test"].id).update(seq=run_seq)
    DataflowOrgTask.objects.filter(id=links["dbt-run"].id).update(seq=test_seq)
    OrgDataFlowv1.objects.filter(deployment_id=install.deployments["Orders hourly"]).update(cron="0 3 * * *")
    OrgDataFlow.objects.filter(deployment_id=install.deployments["Manual dbt"]).update(cron="0 4 * * *")

    ok, output = commands.verify("--org", install.slug)
    assert not ok
    assert "DIFF 'Nightly'" in output and "order: the old blocks run [" in output, output
    assert "the deployment's config does not match the dataflow's tasks" in output
    assert "DIFF 'Orders hourly'" in output
    assert "schedule: the new dataflow says cron '0 3 * * *' UTC, Prefect runs cron '15 * * * *' UTC" in output
    assert "schedule: the old dataflow row says cron '0 4 * * *' UTC, Prefect runs no schedule" in output
    assert "ok   'Sample data'" in output
    assert "verify_block_migration: 4 difference(s)" in output
    ok, output = commands.migrate("--switch-entrypoint", "--all")
    assert not ok
    assert f"{install.slug}  BLOCKED: " in output  # phase 2 would re-sync the config; verify finds 4 differences
    assert f"{legacy[1].slug}  migrated" in output


def test_a_held_block_lock_blocks_its_org_and_stale_ones_go_with_the_cleanup(legacy, commands):
    install = legacy[0]
    opb = OrgPrefectBlock.objects.get(block_name=f"{install.slug}-git-pull")
    BlockLock.objects.create(opb=opb)  # a legacy trigger in progress: no flow run yet
    ok, output = commands.migrate("--phase", "1", "--all")
    assert not ok
    assert f"{install.slug}  BLOCKED: the block lock on '{install.slug}-git-pull' was taken" in output, output
    assert f"{legacy[1].slug}  migrated" in output
    assert not OrgPrefectBlockv1.objects.filter(org__slug=install.slug).exists()
    BlockLock.objects.filter(opb=opb).delete()  # the run finished
    commands.migrate_ok("--phase", "1", "--all")
    commands.migrate_ok("--phase", "2", "--all")
    commands.migrate_ok("--switch-entrypoint", "--all")
    ok, output = commands.migrate("--phase", "3", "--all")
    assert not ok and "--confirm" in output
    commands.migrate_ok("--phase", "3", "--all", "--confirm")
    assert not BlockLock.objects.exists()  # the stale lock of each org (its run is unknown to Prefect)


def test_cleanup_deletes_the_operation_blocks_and_legacy_rows_and_keeps_what_the_tasks_use(
    legacy, commands, prefect_state
):
    for step in (["--phase", "1"], ["--phase", "2"], ["--switch-entrypoint"]):
        commands.migrate_ok(*step, "--all")
    commands.migrate_ok("--phase", "3", "--all", "--confirm")
    names = prefect_state.block_names()
    for install in legacy:
        kept = {name for name, kind in install.blocks.items() if kind in ("Airbyte Server", "Secret")}
        assert kept <= names
        assert not (set(install.blocks) - kept) & names  # connections, shell, dbt operations, legacy profile
        assert f"{install.slug}-dbt-profile" in names
        for deployment_id in install.deployments.values():
            deployment = prefect_state.deployment(deployment_id)
            assert deployment["entrypoint"] == PIPELINE
            assert set(deployment["parameters"]) == {"config"}
        org = Org.objects.get(slug=install.slug)
        assert not OrgPrefectBlock.objects.filter(org=org).exists()
        assert not OrgDataFlow.objects.filter(org=org).exists()
        assert OrgDataFlowv1.objects.filter(org=org).count() == 6  # 5 migrated + the custom dbt-run task's own
    ok, output = commands.verify("--all")
    assert ok and "no org has legacy rows" in output


def test_the_warehouse_password_of_a_legacy_profile_never_reaches_django(legacy, commands, prefect_state, monkeypatch):
    install = legacy[0]
    password = f"pw-{secrets.token_hex(10)}"
    profile = next(name for name, kind in install.blocks.items() if kind == "dbt CLI Profile")
    document = next(d for d in prefect_state.block_documents() if d["name"] == profile)
    target_configs = {**document["data"]["target_configs"]}
    target_configs["extras"] = {**target_configs["extras"], "password": password}
    response = prefect_state.http.patch(
        f"/block_documents/{document['id']}", json={"data": {**document["data"], "target_configs": target_configs}}
    )
    assert response.status_code == 204, response.text
    answers = []
    original_request = PrefectProxy.request

    def recording_request(self, method, path, **kwargs):
        answer = original_request(self, method, path, **kwargs)
        answers.append(repr(answer))
        return answer

    monkeypatch.setattr(PrefectProxy, "request", recording_request)
    outputs = [commands.migrate_ok("--phase", phase, "--all") for phase in ("1", "2")]
    outputs.append(commands.verify("--all")[1])
    dump = StringIO()
    call_command("dumpdata", "ddpui", stdout=dump)

    assert password not in "".join(outputs + answers) + dump.getvalue()
    converted = json.loads(prefect_state.secret_value(f"{install.slug}-dbt-profile"))
    assert converted["credentials"]["password"] == password
