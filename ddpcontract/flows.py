"""The flows the workers run: their entrypoints, names and parameters, and the results they publish."""

from __future__ import annotations

from enum import StrEnum


class Entrypoint(StrEnum):
    """What a deployment names to run (the file is relative to the worker's flows directory)."""

    PIPELINE = "prefect_flows.py:pipeline_flow"
    LEGACY_PIPELINE = "prefect_flows.py:legacy_pipeline_flow"


class FlowName(StrEnum):
    PIPELINE = "pipeline"
    LEGACY_PIPELINE = "legacy-pipeline"


# The flow each entrypoint holds; a deployment is registered under this flow unless the caller names one.
FLOW_NAME_BY_ENTRYPOINT = {
    Entrypoint.PIPELINE: FlowName.PIPELINE,
    Entrypoint.LEGACY_PIPELINE: FlowName.LEGACY_PIPELINE,
}

# The parameters each flow accepts: Prefect would fail a run that passes any other. The legacy flow
# accepts and ignores `config`, so a migrating deployment can carry old + new parameters.
PARAMETERS_BY_ENTRYPOINT = {
    Entrypoint.PIPELINE: frozenset({"config", "airbyte_blocks", "dbt_blocks"}),
    Entrypoint.LEGACY_PIPELINE: frozenset({"airbyte_blocks", "dbt_blocks", "config"}),
}

# The key of the table artifact in which a run publishes one row per task.
RESULTS_ARTIFACT_KEY = "task-results"


class TaskStatus(StrEnum):
    """A task's `status` in the run's results."""

    SUCCESS = "success"
    FAILED = "failed"
    DBT_TEST_FAILED = "dbt_test_failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"  # running when the run was cancelled
