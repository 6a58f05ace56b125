"""Verification: for each legacy deployment, the same connections, dbt commands, order and schedule, old and new."""

from __future__ import annotations

from dataclasses import dataclass

from ddpcontract.flows import Entrypoint
from ddpui.block_migration.comparison import compare_steps, config_steps
from ddpui.block_migration.errors import MissingBlock
from ddpui.block_migration.legacy import LegacyDeployment, LegacyOrg
from ddpui.errors import DomainError
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.org import DbtTarget, Org, OrgDbt
from ddpui.prefect_client import ProxyNotFound
from ddpui.prefect_client.client import BlockMigration
from ddpui.services.pipelines import dataflow_orgtasks
from ddpui.services.task_config import deployment_parameters


@dataclass
class DeploymentCheck:
    name: str
    deployment_id: str
    summary: str
    differences: list[str]


@dataclass
class OrgVerification:
    org: Org
    deployments: list[DeploymentCheck]
    problems: list[str]

    @property
    def difference_count(self) -> int:
        return len(self.problems) + sum(len(check.differences) for check in self.deployments)


def _schedule_text(cron: str | None, timezone: str | None) -> str:
    return f"cron '{cron}' {timezone or 'UTC'}" if cron else "no schedule"


def _repository_dir(org: Org) -> str | None:
    """Where the new tasks' repository is, for the comparison: the workspace's project (Django's clone)."""
    return OrgDbt.objects.filter(org=org).values_list("project_dir", flat=True).first()


def _verify_deployment(legacy_org: LegacyOrg, legacy: LegacyDeployment, *, deleted_blocks_ok: bool) -> DeploymentCheck:
    org = legacy_org.org
    check = DeploymentCheck(legacy.dataflow.name, legacy.deployment_id, "", [])
    if legacy.deployment is None:
        check.differences.append("the deployment is missing in Prefect")
        return check
    deployment = legacy.deployment
    old = None
    try:
        old = legacy_org.old_steps(legacy)
    except MissingBlock as error:
        if not deleted_blocks_ok:
            check.differences.append(f"the old blocks cannot be read: {error.message}")
    except DomainError as error:
        check.differences.append(f"the old blocks cannot be read: {error.message}")
    dataflow = OrgDataFlowv1.objects.filter(org=org, deployment_id=legacy.deployment_id).first()
    if dataflow is None:
        check.differences.append("not migrated: no OrgDataFlowv1 row for this deployment")
        return check
    try:
        new_config = deployment_parameters(org=org, orgtasks=dataflow_orgtasks(dataflow))["config"]
        new = config_steps(new_config, legacy_org.subcommands, repository_dir=_repository_dir(org))
    except DomainError as error:
        check.differences.append(f"the new tasks cannot be turned into a task config: {error.message}")
        return check
    if old is not None:
        check.differences += compare_steps(old, new)
    deployed = deployment.parameters.get("config")
    if not deployed:
        check.differences.append("the deployment's parameters have no config (the new tasks)")
    else:
        deployed_steps = config_steps(deployed, legacy_org.subcommands, repository_dir=_repository_dir(org))
        uuids = [
            task.get("orgtask_uuid")
            for task in sorted(deployed.get("tasks") or [], key=lambda task: task.get("seq", 0))
        ]
        expected_uuids = [task.get("orgtask_uuid") for task in new_config["tasks"]]
        mismatch = compare_steps(new, deployed_steps, new_name="the deployment's config")
        if mismatch or uuids != expected_uuids:
            check.differences.append(
                "the deployment's config does not match the dataflow's tasks"
                + (f" ({'; '.join(mismatch)})" if mismatch else " (other org tasks)")
            )
    prefect_schedule = (deployment.cron, deployment.timezone if deployment.cron else None)
    if (legacy.dataflow.cron or None) != prefect_schedule[0]:
        check.differences.append(
            f"schedule: the old dataflow row says {_schedule_text(legacy.dataflow.cron, None)}, "
            f"Prefect runs {_schedule_text(*prefect_schedule)}"
        )
    new_schedule = (dataflow.cron or None, (dataflow.timezone or None) if dataflow.cron else None)
    if new_schedule[0] != prefect_schedule[0] or (
        new_schedule[0] and (new_schedule[1] or "UTC") != (prefect_schedule[1] or "UTC")
    ):
        check.differences.append(
            f"schedule: the new dataflow says {_schedule_text(*new_schedule)}, "
            f"Prefect runs {_schedule_text(*prefect_schedule)}"
        )
    if dataflow.dataflow_type != legacy.dataflow_type:
        check.differences.append(f"type: old {legacy.dataflow_type}, new {dataflow.dataflow_type}")
    flow = "the new flow" if deployment.entrypoint == Entrypoint.PIPELINE else "the legacy flow"
    check.summary = f"{len(new)} step(s), {_schedule_text(*prefect_schedule)}, runs {flow}"
    return check


def _verify_profile(legacy_org: LegacyOrg) -> list[str]:
    documents = [document for document in legacy_org.dbt_documents() if document.dbt_cli_profile]
    if not documents:
        return []
    target = DbtTarget.objects.select_related("profile_block").filter(dbt__org=legacy_org.org, is_default=True).first()
    if target is None or target.profile_block is None:
        return ["dbt profile: the org's dbt workspace has no dbt CLI profile yet (phase 2)"]
    old = documents[0].dbt_cli_profile
    try:
        new = BlockMigration(legacy_org.proxy).dbt_cli_profile_get(target.profile_block.block_name)
    except ProxyNotFound:
        return [f"dbt profile: the Secret '{target.profile_block.block_name}' is missing in Prefect"]
    pairs = [
        ("profile name", "profile_name", "profile_name"),
        ("target", "target", "target"),
        ("warehouse type", "wtype", "wtype"),
        ("schema", "target_schema", "target_schema"),
    ]
    return [
        f"dbt profile {label}: old '{getattr(old, old_key)}', new '{getattr(new, new_key)}'"
        for label, old_key, new_key in pairs
        if str(getattr(old, old_key)) != str(getattr(new, new_key))
    ]


def verify_org(legacy_org: LegacyOrg, *, deleted_blocks_ok: bool = False) -> OrgVerification:
    """For each legacy deployment: the same connections, dbt commands, order and schedule, old and new.
    `deleted_blocks_ok`: legacy blocks already deleted (a cleanup half done) are not a difference."""
    checks = [
        _verify_deployment(legacy_org, legacy, deleted_blocks_ok=deleted_blocks_ok) for legacy in legacy_org.deployments
    ]
    return OrgVerification(legacy_org.org, checks, _verify_profile(legacy_org))
