"""Login, tokens, roles and org selection, through the real API."""

import pytest
from django.test import Client

from tests.factories import auth_headers, make_org, make_orgtask, make_orguser, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    return Client()


def test_login_returns_a_token_that_authenticates(client):
    orguser = make_orguser(role="pipeline-manager", user=make_user("ana@example.org", "s3cret-pass"))
    response = client.post(
        "/api/v1/login/", {"email": "Ana@Example.org", "password": "s3cret-pass"}, content_type="application/json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["orgs"] == [{"slug": orguser.org.slug, "name": orguser.org.name, "role": "pipeline-manager"}]
    me = client.get("/api/v1/currentuser", HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert me.status_code == 200
    assert me.json()["email"] == "ana@example.org"


def test_login_with_wrong_password_is_401_with_detail(client):
    make_user("bo@example.org", "right-password")
    response = client.post(
        "/api/v1/login/", {"email": "bo@example.org", "password": "wrong"}, content_type="application/json"
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "wrong e-mail or password"}


def test_login_with_missing_field_is_422_naming_it(client):
    response = client.post("/api/v1/login/", {"email": "x@example.org"}, content_type="application/json")
    assert response.status_code == 422
    assert "password" in response.json()["detail"]


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic abc"])
def test_missing_or_bad_token_is_401(client, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/api/v1/currentuser", **extra)
    assert response.status_code == 401
    assert "token" in response.json()["detail"]


def test_currentuser_lists_every_org_and_role(client):
    user = make_user()
    a, b = make_org("Alpha"), make_org("Beta")
    make_orguser(a, "account-manager", user)
    make_orguser(b, "analyst", user)
    response = client.get("/api/v1/currentuser", **auth_headers(user))
    assert sorted((o["name"], o["role"]) for o in response.json()["orgs"]) == [
        ("Alpha", "account-manager"),
        ("Beta", "analyst"),
    ]


def test_org_scoped_call_uses_the_only_org_without_header(client):
    orguser = make_orguser(role="analyst")
    task = make_orgtask(orguser.org, "dbt-run")
    response = client.get(f"/api/prefect/tasks/{task.uuid}/", **auth_headers(orguser))
    assert response.status_code == 200
    assert response.json()["command"] == "dbt run"


def test_user_of_several_orgs_must_choose_with_header(client):
    user = make_user()
    a, b = make_org("Alpha"), make_org("Beta")
    make_orguser(a, "account-manager", user)
    make_orguser(b, "account-manager", user)
    task = make_orgtask(b, "dbt-test")
    no_header = client.get(f"/api/prefect/tasks/{task.uuid}/", **auth_headers(user))
    assert no_header.status_code == 400
    assert "x-dalgo-org" in no_header.json()["detail"]
    assert client.get(f"/api/prefect/tasks/{task.uuid}/", **auth_headers(user, b.slug)).status_code == 200
    # the same task seen through org A does not exist
    assert client.get(f"/api/prefect/tasks/{task.uuid}/", **auth_headers(user, a.slug)).status_code == 404


def test_header_naming_an_org_the_user_is_not_in_is_403(client):
    orguser = make_orguser()
    other = make_org("Elsewhere")
    response = client.get(f"/api/prefect/tasks/{make_orgtask(other).uuid}/", **auth_headers(orguser, other.slug))
    assert response.status_code == 403


def test_user_of_org_a_gets_404_for_org_b_object(client):
    user_a = make_orguser(make_org("A"))
    task_b = make_orgtask(make_org("B"), "dbt-run")
    response = client.get(f"/api/prefect/tasks/{task_b.uuid}/", **auth_headers(user_a))
    assert response.status_code == 404
    assert response.json() == {"detail": f"task {task_b.uuid} not found"}


def test_unknown_and_malformed_ids_are_404(client):
    orguser = make_orguser()
    assert client.get("/api/prefect/tasks/not-a-uuid/", **auth_headers(orguser)).status_code == 404
    assert (
        client.get("/api/prefect/tasks/00000000-0000-0000-0000-000000000000/", **auth_headers(orguser)).status_code
        == 404
    )


def test_user_without_org_gets_403_on_org_scoped_routes(client):
    user = make_user()
    response = client.get("/api/prefect/tasks/00000000-0000-0000-0000-000000000000/", **auth_headers(user))
    assert response.status_code == 403
    assert "organization" in response.json()["detail"]


def test_permission_map_gives_analysts_read_only():
    from ddpui.auth import PERMISSIONS

    analyst_permissions = {p for p, roles in PERMISSIONS.items() if "analyst" in roles}
    assert analyst_permissions == {p for p in PERMISSIONS if p.endswith(":read") and p != "audit:read"}
    assert PERMISSIONS["pipelines:write"] == {"account-manager", "pipeline-manager"}
    assert PERMISSIONS["org:write"] == {"account-manager"}


def test_role_not_allowed_is_403(client, rf):
    """OrgAuth refuses a role outside the permission's set before the handler runs."""
    from ddpui.auth import OrgAuth
    from ddpui.errors import PermissionDenied
    from tests.factories import token_for

    analyst = make_orguser(role="analyst")
    request = rf.post("/", HTTP_AUTHORIZATION=f"Bearer {token_for(analyst.user)}")
    with pytest.raises(PermissionDenied, match="analyst"):
        OrgAuth("pipelines:write")(request)
    manager = make_orguser(role="pipeline-manager")
    request = rf.post("/", HTTP_AUTHORIZATION=f"Bearer {token_for(manager.user)}")
    assert OrgAuth("pipelines:write")(request).orguser == manager


def test_openapi_docs_are_served(client):
    assert client.get("/api/docs").status_code == 200
    schema = client.get("/api/openapi.json").json()
    assert "/api/v1/login/" in schema["paths"]
