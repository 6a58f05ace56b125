"""A pipeline's Airbyte syncs run side by side (at most `max_parallel_syncs` at a time), each its own Prefect
task run; the tasks after them start when every sync has ended, and not at all when one failed. Real runs on
the session's worker against the emulator."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.worker]


@pytest.fixture
def two_second_syncs(airbyte):
    airbyte.server.configure(sync_seconds=2)
    yield airbyte
    airbyte.server.configure(sync_seconds=0.2)


def span(result: dict) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(result["started_at"]), datetime.fromisoformat(result["ended_at"])


def jobs_of(airbyte, connection_id: str) -> list[dict]:
    return [job for job in airbyte.server.state()["jobs"].values() if job["configId"] == connection_id]


def test_syncs_run_side_by_side_within_the_limit_and_the_rest_waits_for_all_of_them(
    flow_runs, two_second_syncs, tasks, tmp_path
):
    airbyte = two_second_syncs
    syncs = {name: airbyte.duckdb_connection(tmp_path / f"{name}.duckdb") for name in "abcdefgh"}
    airbyte.server.configure(fail_connection_ids=[syncs["e"]])

    def after(seq: int, marker: str) -> dict:
        return tasks.shell(seq, "after-syncs", [f"touch {tmp_path / marker}"])

    configs = {
        # three syncs, at most two at a time
        "limited": {
            "max_parallel_syncs": 2,
            "tasks": [*(tasks.airbyte(seq, syncs[name]) for seq, name in enumerate("abc")), after(3, "limited")],
        },
        # the default limit (4): all three at once; one fails, the others finish, the shell task never starts
        "failing": {
            "tasks": [*(tasks.airbyte(seq, syncs[name]) for seq, name in enumerate("def")), after(3, "failing")]
        },
        # 1: one after the other, as before parallel syncs existed
        "in_turn": {"max_parallel_syncs": 1, "tasks": [tasks.airbyte(0, syncs["g"]), tasks.airbyte(1, syncs["h"])]},
    }
    started = {name: flow_runs.start({"config": config}) for name, config in configs.items()}
    runs = {name: flow_runs.wait(flow_run_id) for name, flow_run_id in started.items()}

    limited = flow_runs.task_results(runs["limited"].id)
    assert runs["limited"].state.type.value == "COMPLETED", runs["limited"].state.message
    assert [result["status"] for result in limited] == ["success"] * 4
    (a_start, a_end), (b_start, b_end), (c_start, c_end) = (span(result) for result in limited[:3])
    assert max(a_start, b_start) < min(a_end, b_end)  # the first two overlap
    assert c_start >= min(a_end, b_end)  # the third waits for a free slot
    assert span(limited[3])[0] >= max(a_end, b_end, c_end)  # the shell task waits for every sync
    assert (tmp_path / "limited").exists()
    for name in "abc":
        assert [job["status"] for job in jobs_of(airbyte, syncs[name])] == ["succeeded"]

    failing = runs["failing"]
    assert failing.state.type.value == "FAILED"
    assert failing.state.message.startswith(f"task airbyte-sync (seq 1) failed: sync of connection {syncs['e']} (job ")
    assert "injected failure: connection is listed in fail_connection_ids" in failing.state.message
    results = flow_runs.task_results(failing.id)
    assert [result["status"] for result in results] == ["success", "failed", "success", "skipped"]
    spans = [span(result) for result in results[:3]]
    assert max(start for start, _ in spans) < min(end for _, end in spans)  # all three ran at once
    assert not (tmp_path / "failing").exists()

    in_turn = flow_runs.task_results(runs["in_turn"].id)
    assert runs["in_turn"].state.type.value == "COMPLETED"
    assert span(in_turn[1])[0] >= span(in_turn[0])[1]

    # one Prefect task run per task, named after it: Prefect's UI shows the branches
    deadline = time.monotonic() + 30
    while set(flow_runs.task_runs(runs["limited"].id)) != {
        "0-airbyte-sync",
        "1-airbyte-sync",
        "2-airbyte-sync",
        "3-after-syncs",
    }:
        assert time.monotonic() < deadline, flow_runs.task_runs(runs["limited"].id)
        time.sleep(0.5)
