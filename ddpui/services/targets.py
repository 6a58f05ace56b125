"""The dbt targets of the org's workspace (e.g. `dev` and `prod`): each a name, the schema dbt builds into, the
warehouse it builds in, and its own dbt CLI profile block (a Secret holding the profile JSON; the proxy derives the
credentials from the warehouse's credentials block, so they never pass through Django).

The workspace is made with its default target (named `default`), used wherever no target is named: the web
app's pipelines and task runs, the schema route. Other targets are added through the API. A pipeline or a one-off
task run names its target; its git and dbt tasks then run in that target's copy of the repository (on the worker)
and with that target's profile, and they are locked per target.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.db import IntegrityError, transaction
from django.db.models.functions import Lower

from ddpcontract.tasks import TARGET_NAME_PATTERN
from ddpui.errors import Conflict, InvalidInput, NotFound
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.org import DbtTarget, Org, OrgDbt, OrgPrefectBlockv1, OrgUser, OrgWarehouse
from ddpui.prefect_client import get_proxy
from ddpui.services import locks
from ddpui.services.audit import AuditAction, audit_record
from ddpui.services.orgs import block_name_for, prefect_block_create, prefect_block_delete
from ddpui.services.undo import UndoStack

DEFAULT_TARGET_NAME = "default"
_TARGET_NAME = re.compile(TARGET_NAME_PATTERN)
_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PROFILE_LINE = re.compile(r"^profile:\s*[\"']?([A-Za-z0-9_\-]+)", re.MULTILINE)
NO_WORKSPACE = "your organization has no dbt workspace: set one up with POST /api/dbt/workspace/"


def dbt_profile_name(project_dir: str, default: str) -> str:
    """The `profile:` the dbt project asks for (dbt looks the profile up by that name), read from Django's copy."""
    try:
        text = (Path(project_dir) / "dbt_project.yml").read_text()
    except OSError:
        return default
    found = _PROFILE_LINE.search(text)
    return found.group(1) if found else default


def schema_check(schema: str) -> str:
    schema = (schema or "").strip()
    if not _SCHEMA.match(schema):
        raise InvalidInput("the schema must be a plain SQL identifier (letters, digits, underscores)")
    return schema


def _name_check(name: str) -> str:
    name = (name or "").strip()
    if not _TARGET_NAME.match(name):
        raise InvalidInput(
            f"'{name}' cannot name a target: use 1 to 32 lowercase letters, digits and underscores, "
            "starting with a letter (e.g. dev, prod)"
        )
    return name


# ------------------------------------------------------------------------------------------ reads


def targets_list(*, org: Org) -> list[DbtTarget]:
    """The workspace's targets, the default first, with their warehouse and profile block: one query."""
    return list(
        DbtTarget.objects.filter(dbt__org=org)
        .select_related("warehouse", "profile_block")
        .order_by("-is_default", "name")
    )


def target_default(*, org: Org) -> DbtTarget | None:
    return DbtTarget.objects.filter(dbt__org=org, is_default=True).select_related("warehouse", "profile_block").first()


def target_get(*, org: Org, name: str) -> DbtTarget:
    target = DbtTarget.objects.filter(dbt__org=org, name=name).select_related("warehouse", "profile_block").first()
    if target is None:
        raise NotFound(f"target {name} not found")
    return target


def target_resolve(*, org: Org, name: str | None) -> DbtTarget:
    """The target a pipeline or task run names (the default one when it names none); an unknown name is a 400
    listing the workspace's targets."""
    targets = targets_list(org=org)
    if not targets:
        raise InvalidInput(NO_WORKSPACE)
    if name is None or not str(name).strip():
        return next((target for target in targets if target.is_default), targets[0])
    found = next((target for target in targets if target.name == str(name).strip()), None)
    if found is None:
        known = ", ".join(target.name for target in targets)
        raise InvalidInput(f"unknown target '{name}': your dbt workspace's targets are {known}")
    return found


def target_require_runnable(target: DbtTarget) -> None:
    """Refuses (400) a target that dbt cannot run on: no warehouse (deleted), no profile block yet, no schema."""
    if target.warehouse_id is None:
        raise InvalidInput(
            f"target '{target.name}' has no warehouse (its warehouse was deleted): give it one with "
            f"PUT /api/v1/dbt/targets/{target.name}/ and a destinationId"
        )
    if target.profile_block_id is None:
        raise InvalidInput(
            f"target '{target.name}' has no dbt CLI profile: create the transform tasks with "
            "POST /api/prefect/tasks/transform/"
        )
    if not target.schema:
        raise InvalidInput(f"target '{target.name}' has no schema: set one with PUT /api/v1/dbt/targets/{target.name}/")


def pipelines_using(target: DbtTarget) -> list[str]:
    """The names of the pipelines whose git and dbt tasks run on the target (their own manual deployments aside)."""
    return sorted(
        set(
            OrgDataFlowv1.objects.filter(
                target=target, dataflow_type=OrgDataFlowv1.DataflowType.ORCHESTRATE
            ).values_list("name", flat=True)
        )
    )


# ------------------------------------------------------------------------------------------ profiles


def _profile_fields(*, dbt: OrgDbt, target: DbtTarget, warehouse: OrgWarehouse) -> dict:
    """What the proxy writes into a target's profile: the project's profile name, the target's name and schema,
    and the credentials it derives from the warehouse's credentials block."""
    return {
        "profile": {"name": dbt_profile_name(dbt.project_dir, dbt.org.slug), "target": target.name},
        "wtype": warehouse.wtype,
        "target_schema": target.schema,
        "credentials_block_name": warehouse.credentials_block_name,
    }


def _profile_block_name(org: Org, target: DbtTarget) -> str:
    suffix = "dbt-profile" if target.is_default else f"dbt-profile-{target.name}"
    return block_name_for(org, suffix)


def target_profile_make(*, dbt: OrgDbt, target: DbtTarget, undo: UndoStack) -> None:
    """Makes the target's dbt CLI profile block (the proxy reads the warehouse's credentials) and links it to the
    target; the block is deleted by `undo` if the operation fails later. The rows are the caller's transaction's."""
    if target.warehouse is None:
        raise InvalidInput(f"target '{target.name}' has no warehouse: give it one before its dbt profile is made")
    fields = _profile_fields(dbt=dbt, target=target, warehouse=target.warehouse)

    def create(name: str) -> dict:
        return get_proxy().blocks.dbt_cli_profile.create(cli_profile_block_name=name, **fields)

    # the default target's profile has the org's name for it (taken in Prefect: a 502 naming it); another target's
    # is made from the target's name, and a taken one gets a free name beside it
    name = _profile_block_name(dbt.org, target)
    created = create(name) if target.is_default else prefect_block_create(name=name, create=create)
    undo.push(f"dbt profile block of target {target.name}", lambda: prefect_block_delete(block_id=created.block_id))
    target.profile_block = OrgPrefectBlockv1.objects.create(
        org=dbt.org,
        block_type=OrgPrefectBlockv1.BlockType.DBT_CLI_PROFILE,
        block_id=created.block_id,
        block_name=created.block_name,
    )
    target.save(update_fields=["profile_block", "updated_at"])


def target_profile_rewrite(*, dbt: OrgDbt, target: DbtTarget) -> None:
    """Writes the target's current schema, warehouse and profile name into its existing profile block."""
    if target.profile_block is None or target.warehouse is None:
        return
    get_proxy().blocks.dbt_cli_profile.update(
        cli_profile_block_name=target.profile_block.block_name,
        **_profile_fields(dbt=dbt, target=target, warehouse=target.warehouse),
    )


# ------------------------------------------------------------------------------------------ changes


def _workspace(org: Org) -> OrgDbt:
    dbt = OrgDbt.objects.select_related("org").filter(org=org).first()
    if dbt is None:
        raise InvalidInput(NO_WORKSPACE)
    return dbt


def _warehouse_for(org: Org, destination_id: str | None) -> OrgWarehouse:
    """The warehouse a target is to use: the one of that Airbyte destination, else the org's default."""
    warehouses = OrgWarehouse.objects.filter(org=org)
    if destination_id:
        warehouse = warehouses.filter(airbyte_destination_id=destination_id).first()
        if warehouse is None:
            raise InvalidInput(f"destinationId {destination_id} is not one of your organization's warehouses")
        return warehouse
    warehouse = warehouses.order_by("id").first()
    if warehouse is None:
        raise InvalidInput("your organization has no warehouse: create it first")
    return warehouse


def _refuse_schema_taken(*, warehouse: OrgWarehouse, schema: str, exclude: DbtTarget | None = None) -> None:
    taken = DbtTarget.objects.annotate(lower_schema=Lower("schema")).filter(
        warehouse=warehouse, lower_schema=schema.lower()
    )
    if exclude is not None:
        taken = taken.exclude(id=exclude.id)
    other = taken.first()
    if other is not None:
        raise Conflict(
            f"target '{other.name}' already builds in schema '{other.schema}' of the warehouse "
            f"'{warehouse.name}': two targets in one warehouse need two schemas"
        )


def target_create(
    *, org: Org, actor: OrgUser | None, name: str, schema: str, destination_id: str | None = None
) -> DbtTarget:
    """A new target with its own dbt CLI profile block. Everything is checked before Prefect is asked; if a step
    fails the block is deleted and no row stays."""
    name = _name_check(name)
    schema = schema_check(schema)
    dbt = _workspace(org)
    warehouse = _warehouse_for(org, destination_id)
    if DbtTarget.objects.filter(dbt=dbt, name=name).exists():
        raise Conflict(f"your dbt workspace already has a target named '{name}'")
    _refuse_schema_taken(warehouse=warehouse, schema=schema)
    try:
        with UndoStack(f"creating the target {name} of {org.slug}") as undo, transaction.atomic():
            # the row first: a second create of the same name waits for it and gets 409 before Prefect is asked
            target = DbtTarget.objects.create(dbt=dbt, name=name, schema=schema, warehouse=warehouse)
            target_profile_make(dbt=dbt, target=target, undo=undo)
            audit_record(
                org=org,
                orguser=actor,
                action=AuditAction.DBT_TARGET_CREATED,
                object_type="dbt_target",
                object_id=name,
                details={"schema": schema, "warehouse": warehouse.name},
            )
    except IntegrityError:  # made meanwhile by another request
        raise Conflict(f"your dbt workspace already has a target named '{name}', or one in schema '{schema}'") from None
    return target_get(org=org, name=name)


def target_update(
    *, org: Org, actor: OrgUser | None, name: str, schema: str | None = None, destination_id: str | None = None
) -> DbtTarget:
    """Another schema or warehouse for the target; its profile block follows (rewritten through the proxy inside the
    transaction: if the proxy refuses, nothing changes). A target whose warehouse was deleted gets one here."""
    target = target_get(org=org, name=name)  # first: another org's (or an unknown) target is a 404
    dbt = _workspace(org)
    new_schema = schema_check(schema) if schema is not None else target.schema
    warehouse = _warehouse_for(org, destination_id) if destination_id else target.warehouse
    if warehouse is None:
        raise InvalidInput(f"target '{name}' has no warehouse: send the destinationId of one of your warehouses")
    _refuse_schema_taken(warehouse=warehouse, schema=new_schema, exclude=target)
    old = {"schema": target.schema, "warehouse": target.warehouse.name if target.warehouse else None}
    try:
        with transaction.atomic():
            target.schema, target.warehouse = new_schema, warehouse
            target.save(update_fields=["schema", "warehouse", "updated_at"])
            if target.profile_block is not None:
                target_profile_rewrite(dbt=dbt, target=target)
            audit_record(
                org=org,
                orguser=actor,
                action=AuditAction.DBT_TARGET_UPDATED,
                object_type="dbt_target",
                object_id=name,
                details={"from": old, "to": {"schema": new_schema, "warehouse": warehouse.name}},
            )
    except IntegrityError:
        raise Conflict(f"another target builds in schema '{new_schema}' of the warehouse '{warehouse.name}'") from None
    return target_get(org=org, name=name)


def target_delete(*, org: Org, actor: OrgUser | None, name: str) -> None:
    """Deletes a target and its profile block. Refused for the default target, while pipelines run on it, and
    while one of its tasks runs."""
    target = target_get(org=org, name=name)
    if target.is_default:
        raise Conflict(f"'{name}' is the default target: it goes with the dbt workspace (DELETE /api/dbt/workspace/)")
    pipelines = pipelines_using(target)
    if pipelines:
        raise Conflict(f"target '{name}' is used by the pipeline(s) {', '.join(pipelines)}: move or delete them first")
    held = locks.locks_on_target(target=target)
    if held:
        raise locks.TaskLocked(
            f"target '{name}' is in use: {'; '.join(locks.describe_lock(lock) for lock in held)}", held
        )
    if target.profile_block is not None:
        prefect_block_delete(block_id=target.profile_block.block_id)
    with transaction.atomic():
        if target.profile_block is not None:
            target.profile_block.delete()
        audit_record(
            org=org,
            orguser=actor,
            action=AuditAction.DBT_TARGET_DELETED,
            object_type="dbt_target",
            object_id=name,
            details={"schema": target.schema},
        )
        target.delete()
