"""Creating an org is clean under races and name clashes (SQLite and PostgreSQL): the same name created
at once gives one success and 409s (never a 502 carrying Prefect's 409), and derived Prefect block names
cannot collide — neither between orgs whose slugs clean up alike (`x_y` / `x-y`) nor with a block left
behind — and no answer names another tenant's block."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from django.test import Client

from ddpui.models import Org, OrgPrefectBlockv1, OrgUser
from ddpui.prefect_client import get_proxy
from ddpui.services.orgs import block_name_for
from tests.factories import make_user, token_for
from tests.support.prefect_rest import prefect_request

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.prefect]


def _create(user, name: str, client: Client | None = None):
    return (client or Client()).post(
        "/api/v1/organizations/",
        {"name": name},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token_for(user)}",
    )


def _airbyte_blocks(prefix: str) -> list[dict]:
    body = {"block_documents": {"name": {"like_": prefix}}, "block_types": {"slug": {"any_": ["airbyte-server"]}}}
    return prefect_request("POST", "block_documents/filter", json=body).json()


def test_the_same_org_created_eight_times_at_once_succeeds_once(live_services):
    name = f"Race Org {uuid.uuid4().hex[:6]}"
    users = [make_user() for _ in range(8)]
    for user in users:
        token_for(user)
    barrier = threading.Barrier(len(users))

    def create(user):
        try:
            client = Client(raise_request_exception=False)
            barrier.wait(timeout=60)
            response = _create(user, name, client)
            return response.status_code, response.json()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        answers = list(pool.map(create, users))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] + [409] * 7, answers
    assert all("already exists" in body["detail"] for status, body in answers if status == 409)
    org = Org.objects.get(name=name)
    assert org.airbyte_workspace_id
    assert OrgUser.objects.filter(org=org).count() == 1
    assert [block["name"] for block in _airbyte_blocks(org.slug)] == [f"{org.slug}-airbyte-server"]
    workspaces = live_services["airbyte"].state()["workspaces"]
    assert org.airbyte_workspace_id in workspaces
    assert sum(1 for workspace in workspaces.values() if workspace.get("name") == org.slug) == 1


def test_orgs_whose_slugs_clean_up_alike_get_distinct_blocks(live_services):
    tag = uuid.uuid4().hex[:6]
    first = _create(make_user(), f"x_y {tag}")
    second = _create(make_user(), f"x y {tag}")
    assert first.status_code == 200 and second.status_code == 200, (first.content, second.content)
    slugs = [first.json()["slug"], second.json()["slug"]]
    assert slugs == [f"x_y-{tag}", f"x-y-{tag}"]
    names = [OrgPrefectBlockv1.objects.get(org__slug=slug).block_name for slug in slugs]
    assert len(set(names)) == 2 and all(name.endswith("-airbyte-server") for name in names)
    assert names[0] not in second.content.decode() and names[1] not in first.content.decode()


def test_an_org_is_created_beside_a_leftover_block_of_its_name(live_services):
    name = f"Leftover Org {uuid.uuid4().hex[:6]}"
    slug = name.lower().replace(" ", "-")
    leftover = get_proxy().blocks.airbyte_server.create(
        blockName=block_name_for(slug, "airbyte-server"),
        serverHost="old-host",
        serverPort=9,
        username="old",
        password="old-password",
        apiVersion="v1",
    )
    response = _create(make_user(), name)
    assert response.status_code == 200, response.content
    assert leftover.block_name not in response.content.decode()
    block = OrgPrefectBlockv1.objects.get(org__slug=slug)
    assert block.block_name != leftover.block_name and block.block_name.startswith(leftover.block_name)
    names = {document["name"]: document["id"] for document in _airbyte_blocks(slug)}
    assert names == {leftover.block_name: leftover.block_id, block.block_name: block.block_id}
