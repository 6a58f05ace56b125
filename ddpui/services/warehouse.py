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

from django.db import IntegrityError, transaction

from ddpui.airbyte.client import AirbyteNotFound, get_airbyte
from ddpui.errors import Conflict, DomainError, InvalidInput, NotFound
from ddpui.models.org import Org, OrgDbt, OrgPrefectBlockv1, OrgWarehouse, WarehouseType
from ddpui.models.tasks import OrgTask, TaskType
from ddpui.prefect_client import get_proxy
from ddpui.services.orgs import Rollback, block_name_for, prefect_block_delete

# what Airbyte calls each warehouse type's destination definition
DESTINATION_DEFINITION_NAMES = {
    WarehouseType.POSTGRES: "postgres",
    WarehouseType.DUCKDB: "duckdb",
    WarehouseType.BIGQUERY: "bigquery",
}
MASK = "**********"
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


def _require(config: dict, wtype: str, *keys: str) -> None:
    missing = [key for key in keys if config.get(key) in (None, "")]
    if missing:
        raise InvalidInput(f"airbyteConfig for a {wtype} warehouse needs {', '.join(missing)}")


def destination_config_check(*, wtype: str, config: dict) -> str | None:
    """Refuses a destination configuration that lacks what the warehouse needs (before anything is written).
    Returns the BigQuery location, if any. The proxy derives the dbt profile credentials from the same keys."""
    if any(value == MASK for value in config.values()):
        raise InvalidInput("airbyteConfig holds a masked value: send the real credentials, including the password")
    if wtype == WarehouseType.POSTGRES:
        _require(config, wtype, "host", "port", "database", "username", "password")
        try:
            int(config["port"])
        except (TypeError, ValueError):
            raise InvalidInput("airbyteConfig.port must be a number") from None
        return None
    if wtype == WarehouseType.DUCKDB:
        _require(config, wtype, "destination_path")
        return None
    if wtype == WarehouseType.BIGQUERY:
        _require(config, wtype, "project_id", "dataset_id", "credentials_json")
        keyfile = config["credentials_json"]
        if isinstance(keyfile, str):
            try:
                keyfile = json.loads(keyfile)
            except ValueError:
                raise InvalidInput("airbyteConfig.credentials_json must be the service-account JSON") from None
        if not isinstance(keyfile, dict):
            raise InvalidInput("airbyteConfig.credentials_json must be the service-account JSON")
        return config.get("dataset_location")
    raise InvalidInput(f"unknown warehouse type '{wtype}': use one of {', '.join(WarehouseType.values)}")


def _destination_definition_id(*, org: Org, wtype: str, definition_id: str | None) -> str:
    definitions = get_airbyte().destination_definitions(workspace_id=org.airbyte_workspace_id)
    wanted = DESTINATION_DEFINITION_NAMES[wtype]
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


def warehouse_get(*, org: Org) -> OrgWarehouse:
    warehouse = OrgWarehouse.objects.filter(org=org).first()
    if warehouse is None:
        raise NotFound("your organization has no warehouse yet: create one with POST /api/v1/organizations/warehouse/")
    return warehouse


def _record_block(org: Org, block_type: str, created: dict) -> OrgPrefectBlockv1:
    return OrgPrefectBlockv1.objects.create(
        org=org, block_type=block_type, block_id=str(created["block_id"]), block_name=created["block_name"]
    )


def warehouse_create(
    *, org: Org, wtype: str, name: str, airbyte_config: dict, destination_definition_id: str | None = None
) -> OrgWarehouse:
    """The Airbyte destination, the credentials Secret, then the row (the external steps undone on failure)."""
    if wtype not in WarehouseType.values:
        raise InvalidInput(f"unknown warehouse type '{wtype}': use one of {', '.join(WarehouseType.values)}")
    name = (name or "").strip() or f"{org.slug}-warehouse"
    if OrgWarehouse.objects.filter(org=org).exists():
        raise Conflict("your organization already has a warehouse: update it or delete it first")
    if not org.airbyte_workspace_id:
        raise InvalidInput(
            "your organization has no Airbyte workspace: create one with POST /api/airbyte/v1/workspace/"
        )
    bq_location = destination_config_check(wtype=wtype, config=airbyte_config)
    definition_id = _destination_definition_id(org=org, wtype=wtype, definition_id=destination_definition_id)
    airbyte = get_airbyte()
    with Rollback(f"creating the warehouse of {org.slug}") as rollback:
        destination = airbyte.destination_create(
            workspace_id=org.airbyte_workspace_id, name=name, definition_id=definition_id, config=airbyte_config
        )
        destination_id = destination["destinationId"]
        rollback.add(f"Airbyte destination {destination_id}", lambda: _destination_delete(destination_id))
        secret = get_proxy().blocks.secret.create(
            blockName=block_name_for(org, "warehouse-credentials"), secret=json.dumps(airbyte_config)
        )
        rollback.add("warehouse credentials block", lambda: prefect_block_delete(block_id=secret["block_id"]))
        try:
            with transaction.atomic():
                warehouse = OrgWarehouse.objects.create(
                    org=org,
                    wtype=wtype,
                    name=name,
                    credentials_block_name=secret["block_name"],
                    airbyte_destination_id=destination_id,
                    bq_location=bq_location,
                )
                _record_block(org, OrgPrefectBlockv1.BlockType.SECRET, secret)
        except IntegrityError:  # another request made the org's warehouse meanwhile
            raise Conflict("your organization already has a warehouse: update it or delete it first") from None
    return warehouse


def _destination_delete(destination_id: str) -> None:
    with contextlib.suppress(AirbyteNotFound):
        get_airbyte().destination_delete(destination_id=destination_id)


def warehouses_list(*, org: Org) -> list[dict]:
    """The org's warehouses (none or one), described as warehouse_describe does."""
    warehouse = OrgWarehouse.objects.filter(org=org).first()
    return [] if warehouse is None else [_describe(warehouse)]


def warehouse_describe(*, org: Org) -> dict:
    """The warehouse with its Airbyte destination; every secret value masked."""
    return _describe(warehouse_get(org=org))


def _describe(warehouse: OrgWarehouse) -> dict:
    destination = get_airbyte().destination_get(destination_id=warehouse.airbyte_destination_id)
    return {
        "wtype": warehouse.wtype,
        "name": warehouse.name,
        "destinationId": warehouse.airbyte_destination_id,
        "destinationDefinitionId": destination.get("destinationDefinitionId"),
        "airbyteConfig": mask_secrets(destination.get("connectionConfiguration") or {}),
        "credentialsBlockName": warehouse.credentials_block_name,
        "bqLocation": warehouse.bq_location,
    }


def profile_block_get(*, org: Org) -> OrgPrefectBlockv1 | None:
    return OrgPrefectBlockv1.objects.filter(org=org, block_type=OrgPrefectBlockv1.BlockType.DBT_CLI_PROFILE).first()


def warehouse_update(*, org: Org, destination_id: str, airbyte_config: dict, name: str | None = None) -> OrgWarehouse:
    """New credentials: the Airbyte destination, the credentials Secret and (once made) the dbt profile follow.

    None of these can be put back as it was: Airbyte returns secrets masked and the proxy never returns
    a Secret's value. So both systems are checked first, Airbyte (which validates the configuration)
    is written first, and if a Prefect write still fails the error says so: sending the same request
    again completes the change, since every write sets the full new value."""
    warehouse = OrgWarehouse.objects.filter(org=org, airbyte_destination_id=destination_id).first()
    if warehouse is None:
        raise NotFound(f"destination {destination_id} not found")
    bq_location = destination_config_check(wtype=warehouse.wtype, config=airbyte_config)
    name = (name or "").strip() or warehouse.name
    airbyte = get_airbyte()
    proxy = get_proxy()
    airbyte.destination_get(destination_id=destination_id)
    proxy.health()
    profile = profile_block_get(org=org)
    airbyte.destination_update(destination_id=destination_id, name=name, config=airbyte_config)
    try:
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
    return warehouse


def warehouse_delete(*, org: Org) -> None:
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
        warehouse.delete()
