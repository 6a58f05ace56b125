"""Routes for moving a block-based (legacy) installation to tasks: read the persisted operation blocks without
their secrets, and turn a legacy DbtCoreOperation's dbt profile into the Secret-JSON profile the flows read.

The legacy `DbtCliProfile` block shows the warehouse password in clear (its schema declares no secret field),
so the conversion happens here, inside the proxy: Django names the blocks and never sees the credentials.
See docs/migration.md.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pydantic
from prefect.client.orchestration import PrefectClient
from prefect.exceptions import ObjectNotFound

from ddpcontract.tasks import GIT_PULL_SECRET_ENV_KEY
from ddpcontract.warehouses import WAREHOUSE_TYPES, warehouse_for
from proxy import blocks, schemas
from proxy.errors import InvalidRequest, NotFound
from proxy.prefect_api import prefect_json
from proxy.schemas import DbtCliProfileFromDbtCore, LegacyBlock, LegacyBlockList, LegacyBlocksDescribe, LegacyDbtProfile

PAGE_SIZE = 200  # Prefect's largest page


# ---------------------------------------------------------------- services


def _profile_summary(data: dict[str, Any] | None, reference: dict[str, Any] | None) -> LegacyDbtProfile | None:
    if not isinstance(data, dict) or not isinstance(data.get("target_configs"), dict):
        return None
    configs = data["target_configs"]
    named = reference if reference and not reference.get("is_anonymous") else None
    return LegacyDbtProfile(
        block_id=named["id"] if named else None,
        block_name=named["name"] if named else None,
        profile_name=str(data.get("name") or ""),
        target=str(data.get("target") or ""),
        wtype=str(configs.get("type") or ""),
        target_schema=str(configs.get("schema") or configs.get("schema_") or ""),
        threads=configs.get("threads"),
    )


def _reference(document: dict[str, Any], field: str) -> dict[str, Any] | None:
    return ((document.get("block_document_references") or {}).get(field) or {}).get("block_document")


def legacy_block_view(document: dict[str, Any]) -> LegacyBlock:
    """The non-secret facts of one block document (as Prefect's API returns it, secrets not included)."""
    data = document.get("data") or {}
    slug = document["block_type"]["slug"]
    view = LegacyBlock(
        block_id=document["id"],
        block_name=document["name"],
        block_type=document["block_type"]["name"],
        block_type_slug=slug,
    )
    if slug == "airbyte-connection":
        server = _reference(document, "airbyte_server")
        view.connection_id = str(data.get("connection_id") or "") or None
        view.airbyte_server_block = server["name"] if server and not server.get("is_anonymous") else None
        view.max_wait_seconds = data.get("max_wait_seconds")
    if slug in ("shell-operation", "dbt-core-operation"):
        env = data.get("env") or {}
        view.commands = list(data.get("commands") or [])
        view.working_dir = data.get("working_dir")
        view.env_keys = sorted(env)
        view.git_pull_url_block = env.get(GIT_PULL_SECRET_ENV_KEY)
    if slug == "dbt-core-operation":
        view.project_dir = data.get("project_dir")
        view.profiles_dir = data.get("profiles_dir")
        view.dbt_cli_profile = _profile_summary(data.get("dbt_cli_profile"), _reference(document, "dbt_cli_profile"))
    if slug == "dbt-cli-profile":
        view.dbt_cli_profile = _profile_summary(data, {"id": document["id"], "name": document["name"]})
    return view


async def _documents_named(client: PrefectClient, names: list[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = await prefect_json(
            client,
            "POST",
            "/block_documents/filter",
            json={
                "block_documents": {"name": {"any_": names}, "is_anonymous": {"eq_": False}},
                "include_secrets": False,
                "limit": PAGE_SIZE,
                "offset": len(found),
            },
        )
        found.extend(page)
        if len(page) < PAGE_SIZE:
            return found


async def legacy_blocks_describe(client: PrefectClient, *, request: LegacyBlocksDescribe) -> LegacyBlockList:
    names = list(dict.fromkeys(request.block_names))
    chunks = [names[start : start + PAGE_SIZE] for start in range(0, len(names), PAGE_SIZE)]
    pages = await asyncio.gather(*(_documents_named(client, chunk) for chunk in chunks))
    views = [legacy_block_view(document) for page in pages for document in page]
    seen = {view.block_name for view in views}
    return LegacyBlockList(blocks=views, missing=[name for name in names if name not in seen])


def _dbt_core_operation_class():
    with warnings.catch_warnings():
        # prefect_dbt.cli warns on import that it is deprecated; the legacy blocks are made of it
        warnings.simplefilter("ignore")
        from prefect_dbt.cli.commands import DbtCoreOperation
    return DbtCoreOperation


async def dbt_cli_profile_from_dbtcore(
    client: PrefectClient, *, request: DbtCliProfileFromDbtCore
) -> schemas.DbtCliProfileBlock:
    """Writes the Secret-JSON dbt profile from a legacy DbtCoreOperation's profile. 409 if the name exists."""
    name = request.dbtcore_block_name
    try:
        operation = await _dbt_core_operation_class().aload(name, client=client)
    except ValueError as exc:
        if isinstance(exc.__cause__, ObjectNotFound):
            raise NotFound(f"no dbt Core Operation block named {name!r}") from None
        # a validation error would quote the block's fields, credentials included: name the problem only
        raise InvalidRequest(f"the dbt Core Operation block {name!r} cannot be loaded ({type(exc).__name__})") from None
    legacy_profile = operation.dbt_cli_profile
    if legacy_profile is None:
        raise InvalidRequest(
            f"the dbt Core Operation block {name!r} has no dbt CLI profile (it reads a profiles.yml on disk): "
            "create the profile with POST /proxy/blocks/dbtcli/profile/ instead"
        )
    configs = dict(legacy_profile.target_configs.get_configs())
    wtype = configs.pop("type", None)
    schema = configs.pop("schema", None)
    threads = configs.pop("threads", None) or 4
    if wtype not in WAREHOUSE_TYPES:
        raise InvalidRequest(
            f"the profile of {name!r} is for a {wtype!r} warehouse; only {', '.join(WAREHOUSE_TYPES)} are supported"
        )
    try:
        create = schemas.DbtCliProfileCreate(
            cli_profile_block_name=request.cli_profile_block_name,
            profile=request.profile or schemas.DbtProfileName(name=legacy_profile.name, target=legacy_profile.target),
            wtype=wtype,
            target_schema=request.target_schema or schema,
            credentials=configs,
            bqlocation=configs.get("location") if warehouse_for(wtype).location_field else None,
            threads=threads,
        )
    except pydantic.ValidationError as exc:
        fields = ", ".join(sorted({".".join(str(part) for part in error["loc"]) for error in exc.errors()}))
        raise InvalidRequest(f"the profile of {name!r} cannot be converted: invalid {fields}") from None
    created = await blocks.dbt_cli_profile_create(client, request=create)
    return schemas.DbtCliProfileBlock(
        block_id=created.block_id,
        block_name=created.block_name,
        profile_name=create.profile.name,
        target=create.profile.target,
        wtype=create.wtype,
        target_schema=create.target_schema,
        threads=create.threads,
        bqlocation=create.bqlocation,
    )
