"""The orchestration loop: the pipeline's tasks in stages (consecutive Airbyte syncs side by side, every other
task alone, in seq order), each one Prefect task run submitted to the flow's task runner, with retries; the
per-task results published as a table artifact; the flow run's final state decided from them."""

from __future__ import annotations

import queue
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext, TaskRunContext
from prefect.futures import PrefectFuture
from prefect.logging.handlers import APILogHandler
from prefect.states import Cancelled, Completed, Failed, State

from ddpcontract.flows import RESULTS_ARTIFACT_KEY, TaskStatus
from ddpcontract.states import DBT_TEST_FAILED_STATE_NAME
from ddpcontract.tasks import (
    DEFAULT_MAX_PARALLEL_SYNCS,
    AirbyteTaskConfig,
    ShellTaskConfig,
    TaskConfig,
    TaskType,
    pipeline_config_parse,
)
from ddpui.flows import control, workspace
from ddpui.flows.airbyte import run_airbyte_task
from ddpui.flows.attempts import (
    Deadline,
    PipelineFailed,
    TaskCancelled,
    TaskFailed,
    current_attempt,
    raise_if_cancelled,
    retry_unless_permanent,
)
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

    @property
    def key(self) -> str:
        """Names the task across its attempts (of this flow run)."""
        context = TaskRunContext.get()
        return f"{context.task_run.flow_run_id if context else '-'}:{self.seq}:{self.block_name or self.slug}"

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


def _execute_config_task(pipeline_task: PipelineTask, deadline: Deadline) -> dict:
    config = pipeline_task.config
    if isinstance(config, AirbyteTaskConfig):
        return run_airbyte_task(config, task_key=pipeline_task.key)
    if isinstance(config, ShellTaskConfig):
        with workspace.shell_directory(config, deadline) as working_dir:
            return run_shell(build_shell_operation(list(config.commands), working_dir, config.env), deadline)
    with workspace.dbt_project(config, deadline) as project_dir, fresh_profiles_dir() as profiles_dir:
        return run_dbt(build_dbt_operation(config, profiles_dir, project_dir), config.slug, deadline)


def _wait_before_retry(pipeline_task: PipelineTask, attempt: int) -> None:
    """The backoff before attempt `attempt` (2, 3, ...): base * 2**(attempt - 2); ends early on cancel.

    Waited here rather than by Prefect's retry delay, which a cancelled run could not cut short."""
    delay = pipeline_task.retry_delay_seconds * 2 ** (attempt - 2)
    if attempt < 2 or delay <= 0:
        return
    get_run_logger().info(
        "task %s (seq %s): waiting %gs before attempt %s", pipeline_task.slug, pipeline_task.seq, delay, attempt
    )
    if control.current().wait(delay):
        raise TaskCancelled()


@task(name="pipeline-task", cache_policy=NO_CACHE, persist_result=False, retry_condition_fn=retry_unless_permanent)
def run_pipeline_task(pipeline_task: PipelineTask) -> dict:
    """One attempt of one pipeline task; raises TaskFailed (secret-free) when it fails."""
    attempt = current_attempt()
    raise_if_cancelled()
    _wait_before_retry(pipeline_task, attempt)
    deadline = Deadline(pipeline_task.timeout_seconds)
    get_run_logger().info(
        "task %s (seq %s, %s): attempt %s", pipeline_task.slug, pipeline_task.seq, pipeline_task.type.value, attempt
    )
    try:
        if pipeline_task.block_name is not None:
            outcome = execute_legacy_block(pipeline_task.block_name, pipeline_task.type, deadline, pipeline_task.key)
        else:
            outcome = _execute_config_task(pipeline_task, deadline)
    except TaskFailed:
        raise
    except Exception as error:  # noqa: BLE001 - whatever broke, report it without secrets
        raise TaskFailed(f"{type(error).__name__}: {error}") from None
    outcome = redact(outcome)
    outcome["attempts"] = attempt
    return outcome


def _now() -> str:
    return datetime.now(UTC).isoformat()


def plan_stages(pipeline_tasks: list[PipelineTask], max_parallel_syncs: int) -> list[list[PipelineTask]]:
    """The tasks (in seq order) as stages run one after the other: consecutive Airbyte syncs form one stage
    whose syncs run side by side (when more than one may run at once); every other task is a stage alone."""
    stages: list[list[PipelineTask]] = []
    for pipeline_task in pipeline_tasks:
        joins = (
            max_parallel_syncs > 1
            and pipeline_task.type == TaskType.AIRBYTE_CONNECTION
            and stages
            and stages[-1][-1].type == TaskType.AIRBYTE_CONNECTION
        )
        if joins:
            stages[-1].append(pipeline_task)
        else:
            stages.append([pipeline_task])
    return stages


def describe_plan(stages: list[list[PipelineTask]], max_parallel_syncs: int) -> str:
    parts = []
    for stage in stages:
        names = ", ".join(f"{pipeline_task.slug} (seq {pipeline_task.seq})" for pipeline_task in stage)
        parts.append(f"[{names}] side by side, at most {max_parallel_syncs} at a time" if len(stage) > 1 else names)
    return " -> ".join(parts)


# how long a cancelled run waits for its running tasks to report, before it publishes what it knows
_STOP_GRACE_SECONDS = 3


class _Execution:
    """The tasks of one run: submitted to the flow's task runner stage by stage, their results collected."""

    def __init__(self, pipeline_tasks: list[PipelineTask], max_parallel_syncs: int):
        self.pipeline_tasks = pipeline_tasks
        self.max_parallel_syncs = max_parallel_syncs
        # by the task's position: legacy blocks may share a seq (an Airbyte block and a dbt block both 0)
        self.position = {id(pipeline_task): index for index, pipeline_task in enumerate(pipeline_tasks)}
        self.results = [pipeline_task.result_skeleton() for pipeline_task in pipeline_tasks]
        self.running: dict[int, tuple[PipelineTask, float, PrefectFuture]] = {}
        self.finished: queue.Queue[tuple[int, float, str]] = queue.Queue()
        self.failures: list[dict] = []

    def run(self) -> None:
        stages = plan_stages(self.pipeline_tasks, self.max_parallel_syncs)
        get_run_logger().info(
            "%s task(s): %s", len(self.pipeline_tasks), describe_plan(stages, self.max_parallel_syncs)
        )
        for stage in stages:
            if self.failures:
                break  # later stages stay skipped
            self._run_stage(stage, limit=self.max_parallel_syncs if len(stage) > 1 else 1)

    def _run_stage(self, stage: list[PipelineTask], limit: int) -> None:
        waiting = list(stage)
        while waiting or self.running:
            while waiting and len(self.running) < limit and not self.failures:
                self._submit(waiting.pop(0))
            if not self.running:
                return  # a failure keeps the stage's waiting tasks from starting: they stay skipped
            result = self._collect(*self._next_finished())
            if result["status"] == TaskStatus.FAILED:
                self.failures.append(result)

    def _submit(self, pipeline_task: PipelineTask) -> None:
        index = self.position[id(pipeline_task)]
        self.results[index]["started_at"] = _now()
        runner = run_pipeline_task.with_options(
            task_run_name=f"{pipeline_task.seq}-{pipeline_task.slug}",
            retries=pipeline_task.retries,
            retry_delay_seconds=0,
        )
        started = time.monotonic()
        future = runner.submit(pipeline_task)
        self.running[index] = (pipeline_task, started, future)
        future.add_done_callback(lambda _future: self.finished.put((index, time.monotonic(), _now())))

    def _next_finished(self, timeout: float | None = None) -> tuple[int, float, str]:
        """The next task to finish; short waits in a loop, so a cancel (raised in this thread) is seen at once."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0:
                raise queue.Empty
            try:
                return self.finished.get(timeout=wait)
            except queue.Empty:
                continue

    def _collect(self, index: int, ended: float, ended_at: str) -> dict:
        pipeline_task, started, future = self.running.pop(index)
        result = self.results[index]
        try:
            outcome = future.result()
            result.update(outcome)
            result["status"] = outcome.get("status", TaskStatus.SUCCESS)
        except TaskCancelled as error:
            result.update(error.details)
            result.update(status=TaskStatus.CANCELLED, message=error.message, attempts=error.attempts)
        except TaskFailed as error:
            result.update(error.details)
            result.update(status=TaskStatus.FAILED, message=error.message, attempts=error.attempts)
        except Exception as error:  # noqa: BLE001 - e.g. the task run crashed before our code ran
            result.update(status=TaskStatus.FAILED, message=redact(f"{type(error).__name__}: {error}"), attempts=1)
        if control.current().stopping and result["status"] == TaskStatus.FAILED:
            result["status"] = TaskStatus.CANCELLED  # it failed because we stopped it
        result["status"] = TaskStatus(result["status"]).value
        result["ended_at"] = ended_at
        result["duration_seconds"] = round(ended - started, 3)
        if result["status"] == TaskStatus.DBT_TEST_FAILED:
            get_run_logger().warning("task %s (seq %s): %s", result["slug"], result["seq"], result["message"])
        return result

    def stop(self) -> None:
        """The run is being cancelled: stop every running task, and record how each one ended."""
        control.current().stop_everything()
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        while self.running and time.monotonic() < deadline:
            try:
                self._collect(*self._next_finished(timeout=deadline - time.monotonic()))
            except queue.Empty:
                break
        for index in list(self.running):
            pipeline_task, started, _future = self.running.pop(index)
            self.results[index].update(
                status=TaskStatus.CANCELLED.value,
                message="stopped: the flow run was cancelled",
                ended_at=_now(),
                duration_seconds=round(time.monotonic() - started, 3),
            )

    def ordered_results(self) -> list[dict]:
        return redact(list(self.results))


def _end_cancelled_run() -> None:
    """A run being cancelled whose tasks are all stopped is Cancelled now: the worker would only say so a few
    seconds after this process has exited. Any other interruption is left to Prefect (it ends Crashed)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    with suppress(Exception), get_client(sync_client=True) as client:
        state = client.read_flow_run(context.flow_run.id).state
        if state is not None and state.is_cancelling():
            client.set_flow_run_state(
                context.flow_run.id, Cancelled(message=state.message or "the flow run was cancelled")
            )
            get_run_logger().info("every running task was stopped: the flow run is cancelled")


def _publish(results: list[dict]) -> None:
    create_table_artifact(
        key=RESULTS_ARTIFACT_KEY,
        table=results,
        description="One row per pipeline task: status, timings, attempts and type-specific results.",
    )


def _send_logs() -> None:
    """Sends the run's queued log lines to Prefect now (waiting at most 5 s), before the engine records the
    final state: whoever reads the logs once the run has ended (a one-off task run's answer, an alert's last
    lines) then finds them all. Prefect's own batching would send the last ones up to seconds later."""
    with suppress(Exception):
        APILogHandler().flush()  # an instance's: `flush` is not a class method


def run_pipeline(pipeline_tasks: list[PipelineTask], max_parallel_syncs: int = DEFAULT_MAX_PARALLEL_SYNCS) -> State:
    """Run the tasks (syncs side by side, the rest in turn), publish their results, decide the final state.

    When the run is cancelled (Prefect raises the worker's SIGTERM in this thread), every running task is
    stopped — Airbyte jobs cancelled, commands' process groups killed — and the results published before
    the cancellation goes on."""
    control.start_run()
    execution = _Execution(pipeline_tasks, max_parallel_syncs)
    try:
        execution.run()
    except BaseException:
        execution.stop()
        with suppress(Exception):
            _publish(execution.ordered_results())
        _send_logs()
        _end_cancelled_run()
        raise
    results = execution.ordered_results()
    _publish(results)
    _send_logs()
    failures = [result for result in results if result["status"] == TaskStatus.FAILED]
    if failures:
        message = "; ".join(
            f"task {result['slug']} (seq {result['seq']}) failed: {result['message']}" for result in failures
        )
        # a failed state carries an exception (the engine raises it); the results travel with it
        return Failed(message=message, data=PipelineFailed(message, results))
    test_failures = [result for result in results if result["status"] == TaskStatus.DBT_TEST_FAILED]
    if test_failures:
        names = ", ".join(f"{result['slug']} (seq {result['seq']})" for result in test_failures)
        return Completed(name=DBT_TEST_FAILED_STATE_NAME, message=f"dbt tests failed in {names}", data=results)
    return Completed(message=f"{len(results)} task(s) succeeded", data=results)


def config_tasks(config: dict) -> tuple[list[PipelineTask], int]:
    """The tasks of the `config` parameter, in seq order, and how many syncs may run at once; ValueError
    (TaskConfigError) if it breaks the contract."""
    parsed = pipeline_config_parse(config)
    tasks = [
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
        for task_config in parsed.tasks
    ]
    return tasks, parsed.max_parallel_syncs or DEFAULT_MAX_PARALLEL_SYNCS


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
            return run_pipeline(*config_tasks(config))
        # the legacy blocks run as the old flow ran them: one after the other
        return run_pipeline(legacy_tasks(airbyte_blocks, dbt_blocks), max_parallel_syncs=1)


def legacy_pipeline_flow_run(airbyte_blocks: list | None, dbt_blocks: list | None) -> State:
    """The body of the `legacy-pipeline` flow: the legacy blocks only."""
    with redacted_logging():
        return run_pipeline(legacy_tasks(airbyte_blocks, dbt_blocks), max_parallel_syncs=1)
