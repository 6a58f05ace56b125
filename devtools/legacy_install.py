"""Builds a realistic block-based (legacy) installation, for the migration tests and demo (devtools only).

    python -m devtools.legacy_install [--org "Legacy One" --org ...] [--data-dir var/legacy]
        [--airbyte-host 127.0.0.1 --airbyte-port 8001 --airbyte-username airbyte --airbyte-password password]
        [--work-pool ddpui] [--active-schedules]

Per org, as the block-based ddpui left it:
- Django rows: Org, OrgWarehouse (DuckDB), OrgDbt, OrgPrefectBlock for every block, OrgDataFlow + DataflowBlock
  for every deployment, and a stale BlockLock (its run is unknown to Prefect);
- Airbyte (the emulator): a workspace, a Sample Data source, a DuckDB destination, two connections;
- git: a bare repository holding the sample dbt project and a clone of it (the dbt project dir);
- Prefect, written directly with Prefect's client (the legacy world had no proxy): an AirbyteServer block,
  Secrets (git URL, warehouse credentials), a named DbtCliProfile, an AirbyteConnection per connection, a
  ShellOperation for `git pull`, DbtCoreOperations (clean, deps, run, test, docs generate and a custom run),
  and deployments of the legacy flow with `{airbyte_blocks, dbt_blocks}`: a manual sync per connection, a
  manual dbt deployment and two orchestrate pipelines.

Needs PREFECT_API_URL, the work pool, the emulator, and the Django database (DJANGO_SETTINGS_MODULE).
Schedules are paused unless --active-schedules, so nothing runs behind a test's back.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from ddpcontract.flows import Entrypoint, FlowName
from ddpcontract.tasks import GIT_PULL_SECRET_ENV_KEY, TaskType
from ddpcontract.warehouses import WarehouseType
from devtools.airbyte_emulator import DUCKDB_DESTINATION_DEFINITION_ID, SAMPLE_SOURCE_DEFINITION_ID
from devtools.processes import REPO_ROOT

SAMPLE_DBT_PROJECT = REPO_ROOT / "devtools" / "sample_dbt_project"
SOURCE_SCHEMA = "airbyte_raw"  # the schema the sample dbt project reads (docs/devtools.md)
DBT_SCHEMA = "analytics"
DBT_PROFILE_NAME = "ddpui"  # `profile:` of the sample project
DBT_TARGET = "dev"
LEGACY_ENTRYPOINT = Entrypoint.LEGACY_PIPELINE
LEGACY_FLOW_NAME = FlowName.LEGACY_PIPELINE
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "ddpui legacy install",
    "GIT_AUTHOR_EMAIL": "legacy@ddpui.invalid",
    "GIT_COMMITTER_NAME": "ddpui legacy install",
    "GIT_COMMITTER_EMAIL": "legacy@ddpui.invalid",
}
# (name, table prefix) of each org's connections
CONNECTIONS = [("Sample data", ""), ("Sample data copy", "copy_")]
# block suffix -> dbt command
DBT_COMMANDS = {
    "dbt-clean": "dbt clean",
    "dbt-deps": "dbt deps",
    "dbt-run": "dbt run",
    "dbt-test": "dbt test",
    "dbt-docs-generate": "dbt docs generate",
    "dbt-run-orders": "dbt run --select +customer_orders",
}


@dataclass(frozen=True)
class AirbyteTarget:
    host: str
    port: int
    username: str
    password: str

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api/v1"


@dataclass
class LegacyOrgInstall:
    """What was built for one org (ids and names the tests and the demo use)."""

    name: str
    slug: str
    project_dir: Path
    warehouse_path: Path
    git_url: str
    connections: dict[str, str] = field(default_factory=dict)  # connection name -> id
    deployments: dict[str, str] = field(default_factory=dict)  # dataflow name -> deployment id
    blocks: dict[str, str] = field(default_factory=dict)  # block name -> block type


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_IDENTITY}, check=True, capture_output=True)


def _sample_repo(directory: Path, project_dir: Path) -> Path:
    """A bare repository holding the sample dbt project, and a clone of it at project_dir; the bare repository."""
    bare, author = directory / "sample-dbt.git", directory / "sample-dbt-author"
    _git("init", "-q", "--bare", "-b", "main", str(bare), cwd=directory)
    shutil.copytree(
        SAMPLE_DBT_PROJECT, author, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb*")
    )
    _git("init", "-q", "-b", "main", cwd=author)
    _git("add", "-A", cwd=author)
    _git("commit", "-q", "-m", "sample dbt project", cwd=author)
    _git("push", "-q", str(bare), "main", cwd=author)
    shutil.rmtree(author)
    project_dir.parent.mkdir(parents=True, exist_ok=True)
    _git("clone", "-q", bare.as_uri(), str(project_dir), cwd=directory)
    return bare


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class _Airbyte:
    def __init__(self, target: AirbyteTarget):
        self.http = httpx.Client(base_url=target.api_url, auth=(target.username, target.password), timeout=30)

    def post(self, path: str, body: dict) -> dict:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        return response.json()


def _prefect_classes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # prefect_dbt.cli is deprecated; the legacy blocks are made of it
        from airbyte_prefect.connections import AirbyteConnection
        from airbyte_prefect.server import AirbyteServer
        from prefect.blocks.system import Secret
        from prefect_dbt.cli.commands import DbtCoreOperation
        from prefect_dbt.cli.configs import TargetConfigs
        from prefect_dbt.cli.credentials import DbtCliProfile
        from prefect_shell import ShellOperation
    return AirbyteConnection, AirbyteServer, Secret, DbtCoreOperation, TargetConfigs, DbtCliProfile, ShellOperation


# block class -> (block type id, block schema id), registered once per process
_REGISTERED: dict[type, tuple] = {}


def save_block(client, block_class: type, name: str, data: dict) -> str:
    """One POST per block document. `Block.save` regenerates the class's JSON schema on every call (seconds for a
    DbtCoreOperation on a busy machine); the type and schema are registered once instead. Nested blocks are
    referenced as `{"$ref": {"block_document_id": ...}}`, as Block.save writes them."""
    from prefect.client.schemas.actions import BlockDocumentCreate

    if block_class not in _REGISTERED:
        block_class.register_type_and_schema()
        _REGISTERED[block_class] = (block_class._block_type_id, block_class._block_schema_id)
    block_type_id, block_schema_id = _REGISTERED[block_class]
    document = client.create_block_document(
        BlockDocumentCreate(name=name, data=data, block_type_id=block_type_id, block_schema_id=block_schema_id)
    )
    return str(document.id)


def _create_deployment(client, *, flow_id, name: str, slug: str, parameters: dict, cron, timezone, work_pool, active):
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule

    schedules = [DeploymentScheduleCreate(schedule=CronSchedule(cron=cron, timezone=timezone))] if cron else []
    deployment_id = client.create_deployment(
        flow_id=flow_id,
        name=name,
        parameters=parameters,
        tags=[slug],
        work_pool_name=work_pool,
        entrypoint=LEGACY_ENTRYPOINT,
        path=str(REPO_ROOT),
        pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}],
        schedules=schedules,
        paused=not active if cron else None,
        enforce_parameter_schema=False,
    )
    return str(deployment_id)


def build_org(
    *,
    name: str,
    data_dir: Path,
    airbyte: AirbyteTarget,
    work_pool: str,
    schedules_active: bool = False,
    warehouse_password: str | None = None,
    git_pull_url: Callable[[Path], str] | None = None,
) -> LegacyOrgInstall:
    """One org. `warehouse_password`: a password the dbt CLI profile and the warehouse credentials Secret hold
    (DuckDB ignores it), as a legacy profile of a password-protected warehouse would. `git_pull_url`: given the
    bare repository, the URL the git-pull Secret holds (e.g. an http URL with a token; default: the bare
    repository's file URL); the org's OrgDbt.gitrepo_url is that URL without its credentials."""
    from django.conf import settings
    from django.db import transaction
    from django.utils import timezone as django_timezone
    from django.utils.text import slugify
    from prefect.client.orchestration import get_client

    from ddpui.models import (
        BlockLock,
        DataflowBlock,
        DbtTarget,
        Org,
        OrgDataFlow,
        OrgDbt,
        OrgPrefectBlock,
        OrgWarehouse,
    )

    (AirbyteConnection, AirbyteServer, Secret, DbtCoreOperation, TargetConfigs, DbtCliProfile, ShellOperation) = (
        _prefect_classes()
    )
    slug = slugify(name)
    if Org.objects.filter(slug=slug).exists():
        raise SystemExit(f"an org with slug '{slug}' already exists: choose another --org name")
    org_dir = (data_dir / slug).resolve()
    org_dir.mkdir(parents=True, exist_ok=True)
    project_dir = Path(settings.CLIENT_DBT_ROOT) / slug / "dbtrepo"
    warehouse_path = org_dir / "warehouse.duckdb"
    bare = _sample_repo(org_dir, project_dir)
    pull_url = git_pull_url(bare) if git_pull_url else bare.as_uri()
    install = LegacyOrgInstall(name, slug, project_dir, warehouse_path, _without_credentials(pull_url))
    destination_config = {"destination_path": str(warehouse_path), "schema": SOURCE_SCHEMA}
    password = {"password": warehouse_password} if warehouse_password else {}

    # Airbyte: workspace, source, destination, connections
    api = _Airbyte(airbyte)
    workspace_id = api.post("/workspaces/create/", {"name": slug})["workspaceId"]
    source_id = api.post(
        "/sources/create/",
        {
            "workspaceId": workspace_id,
            "name": "Sample data",
            "sourceDefinitionId": SAMPLE_SOURCE_DEFINITION_ID,
            "connectionConfiguration": {"count": 20, "seed": 7},
        },
    )["sourceId"]
    destination_id = api.post(
        "/destinations/create/",
        {
            "workspaceId": workspace_id,
            "name": "warehouse",
            "destinationDefinitionId": DUCKDB_DESTINATION_DEFINITION_ID,
            "connectionConfiguration": destination_config,
        },
    )["destinationId"]
    for connection_name, prefix in CONNECTIONS:
        body = {"sourceId": source_id, "destinationId": destination_id, "name": connection_name, "prefix": prefix}
        install.connections[connection_name] = api.post("/connections/create/", body)["connectionId"]

    # Prefect blocks, one per operation
    rows: list[dict] = []
    ids: dict[str, str] = {}
    with get_client(sync_client=True) as prefect:

        def saved(block_class: type, block_name: str, block_type: str, data: dict, **row) -> str:
            ids[block_name] = save_block(prefect, block_class, block_name, data)
            install.blocks[block_name] = block_type
            rows.append({"block_type": block_type, "block_id": ids[block_name], "block_name": block_name, **row})
            return block_name

        def reference(block_name: str) -> dict:
            return {"$ref": {"block_document_id": ids[block_name]}}

        server_block = saved(
            AirbyteServer,
            f"{slug}-airbyte-server",
            "Airbyte Server",
            {
                "server_host": airbyte.host,
                "server_port": airbyte.port,
                "username": airbyte.username,
                "password": airbyte.password,
            },
        )
        git_secret = saved(Secret, f"{slug}-git-pull-url", "Secret", {"value": pull_url})
        warehouse_secret = saved(
            Secret, f"{slug}-warehouse-credentials", "Secret", {"value": json.dumps({**destination_config, **password})}
        )
        profile_block = saved(
            DbtCliProfile,
            f"{slug}-{DBT_PROFILE_NAME}-{DBT_TARGET}-profile",
            "dbt CLI Profile",
            {
                "name": DBT_PROFILE_NAME,
                "target": DBT_TARGET,
                "target_configs": {
                    "type": WarehouseType.DUCKDB.value,
                    "schema": DBT_SCHEMA,
                    "threads": 1,
                    "extras": {"path": str(warehouse_path), **password},
                    "allow_field_overrides": False,
                    "block_type_slug": TargetConfigs.get_block_type_slug(),
                },
            },
            dbt_target_schema=DBT_SCHEMA,
        )
        connection_blocks = {}
        for seq, (connection_name, _) in enumerate(CONNECTIONS):
            connection_blocks[connection_name] = saved(
                AirbyteConnection,
                f"{slug}-{slugify(connection_name)}-connection",
                TaskType.AIRBYTE_CONNECTION,
                {
                    "airbyte_server": reference(server_block),
                    "connection_id": install.connections[connection_name],
                    "poll_interval_s": 1,
                },
                display_name=connection_name,
                seq=seq,
            )
        git_block = saved(
            ShellOperation,
            f"{slug}-git-pull",
            TaskType.SHELL_OPERATION,
            {
                "commands": ["git pull"],
                "working_dir": str(project_dir),
                "env": {GIT_PULL_SECRET_ENV_KEY: git_secret},
            },
            command="git-pull",
            seq=0,
        )
        dbt_blocks = {}
        for seq, (suffix, command) in enumerate(DBT_COMMANDS.items(), start=1):
            dbt_blocks[suffix] = saved(
                DbtCoreOperation,
                f"{slug}-{DBT_PROFILE_NAME}-{DBT_TARGET}-{suffix}",
                TaskType.DBT_CORE_OPERATION,
                {
                    "commands": [command],
                    "project_dir": str(project_dir),
                    "working_dir": str(project_dir),
                    "profiles_dir": str(org_dir / "profiles"),
                    "overwrite_profiles": True,
                    "env": {},
                    "dbt_cli_profile": reference(profile_block),
                },
                command=suffix,
                dbt_target_schema=DBT_SCHEMA,
                seq=seq,
            )

        def dbt_entries(*items: str) -> list[dict]:
            entries = [{"blockName": git_block, "seq": 0, "blockType": TaskType.SHELL_OPERATION}]
            return entries + [
                {"blockName": dbt_blocks[item], "seq": seq, "blockType": TaskType.DBT_CORE_OPERATION}
                for seq, item in enumerate(items, start=1)
            ]

        # (dataflow name, type, deployment name, cron, timezone, connection id, parameters)
        dataflows = [
            (
                connection_name,
                "manual",
                f"manual-{slug}-{install.connections[connection_name]}",
                None,
                None,
                install.connections[connection_name],
                {"airbyte_blocks": [{"blockName": connection_blocks[connection_name], "seq": 0}], "dbt_blocks": []},
            )
            for connection_name, _ in CONNECTIONS
        ]
        dataflows += [
            (
                "Manual dbt",
                "manual",
                f"manual-{slug}-{DBT_PROFILE_NAME}-{DBT_TARGET}",
                None,
                None,
                None,
                {"airbyte_blocks": [], "dbt_blocks": dbt_entries("dbt-clean", "dbt-deps", "dbt-run", "dbt-test")},
            ),
            (
                "Nightly",
                "orchestrate",
                f"pipeline-{slug}-nightly",
                "0 2 * * *",
                "Asia/Kolkata",
                None,
                {
                    "airbyte_blocks": [
                        {"blockName": connection_blocks[name], "seq": seq} for seq, (name, _) in enumerate(CONNECTIONS)
                    ],
                    "dbt_blocks": dbt_entries("dbt-deps", "dbt-run", "dbt-test", "dbt-docs-generate"),
                },
            ),
            (
                "Orders hourly",
                "orchestrate",
                f"pipeline-{slug}-orders-hourly",
                "15 * * * *",
                "UTC",
                None,
                {
                    "airbyte_blocks": [{"blockName": connection_blocks[CONNECTIONS[0][0]], "seq": 0}],
                    "dbt_blocks": dbt_entries("dbt-run-orders"),
                },
            ),
        ]
        flow_id = prefect.create_flow_from_name(LEGACY_FLOW_NAME)
        created = [
            _create_deployment(
                prefect,
                flow_id=flow_id,
                name=deployment_name,
                slug=slug,
                parameters=parameters,
                cron=cron,
                timezone=tz,
                work_pool=work_pool,
                active=schedules_active,
            )
            for _, _, deployment_name, cron, tz, _, parameters in dataflows
        ]

    with transaction.atomic():
        org = Org.objects.create(name=name, slug=slug, airbyte_workspace_id=workspace_id)
        warehouse = OrgWarehouse.objects.create(
            org=org,
            wtype=WarehouseType.DUCKDB,
            name="warehouse",
            credentials_block_name=warehouse_secret,
            airbyte_destination_id=destination_id,
        )
        dbt = OrgDbt.objects.create(
            org=org,
            gitrepo_url=install.git_url,
            gitrepo_access_token_secret=git_secret,
            project_dir=str(project_dir),
        )
        # as ddpui's migration 0010 leaves a workspace: one default target
        DbtTarget.objects.create(dbt=dbt, name="default", schema=DBT_SCHEMA, warehouse=warehouse, is_default=True)
        blocks = {row["block_name"]: OrgPrefectBlock.objects.create(org=org, **row) for row in rows}
        for (dataflow_name, kind, deployment_name, cron, _, connection_id, parameters), deployment_id in zip(
            dataflows, created, strict=True
        ):
            dataflow = OrgDataFlow.objects.create(
                org=org,
                name=dataflow_name,
                deployment_name=deployment_name,
                deployment_id=deployment_id,
                cron=cron,
                connection_id=connection_id,
                dataflow_type=kind,
            )
            names = [entry["blockName"] for key in ("airbyte_blocks", "dbt_blocks") for entry in parameters[key]]
            DataflowBlock.objects.bulk_create([DataflowBlock(dataflow=dataflow, opb=blocks[n]) for n in names])
            install.deployments[dataflow_name] = deployment_id
        # a leftover of a run that ended long ago without releasing its lock
        lock = BlockLock.objects.create(opb=blocks[dbt_blocks["dbt-run"]], flow_run_id=str(uuid.uuid4()))
        BlockLock.objects.filter(id=lock.id).update(locked_at=django_timezone.now() - timedelta(days=1))
    return install


def build_legacy_install(
    *,
    org_names: list[str],
    data_dir: Path,
    airbyte: AirbyteTarget,
    work_pool: str,
    schedules_active: bool = False,
    warehouse_password: str | None = None,
    git_pull_url: Callable[[Path], str] | None = None,
) -> list[LegacyOrgInstall]:
    """One org per name (see build_org for `warehouse_password` and `git_pull_url`)."""
    return [
        build_org(
            name=name,
            data_dir=data_dir,
            airbyte=airbyte,
            work_pool=work_pool,
            schedules_active=schedules_active,
            warehouse_password=warehouse_password,
            git_pull_url=git_pull_url,
        )
        for name in org_names
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.legacy_install", description=__doc__.split("\n\n")[0])
    parser.add_argument("--org", action="append", dest="orgs", help="an org name (repeat; default: two orgs)")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "var" / "legacy")
    parser.add_argument("--airbyte-host")
    parser.add_argument("--airbyte-port", type=int)
    parser.add_argument("--airbyte-username")
    parser.add_argument("--airbyte-password")
    parser.add_argument("--work-pool", default=os.environ.get("PREFECT_WORK_POOL", "ddpui"))
    parser.add_argument("--active-schedules", action="store_true", help="leave the cron schedules running")
    options = parser.parse_args(argv)
    if not os.environ.get("PREFECT_API_URL"):
        print("PREFECT_API_URL is not set: point it at the Prefect server, e.g. http://127.0.0.1:4200/api")
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ddpui.settings")
    import django

    django.setup()
    from django.conf import settings

    airbyte = AirbyteTarget(
        host=options.airbyte_host or settings.AIRBYTE_SERVER_HOST,
        port=options.airbyte_port or int(settings.AIRBYTE_SERVER_PORT),
        username=options.airbyte_username or settings.AIRBYTE_USERNAME,
        password=options.airbyte_password or settings.AIRBYTE_PASSWORD,
    )
    installs = build_legacy_install(
        org_names=options.orgs or ["Legacy One", "Legacy Two"],
        data_dir=options.data_dir,
        airbyte=airbyte,
        work_pool=options.work_pool,
        schedules_active=options.active_schedules,
    )
    for install in installs:
        print(f"org {install.slug}: {len(install.blocks)} blocks, {len(install.deployments)} deployments")
        for dataflow_name, deployment_id in install.deployments.items():
            print(f"  {dataflow_name}: deployment {deployment_id}")
    print("next: python manage.py migrate_blocks_to_tasks --phase 1 --all --dry-run  (docs/migration.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
