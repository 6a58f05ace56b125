"""createorganduser bootstraps an org and a user, idempotently."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from ddpui.models import Org, OrgUser

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("createorganduser", *args, stdout=out)
    return out.getvalue()


def test_createorganduser_twice_changes_nothing():
    args = [
        "--org",
        "Helping Hands",
        "--email",
        "Lead@Example.org",
        "--password",
        "pw-123456",
        "--role",
        "account-manager",
    ]
    first = run(*args)
    assert "created org 'Helping Hands' (slug helping-hands)" in first
    snapshot = (list(Org.objects.values()), list(OrgUser.objects.values()), list(get_user_model().objects.values()))
    second = run(*args)
    assert "nothing to do" in second
    assert snapshot == (
        list(Org.objects.values()),
        list(OrgUser.objects.values()),
        list(get_user_model().objects.values()),
    )
    user = get_user_model().objects.get(username="lead@example.org")
    assert user.check_password("pw-123456")


def test_createorganduser_matches_org_name_case_insensitively_and_changes_role():
    run("--org", "Acme", "--email", "a@example.org", "--password", "pw-123456", "--role", "analyst")
    out = run("--org", "ACME", "--email", "a@example.org", "--password", "pw-123456", "--role", "pipeline-manager")
    assert "changed a@example.org's role in 'Acme' to pipeline-manager" in out
    assert Org.objects.count() == 1
    assert OrgUser.objects.get().role == "pipeline-manager"


def test_createorganduser_rejects_bad_email():
    with pytest.raises(CommandError, match="e-mail"):
        run("--org", "Acme", "--email", "nope", "--password", "pw-123456", "--role", "analyst")


def test_org_slug_is_made_unique():
    run("--org", "Acme Org", "--email", "a@example.org", "--password", "pw-123456", "--role", "analyst")
    run("--org", "Acme-Org", "--email", "b@example.org", "--password", "pw-123456", "--role", "analyst")
    assert sorted(Org.objects.values_list("slug", flat=True)) == ["acme-org", "acme-org-2"]


def test_createorganduser_without_org_creates_only_the_user():
    assert run("--email", "solo@example.org", "--password", "pw-123456") == "created user solo@example.org\n"
    assert Org.objects.count() == 0 and OrgUser.objects.count() == 0
    assert "nothing to do" in run("--email", "solo@example.org", "--password", "pw-123456")
