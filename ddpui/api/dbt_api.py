"""The org's dbt workspace: its git repository, clone and target schema (web app rows W-32…W-36).

`POST /api/dbt/workspace/` takes two bodies: the web app's (schema in `profile.target_configs_schema`)
starts the set-up as a background task and answers `{task_id}` at once; ddpui's earlier one
(`defaultSchema`) runs the same set-up within the request and answers the workspace.
"""

from __future__ import annotations

from ninja import Field, Router, Schema
from pydantic import model_validator

from ddpui.api.schemas import ERRORS, OkOut
from ddpui.auth import org_auth
from ddpui.services import dbt_workspace, targets

router = Router(tags=["dbt"])

NO_WORKSPACE = "no dbt workspace has been configured"


class DbtProfileIn(Schema):
    name: str | None = None
    target_configs_schema: str = Field(min_length=1, max_length=63)


class DbtWorkspaceIn(Schema):
    gitrepoUrl: str = Field(min_length=1, max_length=500)
    gitrepoAccessToken: str | None = None
    defaultSchema: str | None = Field(default=None, min_length=1, max_length=63)
    profile: DbtProfileIn | None = None
    dbtVersion: str | None = None

    @model_validator(mode="after")
    def _one_schema(self):
        if (self.defaultSchema is None) == (self.profile is None):
            raise ValueError("send the target schema once: defaultSchema, or profile.target_configs_schema")
        return self


class GitRepositoryIn(Schema):
    gitrepoUrl: str = Field(min_length=1, max_length=500)
    gitrepoAccessToken: str | None = None


class TargetConfigsIn(Schema):
    schema_: str = Field(alias="schema", min_length=1, max_length=63)


class SchemaIn(Schema):
    """The web app sends `{target_configs_schema}`; ddpui's clients `{targetConfigs: {schema}}`."""

    target_configs_schema: str | None = Field(default=None, min_length=1, max_length=63)
    targetConfigs: TargetConfigsIn | None = None

    @model_validator(mode="after")
    def _one_schema(self):
        if (self.target_configs_schema is None) == (self.targetConfigs is None):
            raise ValueError("send the schema once: target_configs_schema, or targetConfigs.schema")
        return self


class DbtWorkspaceOut(Schema):
    """The workspace; `default_schema`, `target_type` and `cli_profile_block` are its default target's (schema,
    warehouse type, profile block): the other targets are listed by GET /api/v1/dbt/targets/."""

    gitrepo_url: str | None
    gitrepo_branch: str | None
    default_schema: str | None
    target_type: str | None
    project_dir: str
    gitrepo_access_token_secret: str | None
    cli_profile_block: str | None


class NoDbtWorkspaceOut(Schema):
    error: str


class TaskStartedOut(Schema):
    task_id: str


def dbt_out(dbt) -> dict:
    default = targets.target_default(org=dbt.org)
    return {
        "gitrepo_url": dbt.gitrepo_url,
        "gitrepo_branch": dbt.gitrepo_branch,
        "default_schema": default.schema if default else None,
        "target_type": default.warehouse.wtype if default and default.warehouse else None,
        "project_dir": dbt.project_dir,
        "gitrepo_access_token_secret": dbt.gitrepo_access_token_secret,
        "cli_profile_block": default.profile_block.block_name if default and default.profile_block else None,
    }


@router.post("/dbt/workspace/", response={200: DbtWorkspaceOut | TaskStartedOut, **ERRORS}, auth=org_auth("dbt:write"))
def create_dbt_workspace(request, payload: DbtWorkspaceIn):
    arguments = {
        "org": request.auth.org,
        "actor": request.auth.orguser,
        "gitrepo_url": payload.gitrepoUrl,
        "gitrepo_access_token": payload.gitrepoAccessToken,
    }
    if payload.profile is not None:
        task = dbt_workspace.dbt_workspace_setup_start(
            **arguments, default_schema=payload.profile.target_configs_schema
        )
        return {"task_id": str(task.task_id)}
    return dbt_out(dbt_workspace.dbt_workspace_create(**arguments, default_schema=payload.defaultSchema))


@router.put("/dbt/github/", response={200: TaskStartedOut, **ERRORS}, auth=org_auth("dbt:write"))
def change_dbt_repository(request, payload: GitRepositoryIn):
    """Another repository (or a new token) for the workspace, as a background task."""
    task = dbt_workspace.dbt_repository_change_start(
        org=request.auth.org,
        actor=request.auth.orguser,
        gitrepo_url=payload.gitrepoUrl,
        gitrepo_access_token=payload.gitrepoAccessToken,
    )
    return {"task_id": str(task.task_id)}


@router.put("/dbt/v1/schema/", response={200: DbtWorkspaceOut, **ERRORS}, auth=org_auth("dbt:write"))
def update_schema(request, payload: SchemaIn):
    schema = payload.target_configs_schema or payload.targetConfigs.schema_
    return dbt_out(dbt_workspace.dbt_schema_update(org=request.auth.org, actor=request.auth.orguser, schema=schema))


@router.get(
    "/dbt/dbt_workspace", response={200: DbtWorkspaceOut | NoDbtWorkspaceOut, **ERRORS}, auth=org_auth("dbt:read")
)
def get_dbt_workspace(request):
    """The workspace; without one, 200 `{"error": "no dbt workspace has been configured"}` (what the web app
    expects before offering to set one up)."""
    dbt = dbt_workspace.dbt_workspace_find(org=request.auth.org)
    return {"error": NO_WORKSPACE} if dbt is None else dbt_out(dbt)


@router.delete("/dbt/workspace/", response={200: OkOut, **ERRORS}, auth=org_auth("dbt:write"))
def delete_dbt_workspace(request):
    dbt_workspace.dbt_workspace_delete(org=request.auth.org, actor=request.auth.orguser)
    return {"success": True}
