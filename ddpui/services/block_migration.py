"""Moves an org from persisted operation blocks (OrgPrefectBlock, OrgDataFlow, DataflowBlock, BlockLock) to
tasks (OrgPrefectBlockv1, OrgTask, OrgDataFlowv1, DataflowOrgTask), keeping every deployment and its id.

Each phase is first *planned* for an org: a list of changes, empty when there is nothing left to do (so a second
run is a no-op and a dry run prints exactly what a real run would do). Applying a plan happens inside one
database transaction per org, with an undo log for what it changed in Prefect: when a change fails, the
transaction rolls back and the Prefect changes already made are undone, newest first. Runbook: docs/migration.md.
"""

from __future__ import annotations

import contextlib
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone as django_timezone

from ddpcontract.flows import Entrypoint
from ddpcontract.states import LIVE_STATES
from ddpcontract.tasks import GIT_PULL_SECRET_ENV_KEY, TaskKind, TaskSlug, TaskType
from ddpui.errors import Conflict, DomainError, InvalidInput
from ddpui.models.dataflows import DataflowOrgTask, OrgDataFlowv1
from ddpui.models.legacy import BlockLock, OrgDataFlow, OrgPrefectBlock
from ddpui.models.org import Org, OrgDbt, OrgPrefectBlockv1, OrgWarehouse, WarehouseType
from ddpui.models.tasks import OrgTask, Task
from ddpui.prefect_client import ProxyNotFound, get_proxy
from ddpui.prefect_client.client import BlockMigration
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.orgs import block_name_for
from ddpui.services.pipelines import dataflow_orgtasks
from ddpui.services.task_config import deployment_parameters
from ddpui.services.transform_tasks import SYSTEM_TRANSFORM_SLUGS, orgtask_create

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
PIPELINE_ENTRYPOINT = Entrypoint.PIPELINE
LEGACY_ENTRYPOINT = Entrypoint.LEGACY_PIPELINE
SYNC_SLUG = TaskSlug.AIRBYTE_SYNC
GIT_PULL_SLUG = TaskSlug.GIT_PULL
GIT_PULL_COMMAND = "git pull"
# a BlockLock without a flow run is a trigger in progress for this long, then it is stale
LOCK_GRACE_SECONDS = 300
_SHORT_OPTIONS = {"-s": "select", "-m": "models", "-t": "target"}
_SHORT_FLAGS = {"-x": "fail-fast"}

PHASE_1 = "1"
PHASE_2 = "2"
PHASE_SWITCH = "switch-entrypoint"
PHASE_ROLLBACK = "rollback-entrypoint"
PHASE_3 = "3"
PHASES = (PHASE_1, PHASE_2, PHASE_SWITCH, PHASE_ROLLBACK, PHASE_3)


class MigrationProblem(DomainError):
    """The legacy data of an org cannot be migrated as it is (the message says what to fix)."""


class MissingBlock(MigrationProblem):
    """A legacy block that a deployment names is not in Prefect (deleted, or never saved)."""


class MigrationBlocked(Conflict):
    """The org cannot go through this phase now (a held block lock, an earlier phase not done, differences)."""


# ------------------------------------------------------------------------------------------ steps


@dataclass(frozen=True)
class DbtCommand:
    """A dbt command line reduced to what it means: master task, flags and options (flags sorted)."""

    task_slug: str
    words: tuple[str, ...]
    flags: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def canonical(self) -> str:
        parts = ["dbt", *self.words, *(f"--{flag}" for flag in self.flags)]
        for name, values in self.options:
            parts += [f"--{name} {value}" for value in values]
        return " ".join(parts)

    @property
    def is_plain(self) -> bool:
        return not self.flags and not self.options

    def parameters(self) -> tuple[list[str], dict]:
        options = {name: values[0] if len(values) == 1 else list(values) for name, values in self.options}
        return list(self.flags), options


def parse_dbt_command(command: str, subcommands: dict[tuple[str, ...], str]) -> DbtCommand:
    """`dbt run --select a --full-refresh` -> DbtCommand; `subcommands` maps command words to master task slugs."""
    try:
        words = shlex.split(command)
    except ValueError:
        raise MigrationProblem(f"cannot parse the dbt command {command!r}") from None
    if not words or words[0] != "dbt":
        raise MigrationProblem(f"{command!r} is not a dbt command")
    rest = words[1:]
    matches = [sub for sub in subcommands if tuple(rest[: len(sub)]) == sub]
    if not matches:
        known = ", ".join(sorted(" ".join(sub) for sub in subcommands))
        raise MigrationProblem(f"{command!r}: no task in the master task list runs it (known: {known})")
    sub = max(matches, key=len)
    args = rest[len(sub) :]
    flags: set[str] = set()
    options: dict[str, list[str]] = {}
    index = 0
    while index < len(args):
        word = args[index]
        index += 1
        if word in _SHORT_FLAGS:
            flags.add(_SHORT_FLAGS[word])
            continue
        if word in _SHORT_OPTIONS:
            name = _SHORT_OPTIONS[word]
        elif word.startswith("--") and len(word) > 2:
            name = word[2:]
            if "=" in name:
                name, value = name.split("=", 1)
                options.setdefault(name, []).append(value)
                continue
        else:
            raise MigrationProblem(f"{command!r}: unexpected argument {word!r}")
        values = []
        while index < len(args) and not args[index].startswith("-"):
            values.append(args[index])
            index += 1
        if values:
            options.setdefault(name, []).extend(values)
        elif word.startswith("--"):
            flags.add(name)
        else:
            raise MigrationProblem(f"{command!r}: {word} needs a value")
    return DbtCommand(
        task_slug=subcommands[sub],
        words=sub,
        flags=tuple(sorted(flags)),
        options=tuple(sorted((name, tuple(values)) for name, values in options.items())),
    )


@dataclass(frozen=True)
class Step:
    """One thing a deployment runs, comparable between the old blocks and the new tasks.

    kind: airbyte | git | dbt | shell; value: the connection id or the canonical command; where: the Airbyte
    server block, or the directory (and git URL Secret) the command runs with; label: block name or task slug."""

    kind: str
    value: str
    where: str
    label: str
    dbt: DbtCommand | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.value

    def __str__(self) -> str:
        return f"sync {self.value}" if self.kind == "airbyte" else self.value


def _dbt_subcommands() -> dict[tuple[str, ...], str]:
    return {
        tuple((task.command or "").split()): task.slug
        for task in Task.objects.filter(type=TaskKind.DBT)
        if task.command
    }


def _git_where(working_dir: str | None, url_block: str | None) -> str:
    return f"{working_dir} (pull URL from {url_block or 'origin'})"


def _shell_steps(commands: list[str], *, working_dir, url_block, label: str) -> list[Step]:
    steps = []
    for command in commands:
        text = " ".join(command.split())
        kind = "git" if text == GIT_PULL_COMMAND else "shell"
        steps.append(Step(kind, text, _git_where(working_dir, url_block), label))
    return steps


def _dbt_steps(commands: list[str], *, project_dir, label: str, subcommands) -> list[Step]:
    steps = []
    for command in commands:
        parsed = parse_dbt_command(command, subcommands)
        steps.append(Step("dbt", parsed.canonical, str(project_dir), label, dbt=parsed))
    return steps


def config_steps(config: dict | None, subcommands) -> list[Step]:
    """The steps of a task config (DESIGN §4), in run order."""
    steps: list[Step] = []
    for task in sorted((config or {}).get("tasks") or [], key=lambda task: task.get("seq", 0)):
        label = str(task.get("slug") or task.get("type"))
        if task.get("type") == AIRBYTE_CONNECTION:
            steps.append(Step("airbyte", str(task.get("connection_id")), str(task.get("airbyte_server_block")), label))
        elif task.get("type") == SHELL_OPERATION:
            url_block = (task.get("env") or {}).get(GIT_PULL_SECRET_ENV_KEY)
            steps += _shell_steps(
                task.get("commands") or [], working_dir=task.get("working_dir"), url_block=url_block, label=label
            )
        else:
            steps += _dbt_steps(
                task.get("commands") or [], project_dir=task.get("project_dir"), label=label, subcommands=subcommands
            )
    return steps


def compare_steps(old: list[Step], new: list[Step], *, new_name: str = "the new tasks") -> list[str]:
    """Every difference between what the old blocks run and what the new tasks run."""
    differences = []
    old_connections = {step.value for step in old if step.kind == "airbyte"}
    new_connections = {step.value for step in new if step.kind == "airbyte"}
    if old_connections != new_connections:
        differences.append(
            f"connections: only in the old blocks {sorted(old_connections - new_connections)}, "
            f"only in {new_name} {sorted(new_connections - old_connections)}"
        )
    old_commands = Counter(step.value for step in old if step.kind != "airbyte")
    new_commands = Counter(step.value for step in new if step.kind != "airbyte")
    if old_commands != new_commands:
        differences.append(
            f"commands: only in the old blocks {sorted((old_commands - new_commands).elements())}, "
            f"only in {new_name} {sorted((new_commands - old_commands).elements())}"
        )
    if not differences and [step.key for step in old] != [step.key for step in new]:
        differences.append(
            f"order: the old blocks run [{'; '.join(map(str, old))}], {new_name} [{'; '.join(map(str, new))}]"
        )
    if not differences:
        for position, (before, after) in enumerate(zip(old, new, strict=True)):
            if before.where != after.where:
                differences.append(f"step {position} ({before}): old runs with {before.where}, new with {after.where}")
    return differences


# ------------------------------------------------------------------------------------------ the legacy view of an org


@dataclass
class LegacyDeployment:
    dataflow: OrgDataFlow
    deployment: dict | None  # the proxy's view; None when Prefect has no such deployment

    @property
    def deployment_id(self) -> str:
        return self.dataflow.deployment_id

    @property
    def label(self) -> str:
        return f"'{self.dataflow.name}' (deployment {self.deployment_id})"

    @property
    def parameters(self) -> dict:
        return dict((self.deployment or {}).get("parameters") or {})

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
            views = {str(view["deployment_id"]): view for view in self.proxy.deployments.filter(deployment_ids=ids)}
        self.deployments = [LegacyDeployment(dataflow, views.get(dataflow.deployment_id)) for dataflow in dataflows]
        names = {row.block_name for row in self.rows}
        names |= {name for deployment in self.deployments for name, _ in deployment.entries()}
        described = BlockMigration(self.proxy).describe_blocks(sorted(names))
        self.documents = {(block["block_name"], block["block_type"]): block for block in described["blocks"]}
        self.subcommands = _dbt_subcommands()

    @property
    def has_legacy_rows(self) -> bool:
        return bool(self.rows or self.deployments or self.locks)

    def rows_of(self, block_type: str) -> list[OrgPrefectBlock]:
        return [row for row in self.rows if row.block_type == block_type]

    def document(self, name: str, block_type: str, *, used_by: str) -> dict:
        document = self.documents.get((name, block_type))
        if document is None:
            raise MissingBlock(f"the {block_type} block '{name}' used by {used_by} is missing in Prefect")
        return document

    def require_deployment(self, legacy: LegacyDeployment) -> dict:
        if legacy.deployment is None:
            raise MigrationProblem(f"the deployment of the legacy dataflow {legacy.label} is missing in Prefect")
        return legacy.deployment

    def old_steps(self, legacy: LegacyDeployment) -> list[Step]:
        self.require_deployment(legacy)
        steps: list[Step] = []
        for name, block_type in legacy.entries():
            document = self.document(name, block_type, used_by=legacy.label)
            if block_type == AIRBYTE_CONNECTION:
                steps.append(
                    Step("airbyte", str(document["connection_id"]), str(document["airbyte_server_block"]), name)
                )
            elif block_type == SHELL_OPERATION:
                steps += _shell_steps(
                    document.get("commands") or [],
                    working_dir=document.get("working_dir"),
                    url_block=document.get("git_pull_url_block"),
                    label=name,
                )
            else:
                steps += _dbt_steps(
                    document.get("commands") or [],
                    project_dir=document.get("project_dir"),
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

    def dbt_documents(self) -> list[dict]:
        return sorted(
            (document for (_, block_type), document in self.documents.items() if block_type == DBT_CORE_OPERATION),
            key=lambda document: document["block_name"],
        )

    def git_url_blocks(self) -> set[str]:
        return {
            document["git_pull_url_block"]
            for (_, block_type), document in self.documents.items()
            if block_type == SHELL_OPERATION and document.get("git_pull_url_block")
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
                state = self.proxy.flow_run(lock.flow_run_id).state().get("state_type")
            except ProxyNotFound:
                continue
            if state in LIVE_STATES:
                held.append(f"the block lock on '{lock.opb.block_name}' is held by run {lock.flow_run_id} ({state})")
        return held


# ------------------------------------------------------------------------------------------ org tasks for steps


class TaskResolver:
    """Finds (when planning) or makes (when applying) the org task that runs a step."""

    def __init__(self, org: Org):
        self.org = org

    def find(self, step: Step, subcommands) -> OrgTask | None:
        tasks = OrgTask.objects.select_related("task").filter(org=self.org)
        if step.kind == "airbyte":
            return tasks.filter(task__slug=SYNC_SLUG, connection_id=step.value).order_by("id").first()
        if step.kind == "git":
            return tasks.filter(task__slug=GIT_PULL_SLUG).order_by("id").first()
        candidates = tasks.filter(task__slug=step.dbt.task_slug).order_by("-generated_by", "id")
        for candidate in candidates:  # system tasks first ("system" > "client")
            if parse_dbt_command(candidate.command_text(), subcommands).canonical == step.value:
                return candidate
        return None

    def ensure(self, step: Step, subcommands) -> OrgTask:
        found = self.find(step, subcommands)
        if found is not None:
            return found
        if step.kind == "airbyte":
            return OrgTask.objects.create(org=self.org, task=Task.objects.get(slug=SYNC_SLUG), connection_id=step.value)
        if step.kind == "git":
            return OrgTask.objects.create(org=self.org, task=Task.objects.get(slug=GIT_PULL_SLUG))
        if step.dbt.is_plain and step.dbt.task_slug in SYSTEM_TRANSFORM_SLUGS:
            return OrgTask.objects.create(org=self.org, task=Task.objects.get(slug=step.dbt.task_slug))
        flags, options = step.dbt.parameters()
        try:
            return orgtask_create(org=self.org, task_slug=step.dbt.task_slug, flags=flags, options=options)
        except InvalidInput as error:
            raise MigrationProblem(f"'{step.value}' cannot become a task: {error.message}") from None


# ------------------------------------------------------------------------------------------ plans


class UndoLog:
    """What to do in Prefect to put things back, newest first. Failures are collected, never raised."""

    def __init__(self):
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def add(self, description: str, undo: Callable[[], object]) -> None:
        self._steps.append((description, undo))

    def run(self) -> list[str]:
        failures = []
        for description, undo in reversed(self._steps):
            try:
                undo()
            except Exception as error:  # noqa: BLE001 - keep undoing the others
                failures.append(f"could not undo '{description}' ({type(error).__name__}): fix it by hand")
        return failures


@dataclass
class Change:
    description: str
    apply: Callable[[UndoLog], object]


class OrgPlanner:
    """Plans one phase for one org from its LegacyOrg view. Planning only reads."""

    def __init__(self, legacy: LegacyOrg):
        self.legacy = legacy
        self.org = legacy.org
        self.proxy = legacy.proxy
        self.resolver = TaskResolver(self.org)
        self._planned: set[tuple[str, str]] = set()

    # -------------------------------------------------------------------- shared pieces

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

    def _create_dataflow(self, legacy: LegacyDeployment, deployment: dict, steps: list[Step]) -> None:
        orgtasks = [self.resolver.ensure(step, self.legacy.subcommands) for step in steps]
        dataflow = OrgDataFlowv1.objects.create(
            org=self.org,
            name=legacy.dataflow.name[:100],
            deployment_id=legacy.deployment_id,
            deployment_name=legacy.dataflow.deployment_name,
            cron=deployment.get("cron"),
            timezone=deployment.get("timezone") if deployment.get("cron") else None,
            dataflow_type=legacy.dataflow_type,
        )
        DataflowOrgTask.objects.bulk_create(
            [DataflowOrgTask(dataflow=dataflow, orgtask=orgtask, seq=seq) for seq, orgtask in enumerate(orgtasks)]
        )

    def _set_parameters(self, legacy: LegacyDeployment, undo: UndoLog) -> None:
        dataflow = OrgDataFlowv1.objects.get(deployment_id=legacy.deployment_id)
        handle = self.proxy.deployment(legacy.deployment_id)
        before = handle.get()["parameters"]
        handle.update(parameters=self._expected_parameters(legacy, dataflow))
        undo.add(f"parameters of deployment {legacy.deployment_id}", lambda: handle.update(parameters=before))

    def _require_done(self, phase: str, what: str) -> None:
        pending = self.plan(phase)
        if pending:
            raise MigrationBlocked(
                f"{what} is not complete for this org ({len(pending)} change(s) pending): run it first"
            )

    def _require_free(self) -> None:
        held = self.legacy.held_locks()
        if held:
            raise MigrationBlocked(f"{'; '.join(held)}: wait for the run to finish (or cancel it), then run again")

    def _require_verified(self, *, deleted_blocks_ok: bool = False) -> None:
        count = verify_org(self.legacy, deleted_blocks_ok=deleted_blocks_ok).difference_count
        if count:
            raise MigrationBlocked(f"verify_block_migration finds {count} difference(s) for this org: fix them first")

    # -------------------------------------------------------------------- phases

    def plan(self, phase: str) -> list[Change]:
        return {
            PHASE_1: self._phase_1,
            PHASE_2: self._phase_2,
            PHASE_SWITCH: self._switch,
            PHASE_ROLLBACK: self._rollback,
            PHASE_3: self._phase_3,
        }[phase]()

    def check(self, phase: str) -> None:
        """Raises MigrationBlocked when the org cannot go through `phase` now."""
        if phase == PHASE_ROLLBACK:
            return
        self._require_free()
        if phase in (PHASE_2, PHASE_SWITCH):
            self._require_done(PHASE_1, "phase 1")
        if phase == PHASE_SWITCH:
            self._require_done(PHASE_2, "phase 2")
            self._require_verified()
        if phase == PHASE_3:
            # the switch needed phases 1 and 2 and a clean verification; a cleanup that failed half-way may
            # have deleted some legacy blocks already, which must not stop it from being finished
            self._require_done(PHASE_SWITCH, "the entrypoint switch")
            self._require_verified(deleted_blocks_ok=True)

    def _phase_1(self) -> list[Change]:
        self._planned = set()
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

    def _profile_source(self) -> dict | None:
        documents = [document for document in self.legacy.dbt_documents() if document.get("dbt_cli_profile")]
        profiles = {
            tuple(
                sorted(
                    (key, value)
                    for key, value in document["dbt_cli_profile"].items()
                    if key not in ("block_id", "block_name")
                )
            )
            for document in documents
        }
        if len(profiles) > 1:
            raise MigrationProblem(
                "the org's dbt Core Operation blocks use different dbt profiles "
                f"({', '.join(sorted(document['block_name'] for document in documents))}): make them use one first"
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
                    block_id = str(BlockMigration(self.proxy).secret_get(name)["block_id"])
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
                    f"'{source['block_name']}' (converted in the proxy)",
                    lambda undo: self._create_profile(source["block_name"], name, undo),
                )
            )
        dbt = OrgDbt.objects.filter(org=self.org).first()
        project_dirs = {document.get("project_dir") for document in self.legacy.dbt_documents()}
        git_block = next(iter(git_blocks), None)
        if dbt is None and source is not None:
            if len(project_dirs) > 1:
                raise MigrationProblem(
                    f"the org's dbt blocks use different project directories: {sorted(project_dirs)}"
                )
            changes.append(
                Change(
                    f"create the dbt workspace row (OrgDbt) for {source.get('project_dir')}",
                    lambda undo: self._create_dbt_workspace(source, git_block),
                )
            )
        elif dbt is not None and (
            (dbt.cli_profile_block_id is None and (profile_row is not None or source is not None))
            or (git_block and not dbt.gitrepo_access_token_secret)
        ):
            changes.append(
                Change(
                    "link the dbt CLI profile and the git URL Secret to the dbt workspace",
                    lambda undo: self._link_dbt_workspace(git_block),
                )
            )
        return changes

    def _create_profile(self, dbtcore_block_name: str, name: str, undo: UndoLog) -> None:
        created = BlockMigration(self.proxy).dbt_cli_profile_from_dbtcore(
            dbtcore_block_name=dbtcore_block_name, cli_profile_block_name=name
        )
        undo.add(f"dbt CLI profile Secret {name}", lambda: self._delete_block(str(created["block_id"])))
        OrgPrefectBlockv1.objects.create(
            org=self.org,
            block_type=OrgPrefectBlockv1.BlockType.DBT_CLI_PROFILE,
            block_id=str(created["block_id"]),
            block_name=created["block_name"],
        )

    def _delete_block(self, block_id: str) -> None:
        with contextlib.suppress(ProxyNotFound):
            self.proxy.blocks.delete(block_id)

    def _create_dbt_workspace(self, source: dict, git_block: str | None) -> None:
        profile = source["dbt_cli_profile"]
        OrgDbt.objects.create(
            org=self.org,
            project_dir=source.get("project_dir") or "",
            gitrepo_access_token_secret=git_block,
            target_type=profile["wtype"] if profile["wtype"] in WarehouseType.values else None,
            default_schema=profile["target_schema"] or None,
        )
        self._link_dbt_workspace(git_block)

    def _link_dbt_workspace(self, git_block: str | None) -> None:
        dbt = OrgDbt.objects.get(org=self.org)
        if dbt.cli_profile_block_id is None:
            dbt.cli_profile_block = OrgPrefectBlockv1.objects.filter(
                org=self.org, block_type=OrgPrefectBlockv1.BlockType.DBT_CLI_PROFILE
            ).first()
        if git_block and not dbt.gitrepo_access_token_secret:
            dbt.gitrepo_access_token_secret = git_block
        dbt.save(update_fields=["cli_profile_block", "gitrepo_access_token_secret", "updated_at"])

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

        def create(undo: UndoLog) -> None:
            tasks = {task.slug: task for task in Task.objects.filter(slug__in=missing)}
            OrgTask.objects.bulk_create([OrgTask(org=self.org, task=tasks[slug]) for slug in missing])

        return [Change(f"create the system transform tasks {', '.join(missing)}", create)]

    def _phase_2(self) -> list[Change]:
        self._planned = set()
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

    def _entrypoint_changes(self, *, to: str, verb: str) -> list[Change]:
        changes = []
        for legacy in self.legacy.deployments:
            deployment = self.legacy.require_deployment(legacy)
            if deployment.get("entrypoint") == to:
                continue
            before = deployment.get("entrypoint") or LEGACY_ENTRYPOINT
            changes.append(
                Change(
                    f"{verb} deployment {legacy.label} at {to}",
                    lambda undo, legacy=legacy, before=before: self._set_entrypoint(legacy, to, before, undo),
                )
            )
        return changes

    def _set_entrypoint(self, legacy: LegacyDeployment, entrypoint: str, before: str, undo: UndoLog) -> None:
        handle = self.proxy.deployment(legacy.deployment_id)
        handle.set_entrypoint(entrypoint)
        undo.add(f"entrypoint of deployment {legacy.deployment_id}", lambda: handle.set_entrypoint(before))

    def _switch(self) -> list[Change]:
        return self._entrypoint_changes(to=PIPELINE_ENTRYPOINT, verb="point")

    def _rollback(self) -> list[Change]:
        changes = self._entrypoint_changes(to=LEGACY_ENTRYPOINT, verb="point back")
        for legacy in self.legacy.deployments:
            if legacy.deployment is not None and not legacy.legacy_parameters:
                raise MigrationProblem(
                    f"the deployment {legacy.label} has no legacy parameters left: it cannot run the legacy flow"
                )
        return changes

    def _phase_3(self) -> list[Change]:
        """Parameters first (undone on failure), then the blocks (cannot be undone: a re-run finishes the job,
        a block already gone is skipped), then the rows, so a failure leaves the rows that name the blocks."""
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
                found[str(document["block_id"])] = (name, block_type)
            profile = document.get("dbt_cli_profile") or {}
            if block_type == DBT_CORE_OPERATION and profile.get("block_id"):
                found[str(profile["block_id"])] = (profile["block_name"], DBT_CLI_PROFILE)
        # operations before the profiles they reference
        order = {block_type: index for index, block_type in enumerate(CLEANUP_BLOCK_TYPES)}
        return sorted(
            ((block_id, *rest) for block_id, rest in found.items()), key=lambda item: (order[item[2]], item[1])
        )

    def _drop_legacy_parameters(self, legacy: LegacyDeployment, undo: UndoLog) -> None:
        handle = self.proxy.deployment(legacy.deployment_id)
        before = handle.get()["parameters"]
        handle.update(parameters={key: value for key, value in before.items() if key not in LEGACY_PARAMETERS})
        undo.add(f"parameters of deployment {legacy.deployment_id}", lambda: handle.update(parameters=before))

    def _delete_legacy_rows(self) -> None:
        BlockLock.objects.filter(opb__org=self.org).delete()
        OrgDataFlow.objects.filter(org=self.org).delete()  # DataflowBlock rows go with them
        OrgPrefectBlock.objects.filter(org=self.org).delete()


# ------------------------------------------------------------------------------------------ verification


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
        new = config_steps(new_config, legacy_org.subcommands)
    except DomainError as error:
        check.differences.append(f"the new tasks cannot be turned into a task config: {error.message}")
        return check
    if old is not None:
        check.differences += compare_steps(old, new)
    deployed = deployment.get("parameters", {}).get("config")
    if not deployed:
        check.differences.append("the deployment's parameters have no config (the new tasks)")
    else:
        deployed_steps = config_steps(deployed, legacy_org.subcommands)
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
    prefect_schedule = (deployment.get("cron"), deployment.get("timezone") if deployment.get("cron") else None)
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
    flow = "the new flow" if deployment.get("entrypoint") == PIPELINE_ENTRYPOINT else "the legacy flow"
    check.summary = f"{len(new)} step(s), {_schedule_text(*prefect_schedule)}, runs {flow}"
    return check


def _verify_profile(legacy_org: LegacyOrg) -> list[str]:
    documents = [document for document in legacy_org.dbt_documents() if document.get("dbt_cli_profile")]
    if not documents:
        return []
    dbt = OrgDbt.objects.select_related("cli_profile_block").filter(org=legacy_org.org).first()
    if dbt is None or dbt.cli_profile_block is None:
        return ["dbt profile: the org's dbt workspace has no dbt CLI profile yet (phase 2)"]
    old = documents[0]["dbt_cli_profile"]
    try:
        new = BlockMigration(legacy_org.proxy).dbt_cli_profile_get(dbt.cli_profile_block.block_name)
    except ProxyNotFound:
        return [f"dbt profile: the Secret '{dbt.cli_profile_block.block_name}' is missing in Prefect"]
    pairs = [
        ("profile name", "profile_name", "profile_name"),
        ("target", "target", "target"),
        ("warehouse type", "wtype", "wtype"),
        ("schema", "target_schema", "target_schema"),
    ]
    return [
        f"dbt profile {label}: old '{old.get(old_key)}', new '{new.get(new_key)}'"
        for label, old_key, new_key in pairs
        if str(old.get(old_key)) != str(new.get(new_key))
    ]


def verify_org(legacy_org: LegacyOrg, *, deleted_blocks_ok: bool = False) -> OrgVerification:
    """For each legacy deployment: the same connections, dbt commands, order and schedule, old and new.
    `deleted_blocks_ok`: legacy blocks already deleted (a cleanup half done) are not a difference."""
    checks = [
        _verify_deployment(legacy_org, legacy, deleted_blocks_ok=deleted_blocks_ok) for legacy in legacy_org.deployments
    ]
    return OrgVerification(legacy_org.org, checks, _verify_profile(legacy_org))


# ------------------------------------------------------------------------------------------ running a phase


@dataclass
class OrgOutcome:
    org: Org
    status: str  # changed | unchanged | planned | failed | blocked
    changes: list[str]
    message: str = ""


def orgs_for_migration(*, slug: str | None) -> list[Org]:
    """The named org, or every org that still has legacy rows."""
    if slug is not None:
        org = Org.objects.filter(slug=slug).first()
        if org is None:
            raise InvalidInput(f"no org with slug '{slug}'")
        return [org]
    with_legacy = Q(legacy_blocks__isnull=False) | Q(legacy_dataflows__isnull=False)
    return list(Org.objects.filter(with_legacy).distinct().order_by("slug"))


def migration_run_org(*, org: Org, phase: str, dry_run: bool, report: Callable[[str], None]) -> OrgOutcome:
    """Plans the phase for one org and, unless dry_run, applies it all or nothing."""
    try:
        legacy_org = LegacyOrg(org)
        planner = OrgPlanner(legacy_org)
        if not legacy_org.has_legacy_rows:
            if phase == PHASE_ROLLBACK:
                return OrgOutcome(
                    org,
                    "unchanged",
                    [],
                    "no legacy rows left: the cleanup is done, there is no legacy flow to go back to",
                )
            return OrgOutcome(org, "unchanged", [], "no legacy rows left")
        planner.check(phase)
        changes = planner.plan(phase)
    except MigrationBlocked as error:
        return OrgOutcome(org, "blocked", [], error.message)
    except DomainError as error:
        return OrgOutcome(org, "failed", [], f"{error.message} (nothing was changed)")
    except Exception as error:  # noqa: BLE001 - a bug or an unexpected answer: this org stops, the others go on
        return OrgOutcome(org, "failed", [], f"{type(error).__name__}: {error} (nothing was changed)")
    if not changes:
        return OrgOutcome(org, "unchanged", [])
    if dry_run:
        for change in changes:
            report(f"  would {change.description}")
        return OrgOutcome(org, "planned", [change.description for change in changes])
    undo = UndoLog()
    done: list[str] = []
    try:
        with transaction.atomic():
            for change in changes:
                change.apply(undo)
                done.append(change.description)
                report(f"  done: {change.description}")
            audit_record(
                org=org,
                action=AuditAction(f"migration.{phase}"),
                object_type="org",
                object_id=org.slug,
                actor="migrate_blocks_to_tasks",
                details={"changes": len(done)},
            )
    except Exception as error:  # noqa: BLE001 - whatever failed, this org is put back and the next one goes on
        failures = undo.run()
        message = error.message if isinstance(error, DomainError) else f"{type(error).__name__}: {error}"
        restored = "rolled back: Django and Prefect are as before" if not failures else "; ".join(failures)
        return OrgOutcome(org, "failed", [], f"{message} ({restored})")
    return OrgOutcome(org, "changed", done)
