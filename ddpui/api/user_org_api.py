"""Login, current user."""

from __future__ import annotations

from ninja import Router, Schema

from ddpui.api.schemas import ErrorOut
from ddpui.auth import UserAuth
from ddpui.services import users

router = Router(tags=["users"])


class LoginIn(Schema):
    email: str
    password: str


class MembershipOut(Schema):
    slug: str
    name: str
    role: str


class LoginOut(Schema):
    token: str
    email: str
    orgs: list[MembershipOut]


class CurrentUserOut(Schema):
    email: str
    is_staff: bool
    orgs: list[MembershipOut]


def _memberships(user) -> list[dict]:
    return [{"slug": m.org.slug, "name": m.org.name, "role": m.role} for m in users.memberships_for_user(user=user)]


@router.post("/v1/login/", response={200: LoginOut, 400: ErrorOut, 401: ErrorOut, 422: ErrorOut}, auth=None)
def login(request, payload: LoginIn):
    token = users.user_login(email=payload.email, password=payload.password)
    return {"token": token.key, "email": token.user.email, "orgs": _memberships(token.user)}


@router.get("/v1/currentuser", response={200: CurrentUserOut, 401: ErrorOut}, auth=UserAuth())
def current_user(request):
    user = request.auth
    return {"email": user.email, "is_staff": user.is_staff, "orgs": _memberships(user)}
