"""State and behaviour of the Airbyte emulator, independent of HTTP (test double only)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from . import definitions as defs
from . import sample_data, writers

log = logging.getLogger("devtools.airbyte_emulator")

STATE_VERSION = 1
JOB_TERMINAL = {"succeeded", "failed", "cancelled", "incomplete"}
CONNECTION_STATUSES = {"active", "inactive", "deprecated"}

DEFAULT_CONTROLS: dict[str, Any] = {
    "sync_seconds": 0.5,
    "fail_next_syncs": 0,
    "fail_connection_ids": [],
    "unavailable": False,
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, exception_class: str = "ApiException"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.exception_class = exception_class

    def payload(self) -> dict[str, Any]:
        return {"message": self.message, "exceptionClassName": self.exception_class}


def not_found(kind: str, ident: Any) -> ApiError:
    return ApiError(404, f"Could not find configuration for {kind}: {ident}.", "ConfigNotFoundException")


def _now() -> int:
    return int(time.time())


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "workspace"


def _require(body: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if body.get(k) in (None, "")]
    if missing:
        raise ApiError(422, f"missing required field(s): {', '.join(missing)}", "InvalidInputException")


def _require_str(body: dict[str, Any], key: str) -> str:
    _require(body, key)
    return str(body[key])


class Emulator:
    """All state of one emulated Airbyte instance. Thread-safe."""

    def __init__(self, state_file: str | None = None):
        self.state_file = state_file
        self._lock = threading.RLock()
        self._job_threads: dict[int, threading.Thread] = {}
        self._job_cancel: dict[int, threading.Event] = {}
        self.controls: dict[str, Any] = copy.deepcopy(DEFAULT_CONTROLS)
        self._clear()
        if state_file and os.path.exists(state_file):
            self._load()

    # ------------------------------------------------------------------ state
    def _clear(self) -> None:
        self.workspaces: dict[str, dict[str, Any]] = {}
        self.sources: dict[str, dict[str, Any]] = {}
        self.destinations: dict[str, dict[str, Any]] = {}
        self.connections: dict[str, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.next_job_id = 1

    def _load(self) -> None:
        with open(self.state_file, encoding="utf-8") as fh:
            data = json.load(fh)
        self.workspaces = data.get("workspaces", {})
        self.sources = data.get("sources", {})
        self.destinations = data.get("destinations", {})
        self.connections = data.get("connections", {})
        self.jobs = {int(k): v for k, v in data.get("jobs", {}).items()}
        self.next_job_id = int(data.get("next_job_id", max(self.jobs, default=0) + 1))
        # jobs interrupted by a restart never finish
        for job in self.jobs.values():
            if job["status"] not in JOB_TERMINAL:
                self._finish(job, "failed", "emulator restarted while the job was running")
        log.info("loaded state from %s", self.state_file)

    def dump(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(
                {
                    "version": STATE_VERSION,
                    "workspaces": self.workspaces,
                    "sources": self.sources,
                    "destinations": self.destinations,
                    "connections": self.connections,
                    "jobs": {str(k): v for k, v in self.jobs.items()},
                    "next_job_id": self.next_job_id,
                    "controls": self.controls,
                }
            )

    def _save(self) -> None:
        if not self.state_file:
            return
        data = self.dump()
        data.pop("controls", None)
        target = os.path.abspath(self.state_file)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".emulator-state-", dir=os.path.dirname(target))
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, default=str)
        os.replace(tmp, target)

    # ------------------------------------------------------------------ controls
    def configure(self, **kwargs: Any) -> dict[str, Any]:
        unknown = set(kwargs) - set(DEFAULT_CONTROLS)
        if unknown:
            raise ApiError(422, f"unknown control(s): {', '.join(sorted(unknown))}")
        with self._lock:
            if "sync_seconds" in kwargs:
                value = kwargs["sync_seconds"]
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                    raise ApiError(422, "sync_seconds must be a number >= 0")
                self.controls["sync_seconds"] = float(value)
            if "fail_next_syncs" in kwargs:
                value = kwargs["fail_next_syncs"]
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ApiError(422, "fail_next_syncs must be an integer >= 0")
                self.controls["fail_next_syncs"] = value
            if "fail_connection_ids" in kwargs:
                value = kwargs["fail_connection_ids"]
                if not isinstance(value, list):
                    raise ApiError(422, "fail_connection_ids must be a list")
                self.controls["fail_connection_ids"] = [str(v) for v in value]
            if "unavailable" in kwargs:
                self.controls["unavailable"] = bool(kwargs["unavailable"])
            return copy.deepcopy(self.controls)

    def reset(self) -> None:
        """Forget everything (objects, jobs, controls); running jobs are cancelled."""
        self.cancel_all_jobs()
        with self._lock:
            self._clear()
            self.controls = copy.deepcopy(DEFAULT_CONTROLS)
            self._save()

    def cancel_all_jobs(self, join_timeout: float = 10.0) -> None:
        with self._lock:
            events = list(self._job_cancel.values())
            threads = list(self._job_threads.values())
        for ev in events:
            ev.set()
        deadline = time.monotonic() + join_timeout
        for th in threads:
            th.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ helpers
    def _workspace(self, workspace_id: Any) -> dict[str, Any]:
        ws = self.workspaces.get(str(workspace_id))
        if ws is None:
            raise not_found("standard_workspace", workspace_id)
        return ws

    def _source(self, source_id: Any) -> dict[str, Any]:
        src = self.sources.get(str(source_id))
        if src is None:
            raise not_found("source_connection", source_id)
        return src

    def _destination(self, destination_id: Any) -> dict[str, Any]:
        dst = self.destinations.get(str(destination_id))
        if dst is None:
            raise not_found("destination_connection", destination_id)
        return dst

    def _connection(self, connection_id: Any) -> dict[str, Any]:
        con = self.connections.get(str(connection_id))
        if con is None:
            raise not_found("standard_sync", connection_id)
        return con

    def _job(self, job_id: Any) -> dict[str, Any]:
        try:
            key = int(job_id)
        except (TypeError, ValueError):
            raise ApiError(422, f"job id must be an integer, got {job_id!r}", "InvalidInputException") from None
        job = self.jobs.get(key)
        if job is None:
            raise ApiError(404, f"Could not find job with id: {job_id}", "NotFoundException")
        return job

    @staticmethod
    def _masked(config: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(config)
        for key in defs.secret_keys(spec):
            if out.get(key):
                out[key] = defs.SECRET_MASK
        return out

    @staticmethod
    def _merge_secrets(new: dict[str, Any], old: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        merged = copy.deepcopy(new)
        for key in defs.secret_keys(spec):
            if merged.get(key) == defs.SECRET_MASK:
                merged[key] = old.get(key)
        return merged

    @staticmethod
    def _job_info(config_type: str, ok: bool, message: str = "") -> dict[str, Any]:
        now = _now()
        return {
            "id": str(uuid.uuid4()),
            "configType": config_type,
            "configId": "",
            "createdAt": now,
            "endedAt": now,
            "succeeded": ok,
            "connectorConfigurationUpdated": False,
            "logs": {"logLines": [message] if message else []},
        }

    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        return {"available": not self.controls["unavailable"]}

    # ------------------------------------------------------------------ workspaces
    def workspace_create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _require_str(body, "name")
        with self._lock:
            wid = str(uuid.uuid4())
            ws = {
                "workspaceId": wid,
                "customerId": str(uuid.uuid4()),
                "name": name,
                "slug": _slug(name),
                "email": body.get("email"),
                "initialSetupComplete": False,
                "displaySetupWizard": False,
                "anonymousDataCollection": False,
                "news": False,
                "securityUpdates": False,
                "notifications": [],
                "defaultGeography": "auto",
            }
            self.workspaces[wid] = ws
            self._save()
            return copy.deepcopy(ws)

    def workspace_get(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._workspace(_require_str(body, "workspaceId")))

    def workspace_list(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return {"workspaces": copy.deepcopy(list(self.workspaces.values()))}

    def workspace_update_name(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            ws = self._workspace(_require_str(body, "workspaceId"))
            ws["name"] = _require_str(body, "name")
            ws["slug"] = _slug(ws["name"])
            self._save()
            return copy.deepcopy(ws)

    def workspace_delete(self, body: dict[str, Any]) -> None:
        with self._lock:
            ws = self._workspace(_require_str(body, "workspaceId"))
            wid = ws["workspaceId"]
            for sid in [s for s, v in self.sources.items() if v["workspaceId"] == wid]:
                self._delete_source(sid)
            for did in [d for d, v in self.destinations.items() if v["workspaceId"] == wid]:
                self._delete_destination(did)
            del self.workspaces[wid]
            self._save()

    # ------------------------------------------------------------------ definitions
    def source_definitions(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("workspaceId"):
            with self._lock:
                self._workspace(body["workspaceId"])
        return {"sourceDefinitions": copy.deepcopy(defs.SOURCE_DEFINITIONS)}

    def source_definition_get(self, body: dict[str, Any]) -> dict[str, Any]:
        d = defs.source_definition(_require_str(body, "sourceDefinitionId"))
        if d is None:
            raise not_found("standard_source_definition", body["sourceDefinitionId"])
        return d

    def destination_definitions(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("workspaceId"):
            with self._lock:
                self._workspace(body["workspaceId"])
        return {"destinationDefinitions": copy.deepcopy(defs.DESTINATION_DEFINITIONS)}

    def destination_definition_get(self, body: dict[str, Any]) -> dict[str, Any]:
        d = defs.destination_definition(_require_str(body, "destinationDefinitionId"))
        if d is None:
            raise not_found("standard_destination_definition", body["destinationDefinitionId"])
        return d

    def source_spec(self, body: dict[str, Any]) -> dict[str, Any]:
        def_id = _require_str(body, "sourceDefinitionId")
        spec = defs.SOURCE_SPECS.get(def_id)
        if spec is None:
            raise not_found("standard_source_definition", def_id)
        return {
            "sourceDefinitionId": def_id,
            "documentationUrl": defs.source_definition(def_id)["documentationUrl"],
            "connectionSpecification": copy.deepcopy(spec),
            "jobInfo": self._job_info("get_spec", True),
        }

    def destination_spec(self, body: dict[str, Any]) -> dict[str, Any]:
        def_id = _require_str(body, "destinationDefinitionId")
        spec = defs.DESTINATION_SPECS.get(def_id)
        if spec is None:
            raise not_found("standard_destination_definition", def_id)
        return {
            "destinationDefinitionId": def_id,
            "documentationUrl": defs.destination_definition(def_id)["documentationUrl"],
            "connectionSpecification": copy.deepcopy(spec),
            "supportedDestinationSyncModes": ["overwrite"],
            "supportsDbt": False,
            "supportsNormalization": False,
            "jobInfo": self._job_info("get_spec", True),
        }

    # ------------------------------------------------------------------ sources
    def _render_source(self, src: dict[str, Any]) -> dict[str, Any]:
        spec = defs.SOURCE_SPECS[src["sourceDefinitionId"]]
        out = copy.deepcopy(src)
        out["connectionConfiguration"] = self._masked(src["connectionConfiguration"], spec)
        return out

    @staticmethod
    def _validate(spec: dict[str, Any], config: Any) -> None:
        problems = defs.validate_config(spec, config)
        if problems:
            raise ApiError(422, "invalid connectionConfiguration: " + "; ".join(problems), "JsonValidationException")

    def source_create(self, body: dict[str, Any]) -> dict[str, Any]:
        _require(body, "workspaceId", "name", "sourceDefinitionId")
        config = body.get("connectionConfiguration", {})
        with self._lock:
            self._workspace(body["workspaceId"])
            d = defs.source_definition(str(body["sourceDefinitionId"]))
            if d is None:
                raise not_found("standard_source_definition", body["sourceDefinitionId"])
            self._validate(defs.SOURCE_SPECS[d["sourceDefinitionId"]], config)
            sid = str(uuid.uuid4())
            src = {
                "sourceId": sid,
                "name": str(body["name"]),
                "sourceDefinitionId": d["sourceDefinitionId"],
                "workspaceId": str(body["workspaceId"]),
                "connectionConfiguration": copy.deepcopy(config),
                "sourceName": d["name"],
                "icon": None,
            }
            self.sources[sid] = src
            self._save()
            return self._render_source(src)

    def source_get(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._render_source(self._source(_require_str(body, "sourceId")))

    def source_list(self, body: dict[str, Any]) -> dict[str, Any]:
        wid = _require_str(body, "workspaceId")
        with self._lock:
            self._workspace(wid)
            return {"sources": [self._render_source(s) for s in self.sources.values() if s["workspaceId"] == wid]}

    def source_update(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            src = self._source(_require_str(body, "sourceId"))
            spec = defs.SOURCE_SPECS[src["sourceDefinitionId"]]
            if "connectionConfiguration" in body:
                config = self._merge_secrets(body["connectionConfiguration"], src["connectionConfiguration"], spec)
                self._validate(spec, config)
                src["connectionConfiguration"] = config
            if body.get("name"):
                src["name"] = str(body["name"])
            self._save()
            return self._render_source(src)

    def _delete_source(self, sid: str) -> None:
        for cid in [c for c, v in self.connections.items() if v["sourceId"] == sid]:
            del self.connections[cid]
        del self.sources[sid]

    def source_delete(self, body: dict[str, Any]) -> None:
        with self._lock:
            src = self._source(_require_str(body, "sourceId"))
            self._delete_source(src["sourceId"])
            self._save()

    def source_check(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            src = copy.deepcopy(self._source(_require_str(body, "sourceId")))
        return self._check_source_config(src["sourceDefinitionId"], src["connectionConfiguration"])

    def source_check_for_update(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            src = copy.deepcopy(self._source(_require_str(body, "sourceId")))
        spec = defs.SOURCE_SPECS[src["sourceDefinitionId"]]
        config = self._merge_secrets(
            body.get("connectionConfiguration", src["connectionConfiguration"]), src["connectionConfiguration"], spec
        )
        return self._check_source_config(src["sourceDefinitionId"], config)

    def scheduler_source_check(self, body: dict[str, Any]) -> dict[str, Any]:
        def_id = _require_str(body, "sourceDefinitionId")
        if def_id not in defs.SOURCE_SPECS:
            raise not_found("standard_source_definition", def_id)
        return self._check_source_config(def_id, body.get("connectionConfiguration", {}))

    def _check_source_config(self, def_id: str, config: Any) -> dict[str, Any]:
        problems = defs.validate_config(defs.SOURCE_SPECS[def_id], config)
        ok = not problems
        message = "; ".join(problems) if problems else "sample source is reachable"
        return {
            "status": "succeeded" if ok else "failed",
            "message": message,
            "jobInfo": self._job_info("check_connection_source", ok, message),
        }

    def source_discover(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            src = self._source(_require_str(body, "sourceId"))
            def_id = src["sourceDefinitionId"]
        return {
            "catalog": defs.discover_catalog(def_id),
            "catalogId": str(uuid.uuid4()),
            "jobInfo": self._job_info("discover_schema", True),
        }

    # ------------------------------------------------------------------ destinations
    def _render_destination(self, dst: dict[str, Any]) -> dict[str, Any]:
        spec = defs.DESTINATION_SPECS[dst["destinationDefinitionId"]]
        out = copy.deepcopy(dst)
        out["connectionConfiguration"] = self._masked(dst["connectionConfiguration"], spec)
        return out

    def destination_create(self, body: dict[str, Any]) -> dict[str, Any]:
        _require(body, "workspaceId", "name", "destinationDefinitionId")
        config = body.get("connectionConfiguration", {})
        with self._lock:
            self._workspace(body["workspaceId"])
            d = defs.destination_definition(str(body["destinationDefinitionId"]))
            if d is None:
                raise not_found("standard_destination_definition", body["destinationDefinitionId"])
            self._validate(defs.DESTINATION_SPECS[d["destinationDefinitionId"]], config)
            did = str(uuid.uuid4())
            dst = {
                "destinationId": did,
                "name": str(body["name"]),
                "destinationDefinitionId": d["destinationDefinitionId"],
                "workspaceId": str(body["workspaceId"]),
                "connectionConfiguration": copy.deepcopy(config),
                "destinationName": d["name"],
                "icon": None,
            }
            self.destinations[did] = dst
            self._save()
            return self._render_destination(dst)

    def destination_get(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._render_destination(self._destination(_require_str(body, "destinationId")))

    def destination_list(self, body: dict[str, Any]) -> dict[str, Any]:
        wid = _require_str(body, "workspaceId")
        with self._lock:
            self._workspace(wid)
            return {
                "destinations": [
                    self._render_destination(d) for d in self.destinations.values() if d["workspaceId"] == wid
                ]
            }

    def destination_update(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            dst = self._destination(_require_str(body, "destinationId"))
            spec = defs.DESTINATION_SPECS[dst["destinationDefinitionId"]]
            if "connectionConfiguration" in body:
                config = self._merge_secrets(body["connectionConfiguration"], dst["connectionConfiguration"], spec)
                self._validate(spec, config)
                dst["connectionConfiguration"] = config
            if body.get("name"):
                dst["name"] = str(body["name"])
            self._save()
            return self._render_destination(dst)

    def _delete_destination(self, did: str) -> None:
        for cid in [c for c, v in self.connections.items() if v["destinationId"] == did]:
            del self.connections[cid]
        del self.destinations[did]

    def destination_delete(self, body: dict[str, Any]) -> None:
        with self._lock:
            dst = self._destination(_require_str(body, "destinationId"))
            self._delete_destination(dst["destinationId"])
            self._save()

    def _check_destination_config(self, def_id: str, config: Any) -> dict[str, Any]:
        problems = defs.validate_config(defs.DESTINATION_SPECS[def_id], config)
        if problems:
            ok, message = False, "; ".join(problems)
        else:
            ok, message = writers.check_destination(def_id, config)
        return {
            "status": "succeeded" if ok else "failed",
            "message": message,
            "jobInfo": self._job_info("check_connection_destination", ok, message),
        }

    def destination_check(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            dst = copy.deepcopy(self._destination(_require_str(body, "destinationId")))
        return self._check_destination_config(dst["destinationDefinitionId"], dst["connectionConfiguration"])

    def destination_check_for_update(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            dst = copy.deepcopy(self._destination(_require_str(body, "destinationId")))
        spec = defs.DESTINATION_SPECS[dst["destinationDefinitionId"]]
        config = self._merge_secrets(
            body.get("connectionConfiguration", dst["connectionConfiguration"]), dst["connectionConfiguration"], spec
        )
        return self._check_destination_config(dst["destinationDefinitionId"], config)

    def scheduler_destination_check(self, body: dict[str, Any]) -> dict[str, Any]:
        def_id = _require_str(body, "destinationDefinitionId")
        if def_id not in defs.DESTINATION_SPECS:
            raise not_found("standard_destination_definition", def_id)
        return self._check_destination_config(def_id, body.get("connectionConfiguration", {}))

    # ------------------------------------------------------------------ connections
    _CONNECTION_FIELDS = (
        "name",
        "namespaceDefinition",
        "namespaceFormat",
        "prefix",
        "syncCatalog",
        "status",
        "scheduleType",
        "scheduleData",
        "schedule",
        "operationIds",
        "resourceRequirements",
        "geography",
        "nonBreakingChangesPreference",
        "notifySchemaChanges",
        "notifySchemaChangesByEmail",
        "backfillPreference",
        "sourceCatalogId",
    )

    @staticmethod
    def _validate_connection(con: dict[str, Any]) -> None:
        if con["status"] not in CONNECTION_STATUSES:
            raise ApiError(422, f"status must be one of {sorted(CONNECTION_STATUSES)}", "InvalidInputException")
        if con.get("prefix") and not defs.is_identifier(con["prefix"]):
            raise ApiError(422, "prefix must be a plain SQL identifier", "InvalidInputException")
        if con.get("namespaceDefinition") not in ("source", "destination", "customformat"):
            raise ApiError(
                422, "namespaceDefinition must be source, destination or customformat", "InvalidInputException"
            )
        catalog = con.get("syncCatalog")
        if not isinstance(catalog, dict) or not isinstance(catalog.get("streams"), list):
            raise ApiError(422, "syncCatalog must be an object with a 'streams' list", "InvalidInputException")
        for entry in catalog["streams"]:
            name = ((entry or {}).get("stream") or {}).get("name")
            if name not in sample_data.STREAM_NAMES:
                raise ApiError(422, f"unknown stream in syncCatalog: {name!r}", "InvalidInputException")

    def connection_create(self, body: dict[str, Any]) -> dict[str, Any]:
        _require(body, "sourceId", "destinationId")
        with self._lock:
            src = self._source(body["sourceId"])
            dst = self._destination(body["destinationId"])
            if src["workspaceId"] != dst["workspaceId"]:
                raise ApiError(422, "source and destination are in different workspaces", "InvalidInputException")
            cid = str(uuid.uuid4())
            con = {
                "connectionId": cid,
                "name": body.get("name") or f"{src['name']} <> {dst['name']}",
                "namespaceDefinition": "destination",
                "namespaceFormat": "${SOURCE_NAMESPACE}",
                "prefix": "",
                "sourceId": src["sourceId"],
                "destinationId": dst["destinationId"],
                "operationIds": [],
                "syncCatalog": defs.discover_catalog(src["sourceDefinitionId"]),
                "scheduleType": "manual",
                "scheduleData": None,
                "status": "active",
                "geography": "auto",
                "nonBreakingChangesPreference": "ignore",
                "notifySchemaChanges": False,
                "breakingChange": False,
                "workspaceId": src["workspaceId"],
                "createdAt": _now(),
            }
            for key in self._CONNECTION_FIELDS:
                if key in body and body[key] is not None:
                    con[key] = copy.deepcopy(body[key])
            self._validate_connection(con)
            self.connections[cid] = con
            self._save()
            return copy.deepcopy(con)

    def connection_get(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._connection(_require_str(body, "connectionId")))

    def web_backend_connection_get(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            con = copy.deepcopy(self._connection(_require_str(body, "connectionId")))
            con["source"] = self._render_source(self.sources[con["sourceId"]])
            con["destination"] = self._render_destination(self.destinations[con["destinationId"]])
            last = self._last_job(con["connectionId"], ("sync",))
            con["latestSyncJobStatus"] = last["status"] if last else None
            con["latestSyncJobCreatedAt"] = last["createdAt"] if last else None
            con["isSyncing"] = bool(last and last["status"] in ("pending", "running"))
            con["catalogDiff"] = {"transforms": []}
            return con

    def connection_list(self, body: dict[str, Any]) -> dict[str, Any]:
        wid = _require_str(body, "workspaceId")
        with self._lock:
            self._workspace(wid)
            return {"connections": [copy.deepcopy(c) for c in self.connections.values() if c.get("workspaceId") == wid]}

    def connection_update(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            con = self._connection(_require_str(body, "connectionId"))
            updated = copy.deepcopy(con)
            for key in self._CONNECTION_FIELDS:
                if key in body:
                    updated[key] = copy.deepcopy(body[key])
            self._validate_connection(updated)
            con.clear()
            con.update(updated)
            self._save()
            return copy.deepcopy(con)

    def connection_delete(self, body: dict[str, Any]) -> None:
        with self._lock:
            con = self._connection(_require_str(body, "connectionId"))
            del self.connections[con["connectionId"]]
            self._save()

    def connection_sync(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._start_job(_require_str(body, "connectionId"), "sync")

    def connection_reset(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._start_job(_require_str(body, "connectionId"), "reset_connection")

    # ------------------------------------------------------------------ jobs
    def _render_job(self, job: dict[str, Any]) -> dict[str, Any]:
        out = {
            "job": {k: job[k] for k in ("id", "configType", "configId", "status", "createdAt", "updatedAt")},
            "attempts": copy.deepcopy(job["attempts"]),
        }
        if job.get("resetConfig"):
            out["job"]["resetConfig"] = copy.deepcopy(job["resetConfig"])
        return out

    def _last_job(self, connection_id: str, config_types) -> dict[str, Any] | None:
        jobs = [j for j in self.jobs.values() if j["configId"] == connection_id and j["configType"] in config_types]
        return max(jobs, key=lambda j: j["id"]) if jobs else None

    def _start_job(self, connection_id: str, config_type: str) -> dict[str, Any]:
        with self._lock:
            con = self._connection(connection_id)
            if con["status"] == "deprecated":
                raise ApiError(422, f"connection {connection_id} is deprecated", "InvalidInputException")
            running = [
                j
                for j in self.jobs.values()
                if j["configId"] == connection_id and j["status"] in ("pending", "running")
            ]
            if running:
                raise ApiError(409, f"A sync is already running for: {connection_id}", "ValueConflictKnownException")
            fail_reason = None
            if config_type == "sync":
                if connection_id in self.controls["fail_connection_ids"]:
                    fail_reason = "injected failure: connection is listed in fail_connection_ids"
                elif self.controls["fail_next_syncs"] > 0:
                    self.controls["fail_next_syncs"] -= 1
                    fail_reason = "injected failure: fail_next_syncs"
            now = _now()
            job_id = self.next_job_id
            self.next_job_id += 1
            job = {
                "id": job_id,
                "configType": config_type,
                "configId": connection_id,
                "status": "pending",
                "createdAt": now,
                "updatedAt": now,
                "attempts": [],
            }
            if config_type == "reset_connection":
                job["resetConfig"] = {
                    "streamsToReset": [
                        {"name": s["stream"]["name"], "namespace": None}
                        for s in con["syncCatalog"]["streams"]
                        if s.get("config", {}).get("selected", True)
                    ]
                }
            self.jobs[job_id] = job
            self._save()
            response = self._render_job(job)  # snapshot: always "pending"
            cancel = threading.Event()
            thread = threading.Thread(
                target=self._run_job, args=(job_id, fail_reason, cancel), name=f"emulator-job-{job_id}", daemon=True
            )
            self._job_cancel[job_id] = cancel
            self._job_threads[job_id] = thread
        thread.start()
        return response

    def _log(self, job: dict[str, Any], message: str, level: str = "INFO") -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        line = f"{stamp} {level} {message}"
        if job["attempts"]:
            job["attempts"][-1]["logs"]["logLines"].append(line)
        log.debug("job %s: %s", job["id"], message)

    def _finish(self, job: dict[str, Any], status: str, message: str | None = None) -> None:
        now = _now()
        job["status"] = status
        job["updatedAt"] = now
        if job["attempts"]:
            attempt = job["attempts"][-1]["attempt"]
            attempt["status"] = status if status != "cancelled" else "failed"
            attempt["updatedAt"] = now
            attempt["endedAt"] = now
            if status == "failed" and message:
                attempt["failureSummary"] = {
                    "failures": [
                        {
                            "failureOrigin": "destination" if "injected" not in message else "source",
                            "failureType": "system_error",
                            "externalMessage": message,
                            "internalMessage": message,
                            "timestamp": now * 1000,
                        }
                    ],
                    "partialSuccess": False,
                }
            self._log(job, message or f"job {status}", "ERROR" if status == "failed" else "INFO")

    def _run_job(self, job_id: int, fail_reason: str | None, cancel: threading.Event) -> None:
        try:
            self._run_job_inner(job_id, fail_reason, cancel)
        except Exception as exc:  # never let a job thread die silently
            log.exception("job %s crashed", job_id)
            with self._lock:
                job = self.jobs.get(job_id)
                if job and job["status"] not in JOB_TERMINAL:
                    self._finish(job, "failed", f"emulator error: {exc}")
                    self._save()
        finally:
            with self._lock:
                self._job_threads.pop(job_id, None)
                self._job_cancel.pop(job_id, None)

    def _run_job_inner(self, job_id: int, fail_reason: str | None, cancel: threading.Event) -> None:
        if cancel.wait(0.05):
            return
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job["status"] != "pending":
                return
            con = copy.deepcopy(self.connections.get(job["configId"]))
            src = copy.deepcopy(self.sources.get(con["sourceId"])) if con else None
            dst = copy.deepcopy(self.destinations.get(con["destinationId"])) if con else None
            sync_seconds = float(self.controls["sync_seconds"])
            now = _now()
            job["status"] = "running"
            job["updatedAt"] = now
            job["attempts"].append(
                {
                    "attempt": {
                        "id": len(job["attempts"]),
                        "status": "running",
                        "recordsSynced": 0,
                        "bytesSynced": 0,
                        "createdAt": now,
                        "updatedAt": now,
                        "totalStats": {"recordsEmitted": 0, "bytesEmitted": 0, "recordsCommitted": 0},
                    },
                    "logs": {"logLines": []},
                }
            )
            kind = "sync" if job["configType"] == "sync" else "reset"
            self._log(job, f"starting {kind} of connection {job['configId']}")
            self._save()
        started = time.monotonic()

        def wait_rest() -> bool:
            """Sleep out the running phase; True if cancelled meanwhile."""
            return cancel.wait(max(0.0, sync_seconds - (time.monotonic() - started)))

        if con is None or src is None or dst is None:
            with self._lock:
                self._finish(job, "failed", "connection, source or destination was deleted")
                self._save()
            return

        if fail_reason:
            if wait_rest():
                return self._cancelled(job)
            with self._lock:
                if job["status"] not in JOB_TERMINAL:
                    self._finish(job, "failed", fail_reason)
                self._save()
            return

        if wait_rest():
            return self._cancelled(job)

        schema, loads, records, nbytes = self._plan(con, src, dst, job["configType"])
        with self._lock:
            self._log(
                job,
                f"writing {len(loads)} table(s) into schema {schema} of "
                f"{dst['destinationName']} destination {dst['name']}",
            )
        try:
            writers.write_tables(
                dst["destinationDefinitionId"],
                dst["connectionConfiguration"],
                schema,
                loads,
                dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0),
                empty_only=job["configType"] != "sync",
            )
        except writers.WriteError as exc:
            with self._lock:
                if job["status"] not in JOB_TERMINAL:
                    self._finish(job, "failed", str(exc))
                self._save()
            return
        with self._lock:
            if job["status"] in JOB_TERMINAL:  # cancelled while writing
                return
            attempt = job["attempts"][-1]["attempt"]
            attempt["recordsSynced"] = records
            attempt["bytesSynced"] = nbytes
            attempt["totalStats"] = {"recordsEmitted": records, "bytesEmitted": nbytes, "recordsCommitted": records}
            attempt["streamStats"] = [
                {"streamName": ld.stream, "stats": {"recordsEmitted": len(ld.rows), "recordsCommitted": len(ld.rows)}}
                for ld in loads
            ]
            for ld in loads:
                self._log(job, f"{schema}.{ld.table}: {len(ld.rows)} record(s)")
            self._finish(job, "succeeded", f"{kind_done(job)}; {records} record(s) synced")
            self._save()

    def _cancelled(self, job: dict[str, Any]) -> None:
        with self._lock:
            if job["status"] not in JOB_TERMINAL:
                self._finish(job, "cancelled", "job cancelled")
                self._save()

    @staticmethod
    def _plan(
        con: dict[str, Any], src: dict[str, Any], dst: dict[str, Any], config_type: str
    ) -> tuple[str, list[writers.TableLoad], int, int]:
        dst_config = dst["connectionConfiguration"]
        schema = writers.default_schema(dst["destinationDefinitionId"], dst_config)
        if con.get("namespaceDefinition") == "customformat":
            custom = (con.get("namespaceFormat") or "").replace("${SOURCE_NAMESPACE}", "").strip()
            if custom and defs.is_identifier(custom):
                schema = custom
        cfg = src["connectionConfiguration"]
        count = int(cfg.get("count", sample_data.DEFAULT_COUNT))
        seed = int(cfg.get("seed", sample_data.DEFAULT_SEED))
        prefix = con.get("prefix") or ""
        loads = []
        for entry in con["syncCatalog"]["streams"]:
            if not entry.get("config", {}).get("selected", True):
                continue
            stream = entry["stream"]["name"]
            rows = sample_data.generate_stream(stream, count, seed) if config_type == "sync" else []
            loads.append(writers.TableLoad(table=f"{prefix}{stream}", stream=stream, rows=rows))
        records = sum(len(ld.rows) for ld in loads)
        nbytes = sum(sample_data.estimate_bytes(ld.rows) for ld in loads)
        return schema, loads, records, nbytes

    def job_get(self, body: dict[str, Any]) -> dict[str, Any]:
        _require(body, "id")
        with self._lock:
            return self._render_job(self._job(body["id"]))

    def job_list(self, body: dict[str, Any]) -> dict[str, Any]:
        config_types = body.get("configTypes") or ["sync", "reset_connection"]
        config_id = body.get("configId")
        pagination = body.get("pagination") or {}
        try:
            page_size = int(pagination.get("pageSize", 200))
            offset = int(pagination.get("rowOffset", 0))
        except (TypeError, ValueError):
            raise ApiError(422, "pagination.pageSize/rowOffset must be integers", "InvalidInputException") from None
        statuses = body.get("statuses")
        with self._lock:
            jobs = [
                j
                for j in self.jobs.values()
                if j["configType"] in config_types
                and (not config_id or j["configId"] == str(config_id))
                and (not statuses or j["status"] in statuses)
            ]
            jobs.sort(key=lambda j: j["id"], reverse=True)
            total = len(jobs)
            page = jobs[offset : offset + page_size]
            return {"jobs": [self._render_job(j) for j in page], "totalJobCount": total}

    def job_last_replication(self, body: dict[str, Any]) -> dict[str, Any]:
        cid = _require_str(body, "connectionId")
        with self._lock:
            self._connection(cid)
            last = self._last_job(cid, ("sync",))
            return {"job": self._render_job(last)["job"] if last else None}

    def job_cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        _require(body, "id")
        with self._lock:
            job = self._job(body["id"])
            if job["status"] not in JOB_TERMINAL:
                ev = self._job_cancel.get(job["id"])
                if ev:
                    ev.set()
                self._finish(job, "cancelled", "job cancelled by request")
                self._save()
            return self._render_job(job)


def kind_done(job: dict[str, Any]) -> str:
    return "sync completed" if job["configType"] == "sync" else "reset completed"


Handler = Callable[[Emulator, dict[str, Any]], Any]

# path (below /api/v1, no trailing slash) -> Emulator method name
ROUTES: dict[str, str] = {
    "workspaces/create": "workspace_create",
    "workspaces/get": "workspace_get",
    "workspaces/list": "workspace_list",
    "workspaces/update_name": "workspace_update_name",
    "workspaces/delete": "workspace_delete",
    "source_definitions/list": "source_definitions",
    "source_definitions/list_for_workspace": "source_definitions",
    "source_definitions/get": "source_definition_get",
    "destination_definitions/list": "destination_definitions",
    "destination_definitions/list_for_workspace": "destination_definitions",
    "destination_definitions/get": "destination_definition_get",
    "source_definition_specifications/get": "source_spec",
    "destination_definition_specifications/get": "destination_spec",
    "sources/create": "source_create",
    "sources/get": "source_get",
    "sources/list": "source_list",
    "sources/update": "source_update",
    "sources/delete": "source_delete",
    "sources/check_connection": "source_check",
    "sources/check_connection_for_update": "source_check_for_update",
    "sources/discover_schema": "source_discover",
    "scheduler/sources/check_connection": "scheduler_source_check",
    "destinations/create": "destination_create",
    "destinations/get": "destination_get",
    "destinations/list": "destination_list",
    "destinations/update": "destination_update",
    "destinations/delete": "destination_delete",
    "destinations/check_connection": "destination_check",
    "destinations/check_connection_for_update": "destination_check_for_update",
    "scheduler/destinations/check_connection": "scheduler_destination_check",
    "connections/create": "connection_create",
    "connections/get": "connection_get",
    "connections/list": "connection_list",
    "connections/update": "connection_update",
    "connections/delete": "connection_delete",
    "connections/sync": "connection_sync",
    "connections/reset": "connection_reset",
    "web_backend/connections/get": "web_backend_connection_get",
    "jobs/get": "job_get",
    "jobs/list": "job_list",
    "jobs/cancel": "job_cancel",
    "jobs/get_last_replication_job": "job_last_replication",
}
