"""Sign-in, the current user, organization create and CORS, as the web app uses them (W-01, W-02, W-03)."""

from __future__ import annotations

import pytest
from django.test import Client

from ddpui.models import Org, OrgWarehouse
from tests.factories import make_org, make_orguser, make_user

from .conftest import WebApp

pytestmark = pytest.mark.django_db

WEBAPP_ORIGIN = "http://localhost:3000"


def test_w01_sign_in_with_username_answers_the_session_fields():
    user = make_user("Ana@Example.org".lower(), password="sign-in-password")
    make_orguser(role="pipeline-manager", user=user)
    webapp = WebApp()

    response = webapp.sign_in("ana@example.org", "sign-in-password")

    assert response.status_code == 200, response.content
    session = response.json()
    # what NextAuth keeps in its session (token, email, active, email_verified, can_create_orgs)
    assert session["token"] and session["email"] == "ana@example.org"
    assert session["active"] is True and session["email_verified"] is True and session["can_create_orgs"] is True
    assert webapp.get("currentuserv2").status_code == 200  # the token works for the next calls


def test_w01_wrong_password_is_a_401_with_a_detail_the_sign_in_form_shows():
    make_user("bo@example.org", password="right-password")
    response = WebApp().sign_in("bo@example.org", "wrong-password")
    assert response.status_code == 401
    assert response.json()["detail"] == "wrong e-mail or password"


def test_w01_the_api_clients_login_stays_and_answers_the_same_fields():
    user = make_user("cy@example.org", password="cy-password-1")
    orguser = make_orguser(role="analyst", user=user)
    response = Client().post(
        "/api/v1/login/", {"email": "cy@example.org", "password": "cy-password-1"}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["email_verified"] is True and body["active"] is True
    assert body["orgs"] == [{"slug": orguser.org.slug, "name": orguser.org.name, "role": "analyst"}]


def test_w02_currentuserv2_lists_each_membership_with_org_role_and_wtype():
    user = make_user("dee@example.org", password="dee-password-1")
    with_warehouse = make_orguser(make_org("Alpha Org"), role="account-manager", user=user).org
    make_orguser(make_org("Beta Org"), role="analyst", user=user)
    OrgWarehouse.objects.create(org=with_warehouse, wtype="postgres", credentials_block_name="alpha-wh")
    webapp = WebApp()
    webapp.sign_in("dee@example.org", "dee-password-1")

    response = webapp.get("currentuserv2")  # sent with x-dalgo-org: '' as the web app does

    assert response.status_code == 200, response.content
    orgusers = response.json()
    assert [(o["org"]["name"], o["wtype"], o["role"], o["role_slug"]) for o in orgusers] == [
        ("Alpha Org", "postgres", "account-manager", "account_manager"),
        ("Beta Org", None, "analyst", "analyst"),
    ]
    for orguser in orgusers:
        assert orguser["email"] == "dee@example.org" and orguser["active"] is True
        assert orguser["org"]["slug"] == Org.objects.get(name=orguser["org"]["name"]).slug
        assert orguser["org"]["is_demo"] is False


def test_w02_a_user_without_an_org_gets_an_empty_list():
    make_user("eve@example.org", password="eve-password-1")
    webapp = WebApp()
    webapp.sign_in("eve@example.org", "eve-password-1")
    response = webapp.get("currentuserv2")
    assert response.status_code == 200 and response.json() == []


@pytest.mark.prefect
def test_w03_organization_create_as_the_web_app_sends_it(live_services):
    make_user("fay@example.org", password="fay-password-1")
    webapp = WebApp()
    webapp.sign_in("fay@example.org", "fay-password-1")

    response = webapp.post("v1/organizations/", {"name": "Fay's NGO"})  # text/plain body, x-dalgo-org ''

    assert response.status_code == 200, response.content
    slug = response.json()["slug"]  # the web app stores it as the selected org
    assert Org.objects.get(slug=slug).name == "Fay's NGO"
    webapp.org_slug = slug
    orgusers = webapp.get("currentuserv2").json()
    assert [o["org"]["slug"] for o in orgusers] == [slug]


def test_cors_preflight_from_the_web_app_origin_allows_its_headers():
    response = Client().options(
        "/api/prefect/v1/flows/",
        headers={
            "Origin": WEBAPP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,x-dalgo-org",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == WEBAPP_ORIGIN
    allowed_headers = {h.strip() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "x-dalgo-org", "content-type"} <= allowed_headers
    assert {"GET", "POST", "PUT", "DELETE"} <= set(response.headers["Access-Control-Allow-Methods"].split(", "))
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_cors_answers_carry_the_allow_origin_header_for_the_web_app_origin():
    user = make_user("gil@example.org", password="gil-password-1")
    webapp = WebApp()
    webapp.sign_in(user.email, "gil-password-1")
    response = webapp.client.get(
        "/api/currentuserv2", headers={"Origin": WEBAPP_ORIGIN, "Authorization": f"Bearer {webapp.token}"}
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == WEBAPP_ORIGIN


def test_cors_a_disallowed_origin_gets_no_cors_headers(settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.org"]
    client = Client()
    preflight = client.options(
        "/api/prefect/v1/flows/",
        headers={"Origin": WEBAPP_ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    call = client.post("/api/login/", {}, content_type="application/json", headers={"Origin": WEBAPP_ORIGIN})
    for response in (preflight, call):
        assert not [name for name in response.headers if name.lower().startswith("access-control-")]
    allowed = client.options(
        "/api/prefect/v1/flows/",
        headers={"Origin": "https://app.example.org", "Access-Control-Request-Method": "GET"},
    )
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.org"


def test_cors_is_limited_to_the_api(settings):
    response = Client().get("/admin/login/", headers={"Origin": WEBAPP_ORIGIN})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_headers_are_on_error_answers_too_so_the_web_app_reads_their_detail():
    client = Client()
    unknown = client.get("/api/no/such/path/", headers={"Origin": WEBAPP_ORIGIN})
    refused = client.post("/api/login/", {}, content_type="application/json", headers={"Origin": WEBAPP_ORIGIN})
    for response, status in ((unknown, 404), (refused, 422)):
        assert response.status_code == status and response.json()["detail"]
        assert response.headers["Access-Control-Allow-Origin"] == WEBAPP_ORIGIN
