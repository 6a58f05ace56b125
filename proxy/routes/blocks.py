"""Blocks: the Airbyte server, the dbt CLI profile (a Secret holding the profile JSON) and Secrets."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Path, Query

from ddpcontract.tasks import BLOCK_NAME_PATTERN
from proxy import blocks, schemas
from proxy.dependencies import CREATED, Prefect, resource_router

router = resource_router(tags=["blocks"], prefix="/blocks")


@router.post("/airbyte/server/", **CREATED)
async def create_airbyte_server(request: schemas.AirbyteServerCreate, client: Prefect) -> schemas.BlockRef:
    return await blocks.airbyte_server_create(client, request=request)


@router.put("/airbyte/server/")
async def update_airbyte_server(request: schemas.AirbyteServerUpdate, client: Prefect) -> schemas.BlockRef:
    return await blocks.airbyte_server_update(client, request=request)


@router.get("/airbyte/server/")
async def read_airbyte_server(
    blockName: Annotated[str, Query(pattern=BLOCK_NAME_PATTERN)], client: Prefect
) -> schemas.AirbyteServerBlock:
    return await blocks.airbyte_server_read(client, name=blockName)


@router.post("/dbtcli/profile/", **CREATED)
async def create_dbt_cli_profile(request: schemas.DbtCliProfileCreate, client: Prefect) -> schemas.BlockRef:
    return await blocks.dbt_cli_profile_create(client, request=request)


@router.put("/dbtcli/profile/")
async def update_dbt_cli_profile(request: schemas.DbtCliProfileUpdate, client: Prefect) -> schemas.BlockRef:
    return await blocks.dbt_cli_profile_update(client, request=request)


@router.get("/dbtcli/profile/")
async def read_dbt_cli_profile(
    block_name: Annotated[str, Query(pattern=BLOCK_NAME_PATTERN)], client: Prefect
) -> schemas.DbtCliProfileBlock:
    return await blocks.dbt_cli_profile_read(client, name=block_name)


@router.post("/secret/", **CREATED)
async def create_secret(request: schemas.SecretWrite, client: Prefect) -> schemas.BlockRef:
    return await blocks.secret_create(client, request=request)


@router.put("/secret/")
async def upsert_secret(request: schemas.SecretWrite, client: Prefect) -> schemas.BlockRef:
    return await blocks.secret_upsert(client, request=request)


@router.patch("/secret/")
async def merge_secret(request: schemas.SecretMerge, client: Prefect) -> schemas.SecretMerged:
    return await blocks.secret_merge(client, request=request)


@router.get("/secret/{block_name}")
async def read_secret(
    block_name: Annotated[str, Path(pattern=BLOCK_NAME_PATTERN)], client: Prefect
) -> schemas.BlockRef:
    return await blocks.secret_read(client, name=block_name)


@router.delete("/{block_id}")
async def delete_block(block_id: UUID, client: Prefect) -> schemas.BlockDeleted:
    return await blocks.block_delete(client, block_id=block_id)
