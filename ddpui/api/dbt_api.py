"""The org's dbt workspace: its git repository, clone and target schema."""

from __future__ import annotations

from ninja import Field, Router, Schema

from ddpui.api.schemas import ERRORS, OkOut
from ddpui.auth import org_auth
from ddpui.services import dbt_workspace

router = Router(tags=["dbt"])


class DbtWorkspaceIn(Schema):
    gitrepoUrl: str = Field(min_length=1, max_length=500)
    gitrepoAccessToken: str | None = None
    defaultSchema: str = Field(min_length=1, max_length=63)


class TargetConfigsIn(Schema):
    schema_: str = Field(alias="schema", min_length=1, max_length=63)


class SchemaIn(Schema):
    targetConfigs: TargetConfigsIn


class DbtWorkspaceOut(Schema):
    gitrepo_url: str | None
    default_schema: str | None
    target_type: str | None
    project_dir: str
    gitrepo_access_token_secret: str | None
    cli_profile_block: str | None


def dbt_out(dbt) -> dict:
    return {
        "gitrepo_url": dbt.gitrepo_url,
        "default_schema": dbt.default_schema,
        "target_type": dbt.target_type,
        "project_dir": dbt.project_dir,
        "gitrepo_access_token_secret": dbt.gitrepo_access_token_secret,
        "cli_profile_block": dbt.cli_profile_block.block_name if dbt.cli_profile_block else None,
    }


@router.post("/dbt/workspace/", response={200: DbtWorkspaceOut, **ERRORS}, auth=org_auth("dbt:write"))
def create_dbt_workspace(request, payload: DbtWorkspaceIn):
    dbt = dbt_workspace.dbt_workspace_create(
        org=request.auth.org,
        gitrepo_url=payload.gitrepoUrl,
        gitrepo_access_token=payload.gitrepoAccessToken,
        default_schema=payload.defaultSchema,
    )
    return dbt_out(dbt)


@router.put("/dbt/v1/schema/", response={200: DbtWorkspaceOut, **ERRORS}, auth=org_auth("dbt:write"))
def update_schema(request, payload: SchemaIn):
    return dbt_out(dbt_workspace.dbt_schema_update(org=request.auth.org, schema=payload.targetConfigs.schema_))


@router.get("/dbt/dbt_workspace", response={200: DbtWorkspaceOut, **ERRORS}, auth=org_auth("dbt:read"))
def get_dbt_workspace(request):
    return dbt_out(dbt_workspace.dbt_workspace_get(org=request.auth.org))


@router.delete("/dbt/workspace/", response={200: OkOut, **ERRORS}, auth=org_auth("dbt:write"))
def delete_dbt_workspace(request):
    dbt_workspace.dbt_workspace_delete(org=request.auth.org)
    return {"success": True}
