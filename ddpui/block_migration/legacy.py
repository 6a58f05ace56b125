"""The legacy reader: what an org has in the block-based world, read once (rows, deployments, blocks)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone as django_timezone

from ddpcontract import proxy_api as api
from ddpcontract.states import LIVE_STATES
from ddpcontract.tasks import TaskType
from ddpui.block_migration.comparison import Step, dbt_steps, shell_steps
from ddpui.block_migration.dbt_commands import dbt_subcommands
from ddpui.block_migration.errors import MigrationProblem, MissingBlock
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.legacy import BlockLock, OrgDataFlow, OrgPrefectBlock
from ddpui.models.org import Org
from ddpui.prefect_client import ProxyNotFound, get_proxy
from ddpui.prefect_client.client import BlockMigration

# the block types of the legacy world, as OrgPrefectBlock.block_type and Prefect's block type names spell them
AIRBYTE_SERVER = "Airbyte Server"
AIRBYTE_CONNECTION = TaskType.AIRBYTE_CONNECTION
SHELL_OPERATION = TaskType.SHELL_OPERATION
DBT_CORE_OPERATION = TaskType.DBT_CORE_OPERATION
DBT_CLI_PROFILE = "dbt CLI Profile"
SECRET = "Secret"
# persisted per operation, so deleted by the cleanup; the legacy dbt CLI profile too: it shows the password in clear
CLEANUP_BLOCK_TYPES = (AIRBYTE_CONNECTION, SHELL_OPERATION, DBT_CORE_OPERATION, DBT_CLI_PROFILE)
LEGACY_PARAMETERS = ("airbyte_blocks", "dbt_blocks")
# a BlockLock without a flow run is a trigger in progress for this long, then it is stale
LOCK_GRACE_SECONDS = 300


@dataclass
class LegacyDeployment:
    dataflow: OrgDataFlow
    deployment: api.Deployment | None  # the proxy's view; None when Prefect has no such deployment

    @property
    def deployment_id(self) -> str:
        return self.dataflow.deployment_id

    @property
    def label(self) -> str:
        return f"'{self.dataflow.name}' (deployment {self.deployment_id})"

    @property
    def parameters(self) -> dict:
        return dict(self.deployment.parameters) if self.deployment is not None else {}

    @property
    def legacy_parameters(self) -> dict:
        return {key: value for key, value in self.parameters.items() if key in LEGACY_PARAMETERS}

    def entries(self) -> list[tuple[str, str]]:
        """(block name, block type) in the order the legacy flow runs them: syncs, then the rest, each by seq."""
        found = []
        groups = (("airbyte_blocks", AIRBYTE_CONNECTION), ("dbt_blocks", DBT_CORE_OPERATION))
        for key, default_type in groups:
            for entry in sorted(self.parameters.get(key) or [], key=lambda entry: entry.get("seq", 0)):
                found.append((str(entry.get("blockName")), entry.get("blockType") or default_type))
        return found

    @property
    def is_manual_sync(self) -> bool:
        entries = self.entries()
        return (
            self.dataflow.dataflow_type == OrgDataFlowv1.DataflowType.MANUAL
            and bool(entries)
            and all(block_type == AIRBYTE_CONNECTION for _, block_type in entries)
        )

    @property
    def dataflow_type(self) -> str:
        manual = self.dataflow.dataflow_type == OrgDataFlowv1.DataflowType.MANUAL
        return OrgDataFlowv1.DataflowType.MANUAL if manual else OrgDataFlowv1.DataflowType.ORCHESTRATE


class LegacyOrg:
    """What an org has in the block-based world, read once: rows, deployments (one proxy call) and the
    non-secret facts of every block they name (one proxy call)."""

    def __init__(self, org: Org):
        self.org = org
        self.proxy = get_proxy()
        self.rows = list(OrgPrefectBlock.objects.filter(org=org).order_by("block_name"))
        dataflows = list(OrgDataFlow.objects.filter(org=org).order_by("name", "id"))
        self.locks = list(BlockLock.objects.filter(opb__org=org).select_related("opb"))
        views = {}
        if dataflows:
            ids = [dataflow.deployment_id for dataflow in dataflows]
            views = {view.deployment_id: view for view in self.proxy.deployments.filter(deployment_ids=ids)}
        self.deployments = [LegacyDeployment(dataflow, views.get(dataflow.deployment_id)) for dataflow in dataflows]
        names = {row.block_name for row in self.rows}
        names |= {name for deployment in self.deployments for name, _ in deployment.entries()}
        described = BlockMigration(self.proxy).describe_blocks(sorted(names))
        self.documents = {(block.block_name, block.block_type): block for block in described.blocks}
        self.subcommands = dbt_subcommands()

    @property
    def has_legacy_rows(self) -> bool:
        return bool(self.rows or self.deployments or self.locks)

    def rows_of(self, block_type: str) -> list[OrgPrefectBlock]:
        return [row for row in self.rows if row.block_type == block_type]

    def document(self, name: str, block_type: str, *, used_by: str) -> api.LegacyBlock:
        document = self.documents.get((name, block_type))
        if document is None:
            raise MissingBlock(f"the {block_type} block '{name}' used by {used_by} is missing in Prefect")
        return document

    def require_deployment(self, legacy: LegacyDeployment) -> api.Deployment:
        if legacy.deployment is None:
            raise MigrationProblem(f"the deployment of the legacy dataflow {legacy.label} is missing in Prefect")
        return legacy.deployment

    def old_steps(self, legacy: LegacyDeployment) -> list[Step]:
        self.require_deployment(legacy)
        steps: list[Step] = []
        for name, block_type in legacy.entries():
            document = self.document(name, block_type, used_by=legacy.label)
            if block_type == AIRBYTE_CONNECTION:
                steps.append(Step("airbyte", str(document.connection_id), str(document.airbyte_server_block), name))
            elif block_type == SHELL_OPERATION:
                steps += shell_steps(
                    document.commands or [],
                    working_dir=document.working_dir,
                    url_block=document.git_pull_url_block,
                    label=name,
                )
            else:
                steps += dbt_steps(
                    document.commands or [],
                    project_dir=document.project_dir,
                    label=name,
                    subcommands=self.subcommands,
                )
        unsupported = [step for step in steps if step.kind == "shell"]
        if unsupported:
            raise MigrationProblem(
                f"{legacy.label} runs the shell command '{unsupported[0].value}' (block {unsupported[0].label}): "
                "only 'git pull' has a task; change the block or remove it from the deployment first"
            )
        return steps

    def dbt_documents(self) -> list[api.LegacyBlock]:
        return sorted(
            (document for (_, block_type), document in self.documents.items() if block_type == DBT_CORE_OPERATION),
            key=lambda document: document.block_name,
        )

    def git_url_blocks(self) -> set[str]:
        return {
            document.git_pull_url_block
            for (_, block_type), document in self.documents.items()
            if block_type == SHELL_OPERATION and document.git_pull_url_block
        }

    def held_locks(self) -> list[str]:
        """Why each BlockLock of the org is held (its run is live, or it was taken moments ago without a run)."""
        held = []
        stale_before = django_timezone.now() - timedelta(seconds=LOCK_GRACE_SECONDS)
        for lock in self.locks:
            if not lock.flow_run_id:
                if lock.locked_at >= stale_before:
                    held.append(
                        f"the block lock on '{lock.opb.block_name}' was taken at "
                        f"{lock.locked_at:%Y-%m-%d %H:%M:%S} UTC by a run that is starting"
                    )
                continue
            try:
                state = self.proxy.flow_run(lock.flow_run_id).state().state_type
            except ProxyNotFound:
                continue
            if state in LIVE_STATES:
                held.append(f"the block lock on '{lock.opb.block_name}' is held by run {lock.flow_run_id} ({state})")
        return held
