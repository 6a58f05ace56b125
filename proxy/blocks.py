"""The three kinds of block ddpui keeps in Prefect: the Airbyte server, the dbt CLI profile and secrets.

Blocks are saved with the Block classes' own async `asave`, so the block type, block schema and block document
are registered exactly as `Block.load(name)` on a worker expects (a schema is looked up by checksum and only
created when missing). The dbt CLI profile is a Secret block holding the profile as a JSON string: Prefect masks
a Secret's string value in its API, but neither a DbtCliProfile's fields nor a Secret holding a JSON *object*.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from airbyte_prefect.server import AirbyteServer
from prefect.blocks.system import Secret
from prefect.client.orchestration import PrefectClient
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from ddpcontract.warehouses import WarehouseConfigError, warehouse_for
from proxy import schemas
from proxy.errors import Conflict, InvalidRequest, NotFound
from proxy.prefect_api import prefect_json

SECRET_SLUG = Secret.get_block_type_slug()
AIRBYTE_SERVER_SLUG = AirbyteServer.get_block_type_slug()


async def _read_document(
    client: PrefectClient, *, slug: str, name: str, label: str, include_secrets: bool = False
) -> dict[str, Any]:
    return await prefect_json(
        client,
        "GET",
        f"/block_types/slug/{slug}/block_documents/name/{name}",
        params={"include_secrets": include_secrets},
        not_found=f"no {label} block named {name!r}",
    )


async def _create(client: PrefectClient, block, *, name: str, label: str) -> schemas.BlockRef:
    try:
        block_id = await block.asave(name=name, overwrite=False, client=client)
    except ValueError as exc:
        if isinstance(exc.__cause__, ObjectAlreadyExists):
            raise Conflict(f"a {label} block named {name!r} already exists; update it with PUT") from None
        raise
    return schemas.BlockRef(block_id=block_id, block_name=name)


async def _overwrite(client: PrefectClient, block, *, name: str) -> schemas.BlockRef:
    block_id = await block.asave(name=name, overwrite=True, client=client)
    return schemas.BlockRef(block_id=block_id, block_name=name)


async def block_delete(client: PrefectClient, *, block_id: UUID) -> schemas.BlockDeleted:
    try:
        await client.delete_block_document(block_id)
    except ObjectNotFound:
        raise NotFound(f"no block with id {block_id}") from None
    return schemas.BlockDeleted(block_id=block_id)


# ---------------------------------------------------------------- Airbyte server


async def airbyte_server_create(client: PrefectClient, *, request: schemas.AirbyteServerCreate) -> schemas.BlockRef:
    block = AirbyteServer(
        server_host=request.serverHost,
        server_port=request.serverPort,
        username=request.username,
        password=request.password,
        api_version=request.apiVersion,
        use_ssl=request.useSsl,
    )
    return await _create(client, block, name=request.blockName, label="Airbyte server")


async def airbyte_server_update(client: PrefectClient, *, request: schemas.AirbyteServerUpdate) -> schemas.BlockRef:
    document = await _read_document(
        client, slug=AIRBYTE_SERVER_SLUG, name=request.blockName, label="Airbyte server", include_secrets=True
    )
    saved = document["data"]
    changes = {
        "server_host": request.serverHost,
        "server_port": request.serverPort,
        "username": request.username,
        "password": request.password,
        "api_version": request.apiVersion,
        "use_ssl": request.useSsl,
    }
    values = {**saved, **{key: value for key, value in changes.items() if value is not None}}
    return await _overwrite(client, AirbyteServer(**values), name=request.blockName)


async def airbyte_server_read(client: PrefectClient, *, name: str) -> schemas.AirbyteServerBlock:
    document = await _read_document(client, slug=AIRBYTE_SERVER_SLUG, name=name, label="Airbyte server")
    data = document["data"]
    return schemas.AirbyteServerBlock(
        block_id=document["id"],
        block_name=document["name"],
        serverHost=data.get("server_host", ""),
        serverPort=data.get("server_port", 0),
        username=data.get("username", ""),
        apiVersion=data.get("api_version", "v1"),
        useSsl=data.get("use_ssl", False),
    )


# ---------------------------------------------------------------- secrets


async def secret_create(client: PrefectClient, *, request: schemas.SecretWrite) -> schemas.BlockRef:
    return await _create(client, Secret(value=request.secret), name=request.blockName, label="secret")


async def secret_upsert(client: PrefectClient, *, request: schemas.SecretWrite) -> schemas.BlockRef:
    return await _overwrite(client, Secret(value=request.secret), name=request.blockName)


_ABSENT = object()


def _unmask(new: Any, stored: Any, path: tuple, kept: list[str]) -> Any:
    """`new` with each value equal to the mask replaced by the stored value at the same place."""
    if isinstance(new, dict):
        return {
            key: _unmask(value, stored.get(key, _ABSENT) if isinstance(stored, dict) else _ABSENT, (*path, key), kept)
            for key, value in new.items()
        }
    if isinstance(new, list):
        return [
            _unmask(
                item,
                stored[index] if isinstance(stored, list) and index < len(stored) else _ABSENT,
                (*path, index),
                kept,
            )
            for index, item in enumerate(new)
        ]
    if new == schemas.SECRET_MASK:
        where = ".".join(str(part) for part in path)
        if stored is _ABSENT or stored is None:
            raise InvalidRequest(
                f"{where} is masked ({schemas.SECRET_MASK}) but the secret holds no value there to keep: send the value"
            )
        kept.append(where)
        return stored
    return new


async def secret_merge(client: PrefectClient, *, request: schemas.SecretMerge) -> schemas.SecretMerged:
    """Replace a JSON Secret's object, keeping the stored value wherever the new one is masked; the secret's value
    is read and written here, and never answered."""
    name = request.blockName
    document = await _read_document(client, slug=SECRET_SLUG, name=name, label="secret", include_secrets=True)
    try:
        stored = json.loads(document["data"]["value"])
    except (KeyError, TypeError, ValueError):
        stored = None
    if not isinstance(stored, dict):
        raise InvalidRequest(
            f"the secret {name!r} does not hold a JSON object, so masked values have nothing to keep: "
            "send the whole value with PUT"
        )
    kept: list[str] = []
    merged = _unmask(request.secret, stored, (), kept)
    saved = await _overwrite(client, Secret(value=json.dumps(merged)), name=name)
    return schemas.SecretMerged(block_id=saved.block_id, block_name=saved.block_name, kept=kept)


async def secret_read(client: PrefectClient, *, name: str) -> schemas.BlockRef:
    document = await _read_document(client, slug=SECRET_SLUG, name=name, label="secret")
    return schemas.BlockRef(block_id=document["id"], block_name=document["name"])


async def secret_value(client: PrefectClient, *, name: str) -> Any:
    """A Secret block's value, for the proxy's own use (an outgoing webhook's URL): never returned to a caller."""
    document = await _read_document(client, slug=SECRET_SLUG, name=name, label="secret", include_secrets=True)
    return (document.get("data") or {}).get("value")


# ---------------------------------------------------------------- dbt CLI profile (a Secret holding JSON)


def _canonical_credentials(wtype: str, credentials: dict[str, Any]) -> dict[str, Any]:
    """Accept the spellings Django and dbt use and return the flow's contract keys (the registry's aliases)."""
    return warehouse_for(wtype).canonical_credentials(credentials)


def _complete_credentials(wtype: str, credentials: dict[str, Any], location: str | None) -> dict[str, Any]:
    try:
        return warehouse_for(wtype).complete_credentials(credentials, location=location)
    except WarehouseConfigError as error:
        if error.missing:
            raise InvalidRequest(f"{wtype} credentials need {', '.join(error.missing)}") from None
        raise InvalidRequest(f"{wtype} credentials: {error.field} {error.problem}") from None


def _credentials_from_destination(wtype: str, config: dict[str, Any], name: str) -> tuple[dict[str, Any], str | None]:
    """The profile credentials (and location) in an Airbyte destination configuration, mapped by the registry the
    way Django checks a warehouse's `airbyteConfig`; only what dbt needs is kept."""
    warehouse = warehouse_for(wtype)
    try:
        return warehouse.profile_credentials(config), warehouse.location(config)
    except WarehouseConfigError as error:
        if error.missing:
            raise InvalidRequest(
                f"the warehouse configuration in secret {name!r} lacks {', '.join(error.missing)}"
            ) from None
        raise InvalidRequest(f"the warehouse configuration in secret {name!r}: {error.field} {error.problem}") from None


async def _credentials_from_block(client: PrefectClient, *, wtype: str, name: str) -> tuple[dict[str, Any], str | None]:
    """Read server-side, so the warehouse's secrets need not travel through the caller again."""
    try:
        document = await _read_document(client, slug=SECRET_SLUG, name=name, label="secret", include_secrets=True)
    except NotFound:
        raise InvalidRequest(f"credentials_block_name: no secret block named {name!r}") from None
    try:
        config = json.loads(document["data"]["value"])
    except (KeyError, TypeError, ValueError):
        config = None
    if not isinstance(config, dict):
        raise InvalidRequest(f"the secret {name!r} does not hold a warehouse configuration (a JSON object)")
    return _credentials_from_destination(wtype, config, name)


def _profile_from_secret(document: dict[str, Any], name: str) -> dict[str, Any]:
    try:
        profile = json.loads(document["data"]["value"])
    except (KeyError, TypeError, ValueError):
        profile = None
    if not isinstance(profile, dict) or "credentials" not in profile or "type" not in profile:
        raise NotFound(f"the secret {name!r} does not hold a dbt CLI profile")
    return profile


async def dbt_cli_profile_create(client: PrefectClient, *, request: schemas.DbtCliProfileCreate) -> schemas.BlockRef:
    if request.credentials_block_name is not None:
        credentials, location = await _credentials_from_block(
            client, wtype=request.wtype, name=request.credentials_block_name
        )
    else:
        credentials, location = _canonical_credentials(request.wtype, request.credentials), None
    profile = {
        "profile_name": request.profile.name,
        "target": request.profile.target,
        "type": request.wtype,
        "schema": request.target_schema,
        "threads": request.threads,
        "credentials": _complete_credentials(request.wtype, credentials, request.bqlocation or location),
    }
    secret = Secret(value=json.dumps(profile))
    return await _create(client, secret, name=request.cli_profile_block_name, label="dbt CLI profile")


async def dbt_cli_profile_update(client: PrefectClient, *, request: schemas.DbtCliProfileUpdate) -> schemas.BlockRef:
    name = request.cli_profile_block_name
    document = await _read_document(client, slug=SECRET_SLUG, name=name, label="dbt CLI profile", include_secrets=True)
    profile = _profile_from_secret(document, name)
    wtype = request.wtype or profile["type"]
    location = None
    if request.credentials_block_name is not None:
        credentials, location = await _credentials_from_block(client, wtype=wtype, name=request.credentials_block_name)
    elif wtype != profile["type"]:
        if request.credentials is None:
            raise InvalidRequest(f"changing the warehouse type to {wtype} needs its credentials")
        credentials = _canonical_credentials(wtype, request.credentials)
    else:
        credentials = {**profile["credentials"], **_canonical_credentials(wtype, request.credentials or {})}
    if warehouse_for(wtype).location_field:
        location = location or credentials.get("location")
    bqlocation = request.bqlocation or location
    profile.update(
        type=wtype,
        credentials=_complete_credentials(wtype, credentials, bqlocation),
        schema=request.target_schema or profile["schema"],
        threads=request.threads or profile.get("threads", 4),
    )
    if request.profile is not None:
        profile.update(profile_name=request.profile.name, target=request.profile.target)
    return await _overwrite(client, Secret(value=json.dumps(profile)), name=name)


async def dbt_cli_profile_read(client: PrefectClient, *, name: str) -> schemas.DbtCliProfileBlock:
    document = await _read_document(client, slug=SECRET_SLUG, name=name, label="dbt CLI profile", include_secrets=True)
    profile = _profile_from_secret(document, name)
    return schemas.DbtCliProfileBlock(
        block_id=document["id"],
        block_name=document["name"],
        profile_name=profile["profile_name"],
        target=profile["target"],
        wtype=profile["type"],
        target_schema=profile["schema"],
        threads=profile.get("threads", 4),
        bqlocation=profile["credentials"].get("location") if warehouse_for(profile["type"]).location_field else None,
    )
