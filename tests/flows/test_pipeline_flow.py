"""Real runs of prefect_flows.pipeline_flow on the session's Prefect worker.

Worker runs are slow on small machines, so each test groups the assertions about one run, and tests whose
runs are independent start them together before waiting.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.worker]

MODELS = {"stg_customers", "stg_orders", "customer_orders", "daily_revenue"}
PULLED_MODEL = "pulled_marker"


def _assert_common_result_fields(result: dict) -> None:
    for key in ("seq", "slug", "type", "orgtask_uuid", "status", "message", "started_at", "ended_at",
                "duration_seconds", "attempts"):  # fmt: skip
        assert key in result, (key, result)


def _pipeline(tasks, airbyte_connection, repo, git_secret, profile_block) -> list[dict]:
    return [
        tasks.airbyte(0, airbyte_connection),
        tasks.git_pull(1, repo, git_secret),
        tasks.dbt(2, "dbt-deps", "dbt deps", repo, profile_block),
        tasks.dbt(3, "dbt-run", "dbt run", repo, profile_block),
        tasks.dbt(4, "dbt-test", "dbt test", repo, profile_block),
    ]


def test_pipeline_syncs_pulls_and_builds_duckdb_models(
    flow_runs, airbyte, tasks, dbt_repo, tokenised_remote_url, duckdb_warehouse, save_secret
):
    connection_id = airbyte.duckdb_connection(duckdb_warehouse.path)
    git_secret = save_secret("git-url", tokenised_remote_url)
    profile_block = save_secret("dbt-profile", duckdb_warehouse.profile())
    pushed = dbt_repo.push_commit({f"models/marts/{PULLED_MODEL}.sql": "select 1 as pulled\n"}, "add a model")
    config = {"org_slug": "acme", "tasks": _pipeline(tasks, connection_id, dbt_repo, git_secret, profile_block)}
    # legacy parameters beside the config name blocks that do not exist: running them would fail the run
    parameters = {
        "config": config,
        "airbyte_blocks": [{"blockName": "no-such-airbyte-block", "seq": 0}],
        "dbt_blocks": [{"blockName": "no-such-dbt-block", "seq": 1, "blockType": "dbt Core Operation"}],
    }

    run = flow_runs.run(parameters)

    assert run.state.type.value == "COMPLETED", run.state.message
    assert run.state.name == "Completed"
    results = flow_runs.task_results(run.id)
    assert [result["slug"] for result in results] == ["airbyte-sync", "git-pull", "dbt-deps", "dbt-run", "dbt-test"]
    assert [result["status"] for result in results] == ["success"] * 5
    for result, task in zip(results, config["tasks"], strict=True):
        _assert_common_result_fields(result)
        assert result["orgtask_uuid"] == task["orgtask_uuid"]
        assert result["attempts"] == 1
    sync = results[0]
    assert sync["records_synced"] > 0 and isinstance(sync["job_id"], int)
    # the pushed commit was pulled through the URL in the Secret block, and dbt built its model
    assert dbt_repo.head() == pushed
    run_nodes = {node["unique_id"].split(".")[-1]: node for node in results[3]["nodes"]}
    assert set(run_nodes) == MODELS | {PULLED_MODEL}
    assert {node["status"] for node in run_nodes.values()} == {"success"}
    assert results[4]["nodes"] and {node["status"] for node in results[4]["nodes"]} == {"pass"}
    assert duckdb_warehouse.tables("analytics") >= MODELS | {PULLED_MODEL}
    assert duckdb_warehouse.tables("airbyte_raw") >= {"customers", "orders"}
    # neither the token nor the remote URL reaches the logs, not even git's own "From <url>" line
    logs = flow_runs.logs(run.id)
    assert "Fast-forward" in logs and "From ***" in logs
    token = tokenised_remote_url.split("oauth2:")[1].split("@")[0]
    address = tokenised_remote_url.split("@")[1].removesuffix(".git")
    for secret in (token, address):
        assert secret not in logs
        assert secret not in json.dumps(results)
    assert "no-such-airbyte-block" not in json.dumps(results)


def test_pipeline_builds_postgres_models_without_leaking_credentials(
    flow_runs, airbyte, tasks, dbt_repo, postgres_warehouse, save_secret
):
    connection_id = airbyte.postgres_connection(postgres_warehouse)
    git_secret = save_secret("git-url", dbt_repo.url)
    # the proxy may store the profile as a JSON string as well as an object
    profile_block = save_secret("dbt-profile", json.dumps(postgres_warehouse.profile()))
    config = {"tasks": _pipeline(tasks, connection_id, dbt_repo, git_secret, profile_block)}

    run = flow_runs.run({"config": config})

    assert run.state.type.value == "COMPLETED", run.state.message
    results = flow_runs.task_results(run.id)
    assert [result["status"] for result in results] == ["success"] * 5
    assert str(dbt_repo.bare).removesuffix(".git") not in flow_runs.logs(run.id)  # a local path is a secret too
    assert postgres_warehouse.tables("analytics") >= MODELS
    assert postgres_warehouse.tables("airbyte_raw") >= {"customers", "orders"}
    logs = flow_runs.logs(run.id)
    assert "dbt" in logs and "Completed successfully" in logs
    for secret in (postgres_warehouse.password, airbyte.server.credentials[1]):
        assert secret not in logs
        assert secret not in str(results)
        assert secret not in (run.state.message or "")


def test_failing_task_fails_the_run_with_its_slug_and_skips_later_tasks(
    flow_runs, airbyte, tasks, dbt_repo, duckdb_warehouse, save_secret, tmp_path
):
    failing_connection = airbyte.duckdb_connection(tmp_path / "unused.duckdb")
    airbyte.server.configure(fail_connection_ids=[failing_connection])
    profile_block = save_secret("dbt-profile", duckdb_warehouse.profile())
    markers = {kind: tmp_path / f"after-{kind}" for kind in ("airbyte", "shell", "dbt", "invalid")}

    def after(kind: str) -> dict:
        return tasks.shell(1, "after", [f"touch {markers[kind]}"])

    scenarios = {
        "airbyte": [tasks.airbyte(0, failing_connection), after("airbyte")],
        "shell": [tasks.shell(0, "custom-shell", ["echo about to fail", "exit 3", "echo unreachable"]), after("shell")],
        # the warehouse has no source tables yet: the models cannot build
        "dbt": [tasks.dbt(0, "dbt-run", "dbt run", dbt_repo, profile_block), after("dbt")],
        # an invalid config fails the run before any task starts
        "invalid": [after("invalid"), {"seq": 0, "type": "Nope", "slug": "x"}],
    }
    started = {kind: flow_runs.start({"config": {"tasks": config}}) for kind, config in scenarios.items()}
    runs = {kind: flow_runs.wait(flow_run_id) for kind, flow_run_id in started.items()}

    assert runs["invalid"].state.type.value == "FAILED"
    assert "config.tasks[1] has type 'Nope'" in runs["invalid"].state.message
    assert not markers["invalid"].exists()
    del runs["invalid"]
    for kind, run in runs.items():
        assert run.state.type.value == "FAILED", (kind, run.state)
        results = flow_runs.task_results(run.id)
        assert [result["status"] for result in results] == ["failed", "skipped"], (kind, results)
        assert results[1]["attempts"] == 0 and results[1]["started_at"] is None
        assert not markers[kind].exists(), kind
    airbyte_message = runs["airbyte"].state.message
    assert airbyte_message.startswith("task airbyte-sync (seq 0) failed: ")
    assert failing_connection in airbyte_message and "failed" in airbyte_message
    # Airbyte's own reason for the failed job
    assert airbyte_message.endswith("failed: injected failure: connection is listed in fail_connection_ids")
    assert runs["shell"].state.message.startswith("task custom-shell (seq 0) failed: exit code 3")
    assert "about to fail" in runs["shell"].state.message
    assert "unreachable" not in runs["shell"].state.message
    dbt_message = runs["dbt"].state.message
    assert dbt_message.startswith("task dbt-run (seq 0) failed: dbt run exited with code 1")
    assert "model.ddpui_sample.stg_customers" in dbt_message
    dbt_nodes = flow_runs.task_results(runs["dbt"].id)[0]["nodes"]
    assert {node["status"] for node in dbt_nodes} >= {"error"}


def test_failing_dbt_test_completes_as_dbt_test_failed_and_runs_later_tasks(
    flow_runs, tasks, dbt_repo, duckdb_warehouse, save_secret, tmp_path
):
    profile_block = save_secret("dbt-profile", duckdb_warehouse.profile())
    marker = tmp_path / "after-dbt-test"
    config = {
        "tasks": [
            tasks.dbt(
                0,
                "dbt-test",
                "dbt test --select assert_switchable",
                dbt_repo,
                profile_block,
                env={"DDPUI_SAMPLE_FAIL_TEST": "true"},
            ),
            tasks.shell(1, "after", [f"touch {marker}"]),
        ]
    }

    run = flow_runs.run({"config": config})

    assert run.state.type.value == "COMPLETED"
    assert run.state.name == "DBT_TEST_FAILED"
    assert "dbt-test (seq 0)" in run.state.message
    results = flow_runs.task_results(run.id)
    assert [result["status"] for result in results] == ["dbt_test_failed", "success"]
    assert results[0]["nodes"] == [
        {
            "unique_id": "test.ddpui_sample.assert_switchable",
            "status": "fail",
            "execution_time": results[0]["nodes"][0]["execution_time"],
            "message": results[0]["nodes"][0]["message"],
            "models": ["model.ddpui_sample.customer_orders"],  # what the failing test checks (dbt's manifest)
        }
    ]
    assert marker.exists()


def test_retries_back_off_and_timeouts_stop_the_run(flow_runs, slow_airbyte, tasks, tmp_path):
    counter = tmp_path / "attempts"
    # fails on its first two attempts, succeeds on the third
    flaky = f"n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}; echo attempt $n; [ $n -ge 3 ]"
    retry_and_task_timeout = {
        "tasks": [
            tasks.shell(0, "flaky", [flaky], retries=3, retry_delay_seconds=1),
            tasks.shell(1, "slow", ["sleep 60"], timeout_seconds=2),
            tasks.shell(2, "after", [f"touch {tmp_path / 'after'}"]),
        ]
    }
    slow_connection = slow_airbyte.duckdb_connection(tmp_path / "slow.duckdb")
    sync_timeout = {
        "tasks": [
            tasks.airbyte(0, slow_connection, block=slow_airbyte.block_name, timeout=3),
            tasks.shell(1, "after", ["true"]),
        ]
    }
    first = flow_runs.start({"config": retry_and_task_timeout})
    second = flow_runs.start({"config": sync_timeout})
    retry_run, sync_run = flow_runs.wait(first), flow_runs.wait(second)

    assert retry_run.state.type.value == "FAILED"
    assert retry_run.state.message == "task slow (seq 1) failed: shell commands timed out after 2 seconds"
    flaky_result, slow_result, after_result = flow_runs.task_results(retry_run.id)
    assert flaky_result["status"] == "success" and flaky_result["attempts"] == 3
    assert counter.read_text().strip() == "3"
    assert flaky_result["duration_seconds"] >= 1 + 2  # delays 1 s then 2 s: exponential backoff
    assert slow_result["status"] == "failed" and 2 <= slow_result["duration_seconds"] < 30
    assert after_result["status"] == "skipped"

    assert sync_run.state.type.value == "FAILED"
    message = sync_run.state.message
    assert message.startswith("task airbyte-sync (seq 0) failed: ")
    assert slow_connection in message and "did not finish within 3 seconds" in message
    sync_result = flow_runs.task_results(sync_run.id)[0]
    assert sync_result["duration_seconds"] < 30
    jobs = [job for job in slow_airbyte.server.state()["jobs"].values() if job["configId"] == slow_connection]
    assert [job["status"] for job in jobs] == ["cancelled"]  # the flow cancels the sync it stopped waiting for
