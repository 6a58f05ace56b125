"""Drives a running production layout (devtools/prod_layout.py) through the project's HTTP API only, as the
web app would: login, organizations with a PostgreSQL warehouse, sources, connections, pipelines, triggers.
Used by tests/scale and bench/scale.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from ddpcontract.warehouses import WarehouseType
from devtools.airbyte_emulator import SAMPLE_SOURCE_DEFINITION_ID


class ApiCallFailed(AssertionError):
    """An API call answered something else than expected; the message has the method, path and detail."""


@dataclass
class OrgHandle:
    name: str
    slug: str
    headers: dict[str, str]
    connections: list[str] = field(default_factory=list)  # connection ids, one destination schema each


class LayoutApi:
    """One HTTP client on Django (keep-alive), authenticated as one user."""

    def __init__(self, django_url: str, *, timeout: float = 60):
        self.http = httpx.Client(base_url=django_url, timeout=timeout)
        self.auth: dict[str, str] = {}

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, body=None, *, org: OrgHandle | None = None, ok=(200,)) -> httpx.Response:
        headers = org.headers if org else self.auth
        response = self.http.request(method, path, json=body, headers=headers)
        if response.status_code not in ok:
            raise ApiCallFailed(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response

    def login(self, email: str, password: str) -> None:
        token = self.call("POST", "/api/v1/login/", {"email": email, "password": password}).json()["token"]
        self.auth = {"Authorization": f"Bearer {token}"}

    def org_create(self, name: str, *, warehouse: dict, warehouse_schema: str) -> OrgHandle:
        """An organization with a PostgreSQL warehouse (settings as prod_layout.warehouse_settings gives them)."""
        org = self.call("POST", "/api/v1/organizations/", {"name": name}).json()
        handle = OrgHandle(name=org["name"], slug=org["slug"], headers={**self.auth, "x-dalgo-org": org["slug"]})
        body = {
            "wtype": WarehouseType.POSTGRES,
            "name": "warehouse",
            "airbyteConfig": {**warehouse, "schema": warehouse_schema},
        }
        self.call("POST", "/api/v1/organizations/warehouse/", body, org=handle)
        return handle

    def connections_create(self, org: OrgHandle, count: int, *, rows: int = 5) -> list[str]:
        """`count` connections from one Sample Data source, each into a schema of its own (so syncs that
        run at once never write the same tables)."""
        source = {"name": "sample", "sourceDefId": SAMPLE_SOURCE_DEFINITION_ID, "config": {"count": rows, "seed": 7}}
        source_id = self.call("POST", "/api/airbyte/sources/", source, org=org).json()["sourceId"]
        for index in range(len(org.connections), len(org.connections) + count):
            schema = f"raw_{org.slug}_{index}".replace("-", "_")[:60]
            body = {"name": f"sync {index}", "sourceId": source_id, "destinationSchema": schema}
            created = self.call("POST", "/api/airbyte/v1/connections/", body, org=org).json()
            org.connections.append(created["connectionId"])
        return org.connections

    def pipeline_create(self, org: OrgHandle, name: str, connection_ids: list[str], cron: str | None = None) -> str:
        body = {"name": name, "connections": [{"id": c, "seq": i} for i, c in enumerate(connection_ids)], "cron": cron}
        return self.call("POST", "/api/prefect/v1/flows/", body, org=org).json()["deploymentId"]

    def pipeline_trigger(self, org: OrgHandle, deployment_id: str) -> httpx.Response:
        """POST .../flow_run/: 200 with the flow run id, or 409 while the pipeline's tasks are locked."""
        return self.call("POST", f"/api/prefect/v1/flows/{deployment_id}/flow_run/", org=org, ok=(200, 409))

    def pipelines(self, org: OrgHandle) -> list[dict]:
        return self.call("GET", "/api/prefect/v1/flows/", org=org).json()

    def flow_run(self, org: OrgHandle, flow_run_id: str) -> dict:
        return self.call("GET", f"/api/prefect/flow_runs/{flow_run_id}", org=org).json()
