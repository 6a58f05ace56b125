"""The planner: one small class per phase, each planning its changes for one org from its legacy view.

Planning only reads; `check` says whether the org may go through the phase now (MigrationBlocked if not).
"""

from __future__ import annotations

import contextlib
import re

from ddpcontract import proxy_api as api
from ddpcontract.flows import Entrypoint
from ddpcontract.tasks import TARGET_NAME_PATTERN
from ddpui.block_migration.changes import Change
from ddpui.block_migration.comparison import GIT_PULL_COMMAND, Step
from ddpui.block_migration.errors import MigrationBlocked, MigrationProblem
from ddpui.block_migration.legacy import (
    AIRBYTE_SERVER,
    CLEANUP_BLOCK_TYPES,
    DBT_CLI_PROFILE,
    DBT_CORE_OPERATION,
    LEGACY_PARAMETERS,
    SECRET,
    LegacyDeployment,
    LegacyOrg,
)
from ddpui.block_migration.tasks import TaskResolver
from ddpui.block_migration.verification import verify_org
from ddpui.models.dataflows import DataflowOrgTask, OrgDataFlowv1
from ddpui.models.legacy import BlockLock, OrgDataFlow, OrgPrefectBlock
from ddpui.models.org import DbtTarget, OrgDbt, OrgPrefectBlockv1, OrgWarehouse
from ddpui.models.tasks import OrgTask, Task
from ddpui.prefect_client import ProxyNotFound
from ddpui.prefect_client.client import BlockMigration
from ddpui.services.orgs import block_name_for
from ddpui.services.pipelines import dataflow_orgtasks
from ddpui.services.targets import DEFAULT_TARGET_NAME
from ddpui.services.task_config import deployment_parameters
from ddpui.services.transform_tasks import SYSTEM_TRANSFORM_SLUGS
from ddpui.services.undo import UndoStack

PHASE_1 = "1"
PHASE_2 = "2"
PHASE_SWITCH = "switch-entrypoint"
PHASE_ROLLBACK = "rollback-entrypoint"
PHASE_3 = "3"
PHASES = (PHASE_1, PHASE_2, PHASE_SWITCH, PHASE_ROLLBACK, PHASE_3)


class Planner:
    """What the phases share: org tasks and dataflows for legacy deployments, Prefect writes with their undo,
    and the preconditions a phase may have (no held lock, earlier phases done, a clean verification)."""

    # the phases that must have nothing left to do first, and whether a clean verification is needed
    requires: tuple[str, ...] = ()
    requires_verification = False
    deleted_blocks_ok = False  # in that verification, legacy blocks already deleted are no difference
    checks_locks = True

    def __init__(self, legacy: LegacyOrg):
        self.legacy = legacy
        self.org = legacy.org
        self.proxy = legacy.proxy
        self.resolver = TaskResolver(self.org)
        self._planned: set[tuple[str, str]] = set()  # the steps whose task a change of this plan makes

    def plan(self) -> list[Change]:
        raise NotImplementedError

    def check(self) -> None:
        """Raises MigrationBlocked when the org cannot go through this phase now."""
        if self.checks_locks:
            held = self.legacy.held_locks()
            if held:
                raise MigrationBlocked(f"{'; '.join(held)}: wait for the run to finish (or cancel it), then run again")
        for phase in self.requires:
            pending = planner_for(phase, self.legacy).plan()
            if pending:
                raise MigrationBlocked(
                    f"{TITLES[phase]} is not complete for this org ({len(pending)} change(s) pending): run it first"
                )
        if self.requires_verification:
            count = verify_org(self.legacy, deleted_blocks_ok=self.deleted_blocks_ok).difference_count
            if count:
                raise MigrationBlocked(
                    f"verify_block_migration finds {count} difference(s) for this org: fix them first"
                )

    # -------------------------------------------------------------------- org tasks and dataflows

    def _task_changes(self, steps: list[Step]) -> list[Change]:
        changes = []
        for step in steps:
            if step.key in self._planned or self.resolver.find(step, self.legacy.subcommands) is not None:
                continue
            self._planned.add(step.key)
            if step.kind == "airbyte":
                description = f"create the airbyte-sync task for connection {step.value}"
            elif step.kind == "git":
                description = "create the git-pull task"
            else:
                description = f"create the task '{step.value}'"
            changes.append(
                Change(description, lambda undo, step=step: self.resolver.ensure(step, self.legacy.subcommands))
            )
        return changes

    def _expected_parameters(self, legacy: LegacyDeployment, dataflow: OrgDataFlowv1) -> dict:
        return {**legacy.legacy_parameters, **deployment_parameters(org=self.org, orgtasks=dataflow_orgtasks(dataflow))}

    def _dataflow_changes(self, legacy: LegacyDeployment) -> list[Change]:
        deployment = self.legacy.require_deployment(legacy)
        steps = self.legacy.old_steps(legacy)
        changes = self._task_changes(steps)
        dataflow = OrgDataFlowv1.objects.filter(deployment_id=legacy.deployment_id).first()
        if dataflow is not None and dataflow.org_id != self.org.id:
            raise MigrationProblem(f"the deployment of {legacy.label} belongs to another org's pipeline")
        if dataflow is None:
            changes.append(
                Change(
                    f"create the {legacy.dataflow_type} dataflow {legacy.label} with {len(steps)} task(s): "
                    + ", ".join(map(str, steps)),
                    lambda undo: self._create_dataflow(legacy, deployment, steps),
                )
            )
        if dataflow is None or self._expected_parameters(legacy, dataflow) != legacy.parameters:
            changes.append(
                Change(
                    f"set the parameters of deployment {legacy.label} to old + new "
                    "(airbyte_blocks / dbt_blocks + config)",
                    lambda undo: self._set_parameters(legacy, undo),
                )
            )
        return changes

    def _create_dataflow(self, legacy: LegacyDeployment, deployment: api.Deployment, steps: list[Step]) -> None:
        orgtasks = [self.resolver.ensure(step, self.legacy.subcommands) for step in steps]
        dataflow = OrgDataFlowv1.objects.create(
            org=self.org,
            name=legacy.dataflow.name[:100],
            deployment_id=legacy.deployment_id,
            deployment_name=legacy.dataflow.deployment_name,
            cron=deployment.cron,
            timezone=deployment.timezone if deployment.cron else None,
            dataflow_type=legacy.dataflow_type,
        )
        DataflowOrgTask.objects.bulk_create(
            [DataflowOrgTask(dataflow=dataflow, orgtask=orgtask, seq=seq) for seq, orgtask in enumerate(orgtasks)]
        )

    # -------------------------------------------------------------------- Prefect writes, each with its undo

    def _set_parameters(self, legacy: LegacyDeployment, undo: UndoStack) -> None:
        dataflow = OrgDataFlowv1.objects.get(deployment_id=legacy.deployment_id)
        handle = self.proxy.deployment(legacy.deployment_id)
        before = handle.get().parameters
        handle.update(parameters=self._expected_parameters(legacy, dataflow))
        undo.push(f"parameters of deployment {legacy.deployment_id}", lambda: handle.update(parameters=before))

    def _delete_block(self, block_id: str) -> None:
        with contextlib.suppress(ProxyNotFound):
            self.proxy.blocks.delete(block_id)

    def _entrypoint_changes(self, *, to: str, verb: str) -> list[Change]:
        changes = []
        for legacy in self.legacy.deployments:
            deployment = self.legacy.require_deployment(legacy)
            if deployment.entrypoint == to:
                continue
            before = deployment.entrypoint or Entrypoint.LEGACY_PIPELINE
            changes.append(
                Change(
                    f"{verb} deployment {legacy.label} at {to}",
                    lambda undo, legacy=legacy, before=before: self._set_entrypoint(legacy, to, before, undo),
                )
            )
        return changes

    def _set_entrypoint(self, legacy: LegacyDeployment, entrypoint: str, before: str, undo: UndoStack) -> None:
        handle = self.proxy.deployment(legacy.deployment_id)
        handle.set_entrypoint(entrypoint)
        undo.push(f"entrypoint of deployment {legacy.deployment_id}", lambda: handle.set_entrypoint(before))


class Phase1(Planner):
    """The Airbyte server block as an OrgPrefectBlockv1; the manual sync deployments as dataflows of tasks."""

    def plan(self) -> list[Change]:
        changes = []
        if not OrgPrefectBlockv1.objects.filter(
            org=self.org, block_type=OrgPrefectBlockv1.BlockType.AIRBYTE_SERVER
        ).exists():
            rows = self.legacy.rows_of(AIRBYTE_SERVER)
            if rows:
                row = rows[0]
                changes.append(
                    Change(
                        f"record the Airbyte server block '{row.block_name}' as the org's OrgPrefectBlockv1",
                        lambda undo: OrgPrefectBlockv1.objects.create(
                            org=self.org,
                            block_type=OrgPrefectBlockv1.BlockType.AIRBYTE_SERVER,
                            block_id=row.block_id,
                            block_name=row.block_name,
                        ),
                    )
                )
            elif any(legacy.is_manual_sync for legacy in self.legacy.deployments):
                raise MigrationProblem("the org has Airbyte connections but no legacy 'Airbyte Server' block row")
        for legacy in self.legacy.deployments:
            self.legacy.require_deployment(legacy)
            if legacy.is_manual_sync:
                changes += self._dataflow_changes(legacy)
        return changes


def _default_target_has_profile(dbt: OrgDbt) -> bool:
    return DbtTarget.objects.filter(dbt=dbt, is_default=True, profile_block__isnull=False).exists()


class Phase2(Planner):
    """The Secrets, the dbt profile and workspace, the system transform tasks, and every other deployment."""

    requires = (PHASE_1,)

    def plan(self) -> list[Change]:
        warehouse = OrgWarehouse.objects.filter(org=self.org).first()
        changes = self._secret_changes(
            required=self.legacy.git_url_blocks(),
            optional={warehouse.credentials_block_name} if warehouse and warehouse.credentials_block_name else set(),
        )
        changes += self._dbt_workspace_changes()
        system = self._system_task_changes()
        changes += system
        if system:
            # the system tasks are made in one go: plain dbt commands they cover are not planned again
            self._planned |= {("git", GIT_PULL_COMMAND)} | {
                ("dbt", f"dbt {' '.join(words)}")
                for words, slug in self.legacy.subcommands.items()
                if slug in SYSTEM_TRANSFORM_SLUGS
            }
        for legacy in self.legacy.deployments:
            self.legacy.require_deployment(legacy)
            if not legacy.is_manual_sync:
                changes += self._dataflow_changes(legacy)
        return changes

    def _profile_source(self) -> api.LegacyBlock | None:
        documents = [document for document in self.legacy.dbt_documents() if document.dbt_cli_profile]
        profiles = {
            tuple(
                sorted(
                    (key, value)
                    for key, value in document.dbt_cli_profile.model_dump().items()
                    if key not in ("block_id", "block_name")
                )
            )
            for document in documents
        }
        if len(profiles) > 1:
            raise MigrationProblem(
                "the org's dbt Core Operation blocks use different dbt profiles "
                f"({', '.join(sorted(document.block_name for document in documents))}): make them use one first"
            )
        return documents[0] if documents else None

    def _secret_changes(self, *, required: set[str], optional: set[str]) -> list[Change]:
        """OrgPrefectBlockv1 rows for the Secrets the org uses; a required one missing in Prefect stops the org."""
        changes = []
        names = required | optional
        recorded = set(OrgPrefectBlockv1.objects.filter(block_name__in=names).values_list("block_name", flat=True))
        legacy_ids = {row.block_name: row.block_id for row in self.legacy.rows_of(SECRET)}
        for name in sorted(names - recorded):
            block_id = legacy_ids.get(name)
            if block_id is None:
                try:
                    block_id = BlockMigration(self.proxy).secret_get(name).block_id
                except ProxyNotFound:
                    if name not in required:
                        continue
                    raise MigrationProblem(
                        f"the Secret block '{name}' the org's git pull uses is missing in Prefect"
                    ) from None
            changes.append(
                Change(
                    f"record the Secret block '{name}' as an OrgPrefectBlockv1",
                    lambda undo, name=name, block_id=block_id: OrgPrefectBlockv1.objects.create(
                        org=self.org, block_type=OrgPrefectBlockv1.BlockType.SECRET, block_id=block_id, block_name=name
                    ),
                )
            )
        return changes

    def _dbt_workspace_changes(self) -> list[Change]:
        source = self._profile_source()
        git_blocks = self.legacy.git_url_blocks()
        if len(git_blocks) > 1:
            raise MigrationProblem(f"the org's git pull blocks pull from different Secrets: {sorted(git_blocks)}")
        changes = []
        profile_row = OrgPrefectBlockv1.objects.filter(
            org=self.org, block_type=OrgPrefectBlockv1.BlockType.DBT_CLI_PROFILE
        ).first()
        if profile_row is None and source is not None:
            name = block_name_for(self.org, "dbt-profile")
            changes.append(
                Change(
                    f"write the dbt CLI profile Secret '{name}' from the profile of the dbt Core Operation block "
                    f"'{source.block_name}' (converted in the proxy)",
                    lambda undo: self._create_profile(source.block_name, name, undo),
                )
            )
        dbt = OrgDbt.objects.filter(org=self.org).first()
        project_dirs = {document.project_dir for document in self.legacy.dbt_documents()}
        git_block = next(iter(git_blocks), None)
        if dbt is None and source is not None:
            if len(project_dirs) > 1:
                raise MigrationProblem(
                    f"the org's dbt blocks use different project directories: {sorted(project_dirs)}"
                )
            changes.append(
                Change(
                    f"create the dbt workspace row (OrgDbt) for {source.project_dir}",
                    lambda undo: self._create_dbt_workspace(source, git_block),
                )
            )
        elif dbt is not None and (
            (not _default_target_has_profile(dbt) and (profile_row is not None or source is not None))
            or (git_block and not dbt.gitrepo_access_token_secret)
        ):
            changes.append(
                Change(
                    "link the dbt CLI profile and the git URL Secret to the dbt workspace",
                    lambda undo: self._link_dbt_workspace(git_block, source),
                )
            )
        return changes

    def _create_profile(self, dbtcore_block_name: str, name: str, undo: UndoStack) -> None:
        created = BlockMigration(self.proxy).dbt_cli_profile_from_dbtcore(
            dbtcore_block_name=dbtcore_block_name, cli_profile_block_name=name
        )
        undo.push(f"dbt CLI profile Secret {name}", lambda: self._delete_block(created.block_id))
        OrgPrefectBlockv1.objects.create(
            org=self.org,
            block_type=OrgPrefectBlockv1.BlockType.DBT_CLI_PROFILE,
            block_id=created.block_id,
            block_name=created.block_name,
        )

    def _create_dbt_workspace(self, source: api.LegacyBlock, git_block: str | None) -> None:
        profile = source.dbt_cli_profile
        dbt = OrgDbt.objects.create(
            org=self.org, project_dir=source.project_dir or "", gitrepo_access_token_secret=git_block
        )
        # the default target keeps the legacy profile's target name, so the models' `target.name` is unchanged
        name = profile.target if re.match(TARGET_NAME_PATTERN, profile.target or "") else None
        DbtTarget.objects.create(
            dbt=dbt,
            name=name or DEFAULT_TARGET_NAME,
            schema=profile.target_schema or "",
            warehouse=OrgWarehouse.objects.filter(org=self.org).order_by("id").first(),
            is_default=True,
        )
        self._link_dbt_workspace(git_block)

    def _link_dbt_workspace(self, git_block: str | None, source: api.LegacyBlock | None = None) -> None:
        dbt = OrgDbt.objects.get(org=self.org)
        target = DbtTarget.objects.filter(dbt=dbt, is_default=True).first()
        if target is not None and target.profile_block_id is None:
            target.profile_block = OrgPrefectBlockv1.objects.filter(
                org=self.org, block_type=OrgPrefectBlockv1.BlockType.DBT_CLI_PROFILE
            ).first()
            # the default target takes the legacy profile's target name, so the models' `target.name` is unchanged
            legacy_name = source.dbt_cli_profile.target if source is not None and source.dbt_cli_profile else None
            if (
                legacy_name
                and re.match(TARGET_NAME_PATTERN, legacy_name)
                and not DbtTarget.objects.filter(dbt=dbt, name=legacy_name).exclude(id=target.id).exists()
            ):
                target.name = legacy_name
            target.save(update_fields=["profile_block", "name", "updated_at"])
        if git_block and not dbt.gitrepo_access_token_secret:
            dbt.gitrepo_access_token_secret = git_block
            dbt.save(update_fields=["gitrepo_access_token_secret", "updated_at"])

    def _system_task_changes(self) -> list[Change]:
        if not self.legacy.dbt_documents() and not OrgDbt.objects.filter(org=self.org).exists():
            return []
        existing = set(
            OrgTask.objects.filter(
                org=self.org, task__slug__in=SYSTEM_TRANSFORM_SLUGS, generated_by=OrgTask.GeneratedBy.SYSTEM
            ).values_list("task__slug", flat=True)
        )
        missing = [slug for slug in SYSTEM_TRANSFORM_SLUGS if slug not in existing]
        if not missing:
            return []

        def create(undo: UndoStack) -> None:
            tasks = {task.slug: task for task in Task.objects.filter(slug__in=missing)}
            OrgTask.objects.bulk_create([OrgTask(org=self.org, task=tasks[slug]) for slug in missing])

        return [Change(f"create the system transform tasks {', '.join(missing)}", create)]


class SwitchEntrypoint(Planner):
    """Points every migrated deployment at the pipeline flow (it runs the new tasks from then on)."""

    requires = (PHASE_1, PHASE_2)
    requires_verification = True

    def plan(self) -> list[Change]:
        return self._entrypoint_changes(to=Entrypoint.PIPELINE, verb="point")


class RollbackEntrypoint(Planner):
    """Points the deployments back at the legacy flow; possible while they still carry the legacy parameters."""

    checks_locks = False

    def plan(self) -> list[Change]:
        changes = self._entrypoint_changes(to=Entrypoint.LEGACY_PIPELINE, verb="point back")
        for legacy in self.legacy.deployments:
            if legacy.deployment is not None and not legacy.legacy_parameters:
                raise MigrationProblem(
                    f"the deployment {legacy.label} has no legacy parameters left: it cannot run the legacy flow"
                )
        return changes


class Phase3(Planner):
    """The cleanup: parameters first (undone on failure), then the blocks (cannot be undone: a re-run finishes
    the job, a block already gone is skipped), then the rows, so a failure leaves the rows that name the blocks."""

    # the switch needed phases 1 and 2 and a clean verification; a cleanup that failed half-way may have
    # deleted some legacy blocks already, which must not stop it from being finished
    requires = (PHASE_SWITCH,)
    requires_verification = True
    deleted_blocks_ok = True

    def plan(self) -> list[Change]:
        changes = []
        for legacy in self.legacy.deployments:
            self.legacy.require_deployment(legacy)
            if legacy.legacy_parameters:
                changes.append(
                    Change(
                        f"set the parameters of deployment {legacy.label} to the new ones only "
                        "(drop airbyte_blocks / dbt_blocks)",
                        lambda undo, legacy=legacy: self._drop_legacy_parameters(legacy, undo),
                    )
                )
        for block_id, name, block_type in self._blocks_to_delete():
            changes.append(
                Change(
                    f"delete the {block_type} block '{name}' from Prefect (cannot be undone)",
                    lambda undo, block_id=block_id: self._delete_block(block_id),
                )
            )
        if self.legacy.has_legacy_rows:
            changes.append(
                Change(
                    f"delete the legacy rows: {len(self.legacy.deployments)} dataflow(s) with their block links, "
                    f"{len(self.legacy.rows)} block row(s), {len(self.legacy.locks)} stale block lock(s)",
                    lambda undo: self._delete_legacy_rows(),
                )
            )
        return changes

    def _blocks_to_delete(self) -> list[tuple[str, str, str]]:
        found: dict[str, tuple[str, str]] = {}
        for (name, block_type), document in self.legacy.documents.items():
            if block_type in CLEANUP_BLOCK_TYPES:
                found[document.block_id] = (name, block_type)
            profile = document.dbt_cli_profile
            if block_type == DBT_CORE_OPERATION and profile is not None and profile.block_id:
                found[profile.block_id] = (profile.block_name, DBT_CLI_PROFILE)
        # operations before the profiles they reference
        order = {block_type: index for index, block_type in enumerate(CLEANUP_BLOCK_TYPES)}
        return sorted(
            ((block_id, *rest) for block_id, rest in found.items()), key=lambda item: (order[item[2]], item[1])
        )

    def _drop_legacy_parameters(self, legacy: LegacyDeployment, undo: UndoStack) -> None:
        handle = self.proxy.deployment(legacy.deployment_id)
        before = handle.get().parameters
        handle.update(parameters={key: value for key, value in before.items() if key not in LEGACY_PARAMETERS})
        undo.push(f"parameters of deployment {legacy.deployment_id}", lambda: handle.update(parameters=before))

    def _delete_legacy_rows(self) -> None:
        BlockLock.objects.filter(opb__org=self.org).delete()
        OrgDataFlow.objects.filter(org=self.org).delete()  # DataflowBlock rows go with them
        OrgPrefectBlock.objects.filter(org=self.org).delete()


PLANNERS: dict[str, type[Planner]] = {
    PHASE_1: Phase1,
    PHASE_2: Phase2,
    PHASE_SWITCH: SwitchEntrypoint,
    PHASE_ROLLBACK: RollbackEntrypoint,
    PHASE_3: Phase3,
}
# how a phase is named in messages (e.g. "phase 1 is not complete for this org")
TITLES = {
    PHASE_1: "phase 1",
    PHASE_2: "phase 2",
    PHASE_SWITCH: "the entrypoint switch",
    PHASE_ROLLBACK: "the entrypoint rollback",
    PHASE_3: "phase 3",
}


def planner_for(phase: str, legacy: LegacyOrg) -> Planner:
    return PLANNERS[phase](legacy)
