"""Helpers of the API tests: a JSON test client, a reader of Prefect's own API, and setup steps."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.test import Client

from ddpui.models import AuditEvent, Org
from devtools.airbyte_emulator import SAMPLE_SOURCE_DEFINITION_ID
from tests.support.orgsetup import warehouse_request
from tests.support.prefect_rest import prefect_client, prefect_request


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


class Api:
    """The Django test client with JSON bodies; every method returns the response."""

    def __init__(self):
        self.client = Client()

    def _send(self, method: str, path: str, body=None, headers: dict | None = None):
        kwargs = dict(headers or {})
        if method == "get":
            return self.client.get(path, **kwargs)
        return getattr(self.client, method)(path, body, content_type="application/json", **kwargs)

    def get(self, path, headers=None):
        return self._send("get", path, headers=headers)

    def post(self, path, body=None, headers=None):
        return self._send("post", path, body, headers)

    def put(self, path, body=None, headers=None):
        return self._send("put", path, body, headers)

    def delete(self, path, headers=None):
        return self._send("delete", path, headers=headers)


class Prefect:
    """Prefect's REST API read directly, to see what the proxy left behind."""

    def __init__(self, api_url: str):
        self.api_url = api_url
        self.http = prefect_client(api_url)  # for a test's own reads

    def block_names(self, prefix: str) -> set[str]:
        body = {"block_documents": {"name": {"like_": prefix}}, "limit": 200}
        response = prefect_request("POST", "block_documents/filter", json=body, api_url=self.api_url)
        return {doc["name"] for doc in response.json() if doc["name"].startswith(prefix)}

    def deployments(self, org_slug: str) -> list[dict]:
        body = {"deployments": {"tags": {"all_": [org_slug]}}}
        return prefect_request("POST", "deployments/filter", json=body, api_url=self.api_url).json()

    def deployment(self, deployment_id: str) -> dict | None:
        response = prefect_request("GET", f"deployments/{deployment_id}", expect=(200, 404), api_url=self.api_url)
        return None if response.status_code == 404 else response.json()

    def secret_value(self, block_name: str) -> str:
        path = f"block_types/slug/secret/block_documents/name/{block_name}"
        response = prefect_request("GET", path, params={"include_secrets": "true"}, api_url=self.api_url)
        return response.json()["data"]["value"]


@dataclass
class OrgHandle:
    slug: str
    name: str
    headers: dict
    user: object

    @property
    def org(self) -> Org:
        return Org.objects.get(slug=self.slug)


def add_warehouse(api: Api, org: OrgHandle, tmp_path) -> dict:
    response = api.post(
        "/api/v1/organizations/warehouse/",
        warehouse_request(tmp_path / f"{org.slug}.duckdb"),
        headers=org.headers,
    )
    assert response.status_code == 200, response.content
    return response.json()


def add_source(api: Api, org: OrgHandle, rows: int = 5) -> str:
    response = api.post(
        "/api/airbyte/sources/",
        {"name": "sample", "sourceDefId": SAMPLE_SOURCE_DEFINITION_ID, "config": {"count": rows}},
        headers=org.headers,
    )
    assert response.status_code == 200, response.content
    return response.json()["sourceId"]


def add_connection(api: Api, org: OrgHandle, source_id: str, name: str = "sample sync") -> dict:
    response = api.post("/api/airbyte/v1/connections/", {"name": name, "sourceId": source_id}, headers=org.headers)
    assert response.status_code == 200, response.content
    return response.json()


def add_dbt_workspace(api: Api, org: OrgHandle, repo_url: str, schema: str = "analytics") -> dict:
    response = api.post("/api/dbt/workspace/", {"gitrepoUrl": repo_url, "defaultSchema": schema}, headers=org.headers)
    assert response.status_code == 200, response.content
    return response.json()


def add_transform_tasks(api: Api, org: OrgHandle) -> dict[str, str]:
    response = api.post("/api/prefect/tasks/transform/", headers=org.headers)
    assert response.status_code == 200, response.content
    return {task["slug"]: task["uuid"] for task in response.json()}


def audited(org: OrgHandle, action: str, object_id: str | None = None) -> dict:
    """The one audit row of `action` (on `object_id`, if given) in the org, written by the org's user: its
    details. The action is written out as the audit trail stores it."""
    rows = AuditEvent.objects.filter(org__slug=org.slug, action=action)
    if object_id is not None:
        rows = rows.filter(object_id=str(object_id))
    assert [(row.actor, row.orguser.user_id if row.orguser else None) for row in rows] == [
        (org.user.email, org.user.id)
    ], f"expected one {action} row by {org.user.email}, found {list(rows.values('actor', 'object_id'))}"
    return rows.get().details
