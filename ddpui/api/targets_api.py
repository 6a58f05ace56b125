"""The dbt targets of the org's workspace (e.g. dev and prod): their schema, warehouse and dbt profile block."""

from __future__ import annotations

from ninja import Field, Router, Schema

from ddpui.api.schemas import ERRORS, OkOut
from ddpui.auth import org_auth
from ddpui.models.org import DbtTarget
from ddpui.services import targets

router = Router(tags=["dbt"])


class TargetIn(Schema):
    name: str = Field(min_length=1, max_length=32)
    schema_: str = Field(alias="schema", min_length=1, max_length=63)
    # the warehouse it builds in (its Airbyte destination); the org's default warehouse when left out
    destinationId: str | None = None


class TargetUpdateIn(Schema):
    schema_: str | None = Field(default=None, alias="schema", min_length=1, max_length=63)
    destinationId: str | None = None


class TargetWarehouseOut(Schema):
    name: str
    wtype: str
    destinationId: str | None


class TargetOut(Schema):
    name: str
    schema_: str = Field(alias="schema")
    isDefault: bool
    warehouse: TargetWarehouseOut | None  # null when its warehouse was deleted
    profileBlock: str | None  # the dbt CLI profile block; null until made (with the transform tasks)


def target_out(target: DbtTarget) -> dict:
    warehouse = target.warehouse
    return {
        "name": target.name,
        "schema": target.schema,
        "isDefault": target.is_default,
        "warehouse": None
        if warehouse is None
        else {"name": warehouse.name, "wtype": warehouse.wtype, "destinationId": warehouse.airbyte_destination_id},
        "profileBlock": target.profile_block.block_name if target.profile_block else None,
    }


@router.get("/v1/dbt/targets/", response={200: list[TargetOut], **ERRORS}, auth=org_auth("dbt:read"), by_alias=True)
def list_targets(request):
    return [target_out(target) for target in targets.targets_list(org=request.auth.org)]


@router.post("/v1/dbt/targets/", response={200: TargetOut, **ERRORS}, auth=org_auth("dbt:write"), by_alias=True)
def create_target(request, payload: TargetIn):
    target = targets.target_create(
        org=request.auth.org,
        actor=request.auth.orguser,
        name=payload.name,
        schema=payload.schema_,
        destination_id=payload.destinationId,
    )
    return target_out(target)


@router.get("/v1/dbt/targets/{name}/", response={200: TargetOut, **ERRORS}, auth=org_auth("dbt:read"), by_alias=True)
def get_target(request, name: str):
    return target_out(targets.target_get(org=request.auth.org, name=name))


@router.put("/v1/dbt/targets/{name}/", response={200: TargetOut, **ERRORS}, auth=org_auth("dbt:write"), by_alias=True)
def update_target(request, name: str, payload: TargetUpdateIn):
    target = targets.target_update(
        org=request.auth.org,
        actor=request.auth.orguser,
        name=name,
        schema=payload.schema_,
        destination_id=payload.destinationId,
    )
    return target_out(target)


@router.delete("/v1/dbt/targets/{name}/", response={200: OkOut, **ERRORS}, auth=org_auth("dbt:write"))
def delete_target(request, name: str):
    targets.target_delete(org=request.auth.org, actor=request.auth.orguser, name=name)
    return {"success": True}
