"""Login and the current user: the web app's forms (`POST /api/login/`, `GET /api/currentuserv2`) and the
documented forms for API clients (`POST /api/v1/login/`, `GET /api/v1/currentuser`)."""

from __future__ import annotations

from ninja import Field, Router, Schema

from ddpui.api.schemas import ErrorOut
from ddpui.auth import UserAuth
from ddpui.services import users

router = Router(tags=["users"])


class LoginIn(Schema):
    email: str
    password: str


class WebLoginIn(Schema):
    """The web app's sign-in form posts the e-mail address as `username`."""

    username: str = Field(min_length=1)
    password: str


class MembershipOut(Schema):
    slug: str
    name: str
    role: str


class LoginOut(Schema):
    token: str
    email: str
    active: bool
    email_verified: bool
    can_create_orgs: bool
    orgs: list[MembershipOut]


class CurrentUserOut(Schema):
    email: str
    is_staff: bool
    orgs: list[MembershipOut]


class CurrentOrgOut(Schema):
    name: str
    slug: str
    airbyte_workspace_id: str | None
    viz_url: str | None
    viz_login_type: str | None
    is_demo: bool


class OrgUserOut(Schema):
    email: str
    active: bool
    role: str
    role_slug: str
    org: CurrentOrgOut
    wtype: str | None


def _memberships(user) -> list[dict]:
    return [{"slug": m.org.slug, "name": m.org.name, "role": m.role} for m in users.memberships_for_user(user=user)]


def _login_out(token) -> dict:
    user = token.user
    # ddpui does not verify e-mail addresses (accounts are made by operators or invited by an org), and any
    # signed-in user may create an organization (POST /api/v1/organizations/ needs only a token)
    return {
        "token": token.key,
        "email": user.email,
        "active": user.is_active,
        "email_verified": True,
        "can_create_orgs": True,
        "orgs": _memberships(user),
    }


@router.post("/v1/login/", response={200: LoginOut, 400: ErrorOut, 401: ErrorOut, 422: ErrorOut}, auth=None)
def login(request, payload: LoginIn):
    return _login_out(users.user_login(email=payload.email, password=payload.password))


@router.post("/login/", response={200: LoginOut, 400: ErrorOut, 401: ErrorOut, 422: ErrorOut}, auth=None)
def web_login(request, payload: WebLoginIn):
    return _login_out(users.user_login(email=payload.username, password=payload.password))


@router.get("/v1/currentuser", response={200: CurrentUserOut, 401: ErrorOut}, auth=UserAuth())
def current_user(request):
    user = request.auth
    return {"email": user.email, "is_staff": user.is_staff, "orgs": _memberships(user)}


@router.get("/currentuserv2", response={200: list[OrgUserOut], 401: ErrorOut}, auth=UserAuth())
def current_user_v2(request):
    """One item per membership, as the web app reads it (it picks its org from `[].org.slug`)."""
    user = request.auth
    memberships = users.memberships_for_user(user=user)
    wtypes = users.warehouse_types_for(orgs=[m.org for m in memberships])
    return [
        {
            "email": user.email,
            "active": user.is_active,
            "role": m.role,
            "role_slug": m.role.replace("-", "_"),
            "org": {
                "name": m.org.name,
                "slug": m.org.slug,
                "airbyte_workspace_id": m.org.airbyte_workspace_id,
                "viz_url": None,
                "viz_login_type": None,
                "is_demo": False,
            },
            "wtype": wtypes.get(m.org.id),
        }
        for m in memberships
    ]
