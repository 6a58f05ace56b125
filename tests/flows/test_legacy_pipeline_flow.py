"""The block-based world: persisted AirbyteConnection / ShellOperation / DbtCoreOperation blocks run by name."""

from __future__ import annotations

import pytest
from airbyte_prefect.connections import AirbyteConnection
from airbyte_prefect.server import AirbyteServer
from prefect_dbt.cli.commands import DbtCoreOperation
from prefect_dbt.cli.configs import TargetConfigs
from prefect_dbt.cli.credentials import DbtCliProfile
from prefect_shell import ShellOperation

from tests.flows.conftest import SOURCE_SCHEMA, unique

pytestmark = [pytest.mark.prefect, pytest.mark.worker]


def test_legacy_flow_runs_persisted_blocks_by_name_in_order(flow_runs, airbyte, dbt_repo, duckdb_warehouse, tmp_path):
    marker = tmp_path / "legacy-shell-ran"
    connection_block = unique("legacy-airbyte")
    AirbyteConnection(
        airbyte_server=AirbyteServer.load(airbyte.block_name),
        connection_id=airbyte.duckdb_connection(duckdb_warehouse.path),
        poll_interval_s=1,
    ).save(connection_block)
    shell_block = unique("legacy-shell")
    ShellOperation(commands=[f"echo legacy > {marker}"]).save(shell_block)
    dbt_block = unique("legacy-dbt-run")
    profile = DbtCliProfile(
        name="ddpui",
        target="default",
        target_configs=TargetConfigs(
            type="duckdb", schema="analytics", threads=1, extras={"path": str(duckdb_warehouse.path)}
        ),
    )
    DbtCoreOperation(
        commands=["dbt run"],
        project_dir=dbt_repo.work,
        working_dir=dbt_repo.work,
        overwrite_profiles=True,
        dbt_cli_profile=profile,
        env={"DDPUI_SOURCE_SCHEMA": SOURCE_SCHEMA},
    ).save(dbt_block)
    # given in reverse: the flow orders airbyte blocks first, then the dbt blocks by seq; as in Dalgo, each
    # group numbers its blocks from 0, so seq values repeat across the groups
    legacy_parameters = {
        "airbyte_blocks": [{"blockName": connection_block, "seq": 0}],
        "dbt_blocks": [
            {"blockName": dbt_block, "seq": 1, "blockType": "dbt Core Operation"},
            {"blockName": shell_block, "seq": 0, "blockType": "Shell Operation"},
        ],
    }
    pipeline_marker = tmp_path / "pipeline-legacy-params-ran"
    pipeline_shell_block = unique("legacy-shell")
    ShellOperation(commands=[f"touch {pipeline_marker}"]).save(pipeline_shell_block)
    # a deployment of the new flow that still carries only the old parameters runs them the old way
    only_legacy_parameters = {
        "dbt_blocks": [{"blockName": pipeline_shell_block, "seq": 0, "blockType": "Shell Operation"}]
    }

    legacy_run_id = flow_runs.start(legacy_parameters, flow="legacy_pipeline_flow")
    pipeline_run_id = flow_runs.start(only_legacy_parameters)
    legacy_run, pipeline_run = flow_runs.wait(legacy_run_id), flow_runs.wait(pipeline_run_id)

    assert legacy_run.state.type.value == "COMPLETED", legacy_run.state.message
    results = flow_runs.task_results(legacy_run.id)
    assert [(result["slug"], result["type"], result["status"]) for result in results] == [
        (connection_block, "Airbyte Connection", "success"),
        (shell_block, "Shell Operation", "success"),
        (dbt_block, "dbt Core Operation", "success"),
    ]
    assert results[0]["records_synced"] > 0
    assert {node["unique_id"].split(".")[-1] for node in results[2]["nodes"]} == {
        "stg_customers",
        "stg_orders",
        "customer_orders",
        "daily_revenue",
    }
    assert marker.read_text().strip() == "legacy"
    assert duckdb_warehouse.tables("analytics") >= {"customer_orders", "daily_revenue"}

    assert pipeline_run.state.type.value == "COMPLETED", pipeline_run.state.message
    assert [result["slug"] for result in flow_runs.task_results(pipeline_run.id)] == [pipeline_shell_block]
    assert pipeline_marker.exists()
