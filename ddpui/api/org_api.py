"""Organizations and their warehouses (the first one is the default: what the web app calls "the" warehouse)."""

from __future__ import annotations

from typing import Any

from ninja import Field, Router, Schema

from ddpcontract.warehouses import WarehouseType
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
    wtype: WarehouseType
    name: str = ""
    destinationDefId: str | None = None
    airbyteConfig: dict[str, Any]


class WarehouseCreatedOut(Schema):
    wtype: str
    name: str
    destinationId: str
    credentialsBlockName: str


class AirbyteDestinationOut(Schema):
    """Airbyte's read of the warehouse's destination, as the web app reads it (secrets masked)."""

    destinationId: str
    destinationDefinitionId: str | None
    workspaceId: str | None
    name: str | None
    destinationName: str | None
    icon: str | None
    connectionConfiguration: dict[str, Any]


class WarehouseOut(Schema):
    wtype: str
    name: str
    airbyte_destination: AirbyteDestinationOut
    destinationId: str | None
    destinationDefinitionId: str | None
    airbyteConfig: dict[str, Any]
    credentialsBlockName: str
    bqLocation: str | None
    isDefault: bool  # the first warehouse: the one the web app shows, and the default target's unless told


class WarehousesOut(Schema):
    warehouses: list[WarehouseOut]


def _warehouse_json(view: warehouse.WarehouseView, *, is_default: bool) -> dict:
    destination, row = view.destination, view.warehouse
    config = destination.get("connectionConfiguration") or {}
    return {
        "wtype": row.wtype,
        "name": row.name,
        "airbyte_destination": {
            "destinationId": destination.get("destinationId") or row.airbyte_destination_id,
            "destinationDefinitionId": destination.get("destinationDefinitionId"),
            "workspaceId": destination.get("workspaceId"),
            "name": destination.get("name"),
            "destinationName": destination.get("destinationName"),
            "icon": destination.get("icon"),
            "connectionConfiguration": config,
        },
        "destinationId": row.airbyte_destination_id,
        "destinationDefinitionId": destination.get("destinationDefinitionId"),
        "airbyteConfig": config,
        "credentialsBlockName": row.credentials_block_name,
        "bqLocation": row.bq_location,
        "isDefault": is_default,
    }


@router.post("/v1/organizations/", response={200: OrgOut, **ERRORS}, auth=UserAuth())
def create_organization(request, payload: OrgIn):
    org = orgs.org_create(user=request.auth, name=payload.name)
    return {
        "name": org.name,
        "slug": org.slug,
        "airbyte_workspace_id": org.airbyte_workspace_id,
        "role": "account-manager",
    }


def _create_warehouse(request, payload: WarehouseIn) -> dict:
    created = warehouse.warehouse_create(
        org=request.auth.org,
        actor=request.auth.orguser,
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


@router.post(
    "/organizations/warehouse/", response={200: WarehouseCreatedOut, **ERRORS}, auth=org_auth("warehouse:write")
)
def create_warehouse(request, payload: WarehouseIn):
    """The web app's path (W-08)."""
    return _create_warehouse(request, payload)


@router.post(
    "/v1/organizations/warehouse/", response={200: WarehouseCreatedOut, **ERRORS}, auth=org_auth("warehouse:write")
)
def create_warehouse_v1(request, payload: WarehouseIn):
    return _create_warehouse(request, payload)


def _warehouses(request) -> dict:
    views = warehouse.warehouses_list(org=request.auth.org)
    return {"warehouses": [_warehouse_json(view, is_default=index == 0) for index, view in enumerate(views)]}


@router.get("/organizations/warehouses", response={200: WarehousesOut, **ERRORS}, auth=org_auth("warehouse:read"))
def list_warehouses(request):
    """The web app's path (W-04)."""
    return _warehouses(request)


@router.get("/v1/organizations/warehouses", response={200: WarehousesOut, **ERRORS}, auth=org_auth("warehouse:read"))
def list_warehouses_v1(request):
    return _warehouses(request)


@router.delete("/v1/organizations/warehouses/", response={200: OkOut, **ERRORS}, auth=org_auth("warehouse:write"))
def delete_warehouse(request):
    """The web app's delete (W-11): the default warehouse."""
    warehouse.warehouse_delete(org=request.auth.org, actor=request.auth.orguser)
    return {"success": True}


@router.delete(
    "/v1/organizations/warehouses/{destination_id}/",
    response={200: OkOut, **ERRORS},
    auth=org_auth("warehouse:write"),
)
def delete_warehouse_by_destination(request, destination_id: str):
    warehouse.warehouse_delete(org=request.auth.org, actor=request.auth.orguser, destination_id=destination_id)
    return {"success": True}
