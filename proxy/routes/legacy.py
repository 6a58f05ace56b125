"""Block migration: describe legacy blocks without their secrets; make the dbt profile from a legacy block."""

from __future__ import annotations

from proxy import legacy, schemas
from proxy.dependencies import Prefect, resource_router

router = resource_router(tags=["block migration"])


@router.post("/legacy/blocks/describe")
async def describe_legacy_blocks(request: schemas.LegacyBlocksDescribe, client: Prefect) -> schemas.LegacyBlockList:
    return await legacy.legacy_blocks_describe(client, request=request)


@router.post("/blocks/dbtcli/profile/from_dbtcore/", status_code=201)
async def create_dbt_cli_profile_from_dbtcore(
    request: schemas.DbtCliProfileFromDbtCore, client: Prefect
) -> schemas.DbtCliProfileBlock:
    return await legacy.dbt_cli_profile_from_dbtcore(client, request=request)
