"""Fixtures for the block-to-task migration tests: a legacy installation (devtools/legacy_install) of two orgs on
the session's real Prefect server, the real proxy and the Airbyte emulator; helpers to run the commands and to
snapshot everything the migration could touch (Django rows, Prefect deployments and blocks)."""

from __future__ import annotations

import os
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from ddpui import models
from devtools.legacy_install import AirbyteTarget, LegacyOrgInstall, build_legacy_install
from tests.conftest import TEST_WORK_POOL
from tests.support.prefect_rest import prefect_client

SNAPSHOT_MODELS = [
    models.Org,
    models.OrgWarehouse,
    models.OrgDbt,
    models.OrgPrefectBlock,
    models.OrgDataFlow,
    models.DataflowBlock,
    models.BlockLock,
    models.OrgPrefectBlockv1,
    models.OrgTask,
    models.OrgDataFlowv1,
    models.DataflowOrgTask,
    models.TaskLock,
    models.AuditEvent,
]


class Commands:
    """Runs the two management commands in-process; returns (succeeded, output)."""

    @staticmethod
    def run(name: str, *args: str) -> tuple[bool, str]:
        out = StringIO()
        try:
            call_command(name, *args, stdout=out)
        except CommandError as error:
            return False, f"{out.getvalue()}\nCommandError: {error}"
        return True, out.getvalue()

    def migrate(self, *args: str) -> tuple[bool, str]:
        return self.run("migrate_blocks_to_tasks", *args)

    def verify(self, *args: str) -> tuple[bool, str]:
        return self.run("verify_block_migration", *args)

    def migrate_ok(self, *args: str) -> str:
        succeeded, output = self.migrate(*args)
        assert succeeded, output
        return output


class PrefectState:
    """Prefect's own API, read directly: what the migration left in Prefect."""

    def __init__(self, api_url: str):
        self.http = prefect_client(api_url)

    def deployment(self, deployment_id: str) -> dict:
        response = self.http.get(f"/deployments/{deployment_id}")
        response.raise_for_status()
        return response.json()

    def deployments(self) -> list[dict]:
        response = self.http.post("/deployments/filter", json={"limit": 200})
        response.raise_for_status()
        return response.json()

    def block_documents(self) -> list[dict]:
        found: list[dict] = []
        while True:
            response = self.http.post(
                "/block_documents/filter",
                json={"block_documents": {"is_anonymous": {"eq_": False}}, "limit": 200, "offset": len(found)},
            )
            response.raise_for_status()
            found += response.json()
            if len(response.json()) < 200:
                return found

    def block_names(self) -> set[str]:
        return {document["name"] for document in self.block_documents()}

    def secret_value(self, name: str) -> str:
        response = self.http.get(
            f"/block_types/slug/secret/block_documents/name/{name}", params={"include_secrets": True}
        )
        response.raise_for_status()
        return response.json()["data"]["value"]


def snapshot(prefect: PrefectState) -> dict:
    """Every row the migration could write and every deployment and named block in Prefect (with `updated`)."""
    return {
        "django": {model.__name__: list(model.objects.order_by("pk").values()) for model in SNAPSHOT_MODELS},
        "deployments": sorted(
            (d["id"], d["name"], d["updated"], d["entrypoint"], repr(d["parameters"]), d["paused"])
            for d in prefect.deployments()
        ),
        "blocks": sorted((b["id"], b["name"], b["updated"]) for b in prefect.block_documents()),
    }


@pytest.fixture
def commands() -> Commands:
    return Commands()


@pytest.fixture(scope="session")
def prefect_state(prefect_server) -> PrefectState:
    return PrefectState(os.environ["PREFECT_API_URL"])


@pytest.fixture
def legacy(live_services, prefect_server, tmp_path) -> list[LegacyOrgInstall]:
    """Two orgs of the block-based world (unique names: the Prefect server is shared by the session)."""
    emulator = live_services["airbyte"]
    suffix = uuid.uuid4().hex[:6]
    return build_legacy_install(
        org_names=[f"Legacy A {suffix}", f"Legacy B {suffix}"],
        data_dir=tmp_path / "legacy",
        airbyte=AirbyteTarget(host="127.0.0.1", port=emulator.port, username="airbyte", password="password"),
        work_pool=TEST_WORK_POOL,
    )
