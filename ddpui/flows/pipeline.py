"""The orchestration loop: the pipeline's tasks in order, each one Prefect task run with Prefect's retries;
the per-task results published as a table artifact; the flow run's final state decided from them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from ddpcontract.flows import RESULTS_ARTIFACT_KEY, TaskStatus
from ddpcontract.states import DBT_TEST_FAILED_STATE_NAME
from ddpcontract.tasks import AirbyteTaskConfig, ShellTaskConfig, TaskConfig, TaskType, pipeline_config_parse
from ddpui.flows.airbyte import airbyte_connection, airbyte_limit, run_airbyte
from ddpui.flows.attempts import Deadline, PipelineFailed, TaskFailed, current_attempt, retry_unless_permanent
from ddpui.flows.dbt import build_dbt_operation, fresh_profiles_dir, run_dbt
from ddpui.flows.legacy import execute_legacy_block, legacy_blocks
from ddpui.flows.redaction import redact, redacted_logging
from ddpui.flows.shell import build_shell_operation, run_shell


@dataclass
class PipelineTask:
    """A task of the pipeline: a task of the config, or a legacy block named in the legacy parameters."""

    seq: int
    slug: str
    type: TaskType
    orgtask_uuid: str | None
    config: TaskConfig | None = None
    block_name: str | None = None
    retries: int = 0
    retry_delay_seconds: float = 0
    timeout_seconds: float | None = None

    def result_skeleton(self) -> dict:
        return {
            "seq": self.seq,
            "slug": self.slug,
            "type": self.type.value,
            "orgtask_uuid": self.orgtask_uuid,
            "status": TaskStatus.SKIPPED.value,
            "message": "",
            "started_at": None,
            "ended_at": None,
            "duration_seconds": None,
            "attempts": 0,
        }


def _execute_config_task(config: TaskConfig, deadline: Deadline) -> dict:
    if isinstance(config, AirbyteTaskConfig):
        return run_airbyte(airbyte_connection(config), airbyte_limit(config))
    if isinstance(config, ShellTaskConfig):
        return run_shell(build_shell_operation(list(config.commands), config.working_dir, config.env), deadline)
    with fresh_profiles_dir() as profiles_dir:
        return run_dbt(build_dbt_operation(config, profiles_dir), config.slug, deadline)


@task(name="pipeline-task", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_unless_permanent)
def run_pipeline_task(pipeline_task: PipelineTask) -> dict:
    """One attempt of one pipeline task; raises TaskFailed (secret-free) when it fails."""
    deadline = Deadline(pipeline_task.timeout_seconds)
    logger = get_run_logger()
    logger.info(
        "task %s (seq %s, %s): attempt %s",
        pipeline_task.slug,
        pipeline_task.seq,
        pipeline_task.type.value,
        current_attempt(),
    )
    try:
        if pipeline_task.block_name is not None:
            outcome = execute_legacy_block(pipeline_task.block_name, pipeline_task.type, deadline)
        else:
            outcome = _execute_config_task(pipeline_task.config, deadline)
    except TaskFailed:
        raise
    except Exception as error:  # noqa: BLE001 - whatever broke, report it without secrets
        raise TaskFailed(f"{type(error).__name__}: {error}") from None
    outcome = redact(outcome)
    outcome["attempts"] = current_attempt()
    return outcome


def _retry_delays(pipeline_task: PipelineTask) -> list[float]:
    return [pipeline_task.retry_delay_seconds * 2**attempt for attempt in range(pipeline_task.retries)]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _run_one(pipeline_task: PipelineTask) -> dict:
    result = pipeline_task.result_skeleton()
    result["started_at"] = _now()
    started = time.monotonic()
    runner = run_pipeline_task.with_options(
        task_run_name=f"{pipeline_task.seq}-{pipeline_task.slug}",
        retries=pipeline_task.retries,
        retry_delay_seconds=_retry_delays(pipeline_task) or 0,
    )
    try:
        outcome = runner(pipeline_task)
        result.update(outcome)
        result["status"] = outcome.get("status", TaskStatus.SUCCESS)
    except TaskFailed as error:
        result.update(error.details)
        result.update(status=TaskStatus.FAILED, message=error.message, attempts=error.attempts)
    except Exception as error:  # noqa: BLE001 - e.g. the task run crashed before our code ran
        result.update(status=TaskStatus.FAILED, message=redact(f"{type(error).__name__}: {error}"), attempts=1)
    result["status"] = TaskStatus(result["status"]).value
    result["ended_at"] = _now()
    result["duration_seconds"] = round(time.monotonic() - started, 3)
    return result


def run_pipeline(pipeline_tasks: list[PipelineTask]) -> State:
    """Run the tasks in order, publish their results, and decide the flow run's final state."""
    logger = get_run_logger()
    results: list[dict] = []
    failure: dict | None = None
    for pipeline_task in pipeline_tasks:
        if failure is not None:
            results.append(pipeline_task.result_skeleton())
            continue
        result = _run_one(pipeline_task)
        results.append(result)
        if result["status"] == TaskStatus.FAILED:
            failure = result
        elif result["status"] == TaskStatus.DBT_TEST_FAILED:
            logger.warning("task %s (seq %s): %s", result["slug"], result["seq"], result["message"])

    results = redact(results)
    create_table_artifact(
        key=RESULTS_ARTIFACT_KEY,
        table=results,
        description="One row per pipeline task: status, timings, attempts and type-specific results.",
    )
    if failure is not None:
        message = f"task {failure['slug']} (seq {failure['seq']}) failed: {failure['message']}"
        # a failed state carries an exception (the engine raises it); the results travel with it
        return Failed(message=message, data=PipelineFailed(message, results))
    test_failures = [result for result in results if result["status"] == TaskStatus.DBT_TEST_FAILED]
    if test_failures:
        names = ", ".join(f"{result['slug']} (seq {result['seq']})" for result in test_failures)
        return Completed(name=DBT_TEST_FAILED_STATE_NAME, message=f"dbt tests failed in {names}", data=results)
    return Completed(message=f"{len(results)} task(s) succeeded", data=results)


def config_tasks(config: dict) -> list[PipelineTask]:
    """The tasks of the `config` parameter, in seq order; ValueError (TaskConfigError) if it breaks the contract."""
    return [
        PipelineTask(
            seq=task_config.seq,
            slug=task_config.slug,
            type=TaskType(task_config.type),
            orgtask_uuid=task_config.orgtask_uuid,
            config=task_config,
            retries=task_config.retries,
            retry_delay_seconds=float(task_config.retry_delay_seconds),
            timeout_seconds=float(task_config.timeout_seconds) if task_config.timeout_seconds else None,
        )
        for task_config in pipeline_config_parse(config).tasks
    ]


def legacy_tasks(airbyte_blocks: list | None, dbt_blocks: list | None) -> list[PipelineTask]:
    """The legacy blocks as pipeline tasks; in results, `slug` is the block name."""
    return [
        PipelineTask(seq=seq, slug=name, type=block_type, orgtask_uuid=None, block_name=name)
        for seq, name, block_type in legacy_blocks(airbyte_blocks, dbt_blocks)
    ]


def pipeline_flow_run(config: dict | None, airbyte_blocks: list | None, dbt_blocks: list | None) -> State:
    """The body of the `pipeline` flow: `config` when given, else the legacy blocks."""
    with redacted_logging():
        if config:
            if airbyte_blocks or dbt_blocks:
                get_run_logger().info("config is present: the legacy airbyte_blocks / dbt_blocks are ignored")
            return run_pipeline(config_tasks(config))
        return run_pipeline(legacy_tasks(airbyte_blocks, dbt_blocks))


def legacy_pipeline_flow_run(airbyte_blocks: list | None, dbt_blocks: list | None) -> State:
    """The body of the `legacy-pipeline` flow: the legacy blocks only."""
    with redacted_logging():
        return run_pipeline(legacy_tasks(airbyte_blocks, dbt_blocks))
