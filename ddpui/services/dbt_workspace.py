"""The org's dbt workspace: a git clone of its dbt project, the git URL in a Secret block, and the OrgDbt row.

The access token only ever lives in the tokenised URL held by the Secret block (the flows' `git pull`
reads it there). It is never logged, stored in a table or returned; git's own messages are redacted.

Setting a workspace up, or moving it to another repository, is a task (services/background.py): one at a
time per org (a second one is a 409), its steps recorded as they happen. The web app's form runs it in the
background and polls its progress; ddpui's earlier form runs the same steps within the request. A
failure at any step removes what the task made (the clone, the block, the rows) and says why.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings
from django.db import IntegrityError, transaction

from ddpui.errors import Conflict, InvalidInput, NotFound
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.org import DbtTarget, Org, OrgDbt, OrgPrefectBlockv1, OrgUser, OrgWarehouse
from ddpui.models.progress import TaskProgress
from ddpui.models.tasks import OrgTask
from ddpui.prefect_client import get_proxy
from ddpui.services import background, locks
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.background import Progress
from ddpui.services.orgs import block_name_for, prefect_block_delete
from ddpui.services.targets import (
    DEFAULT_TARGET_NAME,
    dbt_profile_name,
    schema_check,
    target_default,
)
from ddpui.services.transform_tasks import TRANSFORM_TYPES, orgtasks_refuse_if_used, task_deployments_delete
from ddpui.services.undo import UndoStack

logger = logging.getLogger(__name__)

GIT_CLONE_TIMEOUT_SECONDS = 300
ALREADY_EXISTS = "your organization already has a dbt workspace: delete it first to use another repository"
RESOURCE = "dbt-workspace"
BUSY = "the dbt workspace is being set up or changed by another task: wait for it to finish (GET /api/tasks/{id})"
REDACTED = "***"
_ALLOWED_SCHEMES = {"http", "https", "ssh", "git", "file"}
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")


def _check_repo_url(url: str) -> str:
    """A remote git URL or a local path; never one that carries credentials or could be read as an option."""
    url = (url or "").strip()
    if not url or url.startswith("-") or any(char.isspace() for char in url):
        raise InvalidInput("gitrepoUrl must be a git URL such as https://github.com/org/repo.git")
    parts = urlsplit(url)
    if parts.scheme in _ALLOWED_SCHEMES:
        if parts.username or parts.password:
            raise InvalidInput("put the access token in gitrepoAccessToken, not in gitrepoUrl")
        return url
    if not parts.scheme and (os.path.isabs(url) or _SCP_LIKE.match(url)):
        return url
    raise InvalidInput(f"gitrepoUrl must use one of {', '.join(sorted(_ALLOWED_SCHEMES))} or be an absolute path")


def tokenised_url(url: str, token: str | None) -> str:
    """The URL git clones and pulls from: https://oauth2:TOKEN@host/path when there is a token."""
    if not token:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("an access token can only be used with an http(s) gitrepoUrl")
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"oauth2:{quote(token, safe='')}@{host}", parts.path, parts.query, parts.fragment))


def _redact(text: str, secrets: list[str]) -> str:
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def _git(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",  # never wait for a password on a terminal nobody watches
        "GIT_ALLOW_PROTOCOL": ":".join(sorted(_ALLOWED_SCHEMES)),
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _clone(*, url: str, plain_url: str, token: str | None, target: Path) -> None:
    secrets = [url, token, quote(token, safe="")] if token else []
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = _git("clone", "--quiet", "--", url, str(target), timeout=GIT_CLONE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise InvalidInput(f"git clone of {plain_url} took longer than {GIT_CLONE_TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        message = _redact((done.stderr or done.stdout or "").strip(), secrets)[-1000:]
        raise InvalidInput(f"git clone of {plain_url} failed: {message or f'exit code {done.returncode}'}")
    # the clone's own remote must not keep the token on disk: `git pull` in the flows uses the Secret
    _git("remote", "set-url", "origin", plain_url, cwd=target)


def _branch_of(clone: Path) -> str | None:
    """The branch a fresh clone is on (the remote's default): the branch the workspace tracks."""
    done = _git("rev-parse", "--abbrev-ref", "HEAD", cwd=clone)
    branch = done.stdout.strip()
    return branch if done.returncode == 0 and branch and branch != "HEAD" else None


def _remove_dir(path: Path) -> None:
    root = Path(settings.CLIENT_DBT_ROOT).resolve()
    path = path.resolve()
    if root in path.parents:  # never remove anything outside the org directories
        shutil.rmtree(path, ignore_errors=True)


def project_dir_for(org: Org) -> Path:
    return Path(settings.CLIENT_DBT_ROOT) / org.slug / "dbtrepo"


def dbt_workspace_find(*, org: Org) -> OrgDbt | None:
    return OrgDbt.objects.filter(org=org).first()


def dbt_workspace_get(*, org: Org) -> OrgDbt:
    dbt = dbt_workspace_find(org=org)
    if dbt is None:
        raise NotFound("your organization has no dbt workspace: set one up with POST /api/dbt/workspace/")
    return dbt


def _reserve(org: Org, actor: OrgUser | None, kind: str) -> TaskProgress:
    running = background.task_running(org=org, resource=RESOURCE)
    if running is not None:
        raise Conflict(BUSY.format(id=running.task_id))
    return background.task_reserve(
        org=org, actor=actor, kind=kind, resource=RESOURCE, busy=BUSY.format(id="of the other request")
    )


def _staging_for(project_dir: Path) -> Path:
    return project_dir.with_name(f".{project_dir.name}-{uuid.uuid4().hex[:12]}")


def _remove_staging_leftovers(project_dir: Path) -> None:
    """Staging clones of tasks that died with their process (only one task runs per org: none is live)."""
    for leftover in project_dir.parent.glob(f".{project_dir.name}-*"):
        _remove_dir(leftover)


class _Setup:
    """A checked set-up request: what the task will clone, store and record."""

    def __init__(self, *, org: Org, gitrepo_url: str, gitrepo_access_token: str | None, default_schema: str):
        if OrgDbt.objects.filter(org=org).exists():
            raise Conflict(ALREADY_EXISTS)
        warehouse = OrgWarehouse.objects.filter(org=org).order_by("id").first()
        if warehouse is None:
            raise InvalidInput("your organization has no warehouse: create it before the dbt workspace")
        self.org = org
        self.warehouse = warehouse
        self.plain_url = _check_repo_url(gitrepo_url)
        self.schema = schema_check(default_schema)
        self.token = (gitrepo_access_token or "").strip() or None
        self.pull_url = tokenised_url(self.plain_url, self.token)

    def run(self, progress: Progress, actor: OrgUser | None) -> str:
        org = self.org
        project_dir = project_dir_for(org)
        _remove_staging_leftovers(project_dir)
        # cloned beside its final place and moved there once the row exists
        staging = _staging_for(project_dir)
        block_name = block_name_for(org, "git-pull-url")
        with UndoStack(f"setting up the dbt workspace of {org.slug}") as undo:
            undo.push(f"clone in {staging}", lambda: _remove_dir(staging))
            progress.step(f"cloning {self.plain_url}")
            _clone(url=self.pull_url, plain_url=self.plain_url, token=self.token, target=staging)
            progress.step(f"saving the git pull URL in the Prefect Secret block {block_name}")
            secret = get_proxy().blocks.secret.create(blockName=block_name, secret=self.pull_url)
            undo.push("git pull URL block", lambda: prefect_block_delete(block_id=secret.block_id))
            branch = _branch_of(staging)
            progress.step(
                f"recording the workspace (branch {branch or 'the default'}, target {DEFAULT_TARGET_NAME} in schema "
                f"{self.schema} of the warehouse {self.warehouse.name})"
            )
            try:
                with transaction.atomic():
                    OrgPrefectBlockv1.objects.create(
                        org=org,
                        block_type=OrgPrefectBlockv1.BlockType.SECRET,
                        block_id=secret.block_id,
                        block_name=secret.block_name,
                    )
                    dbt = OrgDbt.objects.create(
                        org=org,
                        gitrepo_url=self.plain_url,
                        gitrepo_access_token_secret=secret.block_name,
                        gitrepo_branch=branch,
                        project_dir=str(project_dir),
                        dbt_venv=str(settings.DBT_VENV),
                    )
                    # its profile block is made with the transform tasks
                    DbtTarget.objects.create(
                        dbt=dbt, name=DEFAULT_TARGET_NAME, schema=self.schema, warehouse=self.warehouse, is_default=True
                    )
                    audit_record(
                        org=org,
                        orguser=actor,
                        action=AuditAction.DBT_WORKSPACE_CREATED,
                        object_type="dbt_workspace",
                        object_id=org.slug,
                        details={"gitrepo_url": self.plain_url, "schema": self.schema},
                    )
                    # a directory already there belongs to no workspace: one was left by an earlier attempt
                    _remove_dir(project_dir)
                    staging.rename(project_dir)
            except IntegrityError:  # a workspace was made meanwhile by ddpui's admin or another version
                raise Conflict(ALREADY_EXISTS) from None
        return f"dbt workspace ready: {self.plain_url} cloned, schema {self.schema}"


def dbt_workspace_create(
    *, org: Org, actor: OrgUser | None, gitrepo_url: str, gitrepo_access_token: str | None, default_schema: str
) -> OrgDbt:
    """Sets the workspace up within the request: clones the repository, stores the (tokenised) pull URL as a
    Secret block, records the workspace. Its errors are the caller's answer."""
    setup = _Setup(
        org=org, gitrepo_url=gitrepo_url, gitrepo_access_token=gitrepo_access_token, default_schema=default_schema
    )
    task = _reserve(org, actor, "dbt-workspace-setup")
    background.task_run_inline(task=task, job=lambda progress: setup.run(progress, actor))
    return dbt_workspace_get(org=org)


def dbt_workspace_setup_start(
    *, org: Org, actor: OrgUser | None, gitrepo_url: str, gitrepo_access_token: str | None, default_schema: str
) -> TaskProgress:
    """The same set-up as a background task: the request is checked now (4xx for what can be told at
    once), the clone and the rest run after the answer; the task's progress says how it went."""
    setup = _Setup(
        org=org, gitrepo_url=gitrepo_url, gitrepo_access_token=gitrepo_access_token, default_schema=default_schema
    )
    task = _reserve(org, actor, "dbt-workspace-setup")
    background.task_start(task=task, job=lambda progress: setup.run(progress, actor))
    return task


def _refuse_while_tasks_run(org: Org, verb: str) -> None:
    orgtasks = OrgTask.objects.filter(org=org, task__type__in=TRANSFORM_TYPES)
    held = list(locks.locks_status(orgtask_ids=orgtasks.values_list("id", flat=True)).values())
    if held:
        raise locks.TaskLocked(f"cannot {verb} now: {'; '.join(locks.describe_lock(lock) for lock in held)}", held)


def dbt_repository_change_start(
    *, org: Org, actor: OrgUser | None, gitrepo_url: str, gitrepo_access_token: str | None
) -> TaskProgress:
    """Moves the workspace to another repository (or the same one with a new token) in the background:
    the new clone replaces the old one and the git pull URL block gets the new URL. Refused while a git or
    dbt task runs (they use the clone); a failure leaves the workspace as it was."""
    dbt = dbt_workspace_get(org=org)
    plain_url = _check_repo_url(gitrepo_url)
    token = (gitrepo_access_token or "").strip() or None
    pull_url = tokenised_url(plain_url, token)
    _refuse_while_tasks_run(org, "change the repository")
    task = _reserve(org, actor, "dbt-repository-change")

    def job(progress: Progress) -> str:
        project_dir = Path(dbt.project_dir)
        _remove_staging_leftovers(project_dir)
        staging, previous = _staging_for(project_dir), _staging_for(project_dir)
        with UndoStack(f"changing the dbt repository of {org.slug}") as undo:
            undo.push(f"clone in {staging}", lambda: _remove_dir(staging))
            progress.step(f"cloning {plain_url}")
            _clone(url=pull_url, plain_url=plain_url, token=token, target=staging)
            progress.step("replacing the clone and the git pull URL")
            branch = _branch_of(staging)
            with transaction.atomic():
                current = OrgDbt.objects.select_for_update().select_related("org").get(id=dbt.id)
                if project_dir.exists():
                    project_dir.rename(previous)
                    undo.push("the previous clone", lambda: _restore(previous, project_dir))
                staging.rename(project_dir)
                old_url = current.gitrepo_url
                current.gitrepo_url, current.gitrepo_branch = plain_url, branch
                current.save(update_fields=["gitrepo_url", "gitrepo_branch", "updated_at"])
                audit_record(
                    org=org,
                    orguser=actor,
                    action=AuditAction.DBT_WORKSPACE_REPOSITORY_CHANGED,
                    object_type="dbt_workspace",
                    object_id=org.slug,
                    details={"from": old_url, "to": plain_url},
                )
                proxy = get_proxy()
                # the new project may ask for another profile name (dbt_project.yml `profile:`): every target's
                # profile follows
                profiled = list(
                    DbtTarget.objects.filter(dbt=current, profile_block__isnull=False).select_related("profile_block")
                )

                def profiles_named(directory: Path) -> None:
                    name = dbt_profile_name(str(directory), org.slug)
                    for target in profiled:
                        proxy.blocks.dbt_cli_profile.update(
                            cli_profile_block_name=target.profile_block.block_name,
                            profile={"name": name, "target": target.name},
                        )

                if profiled:
                    profiles_named(project_dir)
                    undo.push("the dbt profiles' name", lambda: profiles_named(previous))
                # last: a Secret cannot be read back, so this write is the one step with no undo
                proxy.blocks.secret.update(blockName=current.gitrepo_access_token_secret, secret=pull_url)
        _remove_dir(previous)
        return f"the dbt workspace now uses {plain_url}"

    background.task_start(task=task, job=job)
    return task


def _restore(previous: Path, project_dir: Path) -> None:
    _remove_dir(project_dir)
    previous.rename(project_dir)


def dbt_schema_update(*, org: Org, actor: OrgUser | None, schema: str) -> OrgDbt:
    """The schema of the workspace's default target (what the web app calls the workspace's schema), and its dbt
    profile's when it has one. Another target building in that schema of the same warehouse is a 409."""
    schema = schema_check(schema)
    dbt = dbt_workspace_get(org=org)
    target = target_default(org=org)
    if target is None:
        raise NotFound("your dbt workspace has no default target")
    if target.warehouse is not None:
        other = (
            DbtTarget.objects.filter(warehouse=target.warehouse, schema__iexact=schema).exclude(id=target.id).first()
        )
        if other is not None:
            raise Conflict(
                f"target '{other.name}' already builds in schema '{other.schema}' of the warehouse "
                f"'{target.warehouse.name}': two targets in one warehouse need two schemas"
            )
    with transaction.atomic():
        old = target.schema
        target.schema = schema
        target.save(update_fields=["schema", "updated_at"])
        audit_record(
            org=org,
            orguser=actor,
            action=AuditAction.DBT_WORKSPACE_SCHEMA_CHANGED,
            object_type="dbt_workspace",
            object_id=org.slug,
            details={"from": old, "to": schema, "target": target.name},
        )
        if target.profile_block is not None:
            # inside the transaction: if the proxy refuses, the new schema is not stored either
            get_proxy().blocks.dbt_cli_profile.update(
                cli_profile_block_name=target.profile_block.block_name, target_schema=schema
            )
    return dbt


def dbt_workspace_delete(*, org: Org, actor: OrgUser | None) -> None:
    """Refused while pipelines use its tasks, a task runs, or a set-up task works on it. Removes the git URL
    block and its targets' dbt profile blocks, the git and dbt tasks, the rows (targets included) and the
    clone. The blocks go first and the rows last; a block already gone is skipped, so a delete that failed
    half-way can be sent again."""
    dbt = dbt_workspace_get(org=org)
    running = background.task_running(org=org, resource=RESOURCE)
    if running is not None:
        raise Conflict(BUSY.format(id=running.task_id))
    orgtasks = list(OrgTask.objects.select_related("task").filter(org=org, task__type__in=TRANSFORM_TYPES))
    orgtasks_refuse_if_used(orgtasks, "the dbt workspace's tasks are")
    blocks = list(
        OrgPrefectBlockv1.objects.filter(
            org=org, block_type=OrgPrefectBlockv1.BlockType.SECRET, block_name=dbt.gitrepo_access_token_secret
        )
    ) + list(OrgPrefectBlockv1.objects.filter(id__in=DbtTarget.objects.filter(dbt=dbt).values("profile_block_id")))
    task_deployments_delete(org=org, orgtasks=orgtasks)  # the dbt-run tasks' own deployments
    for block in blocks:
        prefect_block_delete(block_id=block.block_id)
    with transaction.atomic():
        OrgTask.objects.filter(id__in=[task.id for task in orgtasks]).delete()
        # pipelines of syncs only may still name a target: they keep running, without one
        OrgDataFlowv1.objects.filter(target__dbt=dbt).update(target=None)
        dbt.delete()
        OrgPrefectBlockv1.objects.filter(id__in=[block.id for block in blocks]).delete()
        audit_record(
            org=org,
            orguser=actor,
            action=AuditAction.DBT_WORKSPACE_DELETED,
            object_type="dbt_workspace",
            object_id=org.slug,
            details={"gitrepo_url": dbt.gitrepo_url},
        )
    _remove_dir(Path(dbt.project_dir))
