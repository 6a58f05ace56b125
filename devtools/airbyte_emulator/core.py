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
from dataclasses import dataclass, field
from typing import Any

from . import definitions as defs
from . import sample_data, writers
from . import sources as connectors

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
        self.states: dict[str, dict[str, Any]] = {}  # connection id -> {stream name: saved cursor value}
        self.next_job_id = 1

    def _load(self) -> None:
        with open(self.state_file, encoding="utf-8") as fh:
            data = json.load(fh)
        self.workspaces = data.get("workspaces", {})
        self.sources = data.get("sources", {})
        self.destinations = data.get("destinations", {})
        self.connections = data.get("connections", {})
        self.jobs = {int(k): v for k, v in data.get("jobs", {}).items()}
        self.states = data.get("states", {})
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
                    "states": self.states,
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
        for path in defs.secret_paths(spec):
            parent = out
            for key in path[:-1]:
                parent = parent.get(key) if isinstance(parent, dict) else None
            if isinstance(parent, dict) and parent.get(path[-1]):
                parent[path[-1]] = defs.SECRET_MASK
        return out

    @staticmethod
    def _merge_secrets(new: Any, old: dict[str, Any], spec: dict[str, Any]) -> Any:
        """A configuration sent back with masked secrets gets the stored values (as Airbyte does)."""
        if not isinstance(new, dict):
            return new
        merged = copy.deepcopy(new)
        for path in defs.secret_paths(spec):
            target, stored = merged, old
            for key in path[:-1]:
                target = target.get(key) if isinstance(target, dict) else None
                stored = stored.get(key) if isinstance(stored, dict) else None
            if isinstance(target, dict) and target.get(path[-1]) == defs.SECRET_MASK:
                target[path[-1]] = stored.get(path[-1]) if isinstance(stored, dict) else None
        return merged

    @staticmethod
    def _job_info(config_type: str, config_id: str | None, ok: bool, lines: list[str]) -> dict[str, Any]:
        """A SynchronousJobRead: `succeeded` says the job ran (a check that finds bad credentials still ran)."""
        now = int(time.time() * 1000)
        return {
            "id": str(uuid.uuid4()),
            "configType": config_type,
            "configId": f"Optional[{config_id}]" if config_id else "Optional.empty",
            "createdAt": now,
            "endedAt": now,
            "succeeded": ok,
            "connectorConfigurationUpdated": False,
            "logs": {"logLines": [_log_line(line) for line in lines]},
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
            "jobInfo": self._job_info("get_spec", None, True, ["Retrieved the connector's specification"]),
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
            "supportedDestinationSyncModes": list(defs.DESTINATION_SYNC_MODES[def_id]),
            "supportsDbt": False,
            "supportsNormalization": False,
            "jobInfo": self._job_info("get_spec", None, True, ["Retrieved the connector's specification"]),
        }

    @staticmethod
    def _validate(spec: dict[str, Any], config: Any) -> None:
        problems = defs.validate_config(spec, config)
        if problems:
            raise ApiError(422, defs.validation_message(problems), "io.airbyte.validation.json.JsonValidationException")

    def _check_response(self, config_type: str, config_id: str | None, ok: bool, message: str) -> dict[str, Any]:
        """A CheckConnectionRead: the job ran (jobInfo.succeeded), the connector said `status` and why."""
        lines = ["Checking connection", message if ok else f"Check failed: {message}"]
        return {
            "status": "succeeded" if ok else "failed",
            "message": message,
            "jobInfo": self._job_info(config_type, config_id, True, lines),
        }

    # ------------------------------------------------------------------ sources
    def _render_source(self, src: dict[str, Any]) -> dict[str, Any]:
        spec = defs.SOURCE_SPECS[src["sourceDefinitionId"]]
        out = copy.deepcopy(src)
        out["connectionConfiguration"] = self._masked(src["connectionConfiguration"], spec)
        return out

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
                "icon": d["icon"],
                "createdAt": _now(),
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
            self.states.pop(cid, None)
        del self.sources[sid]

    def source_delete(self, body: dict[str, Any]) -> None:
        with self._lock:
            src = self._source(_require_str(body, "sourceId"))
            self._delete_source(src["sourceId"])
            self._save()

    def _check_source_config(self, def_id: str, config: Any, config_id: str | None) -> dict[str, Any]:
        self._validate(defs.SOURCE_SPECS[def_id], config)
        ok, message = connectors.connector(def_id).check(config)
        return self._check_response("check_connection_source", config_id, ok, message)

    def source_check(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            src = copy.deepcopy(self._source(_require_str(body, "sourceId")))
        return self._check_source_config(src["sourceDefinitionId"], src["connectionConfiguration"], src["sourceId"])

    def source_check_for_update(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            src = copy.deepcopy(self._source(_require_str(body, "sourceId")))
        spec = defs.SOURCE_SPECS[src["sourceDefinitionId"]]
        config = self._merge_secrets(
            body.get("connectionConfiguration", src["connectionConfiguration"]), src["connectionConfiguration"], spec
        )
        return self._check_source_config(src["sourceDefinitionId"], config, src["sourceId"])

    def scheduler_source_check(self, body: dict[str, Any]) -> dict[str, Any]:
        def_id = _require_str(body, "sourceDefinitionId")
        if def_id not in defs.SOURCE_SPECS:
            raise not_found("standard_source_definition", def_id)
        return self._check_source_config(def_id, body.get("connectionConfiguration", {}), None)

    def _streams(self, src: dict[str, Any]) -> list[connectors.Stream]:
        return connectors.connector(src["sourceDefinitionId"]).streams(src["connectionConfiguration"])

    def source_discover(self, body: dict[str, Any]) -> dict[str, Any]:
        """Airbyte answers 200 either way: a catalog, or a jobInfo whose failureReason says what went wrong."""
        with self._lock:
            src = copy.deepcopy(self._source(_require_str(body, "sourceId")))
        try:
            streams = self._streams(src)
        except connectors.ConnectorError as exc:
            info = self._job_info("discover_schema", src["sourceId"], False, [f"Discovery failed: {exc}"])
            info["failureReason"] = {
                "failureOrigin": "source",
                "failureType": "config_error",
                "externalMessage": str(exc),
                "internalMessage": str(exc),
                "stacktrace": f"io.airbyte.workers.exception.WorkerException: {exc}",
                "timestamp": int(time.time() * 1000),
            }
            return {"jobInfo": info}
        catalog = {"streams": [stream.catalog_entry() for stream in streams]}
        return {
            "catalog": catalog,
            "catalogId": str(uuid.uuid4()),
            "jobInfo": self._job_info(
                "discover_schema", src["sourceId"], True, [f"Discovered {len(streams)} stream(s)"]
            ),
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
                "icon": d["icon"],
                "createdAt": _now(),
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
            self.states.pop(cid, None)
        del self.destinations[did]

    def destination_delete(self, body: dict[str, Any]) -> None:
        with self._lock:
            dst = self._destination(_require_str(body, "destinationId"))
            self._delete_destination(dst["destinationId"])
            self._save()

    def _check_destination_config(self, def_id: str, config: Any, config_id: str | None) -> dict[str, Any]:
        self._validate(defs.DESTINATION_SPECS[def_id], config)
        ok, message = writers.check_destination(def_id, config)
        return self._check_response("check_connection_destination", config_id, ok, message)

    def destination_check(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            dst = copy.deepcopy(self._destination(_require_str(body, "destinationId")))
        return self._check_destination_config(
            dst["destinationDefinitionId"], dst["connectionConfiguration"], dst["destinationId"]
        )

    def destination_check_for_update(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            dst = copy.deepcopy(self._destination(_require_str(body, "destinationId")))
        spec = defs.DESTINATION_SPECS[dst["destinationDefinitionId"]]
        config = self._merge_secrets(
            body.get("connectionConfiguration", dst["connectionConfiguration"]), dst["connectionConfiguration"], spec
        )
        return self._check_destination_config(dst["destinationDefinitionId"], config, dst["destinationId"])

    def scheduler_destination_check(self, body: dict[str, Any]) -> dict[str, Any]:
        def_id = _require_str(body, "destinationDefinitionId")
        if def_id not in defs.DESTINATION_SPECS:
            raise not_found("standard_destination_definition", def_id)
        return self._check_destination_config(def_id, body.get("connectionConfiguration", {}), None)

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

    def _validate_connection(self, con: dict[str, Any]) -> None:
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
        src = self.sources[con["sourceId"]]
        dst = self.destinations[con["destinationId"]]
        # the sample source's catalog is known without connecting anywhere; a database source's streams are
        # checked when a sync reads them
        known = set(sample_data.STREAM_NAMES) if src["sourceDefinitionId"] == defs.SAMPLE_SOURCE_DEFINITION_ID else None
        modes = defs.DESTINATION_SYNC_MODES[dst["destinationDefinitionId"]]
        for entry in catalog["streams"]:
            name = ((entry or {}).get("stream") or {}).get("name")
            if not name or (known is not None and name not in known):
                raise ApiError(422, f"unknown stream in syncCatalog: {name!r}", "InvalidInputException")
            config = (entry or {}).get("config") or {}
            if config.get("syncMode", "full_refresh") not in connectors.SYNC_MODES:
                raise ApiError(
                    422, f"stream {name}: unknown syncMode {config.get('syncMode')!r}", "InvalidInputException"
                )
            if config.get("destinationSyncMode", "overwrite") not in modes:
                raise ApiError(
                    422,
                    f"stream {name}: destinationSyncMode {config.get('destinationSyncMode')!r} is not supported by "
                    f"{dst['destinationName']} (supported: {', '.join(modes)})",
                    "InvalidInputException",
                )

    def _discovered_catalog(self, src: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"streams": [stream.catalog_entry() for stream in self._streams(src)]}
        except connectors.ConnectorError as exc:
            raise ApiError(422, f"could not discover the source's schema: {exc}", "InvalidInputException") from None

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
            if "syncCatalog" not in con:
                con["syncCatalog"] = self._discovered_catalog(src)
            self._validate_connection(con)
            self.connections[cid] = con
            self._save()
            return copy.deepcopy(con)

    def connection_get(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._connection(_require_str(body, "connectionId")))

    def _sync_status(self, connection_id: str) -> dict[str, Any]:
        last = self._last_job(connection_id, ("sync",))
        running = any(
            j["configId"] == connection_id and j["status"] in ("pending", "running") for j in self.jobs.values()
        )
        return {
            "latestSyncJobStatus": last["status"] if last else None,
            "latestSyncJobCreatedAt": last["createdAt"] if last else None,
            "isSyncing": running,
        }

    def web_backend_connection_get(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            con = copy.deepcopy(self._connection(_require_str(body, "connectionId")))
            con["source"] = self._render_source(self.sources[con["sourceId"]])
            con["destination"] = self._render_destination(self.destinations[con["destinationId"]])
            con.update(self._sync_status(con["connectionId"]))
            con["catalogId"] = con.get("sourceCatalogId")
            con["catalogDiff"] = {"transforms": []}
            con["schemaChange"] = "no_change"
            return con

    def web_backend_connection_list(self, body: dict[str, Any]) -> dict[str, Any]:
        """One item per connection of the workspace, with its source's and destination's names and the
        status of its latest sync job (Airbyte's web app lists connections with this call)."""
        wid = _require_str(body, "workspaceId")
        with self._lock:
            self._workspace(wid)
            items = []
            for con in self.connections.values():
                if con.get("workspaceId") != wid:
                    continue
                src, dst = self.sources[con["sourceId"]], self.destinations[con["destinationId"]]
                items.append(
                    {
                        "connectionId": con["connectionId"],
                        "name": con["name"],
                        "sourceId": con["sourceId"],
                        "destinationId": con["destinationId"],
                        "status": con["status"],
                        "scheduleType": con.get("scheduleType"),
                        "scheduleData": copy.deepcopy(con.get("scheduleData")),
                        "source": {
                            key: src.get(key)
                            for key in ("sourceDefinitionId", "sourceName", "sourceId", "name", "icon")
                        },
                        "destination": {
                            key: dst.get(key)
                            for key in ("destinationDefinitionId", "destinationName", "destinationId", "name", "icon")
                        },
                        "schemaChange": "no_change",
                        **self._sync_status(con["connectionId"]),
                    }
                )
            return {"connections": items}

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
            self.states.pop(con["connectionId"], None)
            self._save()

    def connection_sync(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._start_job(_require_str(body, "connectionId"), "sync")

    def connection_reset(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._start_job(_require_str(body, "connectionId"), "reset_connection")

    def state_get(self, body: dict[str, Any]) -> dict[str, Any]:
        """The connection's saved cursor values, per stream (Airbyte's ConnectionState)."""
        cid = _require_str(body, "connectionId")
        with self._lock:
            con = self._connection(cid)
            saved = copy.deepcopy(self.states.get(cid, {}))
            cursors = {
                entry["stream"]["name"]: (entry.get("config") or {}).get("cursorField") or []
                for entry in con["syncCatalog"]["streams"]
            }
        if not saved:
            return {"connectionId": cid, "stateType": "not_set"}
        return {
            "connectionId": cid,
            "stateType": "stream",
            "streamState": [
                {
                    "streamDescriptor": {"name": name},
                    "streamState": {"cursor": value, "cursor_field": cursors.get(name, [])},
                }
                for name, value in sorted(saved.items())
            ],
        }

    # ------------------------------------------------------------------ jobs
    def _render_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """A JobInfoRead: the job and its attempts, each with its logs."""
        out = {
            "job": {k: job[k] for k in ("id", "configType", "configId", "status", "createdAt", "updatedAt")},
            "attempts": copy.deepcopy(job["attempts"]),
        }
        if job.get("resetConfig"):
            out["job"]["resetConfig"] = copy.deepcopy(job["resetConfig"])
        return out

    def _render_job_with_attempts(self, job: dict[str, Any]) -> dict[str, Any]:
        """A JobWithAttemptsRead (jobs/list): the attempts without their logs."""
        out = self._render_job(job)
        out["attempts"] = [attempt["attempt"] for attempt in out["attempts"]]
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
                        {"name": s["stream"]["name"], "namespace": s["stream"].get("namespace")}
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
        if job["attempts"]:
            job["attempts"][-1]["logs"]["logLines"].append(_log_line(message, level))
        log.debug("job %s: %s", job["id"], message)

    def _finish(self, job: dict[str, Any], status: str, message: str | None = None, origin: str = "source") -> None:
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
                            "failureOrigin": origin,
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

    def _fail(self, job: dict[str, Any], message: str, origin: str) -> None:
        with self._lock:
            if job["status"] not in JOB_TERMINAL:
                self._finish(job, "failed", message, origin)
            self._save()

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
            saved = copy.deepcopy(self.states.get(job["configId"], {}))
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
            return self._fail(job, "connection, source or destination was deleted", "source")

        if fail_reason:
            if wait_rest():
                return self._cancelled(job)
            return self._fail(job, fail_reason, "source")

        if wait_rest():
            return self._cancelled(job)

        try:
            plan = self._plan(con, src, dst, job["configType"], saved)
        except connectors.ConnectorError as exc:
            return self._fail(job, str(exc), "source")
        with self._lock:
            for note in plan.notes:
                self._log(job, f"source > {note}")
            self._log(
                job,
                f"destination > writing {len(plan.loads)} table(s) into schema {plan.schema} of "
                f"{dst['destinationName']} destination {dst['name']}",
            )
        try:
            writers.write_tables(
                dst["destinationDefinitionId"],
                dst["connectionConfiguration"],
                plan.schema,
                plan.loads,
                dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0),
                empty_only=job["configType"] != "sync",
            )
        except writers.WriteError as exc:
            return self._fail(job, str(exc), "destination")
        with self._lock:
            if job["status"] in JOB_TERMINAL:  # cancelled while writing
                return
            if job["configType"] == "sync":
                self.states[job["configId"]] = {**self.states.get(job["configId"], {}), **plan.states}
            else:
                self.states.pop(job["configId"], None)
            attempt = job["attempts"][-1]["attempt"]
            attempt["recordsSynced"] = plan.records
            attempt["bytesSynced"] = plan.nbytes
            attempt["totalStats"] = {
                "recordsEmitted": plan.records,
                "bytesEmitted": plan.nbytes,
                "recordsCommitted": plan.records,
            }
            attempt["streamStats"] = [
                {"streamName": ld.stream, "stats": {"recordsEmitted": len(ld.rows), "recordsCommitted": len(ld.rows)}}
                for ld in plan.loads
            ]
            for ld in plan.loads:
                self._log(job, f"destination > {plan.schema}.{ld.table}: {len(ld.rows)} record(s) ({ld.mode})")
            self._finish(job, "succeeded", f"{kind_done(job)}; {plan.records} record(s) synced")
            self._save()

    def _cancelled(self, job: dict[str, Any]) -> None:
        with self._lock:
            if job["status"] not in JOB_TERMINAL:
                self._finish(job, "cancelled", "job cancelled")
                self._save()

    @staticmethod
    def _plan(
        con: dict[str, Any], src: dict[str, Any], dst: dict[str, Any], config_type: str, saved: dict[str, Any]
    ) -> _Plan:
        """What a job writes: each selected stream read from the source (from its saved cursor when
        incremental) as one table load in the connection's destination schema."""
        dst_config = dst["connectionConfiguration"]
        schema = writers.default_schema(dst["destinationDefinitionId"], dst_config)
        if con.get("namespaceDefinition") == "customformat":
            custom = (con.get("namespaceFormat") or "").replace("${SOURCE_NAMESPACE}", "").strip()
            if custom and defs.is_identifier(custom):
                schema = custom
        connector = connectors.connector(src["sourceDefinitionId"])
        source_config = src["connectionConfiguration"]
        streams = {stream.name: stream for stream in connector.streams(source_config)}
        prefix = con.get("prefix") or ""
        plan = _Plan(schema=schema)
        for entry in con["syncCatalog"]["streams"]:
            config = entry.get("config", {})
            if not config.get("selected", True):
                continue
            name = entry["stream"]["name"]
            stream = streams.get(name)
            if stream is None:
                raise connectors.ConnectorError(f"Stream {name} no longer exists in the source: refresh the schema")
            cursor = None
            if config.get("syncMode") == "incremental":
                cursor = (config.get("cursorField") or [None])[0] or (stream.default_cursor_field or [None])[0]
                if not cursor:
                    raise connectors.ConnectorError(f"Stream {name}: an incremental sync needs a cursor field")
            rows: list[tuple] = []
            if config_type == "sync":
                read = connector.read(source_config, stream, cursor, saved.get(name))
                rows = read.rows
                if cursor and read.state is not None:
                    plan.states[name] = read.state
                how = f"incremental on {cursor} from {saved.get(name)!r}" if cursor else "full refresh"
                plan.notes.append(f"read {len(rows)} record(s) from stream {name} ({how})")
            primary_key = [key[0] for key in (config.get("primaryKey") or stream.primary_key) if key]
            plan.loads.append(
                writers.TableLoad(
                    table=f"{prefix}{name}",
                    stream=name,
                    rows=rows,
                    columns=[(column.name, column.sql_type) for column in stream.columns],
                    mode=config.get("destinationSyncMode") or "overwrite",
                    primary_key=primary_key,
                )
            )
        plan.records = sum(len(ld.rows) for ld in plan.loads)
        plan.nbytes = sum(sample_data.estimate_bytes(ld.rows) for ld in plan.loads)
        return plan

    def job_get(self, body: dict[str, Any]) -> dict[str, Any]:
        _require(body, "id")
        with self._lock:
            return self._render_job(self._job(body["id"]))

    def job_debug_info(self, body: dict[str, Any]) -> dict[str, Any]:
        """A JobDebugInfoRead: the job with its connectors' definitions, and every attempt with its logs."""
        _require(body, "id")
        with self._lock:
            job = self._job(body["id"])
            out = self._render_job(job)
            con = self.connections.get(job["configId"]) or {}
            src = self.sources.get(con.get("sourceId")) or {}
            dst = self.destinations.get(con.get("destinationId")) or {}
        out["job"]["airbyteVersion"] = defs.EMULATOR_TAG
        out["job"]["sourceDefinition"] = defs.source_definition(src.get("sourceDefinitionId", ""))
        out["job"]["destinationDefinition"] = defs.destination_definition(dst.get("destinationDefinitionId", ""))
        return out

    def attempt_for_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """An AttemptInfoRead: one attempt of a job ({jobId, attemptNumber}) with its logs."""
        _require(body, "jobId")
        with self._lock:
            job = self._job(body["jobId"])
            try:
                number = int(body.get("attemptNumber", 0))
            except (TypeError, ValueError):
                raise ApiError(422, "attemptNumber must be an integer", "InvalidInputException") from None
            if not 0 <= number < len(job["attempts"]):
                raise ApiError(404, f"Could not find attempt {number} of job {job['id']}", "IdNotFoundKnownException")
            return copy.deepcopy(job["attempts"][number])

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
            return {"jobs": [self._render_job_with_attempts(j) for j in page], "totalJobCount": total}

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


@dataclass
class _Plan:
    schema: str
    loads: list[writers.TableLoad] = field(default_factory=list)
    states: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    records: int = 0
    nbytes: int = 0


def _log_line(message: str, level: str = "INFO") -> str:
    """A log line as Airbyte writes them: time, level, logger(method):line - message."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp} {level} i.a.w.e.EmulatorWorker(run):1 - {message}"


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
    "web_backend/connections/list": "web_backend_connection_list",
    "state/get": "state_get",
    "jobs/get": "job_get",
    "jobs/get_debug_info": "job_debug_info",
    "attempt/get_for_job": "attempt_for_job",
    "jobs/list": "job_list",
    "jobs/cancel": "job_cancel",
    "jobs/get_last_replication_job": "job_last_replication",
}
