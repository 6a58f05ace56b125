"""Organizations and the org-level Prefect blocks.

Creating an org touches three systems (Airbyte, Prefect through the proxy, our database); the undo stack
(services/undo.py) undoes the external steps that succeeded when a later step fails, so nothing is left
half-created.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import secrets
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction

from ddpcontract import proxy_api as api
from ddpui.airbyte.client import AirbyteNotFound, get_airbyte
from ddpui.errors import Conflict, InvalidInput
from ddpui.models.org import Org, OrgPrefectBlockv1, OrgUser, OrgUserRole
from ddpui.prefect_client import ProxyConflict, ProxyNotFound, get_proxy
from ddpui.services.undo import UndoStack
from ddpui.services.users import org_find_by_name, org_slug_for

logger = logging.getLogger(__name__)

ORG_NAME_MAX_LENGTH = 100


def block_name_for(org: Org | str, suffix: str) -> str:
    """A Prefect block name for the org: lowercase letters, digits and dashes only (Prefect's rule).

    Distinct slugs give distinct names: a slug that needs changing to fit the rule (`x_y` would become
    `x-y`, which is another org's slug) also gets a short digest of itself. A name that is taken in Prefect
    all the same (a block left behind) is handled where the block is made: `prefect_block_create`."""
    slug = org if isinstance(org, str) else org.slug
    clean = re.sub(r"[^a-z0-9-]+", "-", slug.lower()).strip("-")
    if clean != slug:
        clean = f"{clean}-{hashlib.sha256(slug.encode()).hexdigest()[:6]}".strip("-")
    return re.sub(r"[^a-z0-9-]+", "-", f"{clean}-{suffix}".lower()).strip("-")


def prefect_block_create(*, name: str, create: Callable[[str], api.BlockRef], attempts: int = 4) -> api.BlockRef:
    """Makes a block through `create(name)`, under `name` or, when Prefect already has a block of that name
    (a leftover, or a name derived the same way for another org), under `name` with a random suffix. The
    caller stores the name the answer gives. Prefect's refusal naming the taken block is never passed on."""
    candidate = name
    for _ in range(attempts):
        try:
            return create(candidate)
        except ProxyConflict:
            logger.warning("a Prefect block named %s exists already: choosing another name", candidate)
            candidate = f"{name}-{secrets.token_hex(3)}"
    raise Conflict("could not find a free name for a Prefect block: try again")


def prefect_block_delete(*, block_id: str) -> None:
    """Deletes a block through the proxy; a block already gone is fine (deletes are retried safely)."""
    with contextlib.suppress(ProxyNotFound):
        get_proxy().blocks.delete(block_id)


def org_block_get(*, org: Org, block_type: str, block_name: str | None = None) -> OrgPrefectBlockv1 | None:
    blocks = OrgPrefectBlockv1.objects.filter(org=org, block_type=block_type)
    if block_name is not None:
        blocks = blocks.filter(block_name=block_name)
    return blocks.first()


def airbyte_server_block_create(*, org_slug: str, undo: UndoStack) -> api.BlockRef:
    """The org's Airbyte server block (host, port, user, password from settings)."""

    def create(name: str) -> api.BlockRef:
        return get_proxy().blocks.airbyte_server.create(
            blockName=name,
            serverHost=settings.AIRBYTE_SERVER_HOST,
            serverPort=int(settings.AIRBYTE_SERVER_PORT),
            username=settings.AIRBYTE_USERNAME,
            password=settings.AIRBYTE_PASSWORD,
            apiVersion=settings.AIRBYTE_API_VERSION,
        )

    created = prefect_block_create(name=block_name_for(org_slug, "airbyte-server"), create=create)
    undo.push(f"Airbyte server block {created.block_name}", lambda: prefect_block_delete(block_id=created.block_id))
    return created


def airbyte_workspace_create(*, name: str, undo: UndoStack) -> str:
    airbyte = get_airbyte()
    workspace_id = airbyte.workspace_create(name=name)["workspaceId"]

    def workspace_delete() -> None:
        with contextlib.suppress(AirbyteNotFound):
            airbyte.workspace_delete(workspace_id=workspace_id)

    undo.push(f"Airbyte workspace {workspace_id}", workspace_delete)
    return workspace_id


def _clean_org_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise InvalidInput("the organization needs a name")
    if len(name) > ORG_NAME_MAX_LENGTH:
        raise InvalidInput(f"the organization name must be at most {ORG_NAME_MAX_LENGTH} characters")
    return name


def _name_taken(name: str) -> Conflict:
    return Conflict(f"an organization named '{name}' already exists: choose another name")


def _org_reserve(*, name: str) -> Org:
    """The org's row, made first: the database's unique name and slug settle a race between two creations
    of the same org before either touches Airbyte or Prefect. The row has no members yet, so nobody sees it."""
    for _ in range(3):
        slug = org_slug_for(name)
        try:
            with transaction.atomic():
                return Org.objects.create(name=name, slug=slug)
        except IntegrityError:
            if org_find_by_name(name) is not None:
                raise _name_taken(name) from None
            # another org took the slug between our check and our insert: derive the next one
    raise Conflict(f"could not find a free address (slug) for '{name}': try again")


def org_create(*, user, name: str) -> Org:
    """A new org with its Airbyte workspace and Airbyte server block; the caller becomes its account manager.
    The same name created twice at once: one succeeds, the other gets a 409 before any external step."""
    name = _clean_org_name(name)
    if org_find_by_name(name) is not None:
        raise _name_taken(name)
    org = _org_reserve(name=name)
    with UndoStack(f"creating the organization '{name}'") as undo:
        undo.push(f"organization row {org.slug}", lambda: Org.objects.filter(pk=org.pk).delete())
        workspace_id = airbyte_workspace_create(name=org.slug, undo=undo)
        block = airbyte_server_block_create(org_slug=org.slug, undo=undo)
        with transaction.atomic():
            Org.objects.filter(pk=org.pk).update(airbyte_workspace_id=workspace_id)
            OrgPrefectBlockv1.objects.create(
                org=org,
                block_type=OrgPrefectBlockv1.BlockType.AIRBYTE_SERVER,
                block_id=block.block_id,
                block_name=block.block_name,
            )
            OrgUser.objects.create(user=user, org=org, role=OrgUserRole.ACCOUNT_MANAGER)
    org.refresh_from_db()
    return org
