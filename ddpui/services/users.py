"""Users, logins and org membership."""

from __future__ import annotations

from django.contrib.auth import authenticate, get_user_model
from django.db import transaction
from django.utils.text import slugify
from rest_framework.authtoken.models import Token

from ddpui.errors import InvalidInput, NotAuthenticated
from ddpui.models.org import Org, OrgUser, OrgUserRole, OrgWarehouse

User = get_user_model()


def user_login(*, email: str, password: str) -> Token:
    user = authenticate(username=email.strip().lower(), password=password)
    if user is None:
        raise NotAuthenticated("wrong e-mail or password")
    token, _ = Token.objects.get_or_create(user=user)
    return token


def memberships_for_user(*, user) -> list[OrgUser]:
    return list(OrgUser.objects.filter(user=user).select_related("org").order_by("org__name"))


def warehouse_types_for(*, orgs: list[Org]) -> dict[int, str]:
    """org id -> the type of its (first, i.e. default) warehouse, for the orgs that have one. One query."""
    types: dict[int, str] = {}
    for org_id, wtype in OrgWarehouse.objects.filter(org__in=orgs).order_by("id").values_list("org_id", "wtype"):
        types.setdefault(org_id, wtype)
    return types


def org_slug_for(name: str) -> str:
    """A slug derived from the name, made unique with a numeric suffix when another org has it."""
    base = slugify(name)[:90]
    if not base:
        raise InvalidInput("the organization name must contain letters or digits")
    slug, suffix = base, 2
    while Org.objects.filter(slug=slug).exists():
        slug, suffix = f"{base}-{suffix}", suffix + 1
    return slug


def org_find_by_name(name: str) -> Org | None:
    return Org.objects.filter(name__iexact=name.strip()).first()


def org_and_user_bootstrap(
    *, org_name: str | None, email: str, password: str, role: str, staff: bool = False
) -> list[str]:
    """Creates (or finds) the org, the user and the membership. Returns what it did, one line each;
    a second call with the same arguments changes nothing and says so. Without an org name, only the
    user is made (it can then create its org through the API)."""
    if role not in OrgUserRole.values:
        raise InvalidInput(f"unknown role '{role}': use one of {', '.join(OrgUserRole.values)}")
    email = email.strip().lower()
    if not email or "@" not in email:
        raise InvalidInput("a valid e-mail address is required")
    done: list[str] = []
    with transaction.atomic():
        org = org_find_by_name(org_name) if org_name else None
        if org is None and org_name:
            org = Org.objects.create(name=org_name.strip(), slug=org_slug_for(org_name))
            done.append(f"created org '{org.name}' (slug {org.slug})")
        user = User.objects.filter(username=email).first()
        if user is None:
            user = User.objects.create_user(username=email, email=email, password=password)
            done.append(f"created user {email}")
        if staff and not (user.is_staff and user.is_superuser):
            user.is_staff = True
            user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
            done.append(f"made {email} an admin (staff) user")
        if org is None:
            return done
        orguser, created = OrgUser.objects.get_or_create(user=user, org=org, defaults={"role": role})
        if created:
            done.append(f"added {email} to '{org.name}' as {role}")
        elif orguser.role != role:
            orguser.role = role
            orguser.save(update_fields=["role"])
            done.append(f"changed {email}'s role in '{org.name}' to {role}")
    return done
