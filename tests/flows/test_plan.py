"""How a pipeline's tasks are staged: consecutive Airbyte syncs side by side, every other task alone."""

from __future__ import annotations

import pytest

from ddpcontract.tasks import TaskType
from ddpui.flows.pipeline import PipelineTask, plan_stages

KINDS = {"s": TaskType.AIRBYTE_CONNECTION, "g": TaskType.SHELL_OPERATION, "d": TaskType.DBT_CORE_OPERATION}


def tasks(kinds: str) -> list[PipelineTask]:
    return [PipelineTask(seq=seq, slug=kind, type=KINDS[kind], orgtask_uuid=None) for seq, kind in enumerate(kinds)]


@pytest.mark.parametrize(
    ("kinds", "limit", "stages"),
    [
        ("ssssgdd", 4, [[0, 1, 2, 3], [4], [5], [6]]),
        ("ssssgdd", 2, [[0, 1, 2, 3], [4], [5], [6]]),  # the limit applies within the stage
        ("ssssgdd", 1, [[0], [1], [2], [3], [4], [5], [6]]),  # one after the other, as before
        ("sgsd", 4, [[0], [1], [2], [3]]),  # a task between syncs keeps its place
        ("gdss", 4, [[0], [1], [2, 3]]),
        ("s", 4, [[0]]),
        ("dd", 4, [[0], [1]]),
    ],
)
def test_consecutive_syncs_share_a_stage_and_everything_else_runs_alone(kinds, limit, stages):
    assert [[task.seq for task in stage] for stage in plan_stages(tasks(kinds), limit)] == stages
