"""Which tasks a resumed run runs again: the failed ones and those that never ran or were stopped."""

from __future__ import annotations

import pytest

from ddpui.services.run_control import resume_tasks


def tasks(count: int) -> list[dict]:
    return [{"seq": seq, "slug": f"t{seq}"} for seq in range(count)]


def results(*statuses: str) -> list[dict]:
    return [{"seq": seq, "slug": f"t{seq}", "status": status} for seq, status in enumerate(statuses)]


@pytest.mark.parametrize(
    ("count", "statuses", "again"),
    [
        (5, ("success", "success", "failed", "skipped", "skipped"), [2, 3, 4]),  # the third task failed
        (2, ("failed", "skipped"), [0, 1]),
        (4, ("success", "failed", "success", "skipped"), [1, 3]),  # a sync failed beside others that succeeded
        (3, ("success", "cancelled", "skipped"), [1, 2]),  # cancelled while the second task ran
        (2, ("dbt_test_failed", "failed"), [1]),  # failed tests let the run go on: not run again
        (2, ("success", "success"), []),
        (3, (), [0, 1, 2]),  # no results: the run crashed before publishing them
        (3, ("success",), [1, 2]),  # tasks without a result run again
    ],
)
def test_the_failed_task_and_those_after_it_run_again(count, statuses, again):
    assert [task["seq"] for task in resume_tasks(tasks(count), results(*statuses))] == again


def test_tasks_come_back_in_seq_order():
    shuffled = [{"seq": 2, "slug": "c"}, {"seq": 0, "slug": "a"}, {"seq": 1, "slug": "b"}]
    assert [task["slug"] for task in resume_tasks(shuffled, results("success", "failed", "skipped"))] == ["b", "c"]
