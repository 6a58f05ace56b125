"""API authentication and authorization, in one place.

A caller presents `Authorization: Bearer <token>` (DRF authtoken); the org is the caller's only org, or
the one named by the `x-dalgo-org` header. Each endpoint names a permission; PERMISSIONS maps every
permission to the roles that hold it. Handlers receive the resolved org and orguser on the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from ninja.security import HttpBearer
from rest_framework.authtoken.models import Token

from ddpui.errors import InvalidInput, PermissionDenied
from ddpui.models.org import Org, OrgUser, OrgUserRole

ORG_HEADER = "x-dalgo-org"

_ALL = frozenset(OrgUserRole.values)
_MANAGERS = frozenset({OrgUserRole.ACCOUNT_MANAGER, OrgUserRole.PIPELINE_MANAGER})
_ACCOUNT = frozenset({OrgUserRole.ACCOUNT_MANAGER})

# permission -> roles holding it. Analysts hold only the read permissions.
PERMISSIONS: dict[str, frozenset[str]] = {
    "org:read": _ALL,
    "org:write": _ACCOUNT,
    "warehouse:read": _ALL,
    "warehouse:write": _ACCOUNT,
    "sources:read": _ALL,
    "sources:write": _MANAGERS,
    "connections:read": _ALL,
    "connections:write": _MANAGERS,
    "connections:run": _MANAGERS,
    "dbt:read": _ALL,
    "dbt:write": _MANAGERS,
    "tasks:read": _ALL,
    "tasks:write": _MANAGERS,
    "tasks:run": _MANAGERS,
    "pipelines:read": _ALL,
    "pipelines:write": _MANAGERS,
    "pipelines:run": _MANAGERS,
    "runs:read": _ALL,
    "runs:write": _MANAGERS,
    "audit:read": _ACCOUNT,
    # the org's alert channels and alerts (with recipients and delivery errors): managers only, reads included
    "alerts:manage": _MANAGERS,
}


def user_for_token(token: str):
    found = Token.objects.select_related("user").filter(key=token).first()
    if found is None or not found.user.is_active:
        return None
    return found.user


class UserAuth(HttpBearer):
    """A valid token, no org needed (current user, creating an org)."""

    def authenticate(self, request: HttpRequest, token: str):
        user = user_for_token(token)
        if user is not None:
            request.user = user
        return user


@dataclass(frozen=True)
class Caller:
    user: object
    orguser: OrgUser
    org: Org


def resolve_orguser(user, requested_slug: str | None) -> OrgUser:
    memberships = list(OrgUser.objects.filter(user=user).select_related("org"))
    for membership in memberships:
        membership.user = user  # already loaded: what reads orguser.user (the audit's actor) needs no query
    if requested_slug:
        for membership in memberships:
            if membership.org.slug == requested_slug:
                return membership
        raise PermissionDenied(f"you are not a member of the organization '{requested_slug}'")
    if not memberships:
        raise PermissionDenied("you do not belong to any organization yet: create one or ask to be invited")
    if len(memberships) > 1:
        slugs = ", ".join(sorted(m.org.slug for m in memberships))
        raise InvalidInput(f"you belong to several organizations ({slugs}): choose one with the {ORG_HEADER} header")
    return memberships[0]


class OrgAuth(HttpBearer):
    """A valid token, a resolved org, and a role that holds `permission`."""

    def __init__(self, permission: str):
        if permission not in PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}")
        self.permission = permission
        super().__init__()

    def authenticate(self, request: HttpRequest, token: str):
        user = user_for_token(token)
        if user is None:
            return None
        orguser = resolve_orguser(user, request.headers.get(ORG_HEADER))
        if orguser.role not in PERMISSIONS[self.permission]:
            raise PermissionDenied(f"your role '{orguser.role}' does not allow this action ({self.permission})")
        request.user = user
        request.orguser = orguser
        request.org = orguser.org
        return Caller(user=user, orguser=orguser, org=orguser.org)


def org_auth(permission: str) -> OrgAuth:
    return OrgAuth(permission)
