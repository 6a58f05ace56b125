"""Airbyte hiccups while a sync runs (5xx, dropped connections, lost answers, a restart): the same job is asked
again until it ends, a second sync of the connection is never started, and a retry joins the job its previous
attempt left running. Against the emulator's injected faults, in this process (no worker needed)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from ddpui.flows.airbyte import AirbyteApi, SyncSpec, run_sync
from ddpui.flows.attempts import TaskFailed, TaskTimedOut
from devtools.airbyte_emulator import DUCKDB_DESTINATION_DEFINITION_ID, SAMPLE_SOURCE_DEFINITION_ID, EmulatorServer


@pytest.fixture(scope="module")
def emulator():
    server = EmulatorServer(host="127.0.0.1", port=0, username="airbyte", password="hiccup-password")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def connection_id(emulator, tmp_path) -> str:
    """A new connection of the emulator, whose syncs take a second."""
    emulator.configure(sync_seconds=1, faults=[], fault_routes=[], restart_seconds=0, fail_connection_ids=[])
    with httpx.Client(base_url=emulator.api_url, auth=("airbyte", "hiccup-password"), timeout=10) as api:

        def post(path: str, body: dict) -> dict:
            response = api.post(path, json=body)
            response.raise_for_status()
            return response.json()

        workspace = post("/workspaces/create/", {"name": "hiccups"})["workspaceId"]
        source = post(
            "/sources/create/",
            {"workspaceId": workspace, "name": "sample", "sourceDefinitionId": SAMPLE_SOURCE_DEFINITION_ID},
        )["sourceId"]
        destination = post(
            "/destinations/create/",
            {
                "workspaceId": workspace,
                "name": "duckdb",
                "destinationDefinitionId": DUCKDB_DESTINATION_DEFINITION_ID,
                "connectionConfiguration": {"destination_path": str(tmp_path / "wh.duckdb"), "schema": "raw"},
            },
        )["destinationId"]
        return post("/connections/create/", {"sourceId": source, "destinationId": destination})["connectionId"]


@pytest.fixture
def api(emulator):
    client = AirbyteApi(emulator.api_url, "airbyte", "hiccup-password")
    yield client
    client.close()


def jobs_of(emulator, connection_id: str) -> list[dict]:
    return [job for job in emulator.state()["jobs"].values() if job["configId"] == connection_id]


def spec(connection_id: str, *, limit: float | None = 60, key: str = "run:0") -> SyncSpec:
    return SyncSpec(connection_id=connection_id, poll_seconds=0.2, limit_seconds=limit, task_key=key)


def wait_until(condition, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return value


def test_5xx_resets_and_a_lost_sync_answer_end_in_one_succeeded_job(emulator, api, connection_id):
    # the sync request is handled but its answer lost; then three polls of the job fail
    emulator.configure(faults=["lost", 502, "reset", 503], fault_routes=["connections/sync", "jobs/get"])

    result = run_sync(api, spec(connection_id))

    jobs = jobs_of(emulator, connection_id)
    assert [job["status"] for job in jobs] == ["succeeded"]  # the lost answer did not start a second sync
    assert result["job_id"] == jobs[0]["id"] and result["job_status"] == "succeeded"
    assert result["records_synced"] > 0
    assert result["hiccups"] == 4
    assert emulator.configure()["faults"] == []


def test_a_restart_while_the_sync_runs_is_waited_out(emulator, api, connection_id):
    emulator.configure(sync_seconds=2)
    # Airbyte restarts while the first poll is due: every request is dropped for 1.5 s
    emulator.configure(faults=[503], fault_routes=["jobs/get"])
    started = time.monotonic()
    emulator.configure(restart_seconds=1.5)

    result = run_sync(api, spec(connection_id))

    assert result["job_status"] == "succeeded" and result["hiccups"] >= 2
    assert [job["status"] for job in jobs_of(emulator, connection_id)] == ["succeeded"]
    assert time.monotonic() - started >= 1.5


def test_a_job_that_really_fails_is_reported_with_airbytes_reason(emulator, api, connection_id):
    emulator.configure(fail_connection_ids=[connection_id], faults=[502], fault_routes=["jobs/get"])

    with pytest.raises(TaskFailed) as failure:
        run_sync(api, spec(connection_id))

    job = jobs_of(emulator, connection_id)[0]
    assert failure.value.message == (
        f"sync of connection {connection_id} (job {job['id']}) failed: "
        "injected failure: connection is listed in fail_connection_ids"
    )
    assert failure.value.details["job_id"] == job["id"] and not failure.value.permanent


def test_a_retry_joins_the_job_its_previous_attempt_left_running(emulator, api, connection_id):
    emulator.configure(sync_seconds=7)

    def restart_once_the_sync_runs() -> None:
        wait_until(lambda: jobs_of(emulator, connection_id))
        emulator.configure(restart_seconds=5)

    # the first attempt's limit passes while Airbyte restarts, so it cannot even cancel its job
    restarter = threading.Thread(target=restart_once_the_sync_runs)
    restarter.start()
    with pytest.raises(TaskTimedOut) as timed_out:
        run_sync(api, spec(connection_id, limit=1.5, key="run:0"))
    restarter.join()
    assert "did not finish within 1.5 seconds" in timed_out.value.message
    first_job = timed_out.value.details["job_id"]

    result = run_sync(api, spec(connection_id, key="run:0"))

    assert result["job_id"] == first_job
    assert [job["status"] for job in jobs_of(emulator, connection_id)] == ["succeeded"]


@pytest.mark.prefect
@pytest.mark.worker
def test_a_pipeline_whose_syncs_meet_5xx_bursts_completes_with_one_job_per_connection(
    flow_runs, airbyte, tasks, tmp_path
):
    connections = [airbyte.duckdb_connection(tmp_path / f"wh{n}.duckdb") for n in range(2)]
    airbyte.server.configure(
        faults=["lost", 502, 503, "reset", 500, 502], fault_routes=["connections/sync", "jobs/get"]
    )
    try:
        run = flow_runs.run({"config": {"tasks": [tasks.airbyte(seq, c) for seq, c in enumerate(connections)]}})
    finally:
        leftover = airbyte.server.configure(faults=[], fault_routes=[])

    assert run.state.type.value == "COMPLETED", run.state.message
    assert leftover["faults"] == []  # every fault was met
    results = flow_runs.task_results(run.id)
    assert [result["job_status"] for result in results] == ["succeeded", "succeeded"]
    assert sum(result["hiccups"] for result in results) == 6
    for connection_id, result in zip(connections, results, strict=True):
        assert [job["id"] for job in jobs_of(airbyte.server, connection_id)] == [result["job_id"]]
