"""Organizations and their warehouse."""

from __future__ import annotations

from typing import Any, Literal

from ninja import Field, Router, Schema

from ddpui.api.schemas import ERRORS, OkOut
from ddpui.auth import UserAuth, org_auth
from ddpui.services import orgs, warehouse

router = Router(tags=["organizations"])


class OrgIn(Schema):
    name: str = Field(min_length=1, max_length=100)


class OrgOut(Schema):
    name: str
    slug: str
    airbyte_workspace_id: str | None
    role: str


class WarehouseIn(Schema):
    wtype: Literal["postgres", "duckdb", "bigquery"]
    name: str = ""
    destinationDefId: str | None = None
    airbyteConfig: dict[str, Any]


class WarehouseCreatedOut(Schema):
    wtype: str
    name: str
    destinationId: str
    credentialsBlockName: str


class WarehouseOut(Schema):
    wtype: str
    name: str
    destinationId: str | None
    destinationDefinitionId: str | None
    airbyteConfig: dict[str, Any]
    credentialsBlockName: str
    bqLocation: str | None


class WarehousesOut(Schema):
    warehouses: list[WarehouseOut]


@router.post("/v1/organizations/", response={200: OrgOut, **ERRORS}, auth=UserAuth())
def create_organization(request, payload: OrgIn):
    org = orgs.org_create(user=request.auth, name=payload.name)
    return {
        "name": org.name,
        "slug": org.slug,
        "airbyte_workspace_id": org.airbyte_workspace_id,
        "role": "account-manager",
    }


@router.post(
    "/v1/organizations/warehouse/", response={200: WarehouseCreatedOut, **ERRORS}, auth=org_auth("warehouse:write")
)
def create_warehouse(request, payload: WarehouseIn):
    created = warehouse.warehouse_create(
        org=request.auth.org,
        wtype=payload.wtype,
        name=payload.name,
        airbyte_config=payload.airbyteConfig,
        destination_definition_id=payload.destinationDefId,
    )
    return {
        "wtype": created.wtype,
        "name": created.name,
        "destinationId": created.airbyte_destination_id,
        "credentialsBlockName": created.credentials_block_name,
    }


@router.get("/v1/organizations/warehouses", response={200: WarehousesOut, **ERRORS}, auth=org_auth("warehouse:read"))
def list_warehouses(request):
    return {"warehouses": warehouse.warehouses_list(org=request.auth.org)}


@router.delete("/v1/organizations/warehouses/", response={200: OkOut, **ERRORS}, auth=org_auth("warehouse:write"))
def delete_warehouse(request):
    warehouse.warehouse_delete(org=request.auth.org)
    return {"success": True}
