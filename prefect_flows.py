"""The flows the Prefect worker runs for ddpui: the entrypoints deployments name (`ddpcontract.flows`).

`pipeline_flow` runs an ordered list of tasks described by plain dicts in the deployment's parameters and
builds every Airbyte / shell / dbt operation in memory; only the Airbyte server block and Secret blocks are
read from Prefect. `legacy_pipeline_flow` runs the persisted operation blocks of the old block-based world.
The contract (parameters, results, the "task-results" artifact) is described in docs/flows.md; the flows'
body lives in `ddpui/flows/`.

Nothing imported here imports Django or the proxy: the worker runs it on its own.
"""

from __future__ import annotations

from prefect import flow

from ddpcontract.flows import FlowName
from ddpui.flows.attempts import PipelineFailed
from ddpui.flows.pipeline import legacy_pipeline_flow_run, pipeline_flow_run, run_pipeline_task
from ddpui.flows.profiles import ProfileError, build_dbt_cli_profile, render_profile


@flow(name=FlowName.PIPELINE.value)
def pipeline_flow(config: dict | None = None, airbyte_blocks: list | None = None, dbt_blocks: list | None = None):
    """Run a pipeline: `config["tasks"]` in seq order (its Airbyte syncs side by side), or, when no config is
    given, the legacy blocks."""
    return pipeline_flow_run(config, airbyte_blocks, dbt_blocks)


@flow(name=FlowName.LEGACY_PIPELINE.value)
def legacy_pipeline_flow(
    airbyte_blocks: list | None = None, dbt_blocks: list | None = None, config: dict | None = None
):
    """Run the persisted AirbyteConnection / ShellOperation / DbtCoreOperation blocks named in the parameters.

    `config` is accepted and ignored: during the block-to-task migration a deployment carries the old
    and the new parameters while it still runs this flow."""
    return legacy_pipeline_flow_run(airbyte_blocks, dbt_blocks)


__all__ = [
    "PipelineFailed",
    "ProfileError",
    "build_dbt_cli_profile",
    "legacy_pipeline_flow",
    "pipeline_flow",
    "render_profile",
    "run_pipeline_task",
]
