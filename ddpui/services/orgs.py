"""Organizations and the org-level Prefect blocks.

Creating an org touches three systems (Airbyte, Prefect through the proxy, our database); the undo stack
(services/undo.py) undoes the external steps that succeeded when a later step fails, so nothing is left
half-created.
"""

from __future__ import annotations

import contextlib
import logging
import re

from django.conf import settings
from django.db import IntegrityError, transaction

from ddpui.airbyte.client import AirbyteNotFound, get_airbyte
from ddpui.errors import Conflict, InvalidInput
from ddpui.models.org import Org, OrgPrefectBlockv1, OrgUser, OrgUserRole
from ddpui.prefect_client import ProxyNotFound, get_proxy
from ddpui.services.undo import UndoStack as Rollback  # the name the older services use
from ddpui.services.users import org_find_by_name, org_slug_for

logger = logging.getLogger(__name__)

ORG_NAME_MAX_LENGTH = 100


def block_name_for(org: Org | str, suffix: str) -> str:
    """A Prefect block name for the org: lowercase letters, digits and dashes only (Prefect's rule)."""
    slug = org if isinstance(org, str) else org.slug
    return re.sub(r"[^a-z0-9-]+", "-", f"{slug}-{suffix}".lower()).strip("-")


def prefect_block_delete(*, block_id: str) -> None:
    """Deletes a block through the proxy; a block already gone is fine (deletes are retried safely)."""
    with contextlib.suppress(ProxyNotFound):
        get_proxy().blocks.delete(block_id)


def org_block_get(*, org: Org, block_type: str, block_name: str | None = None) -> OrgPrefectBlockv1 | None:
    blocks = OrgPrefectBlockv1.objects.filter(org=org, block_type=block_type)
    if block_name is not None:
        blocks = blocks.filter(block_name=block_name)
    return blocks.first()


def airbyte_server_block_create(*, org_slug: str, rollback: Rollback) -> dict:
    """The org's Airbyte server block (host, port, user, password from settings). Returns {block_id, block_name}."""
    name = block_name_for(org_slug, "airbyte-server")
    created = get_proxy().blocks.airbyte_server.create(
        blockName=name,
        serverHost=settings.AIRBYTE_SERVER_HOST,
        serverPort=int(settings.AIRBYTE_SERVER_PORT),
        username=settings.AIRBYTE_USERNAME,
        password=settings.AIRBYTE_PASSWORD,
        apiVersion=settings.AIRBYTE_API_VERSION,
    )
    rollback.add(f"Airbyte server block {name}", lambda: prefect_block_delete(block_id=created["block_id"]))
    return {"block_id": str(created["block_id"]), "block_name": created["block_name"]}


def airbyte_workspace_create(*, name: str, rollback: Rollback) -> str:
    airbyte = get_airbyte()
    workspace_id = airbyte.workspace_create(name=name)["workspaceId"]

    def undo() -> None:
        with contextlib.suppress(AirbyteNotFound):
            airbyte.workspace_delete(workspace_id=workspace_id)

    rollback.add(f"Airbyte workspace {workspace_id}", undo)
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


def org_create(*, user, name: str) -> Org:
    """A new org with its Airbyte workspace and Airbyte server block; the caller becomes its account manager."""
    name = _clean_org_name(name)
    if org_find_by_name(name) is not None:
        raise _name_taken(name)
    slug = org_slug_for(name)
    with Rollback(f"creating the organization '{name}'") as rollback:
        workspace_id = airbyte_workspace_create(name=slug, rollback=rollback)
        block = airbyte_server_block_create(org_slug=slug, rollback=rollback)
        try:
            with transaction.atomic():
                org = Org.objects.create(name=name, slug=slug, airbyte_workspace_id=workspace_id)
                OrgPrefectBlockv1.objects.create(
                    org=org,
                    block_type=OrgPrefectBlockv1.BlockType.AIRBYTE_SERVER,
                    block_id=block["block_id"],
                    block_name=block["block_name"],
                )
                OrgUser.objects.create(user=user, org=org, role=OrgUserRole.ACCOUNT_MANAGER)
        except IntegrityError:
            # another request took the name or slug while we were talking to Airbyte and Prefect
            raise _name_taken(name) from None
    return org
