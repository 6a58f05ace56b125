"""The org's warehouse: an Airbyte destination, its credentials in a Prefect Secret block, a row of references.

Django never stores the credentials. They live in the Secret block `<slug>-warehouse-credentials` (the
destination's configuration as JSON), written through the proxy while the request that carries them is
handled. The dbt CLI profile is made from that block later, by the transform tasks (services.transform_tasks):
the proxy reads the block itself, so the credentials never need to pass through Django again.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from ddpcontract.proxy_api import SECRET_MASK
from ddpcontract.warehouses import UnknownWarehouseType, WarehouseConfigError, warehouse_for
from ddpui.airbyte.client import AirbyteNotFound, get_airbyte
from ddpui.errors import Conflict, DomainError, InvalidInput, NotFound
from ddpui.models.org import Org, OrgDbt, OrgPrefectBlockv1, OrgUser, OrgWarehouse, WarehouseType
from ddpui.models.tasks import OrgTask, TaskType
from ddpui.prefect_client import get_proxy
from ddpui.services import connectors
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.orgs import block_name_for, prefect_block_delete
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


def warehouse_get(*, org: Org) -> OrgWarehouse:
    warehouse = OrgWarehouse.objects.filter(org=org).first()
    if warehouse is None:
        raise NotFound("your organization has no warehouse yet: create one with POST /api/organizations/warehouse/")
    return warehouse


def _record_block(org: Org, block_type: str, created: dict) -> OrgPrefectBlockv1:
    return OrgPrefectBlockv1.objects.create(
        org=org, block_type=block_type, block_id=created.block_id, block_name=created.block_name
    )


ALREADY_EXISTS = "your organization already has a warehouse: update it or delete it first"


def warehouse_create(
    *,
    org: Org,
    actor: OrgUser | None,
    wtype: str,
    name: str,
    airbyte_config: dict,
    destination_definition_id: str | None = None,
) -> OrgWarehouse:
    """The Airbyte destination, the credentials Secret, then the row; the external steps undone on failure.

    The row is inserted first, in the transaction that spans the external steps: a second create for the
    same org waits on that insert and then gets 409, before it has touched Airbyte or Prefect."""
    if wtype not in WarehouseType.values:
        raise InvalidInput(f"unknown warehouse type '{wtype}': use one of {', '.join(WarehouseType.values)}")
    name = (name or "").strip() or f"{org.slug}-warehouse"
    if OrgWarehouse.objects.filter(org=org).exists():
        raise Conflict(ALREADY_EXISTS)
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
                credentials_block_name=block_name_for(org, "warehouse-credentials"),
                bq_location=bq_location,
            )
            destination = airbyte.destination_create(
                workspace_id=org.airbyte_workspace_id, name=name, definition_id=definition_id, config=airbyte_config
            )
            destination_id = destination["destinationId"]
            undo.push(f"Airbyte destination {destination_id}", lambda: _destination_delete(destination_id))
            secret = get_proxy().blocks.secret.create(
                blockName=warehouse.credentials_block_name, secret=json.dumps(airbyte_config)
            )
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
    except IntegrityError:  # another request made the org's warehouse meanwhile
        raise Conflict(ALREADY_EXISTS) from None
    return warehouse


def _destination_delete(destination_id: str) -> None:
    with contextlib.suppress(AirbyteNotFound):
        get_airbyte().destination_delete(destination_id=destination_id)


def _view(warehouse: OrgWarehouse) -> WarehouseView:
    destination = get_airbyte().destination_get(destination_id=warehouse.airbyte_destination_id)
    destination["connectionConfiguration"] = mask_secrets(destination.get("connectionConfiguration") or {})
    return WarehouseView(warehouse=warehouse, destination=destination)


def warehouses_list(*, org: Org) -> list[WarehouseView]:
    """The org's warehouses (none or one) with their Airbyte destinations: 1 query, 1 Airbyte call."""
    warehouse = OrgWarehouse.objects.filter(org=org).first()
    return [] if warehouse is None else [_view(warehouse)]


def profile_block_get(*, org: Org) -> OrgPrefectBlockv1 | None:
    return OrgPrefectBlockv1.objects.filter(org=org, block_type=OrgPrefectBlockv1.BlockType.DBT_CLI_PROFILE).first()


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
    profile = profile_block_get(org=org)
    airbyte.destination_update(destination_id=destination_id, name=name, config=airbyte_config)
    try:
        if _holds_mask(airbyte_config):
            proxy.blocks.secret.merge(blockName=warehouse.credentials_block_name, secret=airbyte_config)
        else:
            proxy.blocks.secret.update(blockName=warehouse.credentials_block_name, secret=json.dumps(airbyte_config))
        if profile is not None:
            # the proxy re-reads the credentials from the block just written
            proxy.blocks.dbt_cli_profile.update(
                cli_profile_block_name=profile.block_name, credentials_block_name=warehouse.credentials_block_name
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


def warehouse_delete(*, org: Org, actor: OrgUser | None) -> None:
    """Refused while connections or a dbt workspace use the warehouse. Deletes are retry-safe: what is
    already gone in Airbyte or Prefect is skipped, and the rows go last. (A dbt profile block can only be
    left here by an older version, which wrote it with the warehouse: it goes too.)"""
    warehouse = warehouse_get(org=org)
    connections = OrgTask.objects.filter(org=org, task__type=TaskType.AIRBYTE, connection_id__isnull=False).count()
    if connections:
        raise Conflict(f"the warehouse is used by {connections} connection(s): delete them first")
    if OrgDbt.objects.filter(org=org).exists():
        raise Conflict("the warehouse is used by the dbt workspace: delete it first (DELETE /api/dbt/workspace/)")
    blocks = list(
        OrgPrefectBlockv1.objects.filter(
            org=org,
            block_type__in=[OrgPrefectBlockv1.BlockType.DBT_CLI_PROFILE, OrgPrefectBlockv1.BlockType.SECRET],
            block_name__in=[warehouse.credentials_block_name, block_name_for(org, "dbt-profile")],
        )
    )
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
