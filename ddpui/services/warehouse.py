"""The org's warehouses: each an Airbyte destination, its credentials in a Prefect Secret block, a row of references.

An org may have several (e.g. a development and a production one); the first (lowest id) is its default, which
is what every answer about "the" warehouse means (the web app reads `warehouses[0]`). Django never stores the
credentials. They live in a Secret block per warehouse (`<slug>-warehouse-credentials` for the first, the
destination's configuration as JSON), written through the proxy while the request that carries them is handled.
The dbt CLI profiles of the dbt targets are made from that block (services.targets): the proxy reads the block
itself, so the credentials never need to pass through Django again.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from ddpcontract import proxy_api as api
from ddpcontract.proxy_api import SECRET_MASK
from ddpcontract.warehouses import UnknownWarehouseType, WarehouseConfigError, warehouse_for
from ddpui.airbyte.client import AirbyteNotFound, get_airbyte
from ddpui.errors import Conflict, DomainError, InvalidInput, NotFound
from ddpui.models.org import DbtTarget, Org, OrgPrefectBlockv1, OrgUser, OrgWarehouse, WarehouseType
from ddpui.prefect_client import get_proxy
from ddpui.services import connectors
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.orgs import block_name_for, prefect_block_create, prefect_block_delete
from ddpui.services.undo import UndoStack

MASK = SECRET_MASK
_SECRET_KEY = re.compile(r"password|secret|token|credentials_json|keyfile|private_key", re.IGNORECASE)


def mask_secrets(value):
    """A copy of a configuration with every secret-looking value replaced by the mask."""
    if isinstance(value, dict):
        return {
            key: (MASK if _SECRET_KEY.search(str(key)) and item not in (None, "") else mask_secrets(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value


def _holds_mask(value) -> bool:
    if isinstance(value, dict):
        return any(_holds_mask(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_mask(item) for item in value)
    return value == MASK


def _unmasked_from_read(config, read):
    """The configuration sent back with each masked value that Airbyte's own read shows in clear (a field that
    ddpui masks but Airbyte does not treat as a secret) put back. The masks Airbyte also shows stay: Airbyte and
    the proxy each keep their stored value for those."""
    if isinstance(config, dict):
        read = read if isinstance(read, dict) else {}
        return {key: _unmasked_from_read(value, read.get(key)) for key, value in config.items()}
    if isinstance(config, list):
        read = read if isinstance(read, list) else []
        return [_unmasked_from_read(item, read[i] if i < len(read) else None) for i, item in enumerate(config)]
    if config == MASK and read not in (None, "", MASK):
        return read
    return config


def destination_config_check(*, wtype: str, config: dict, masks_keep_stored: bool = False) -> str | None:
    """Refuses a destination configuration that lacks what the warehouse needs (before anything is written).
    Returns its location, if the type has one (BigQuery). The registry (`ddpcontract.warehouses`) says what each
    type needs; the proxy derives the dbt profile credentials from the same configuration with it.

    On an update (`masks_keep_stored`), a masked value stands for the stored one, which was checked when it was
    saved: it counts as present and is not checked again."""
    try:
        kind = warehouse_for(wtype)
    except UnknownWarehouseType:
        raise InvalidInput(f"unknown warehouse type '{wtype}': use one of {', '.join(WarehouseType.values)}") from None
    if _holds_mask(config):
        if not masks_keep_stored:
            raise InvalidInput(
                "the configuration holds a masked value (**********): send the real credentials, including the password"
            )
        # a JSON-object field (BigQuery's service account) masked: an empty object stands in for the check
        objects = {spec.name for spec in kind.destination_fields if spec.kind == "object"}
        config = {key: {} if key in objects and value == MASK else value for key, value in config.items()}
    try:
        kind.check_destination(config)
    except UnknownWarehouseType:
        raise InvalidInput(f"unknown warehouse type '{wtype}': use one of {', '.join(WarehouseType.values)}") from None
    except WarehouseConfigError as error:
        if error.missing:
            raise InvalidInput(f"airbyteConfig for a {wtype} warehouse needs {', '.join(error.missing)}") from None
        raise InvalidInput(f"airbyteConfig.{error.field} {error.problem}") from None
    return kind.location(config)


def _destination_definition_id(*, org: Org, wtype: str, definition_id: str | None) -> str:
    definitions = connectors.destination_definitions_list(org=org)
    wanted = warehouse_for(wtype).destination
    if definition_id:
        found = next((d for d in definitions if d["destinationDefinitionId"] == definition_id), None)
        if found is None:
            raise InvalidInput(f"destination definition {definition_id} is not offered by this Airbyte server")
        if found["name"].strip().lower() != wanted:
            raise InvalidInput(f"destination definition {definition_id} is '{found['name']}', not a {wtype} warehouse")
        return definition_id
    found = next((d for d in definitions if d["name"].strip().lower() == wanted), None)
    if found is None:
        raise InvalidInput(
            f"warehouse type '{wtype}' is not supported by this Airbyte server: it has no {wanted} destination"
        )
    return found["destinationDefinitionId"]


@dataclass(frozen=True)
class WarehouseView:
    """The warehouse row with Airbyte's read of its destination (every secret masked)."""

    warehouse: OrgWarehouse
    destination: dict


def warehouse_get(*, org: Org, destination_id: str | None = None) -> OrgWarehouse:
    """The warehouse of that Airbyte destination, or the org's default one (the first)."""
    if destination_id is not None:
        return _org_destination(org, destination_id)
    warehouse = OrgWarehouse.objects.filter(org=org).order_by("id").first()
    if warehouse is None:
        raise NotFound("your organization has no warehouse yet: create one with POST /api/organizations/warehouse/")
    return warehouse


def _record_block(org: Org, block_type: str, created: dict) -> OrgPrefectBlockv1:
    return OrgPrefectBlockv1.objects.create(
        org=org, block_type=block_type, block_id=created.block_id, block_name=created.block_name
    )


def _already_exists(name: str) -> str:
    return (
        f"your organization already has a warehouse named '{name}': give the new one another name, or update that one"
    )


def _credentials_secret_create(block_name: str, airbyte_config: dict, *, first: bool) -> api.BlockRef:
    """The warehouse's credentials Secret. The first warehouse's has the org's name for it (taken in Prefect: a
    502 naming it); another's is made from the warehouse's name, so a taken one gets a free name beside it."""

    def create(name: str) -> api.BlockRef:
        return get_proxy().blocks.secret.create(blockName=name, secret=json.dumps(airbyte_config))

    return create(block_name) if first else prefect_block_create(name=block_name, create=create)


def _credentials_block_name(org: Org, name: str, first: bool) -> str:
    if first:
        return block_name_for(org, "warehouse-credentials")
    return block_name_for(org, f"warehouse-{slugify(name)[:60] or 'x'}-credentials")


def warehouse_create(
    *,
    org: Org,
    actor: OrgUser | None,
    wtype: str,
    name: str,
    airbyte_config: dict,
    destination_definition_id: str | None = None,
) -> OrgWarehouse:
    """The Airbyte destination, the credentials Secret, then the row; the external steps undone on failure. An org
    may have several warehouses, each with its own name (the first made is the default one).

    The row is inserted first, in the transaction that spans the external steps: a second create of the same
    name waits on that insert and then gets 409, before it has touched Airbyte or Prefect."""
    if wtype not in WarehouseType.values:
        raise InvalidInput(f"unknown warehouse type '{wtype}': use one of {', '.join(WarehouseType.values)}")
    name = (name or "").strip() or f"{org.slug}-warehouse"
    if len(name) > 100:
        raise InvalidInput("the warehouse name must be at most 100 characters")
    if OrgWarehouse.objects.filter(org=org, name=name).exists():
        raise Conflict(_already_exists(name))
    first = not OrgWarehouse.objects.filter(org=org).exists()
    connectors.require_workspace(org)
    bq_location = destination_config_check(wtype=wtype, config=airbyte_config)
    definition_id = _destination_definition_id(org=org, wtype=wtype, definition_id=destination_definition_id)
    specification = connectors.destination_specification(org=org, definition_id=definition_id)
    connectors.config_check_against_spec(
        specification=specification, config=airbyte_config, connector=warehouse_for(wtype).destination
    )
    airbyte = get_airbyte()
    try:
        with UndoStack(f"creating the warehouse of {org.slug}") as undo, transaction.atomic():
            warehouse = OrgWarehouse.objects.create(
                org=org,
                wtype=wtype,
                name=name,
                credentials_block_name=_credentials_block_name(org, name, first),
                bq_location=bq_location,
            )
            destination = airbyte.destination_create(
                workspace_id=org.airbyte_workspace_id, name=name, definition_id=definition_id, config=airbyte_config
            )
            destination_id = destination["destinationId"]
            undo.push(f"Airbyte destination {destination_id}", lambda: _destination_delete(destination_id))
            secret = _credentials_secret_create(warehouse.credentials_block_name, airbyte_config, first=first)
            undo.push("warehouse credentials block", lambda: prefect_block_delete(block_id=secret.block_id))
            warehouse.airbyte_destination_id = destination_id
            warehouse.credentials_block_name = secret.block_name
            warehouse.save(update_fields=["airbyte_destination_id", "credentials_block_name", "updated_at"])
            _record_block(org, OrgPrefectBlockv1.BlockType.SECRET, secret)
            audit_record(
                org=org,
                orguser=actor,
                action=AuditAction.WAREHOUSE_CREATED,
                object_type="warehouse",
                object_id=destination_id,
                details={"wtype": wtype, "name": name},
            )
    except IntegrityError:  # another request made a warehouse of that name meanwhile
        raise Conflict(_already_exists(name)) from None
    return warehouse


def _destination_delete(destination_id: str) -> None:
    with contextlib.suppress(AirbyteNotFound):
        get_airbyte().destination_delete(destination_id=destination_id)


def warehouses_list(*, org: Org) -> list[WarehouseView]:
    """The org's warehouses, the default one first, with their Airbyte destinations (every secret masked): 1 query
    and 1 Airbyte call whatever their number."""
    warehouses = list(OrgWarehouse.objects.filter(org=org).order_by("id"))
    if not warehouses:
        return []
    destinations = {
        destination["destinationId"]: destination
        for destination in get_airbyte().destinations_list(workspace_id=org.airbyte_workspace_id)
    }
    views = []
    for warehouse in warehouses:
        destination = dict(destinations.get(warehouse.airbyte_destination_id) or {})
        destination["connectionConfiguration"] = mask_secrets(destination.get("connectionConfiguration") or {})
        views.append(WarehouseView(warehouse=warehouse, destination=destination))
    return views


def _org_destination(org: Org, destination_id: str) -> OrgWarehouse:
    warehouse = OrgWarehouse.objects.filter(org=org, airbyte_destination_id=destination_id).first()
    if warehouse is None:
        raise NotFound(f"destination {destination_id} not found")
    return warehouse


def destination_check_for_update(*, org: Org, destination_id: str, name: str | None, config: dict):
    """Checks new settings of the org's destination before they are saved (masked secrets keep theirs)."""
    warehouse = _org_destination(org, destination_id)
    destination = get_airbyte().destination_get(destination_id=destination_id)
    return connectors.destination_check_for_update(
        org=org, destination=destination, name=(name or "").strip() or warehouse.name, config=config
    )


def warehouse_update(
    *, org: Org, actor: OrgUser | None, destination_id: str, airbyte_config: dict, name: str | None = None
) -> OrgWarehouse:
    """New credentials: the Airbyte destination, the credentials Secret and (once made) the dbt profile follow.

    The web app sends the whole configuration back with the secrets still masked (`**********`) unless the user
    typed them again: as in Airbyte, a masked value keeps the stored one. Airbyte keeps its own (its update
    takes the mask so); the credentials Secret is merged by the proxy, which keeps its stored value wherever the
    new one is masked; the stored secrets never pass through Django.

    None of these can be put back as it was: Airbyte returns secrets masked and the proxy never returns
    a Secret's value. So both systems are checked first, Airbyte (which validates the configuration)
    is written first, and if a Prefect write still fails the error says so: sending the same request
    again completes the change, since every write sets the full new value."""
    warehouse = _org_destination(org, destination_id)
    name = (name or "").strip() or warehouse.name
    if OrgWarehouse.objects.filter(org=org, name=name).exclude(id=warehouse.id).exists():
        raise Conflict(f"your organization already has another warehouse named '{name}'")
    airbyte = get_airbyte()
    proxy = get_proxy()
    destination = airbyte.destination_get(destination_id=destination_id)
    airbyte_config = _unmasked_from_read(airbyte_config, destination.get("connectionConfiguration") or {})
    bq_location = destination_config_check(wtype=warehouse.wtype, config=airbyte_config, masks_keep_stored=True)
    specification = connectors.destination_specification(org=org, definition_id=destination["destinationDefinitionId"])
    connectors.config_check_against_spec(
        specification=specification,
        config=airbyte_config,
        connector=destination.get("destinationName") or "destination",
    )
    proxy.health()
    # the dbt profiles of the targets building in this warehouse carry its credentials
    profiles = list(
        OrgPrefectBlockv1.objects.filter(
            id__in=DbtTarget.objects.filter(warehouse=warehouse).values("profile_block_id")
        ).values_list("block_name", flat=True)
    )
    airbyte.destination_update(destination_id=destination_id, name=name, config=airbyte_config)
    try:
        if _holds_mask(airbyte_config):
            proxy.blocks.secret.merge(blockName=warehouse.credentials_block_name, secret=airbyte_config)
        else:
            proxy.blocks.secret.update(blockName=warehouse.credentials_block_name, secret=json.dumps(airbyte_config))
        for profile in profiles:
            # the proxy re-reads the credentials from the block just written
            proxy.blocks.dbt_cli_profile.update(
                cli_profile_block_name=profile, credentials_block_name=warehouse.credentials_block_name
            )
    except DomainError as error:
        raise type(error)(
            f"{error.message}. The Airbyte destination already uses the new configuration but the credentials "
            "blocks may not: send the same request again to finish"
        ) from error
    with transaction.atomic():
        warehouse.name = name
        warehouse.bq_location = bq_location
        warehouse.save(update_fields=["name", "bq_location", "updated_at"])
        audit_record(
            org=org,
            orguser=actor,
            action=AuditAction.WAREHOUSE_UPDATED,
            object_type="warehouse",
            object_id=destination_id,
            details={"name": name},
        )
    return warehouse


def _connections_using(org: Org, warehouse: OrgWarehouse) -> list[str]:
    """The names of the Airbyte connections writing into the warehouse's destination (1 Airbyte call)."""
    if not warehouse.airbyte_destination_id or not org.airbyte_workspace_id:
        return []
    return sorted(
        connection.get("name") or connection["connectionId"]
        for connection in get_airbyte().connections_list(workspace_id=org.airbyte_workspace_id)
        if connection.get("destinationId") == warehouse.airbyte_destination_id
    )


def warehouse_delete(*, org: Org, actor: OrgUser | None, destination_id: str | None = None) -> None:
    """Deletes the warehouse of that destination (the default one when none is named). Refused (409, naming them)
    while dbt targets build in it or connections write into it. Deletes are retry-safe: what is already gone in
    Airbyte or Prefect is skipped, and the rows go last. With the org's last warehouse go the dbt profile blocks
    an older version wrote with the warehouse, found by their stored rows."""
    warehouse = warehouse_get(org=org, destination_id=destination_id)
    label = f"the warehouse '{warehouse.name}'" if warehouse.name else "the warehouse"
    targets = list(DbtTarget.objects.filter(warehouse=warehouse).order_by("name").values_list("name", flat=True))
    if targets:
        raise Conflict(
            f"{label} is used by the dbt target(s) {', '.join(targets)}: give them another warehouse "
            "(PUT /api/v1/dbt/targets/{name}/) or delete them (the default target goes with the dbt workspace, "
            "DELETE /api/dbt/workspace/) first"
        )
    connections = _connections_using(org, warehouse)
    if connections:
        raise Conflict(
            f"{label} is used by {len(connections)} connection(s) ({', '.join(connections)}): delete them first"
        )
    blocks = list(
        OrgPrefectBlockv1.objects.filter(
            org=org, block_type=OrgPrefectBlockv1.BlockType.SECRET, block_name=warehouse.credentials_block_name
        )
    )
    if not OrgWarehouse.objects.filter(org=org).exclude(id=warehouse.id).exists():
        blocks += OrgPrefectBlockv1.objects.filter(
            org=org, block_type=OrgPrefectBlockv1.BlockType.DBT_CLI_PROFILE
        ).exclude(id__in=DbtTarget.objects.filter(profile_block__isnull=False).values("profile_block_id"))
    if warehouse.airbyte_destination_id:
        with contextlib.suppress(AirbyteNotFound):
            # confirms Airbyte answers before anything is deleted
            get_airbyte().destination_get(destination_id=warehouse.airbyte_destination_id)
    for block in blocks:
        prefect_block_delete(block_id=block.block_id)
    if warehouse.airbyte_destination_id:
        _destination_delete(warehouse.airbyte_destination_id)
    with transaction.atomic():
        OrgPrefectBlockv1.objects.filter(id__in=[block.id for block in blocks]).delete()
        audit_record(
            org=org,
            orguser=actor,
            action=AuditAction.WAREHOUSE_DELETED,
            object_type="warehouse",
            object_id=warehouse.airbyte_destination_id or "",
            details={"wtype": warehouse.wtype, "name": warehouse.name},
        )
        warehouse.delete()
