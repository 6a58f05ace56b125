"""The Airbyte config API (`/api/v1/...`, HTTP basic auth), behind one small interface.

Airbyte documents this API as internal in favour of `/api/public/v1`; keeping every call in this class
means the public API can be added as a second implementation without touching the services.
Failures are typed: AirbyteNotFound (404), AirbyteConflict (409), AirbyteInvalid (Airbyte's 422 -> 400),
AirbyteError (any other refusal, 502), AirbyteUnavailable (503).
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
from django.conf import settings

from ddpui.errors import Conflict, InvalidInput, NotFound, UpstreamError, UpstreamUnavailable


class AirbyteError(UpstreamError):
    pass


class AirbyteConflict(Conflict):
    """Airbyte refused because of the object's state (e.g. a sync or reset is already running)."""


class AirbyteInvalid(InvalidInput):
    """Airbyte refused what the caller asked for (e.g. a configuration that fails the connector's spec)."""


class AirbyteNotFound(NotFound):
    pass


class AirbyteUnavailable(UpstreamUnavailable):
    pass


class AirbyteClient:
    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, auth=(username, password), timeout=timeout)
        self._lock = threading.Lock()
        self.calls = 0

    def post(self, endpoint: str, body: dict | None = None) -> Any:
        with self._lock:
            self.calls += 1
        try:
            response = self._http.post(f"/api/v1/{endpoint}", json=body or {})
        except httpx.TransportError as exc:
            raise AirbyteUnavailable(f"Airbyte at {self.base_url} is unreachable ({exc.__class__.__name__})") from exc
        if response.status_code == 404:
            raise AirbyteNotFound(f"not found in Airbyte: {self._message(response)}")
        if response.status_code in (502, 503, 504):
            raise AirbyteUnavailable(f"Airbyte is unavailable: {self._message(response)}")
        if response.status_code == 409:
            raise AirbyteConflict(f"Airbyte refused {endpoint}: {self._message(response)}")
        if response.status_code == 422:
            raise AirbyteInvalid(f"Airbyte rejected the request: {self._message(response)}")
        if response.status_code >= 400:
            raise AirbyteError(
                f"Airbyte refused the call {endpoint} ({response.status_code}): {self._message(response)}"
            )
        if not response.content:
            return {}
        return response.json()

    @staticmethod
    def _message(response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.text[:300]
        if isinstance(body, dict):
            return str(body.get("message") or body.get("detail") or body)[:300]
        return str(body)[:300]

    # workspaces
    def workspace_create(self, *, name: str) -> dict:
        return self.post("workspaces/create", {"name": name})

    def workspace_get(self, *, workspace_id: str) -> dict:
        return self.post("workspaces/get", {"workspaceId": workspace_id})

    def workspace_delete(self, *, workspace_id: str) -> None:
        self.post("workspaces/delete", {"workspaceId": workspace_id})

    # definitions
    def source_definitions(self, *, workspace_id: str) -> list[dict]:
        return self.post("source_definitions/list_for_workspace", {"workspaceId": workspace_id})["sourceDefinitions"]

    def destination_definitions(self, *, workspace_id: str) -> list[dict]:
        body = {"workspaceId": workspace_id}
        return self.post("destination_definitions/list_for_workspace", body)["destinationDefinitions"]

    def source_definition_spec(self, *, workspace_id: str, definition_id: str) -> dict:
        """{sourceDefinitionId, connectionSpecification (a JSON Schema), documentationUrl, jobInfo}."""
        body = {"workspaceId": workspace_id, "sourceDefinitionId": definition_id}
        return self.post("source_definition_specifications/get", body)

    def destination_definition_spec(self, *, workspace_id: str, definition_id: str) -> dict:
        """{destinationDefinitionId, connectionSpecification, supportedDestinationSyncModes, ...}."""
        body = {"workspaceId": workspace_id, "destinationDefinitionId": definition_id}
        return self.post("destination_definition_specifications/get", body)

    # checks: a CheckConnectionRead {status: succeeded|failed, message, jobInfo{succeeded, logs{logLines}}}
    def source_check(self, *, workspace_id: str, definition_id: str, config: dict) -> dict:
        body = {"workspaceId": workspace_id, "sourceDefinitionId": definition_id, "connectionConfiguration": config}
        return self.post("scheduler/sources/check_connection", body)

    def source_check_for_update(self, *, source_id: str, name: str, config: dict) -> dict:
        body = {"sourceId": source_id, "name": name, "connectionConfiguration": config}
        return self.post("sources/check_connection_for_update", body)

    def destination_check(self, *, workspace_id: str, definition_id: str, config: dict) -> dict:
        body = {"workspaceId": workspace_id, "destinationDefinitionId": definition_id}
        return self.post("scheduler/destinations/check_connection", {**body, "connectionConfiguration": config})

    def destination_check_for_update(self, *, destination_id: str, name: str, config: dict) -> dict:
        body = {"destinationId": destination_id, "name": name, "connectionConfiguration": config}
        return self.post("destinations/check_connection_for_update", body)

    # sources
    def source_create(self, *, workspace_id: str, name: str, definition_id: str, config: dict) -> dict:
        body = {"workspaceId": workspace_id, "name": name, "sourceDefinitionId": definition_id}
        return self.post("sources/create", {**body, "connectionConfiguration": config})

    def sources_list(self, *, workspace_id: str) -> list[dict]:
        return self.post("sources/list", {"workspaceId": workspace_id})["sources"]

    def source_get(self, *, source_id: str) -> dict:
        return self.post("sources/get", {"sourceId": source_id})

    def source_delete(self, *, source_id: str) -> None:
        self.post("sources/delete", {"sourceId": source_id})

    def source_update(self, *, source_id: str, name: str, config: dict) -> dict:
        body = {"sourceId": source_id, "name": name, "connectionConfiguration": config}
        return self.post("sources/update", body)

    def source_discover(self, *, source_id: str) -> dict:
        """{catalog, catalogId, jobInfo}; Airbyte answers 200 without a catalog when discovery failed
        (jobInfo.failureReason says why)."""
        return self.post("sources/discover_schema", {"sourceId": source_id, "disable_cache": True})

    # destinations
    def destination_create(self, *, workspace_id: str, name: str, definition_id: str, config: dict) -> dict:
        body = {"workspaceId": workspace_id, "name": name, "destinationDefinitionId": definition_id}
        return self.post("destinations/create", {**body, "connectionConfiguration": config})

    def destination_get(self, *, destination_id: str) -> dict:
        return self.post("destinations/get", {"destinationId": destination_id})

    def destinations_list(self, *, workspace_id: str) -> list[dict]:
        return self.post("destinations/list", {"workspaceId": workspace_id})["destinations"]

    def destination_update(self, *, destination_id: str, name: str, config: dict) -> dict:
        body = {"destinationId": destination_id, "name": name, "connectionConfiguration": config}
        return self.post("destinations/update", body)

    def destination_delete(self, *, destination_id: str) -> None:
        self.post("destinations/delete", {"destinationId": destination_id})

    # connections
    def connection_create(self, *, body: dict) -> dict:
        return self.post("connections/create", body)

    def connections_list(self, *, workspace_id: str) -> list[dict]:
        return self.post("connections/list", {"workspaceId": workspace_id})["connections"]

    def connections_list_with_status(self, *, workspace_id: str) -> list[dict]:
        """Every connection of the workspace with its source's and destination's names and its latest sync
        job's status and time, in one call (Airbyte's own web app lists connections with it)."""
        return self.post("web_backend/connections/list", {"workspaceId": workspace_id})["connections"]

    def connection_get(self, *, connection_id: str) -> dict:
        return self.post("connections/get", {"connectionId": connection_id})

    def connection_get_with_source(self, *, connection_id: str) -> dict:
        """The connection with its source and destination objects (web_backend/connections/get)."""
        return self.post("web_backend/connections/get", {"connectionId": connection_id, "withRefreshedCatalog": False})

    def connection_update(self, *, body: dict) -> dict:
        return self.post("connections/update", body)

    def connection_delete(self, *, connection_id: str) -> None:
        self.post("connections/delete", {"connectionId": connection_id})

    def connection_reset(self, *, connection_id: str) -> dict:
        return self.post("connections/reset", {"connectionId": connection_id})

    def jobs_list(self, *, connection_id: str, config_types: list[str] | None = None, limit: int = 20) -> list[dict]:
        """The connection's jobs, newest first: [{job{id, status, createdAt, ...}, attempts[{status, ...}]}]."""
        body = {
            "configId": connection_id,
            "configTypes": config_types or ["sync", "reset_connection"],
            "pagination": {"pageSize": limit, "rowOffset": 0},
        }
        return self.post("jobs/list", body)["jobs"]

    def job_get(self, *, job_id: int) -> dict:
        """One job with its attempts: {job{...}, attempts[{attempt{status, failureSummary, ...}, logs}]}."""
        return self.post("jobs/get", {"id": job_id})

    def attempt_get(self, *, job_id: int, attempt_number: int) -> dict:
        """One attempt of a job with its logs: {attempt{...}, logs{logLines[]}}."""
        return self.post("attempt/get_for_job", {"jobId": job_id, "attemptNumber": attempt_number})


_default: AirbyteClient | None = None
_default_key: tuple | None = None


def get_airbyte() -> AirbyteClient:
    global _default, _default_key
    key = (
        settings.AIRBYTE_SERVER_HOST,
        settings.AIRBYTE_SERVER_PORT,
        settings.AIRBYTE_USERNAME,
        settings.AIRBYTE_PASSWORD,
    )
    if _default is None or _default_key != key:
        base_url = f"http://{settings.AIRBYTE_SERVER_HOST}:{settings.AIRBYTE_SERVER_PORT}"
        _default = AirbyteClient(base_url, settings.AIRBYTE_USERNAME, settings.AIRBYTE_PASSWORD)
        _default_key = key
    return _default
