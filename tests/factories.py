"""Factories for test set-up: small functions with sane defaults, no copy-pasted object graphs."""

from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from ddpui.models import (
    DataflowOrgTask,
    DbtTarget,
    Org,
    OrgDataFlowv1,
    OrgDbt,
    OrgPrefectBlockv1,
    OrgTask,
    OrgUser,
    OrgWarehouse,
    Task,
)

_counter = itertools.count(1)


def make_org(name: str | None = None, **fields) -> Org:
    n = next(_counter)
    name = name or f"Org {n}"
    return Org.objects.create(name=name, slug=fields.pop("slug", f"org-{n}-{name.lower().replace(' ', '-')}"), **fields)


def make_user(email: str | None = None, password: str = "password-123"):
    email = email or f"user{next(_counter)}@example.org"
    return get_user_model().objects.create_user(username=email, email=email, password=password)


def make_orguser(org: Org | None = None, role: str = "account-manager", user=None) -> OrgUser:
    return OrgUser.objects.create(org=org or make_org(), user=user or make_user(), role=role)


def token_for(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


def auth_headers(orguser_or_user, org_slug: str | None = None) -> dict[str, str]:
    user = getattr(orguser_or_user, "user", orguser_or_user)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token_for(user)}"}
    if org_slug:
        headers["HTTP_X_DALGO_ORG"] = org_slug
    return headers


def make_orgtask(org: Org, slug: str = "dbt-run", **fields) -> OrgTask:
    return OrgTask.objects.create(org=org, task=Task.objects.get(slug=slug), **fields)


def make_dataflow(org: Org, name: str | None = None, orgtasks: list[OrgTask] = (), **fields) -> OrgDataFlowv1:
    n = next(_counter)
    dataflow = OrgDataFlowv1.objects.create(
        org=org,
        name=name or f"pipeline {n}",
        deployment_id=fields.pop("deployment_id", f"00000000-0000-0000-0000-{n:012d}"),
        deployment_name=fields.pop("deployment_name", f"{org.slug}-pipeline-{n}"),
        **fields,
    )
    for seq, orgtask in enumerate(orgtasks):
        DataflowOrgTask.objects.create(dataflow=dataflow, orgtask=orgtask, seq=seq)
    return dataflow


def make_dbt_workspace(
    org: Org, *, schema: str = "analytics", profile_block: str | None = None, **fields
) -> tuple[OrgDbt, DbtTarget]:
    """A dbt workspace with its default target, on a (new) DuckDB warehouse row; `profile_block` names the target's
    profile block row to record (nothing is made in Prefect)."""
    dbt = OrgDbt.objects.create(org=org, project_dir=fields.pop("project_dir", f"/tmp/{org.slug}/dbtrepo"), **fields)
    warehouse = OrgWarehouse.objects.filter(org=org).order_by("id").first() or OrgWarehouse.objects.create(
        org=org, wtype="duckdb", name="warehouse", credentials_block_name=f"{org.slug}-warehouse-credentials"
    )
    profile = None
    if profile_block:
        profile = OrgPrefectBlockv1.objects.create(
            org=org, block_type="dbt CLI Profile", block_id=f"id-{profile_block}", block_name=profile_block
        )
    target = DbtTarget.objects.create(
        dbt=dbt, name="default", schema=schema, warehouse=warehouse, profile_block=profile, is_default=True
    )
    return dbt, target
