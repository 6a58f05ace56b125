"""Fuzzing: every operation of the Django API's OpenAPI schema, driven by schemathesis, as a real user of a
fully set-up org, against the real proxy and the Airbyte emulator.

Proves: no 5xx; every response has a documented status code, content type and body schema; every 4xx
carries `{"detail": "<message>"}`; an operation that declares auth refuses requests without it.
Path parameters are either generated or (one case in three) the seeded org's real ids, so the handlers
behind the 404 are exercised too. No operation is excluded: runs are created on a work pool no worker
polls, so a fuzzed trigger starts no real work.
"""

from __future__ import annotations

import pytest
import schemathesis

from ddpui.models import Org, TaskProgress
from ddpui.wsgi import application
from devtools.airbyte_emulator import DUCKDB_DESTINATION_DEFINITION_ID, SAMPLE_SOURCE_DEFINITION_ID
from tests.support.orgsetup import make_sample_git_repo, setup_org_via_api

from .conftest import RecordingClient, unique_email
from .fuzzing import fuzz_failures, operations_of

# transaction=True: schemathesis calls the real WSGI handler, which closes the database connection after each
# request as in production, so the test cannot keep everything inside one transaction
pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.prefect, pytest.mark.slow]


@pytest.fixture
def seeded_org(idle_pool, tmp_path):
    """An org set up through the API, with a pipeline (sync + transform tasks) and one queued run."""
    client = RecordingClient()
    setup = setup_org_via_api(
        client,
        email=unique_email("fuzz"),
        password="fuzz-password-1",
        org_name="Fuzz Org",
        warehouse_path_or_pg=tmp_path / "warehouse.duckdb",
        git_repo_url=make_sample_git_repo(tmp_path),
    )
    tasks = setup["transform_tasks"]
    body = {
        "name": "fuzzed pipeline",
        "connections": [{"id": setup["connection_id"], "seq": 0}],
        "transformTasks": [{"uuid": tasks[slug], "seq": i + 1} for i, slug in enumerate(["git-pull", "dbt-run"])],
        "cron": "0 3 * * *",
    }
    created = client.post("/api/prefect/v1/flows/", body, content_type="application/json", **setup["headers"])
    assert created.status_code == 200, created.content
    pipeline_id = created.json()["deploymentId"]
    run = client.post(f"/api/prefect/v1/flows/{pipeline_id}/flow_run/", **setup["headers"])
    assert run.status_code == 200, run.content
    task = TaskProgress.objects.create(
        org=Org.objects.get(slug=setup["org_slug"]),
        kind="dbt-workspace-setup",
        resource="dbt-workspace",
        status=TaskProgress.Status.COMPLETED,
        steps=[{"stepnum": 1, "status": "completed", "message": "dbt workspace ready"}],
    )
    real_ids = {
        "destination_id": [setup["destination_id"]],
        "source_id": [setup["source_id"]],
        "connection_id": [setup["connection_id"]],
        "orgtask_uuid": [setup["sync_task_uuid"], *tasks.values()],
        "deployment_id": [pipeline_id, setup["deployment_id"]],
        "flow_run_id": [run.json()["flow_run_id"]],
        "definition_id": [SAMPLE_SOURCE_DEFINITION_ID, DUCKDB_DESTINATION_DEFINITION_ID],
        "task_id": [str(task.task_id)],
        "name": ["default"],  # the org's dbt target made with its workspace (/api/v1/dbt/targets/{name}/)
        "slug": ["dbt-run", "git-pull"],  # master-list task slugs (GET /api/data/tasks/{slug}/config/)
    }
    return setup, real_ids


def test_every_operation_survives_fuzzing(seeded_org):
    setup, real_ids = seeded_org
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", application)
    operations = operations_of(schema, real_ids)
    assert len(operations) >= 40, "the schema lost operations"
    headers = {"Authorization": f"Bearer {setup['token']}", "x-dalgo-org": setup["org_slug"]}
    failures = fuzz_failures(operations, real_ids, headers=headers)
    assert not failures, "\n\n".join(failures)
