"""The org's dbt workspace: a git clone of its dbt project, the git URL in a Secret block, and the OrgDbt row.

The access token only ever lives in the tokenised URL held by the Secret block (the flows' `git pull`
reads it there). It is never logged, stored in a table or returned; git's own messages are redacted.
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
from ddpui.models.org import Org, OrgDbt, OrgPrefectBlockv1, OrgWarehouse
from ddpui.models.tasks import OrgTask
from ddpui.prefect_client import get_proxy
from ddpui.services.orgs import Rollback, block_name_for, prefect_block_delete
from ddpui.services.transform_tasks import TRANSFORM_TYPES, orgtasks_refuse_if_used
from ddpui.services.warehouse import profile_block_get

logger = logging.getLogger(__name__)

GIT_CLONE_TIMEOUT_SECONDS = 300
ALREADY_EXISTS = "your organization already has a dbt workspace: delete it first to use another repository"
REDACTED = "***"
_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_ALLOWED_SCHEMES = {"http", "https", "ssh", "git", "file"}
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")


def _check_schema(schema: str) -> str:
    schema = (schema or "").strip()
    if not _SCHEMA.match(schema):
        raise InvalidInput("the schema must be a plain SQL identifier (letters, digits, underscores)")
    return schema


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


def _remove_dir(path: Path) -> None:
    root = Path(settings.CLIENT_DBT_ROOT).resolve()
    path = path.resolve()
    if root in path.parents:  # never remove anything outside the org directories
        shutil.rmtree(path, ignore_errors=True)


def project_dir_for(org: Org) -> Path:
    return Path(settings.CLIENT_DBT_ROOT) / org.slug / "dbtrepo"


def dbt_workspace_get(*, org: Org) -> OrgDbt:
    dbt = OrgDbt.objects.select_related("cli_profile_block").filter(org=org).first()
    if dbt is None:
        raise NotFound("your organization has no dbt workspace: set one up with POST /api/dbt/workspace/")
    return dbt


def dbt_workspace_create(
    *, org: Org, gitrepo_url: str, gitrepo_access_token: str | None, default_schema: str
) -> OrgDbt:
    """Clones the repository, stores the (tokenised) pull URL as a Secret block, records the workspace."""
    if OrgDbt.objects.filter(org=org).exists():
        raise Conflict(ALREADY_EXISTS)
    warehouse = OrgWarehouse.objects.filter(org=org).first()
    if warehouse is None:
        raise InvalidInput("your organization has no warehouse: create it before the dbt workspace")
    plain_url = _check_repo_url(gitrepo_url)
    schema = _check_schema(default_schema)
    token = (gitrepo_access_token or "").strip() or None
    pull_url = tokenised_url(plain_url, token)
    project_dir = project_dir_for(org)
    # cloned beside its final place and moved there once the row exists, so a concurrent attempt
    # can never remove the winner's clone
    staging = project_dir.with_name(f".{project_dir.name}-{uuid.uuid4().hex[:12]}")
    with Rollback(f"creating the dbt workspace of {org.slug}") as rollback:
        rollback.add(f"clone in {staging}", lambda: _remove_dir(staging))
        _clone(url=pull_url, plain_url=plain_url, token=token, target=staging)
        secret = get_proxy().blocks.secret.create(blockName=block_name_for(org, "git-pull-url"), secret=pull_url)
        rollback.add("git pull URL block", lambda: prefect_block_delete(block_id=secret["block_id"]))
        try:
            with transaction.atomic():
                OrgPrefectBlockv1.objects.create(
                    org=org,
                    block_type=OrgPrefectBlockv1.BlockType.SECRET,
                    block_id=str(secret["block_id"]),
                    block_name=secret["block_name"],
                )
                dbt = OrgDbt.objects.create(
                    org=org,
                    gitrepo_url=plain_url,
                    gitrepo_access_token_secret=secret["block_name"],
                    project_dir=str(project_dir),
                    dbt_venv=str(settings.DBT_VENV),
                    target_type=warehouse.wtype,
                    default_schema=schema,
                )
                # a directory already there belongs to no workspace: one was left by an earlier attempt
                _remove_dir(project_dir)
                staging.rename(project_dir)
        except IntegrityError:  # another request made the org's workspace meanwhile
            raise Conflict(ALREADY_EXISTS) from None
    return dbt


def dbt_schema_update(*, org: Org, schema: str) -> OrgDbt:
    """The workspace's target schema, and the dbt profile's when the transform tasks use it."""
    schema = _check_schema(schema)
    with transaction.atomic():
        dbt = dbt_workspace_get(org=org)
        dbt.default_schema = schema
        dbt.save(update_fields=["default_schema", "updated_at"])
        if dbt.cli_profile_block is not None:
            # inside the transaction: if the proxy refuses, the new schema is not stored either
            get_proxy().blocks.dbt_cli_profile.update(
                cli_profile_block_name=dbt.cli_profile_block.block_name, target_schema=schema
            )
    return dbt


def dbt_workspace_delete(*, org: Org) -> None:
    """Refused while pipelines use its tasks or a task runs. Removes the git URL block and the dbt profile
    block (made by the transform tasks), the git and dbt tasks, the rows and the clone. The blocks go first
    and the rows last; a block already gone is skipped, so a delete that failed half-way can be sent again."""
    dbt = dbt_workspace_get(org=org)
    orgtasks = list(OrgTask.objects.select_related("task").filter(org=org, task__type__in=TRANSFORM_TYPES))
    orgtasks_refuse_if_used(orgtasks, "the dbt workspace's tasks are")
    blocks = [
        block
        for block in (
            OrgPrefectBlockv1.objects.filter(
                org=org, block_type=OrgPrefectBlockv1.BlockType.SECRET, block_name=dbt.gitrepo_access_token_secret
            ).first(),
            profile_block_get(org=org),
        )
        if block is not None
    ]
    for block in blocks:
        prefect_block_delete(block_id=block.block_id)
    with transaction.atomic():
        OrgTask.objects.filter(id__in=[task.id for task in orgtasks]).delete()
        dbt.delete()
        OrgPrefectBlockv1.objects.filter(id__in=[block.id for block in blocks]).delete()
    _remove_dir(Path(dbt.project_dir))
