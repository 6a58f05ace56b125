"""Airbyte tasks: start (or join) a sync of a connection and follow its job to the end, within a limit.

The job is followed through Airbyte's config API (`/api/v1`, the AirbyteServer block's address and
credentials). What Airbyte says is trusted only when it answers: a 5xx, a timeout, a reset connection or an
Airbyte that is restarting is a *hiccup*, after which the same job is asked again with exponential backoff
until the sync's limit — never a second sync of the connection, and never a sync reported failed while it
may still succeed. Before starting a sync the task looks for one already running on the connection (a
previous attempt's job, or a trigger whose answer was lost) and waits for that one instead.
"""

from __future__ import annotations

import logging
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import httpx
from airbyte_prefect.server import AirbyteServer
from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from ddpcontract.tasks import AirbyteTaskConfig
from ddpui.flows import control
from ddpui.flows.attempts import TaskCancelled, TaskFailed, TaskTimedOut, raise_if_cancelled
from ddpui.flows.redaction import add_secret

DEFAULT_AIRBYTE_POLL_SECONDS = 5
# backoff after a hiccup: 0.5 s, 1 s, 2 s ... at most 30 s between two questions
HICCUP_FIRST_DELAY_SECONDS = 0.5
HICCUP_MAX_DELAY_SECONDS = 30
# a sync without a limit still gives up when Airbyte has not answered for this long
MAX_OUTAGE_SECONDS = 3600
REQUEST_TIMEOUT_SECONDS = 15
_ACTIVE_JOB_STATUSES = {"pending", "running"}
_TERMINAL_JOB_STATUSES = {"succeeded", "failed", "cancelled", "incomplete"}


class AirbyteHiccup(Exception):
    """Airbyte did not give an answer this time (5xx, timeout, connection reset or refused)."""


class AirbyteRefused(Exception):
    """Airbyte answered the request with a 4xx."""

    def __init__(self, status_code: int, message: str):
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code


def _answer_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(body)[:300]


class AirbyteApi:
    """The few calls of Airbyte's config API a sync needs; each one either answers or raises a typed error."""

    def __init__(self, base_url: str, username: str | None, password: str | None):
        self._address = (base_url.rstrip("/"), (username, password or "") if username else None)
        self._http = httpx.Client(base_url=self._address[0], auth=self._address[1], timeout=REQUEST_TIMEOUT_SECONDS)

    def twin(self) -> AirbyteApi:
        """Another client of the same server: for a thread that must not share this one (a cancel)."""
        base_url, auth = self._address
        return AirbyteApi(base_url, *(auth or (None, None)))

    def close(self) -> None:
        self._http.close()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._http.post(path, json=body)
        except httpx.TransportError as error:  # timeouts, resets, refused connections, broken answers
            raise AirbyteHiccup(f"{type(error).__name__}: {error}".rstrip(": ")) from None
        if response.status_code >= 500 or response.status_code == 429:  # overloaded, restarting, broken for now
            raise AirbyteHiccup(f"HTTP {response.status_code}: {_answer_message(response)}")
        if response.status_code >= 400:
            raise AirbyteRefused(response.status_code, _answer_message(response))
        try:
            return response.json()
        except ValueError:
            raise AirbyteHiccup(f"HTTP {response.status_code} with a body that is not JSON") from None

    def connection_status(self, connection_id: str) -> str:
        return self.post("/connections/get/", {"connectionId": connection_id}).get("status", "")

    def trigger_sync(self, connection_id: str) -> int:
        return int(self.post("/connections/sync/", {"connectionId": connection_id})["job"]["id"])

    def job(self, job_id: int) -> dict[str, Any]:
        return self.post("/jobs/get/", {"id": job_id})

    def sync_jobs(self, connection_id: str) -> dict[int, str]:
        """The newest sync jobs of the connection: job id -> status."""
        body = {"configTypes": ["sync"], "configId": connection_id, "pagination": {"pageSize": 10, "rowOffset": 0}}
        jobs = [item.get("job") or {} for item in self.post("/jobs/list/", body).get("jobs") or []]
        return {int(job["id"]): str(job.get("status")) for job in jobs if "id" in job}

    def cancel_job(self, job_id: int) -> None:
        self.post("/jobs/cancel/", {"id": job_id})


@dataclass
class SyncSpec:
    """What to sync and how patiently: `limit_seconds` bounds the whole sync (None: no limit)."""

    connection_id: str
    poll_seconds: float
    limit_seconds: float | None
    # names the task across its attempts, so a retry can find the job its previous attempt started
    task_key: str


# the job each task's last attempt followed, so its next attempt joins it while it runs (per process)
_jobs_of_previous_attempts: dict[str, int] = {}


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:  # called outside a flow run (tests, scripts)
        return logging.getLogger(__name__)


class _Sync:
    """One attempt of an Airbyte task."""

    def __init__(self, api: AirbyteApi, spec: SyncSpec):
        self.api = api
        self.spec = spec
        self.started = time.monotonic()
        self.control = control.current()
        self.logger = _logger()
        self.hiccups = 0

    # -- time ------------------------------------------------------------------------------------
    def remaining(self) -> float | None:
        if self.spec.limit_seconds is None:
            return None
        return self.spec.limit_seconds - (time.monotonic() - self.started)

    def _sleep(self, seconds: float) -> None:
        if self.control.wait(seconds):
            raise TaskCancelled()

    # -- calls that survive hiccups ------------------------------------------------------------
    def ask(self, what: str, call, *args):
        """`call(*args)`, asked again after each hiccup with exponential backoff while the limit allows."""
        outage_started = None
        delay = HICCUP_FIRST_DELAY_SECONDS
        while True:
            raise_if_cancelled()
            try:
                return call(*args)
            except AirbyteHiccup as hiccup:
                self.hiccups += 1
                outage_started = outage_started or time.monotonic()
                remaining = self.remaining()
                if remaining is None:
                    remaining = MAX_OUTAGE_SECONDS - (time.monotonic() - outage_started)
                if remaining <= 0:
                    raise _OutOfTime(f"Airbyte did not answer ({hiccup})") from None
                wait = min(delay, HICCUP_MAX_DELAY_SECONDS, remaining)
                self.logger.warning("Airbyte did not answer %s (%s): asking again in %.1fs", what, hiccup, wait)
                self._sleep(wait)
                delay *= 2

    # -- the sync --------------------------------------------------------------------------------
    def previous_attempt_job(self) -> tuple[int, dict] | None:
        """The job of this task's previous attempt, when it is still running or has succeeded."""
        job_id = _jobs_of_previous_attempts.get(self.spec.task_key)
        if job_id is None:
            return None
        info = self.ask(f"about job {job_id}", self.api.job, job_id)
        status = info["job"]["status"]
        if status in _ACTIVE_JOB_STATUSES or status == "succeeded":
            self.logger.info("job %s of the previous attempt is %s: following it instead of a new sync", job_id, status)
            return job_id, info
        return None

    def start(self) -> int:
        """A sync job of the connection: one already running, or a new one. Never two."""
        connection_id = self.spec.connection_id
        newest_before: int | None = None  # the newest job before our sync request: later ones are ours

        def join_or_trigger() -> int:
            nonlocal newest_before
            jobs = self.api.sync_jobs(connection_id)
            if newest_before is not None:
                # an earlier sync request went unanswered: the job it may have started (even one that has
                # already ended) is the sync to follow
                ours = [job_id for job_id in jobs if job_id > newest_before]
                if ours:
                    self.logger.info("the unanswered sync request started job %s: following it", max(ours))
                    return max(ours)
            active = [job_id for job_id, status in jobs.items() if status in _ACTIVE_JOB_STATUSES]
            if active:
                self.logger.info(
                    "a sync of connection %s is running (job %s): following it", connection_id, max(active)
                )
                return max(active)
            newest_before = max(jobs, default=0)
            try:
                return self.api.trigger_sync(connection_id)
            except AirbyteRefused as refused:
                if refused.status_code == 409:  # a reset (or a sync started a moment ago) holds the connection
                    raise AirbyteHiccup(f"the connection is busy ({refused})") from None
                raise

        return self.ask(f"to sync connection {connection_id}", join_or_trigger)

    def follow(self, job_id: int) -> dict:
        """Poll the job until it ends; its last answer."""
        while True:
            info = self.ask(f"about job {job_id}", self.api.job, job_id)
            if info["job"]["status"] in _TERMINAL_JOB_STATUSES:
                return info
            remaining = self.remaining()
            if remaining is not None and remaining <= 0:
                raise _OutOfTime(f"job {job_id} still {info['job']['status']}")
            self._sleep(self.spec.poll_seconds if remaining is None else min(self.spec.poll_seconds, remaining))

    def cancel(self, job_id: int) -> None:
        """Best effort: a job we stop following must not keep running in Airbyte. Called from the thread that
        stops the run too, so it has a client of its own."""
        api = self.api.twin()
        try:
            for _ in range(3):
                with suppress(AirbyteHiccup, AirbyteRefused):
                    api.cancel_job(job_id)
                    self.logger.info("cancelled job %s in Airbyte", job_id)
                    return
                time.sleep(0.5)
            self.logger.warning("could not cancel job %s in Airbyte", job_id)
        finally:
            api.close()


class _OutOfTime(Exception):
    """The sync's limit passed (while Airbyte ran the job, or did not answer)."""


def _failure_reason(info: dict) -> str:
    """Airbyte's own explanation of a job that did not succeed: its last attempt's failure summary."""
    for attempt in reversed(info.get("attempts") or []):
        summary = (attempt.get("attempt") or {}).get("failureSummary") or {}
        messages = [
            failure.get("externalMessage") or failure.get("internalMessage")
            for failure in summary.get("failures") or []
        ]
        messages = [message for message in messages if message]
        if messages:
            return "; ".join(messages)
    return ""


def _records_synced(info: dict) -> int:
    attempts = info.get("attempts") or []
    return int((attempts[-1].get("attempt") or {}).get("recordsSynced") or 0) if attempts else 0


def run_sync(api: AirbyteApi, spec: SyncSpec) -> dict:
    """One attempt of an Airbyte task: the sync's result, or TaskFailed / TaskTimedOut / TaskCancelled."""
    sync = _Sync(api, spec)
    connection_id = spec.connection_id
    job_id = None
    try:
        joined = sync.previous_attempt_job()
        if joined is not None:
            job_id, info = joined
        else:
            status = sync.ask(f"about connection {connection_id}", api.connection_status, connection_id)
            if status != "active":
                raise TaskFailed(
                    f"connection {connection_id} is {status or 'unknown'} in Airbyte: enable it", permanent=True
                )
            job_id = sync.start()
            info = None
        _jobs_of_previous_attempts[spec.task_key] = job_id
        with sync.control.on_stop(lambda: sync.cancel(job_id)):
            if info is None or info["job"]["status"] not in _TERMINAL_JOB_STATUSES:
                info = sync.follow(job_id)
    except _OutOfTime as out_of_time:
        details = {"connection_id": connection_id}
        if job_id is not None:
            sync.cancel(job_id)
            details["job_id"] = job_id
        where = f"connection {connection_id}" + (f" (job {job_id})" if job_id is not None else "")
        raise TaskTimedOut(
            f"sync of {where} did not finish within {spec.limit_seconds:g} seconds: {out_of_time}"
            if spec.limit_seconds is not None
            else f"sync of {where} gave up: {out_of_time}",
            details=details,
        ) from None
    except TaskCancelled:
        raise TaskCancelled(
            f"sync of connection {connection_id} stopped: the flow run was cancelled"
            + (f" (job {job_id} cancelled in Airbyte)" if job_id is not None else ""),
            details={"connection_id": connection_id, "job_id": job_id},
        ) from None
    except AirbyteRefused as refused:
        raise TaskFailed(f"Airbyte refused a request about connection {connection_id}: {refused}") from None
    status = info["job"]["status"]
    details = {
        "connection_id": connection_id,
        "job_id": job_id,
        "job_status": status,
        "records_synced": _records_synced(info),
        "hiccups": sync.hiccups,
    }
    if status != "succeeded":
        reason = _failure_reason(info) or f"job {status}"
        raise TaskFailed(f"sync of connection {connection_id} (job {job_id}) {status}: {reason}", details=details)
    _jobs_of_previous_attempts.pop(spec.task_key, None)
    return {"message": f"job {job_id} succeeded, {details['records_synced']} records synced", **details}


def airbyte_api(server: AirbyteServer) -> AirbyteApi:
    """The API of the server block, with its password registered as a secret."""
    password = server.password.get_secret_value() if server.password is not None else None
    add_secret(password)
    return AirbyteApi(server.base_url, server.username, password)


def run_airbyte_task(task: AirbyteTaskConfig, task_key: str) -> dict:
    api = airbyte_api(AirbyteServer.load(task.airbyte_server_block))
    spec = SyncSpec(
        connection_id=task.connection_id,
        poll_seconds=float(task.poll_interval_s or DEFAULT_AIRBYTE_POLL_SECONDS),
        limit_seconds=airbyte_limit(task),
        task_key=task_key,
    )
    try:
        return run_sync(api, spec)
    finally:
        api.close()


def airbyte_limit(task: AirbyteTaskConfig) -> float | None:
    """The limit of the whole sync: the smaller of the task's `timeout` and `timeout_seconds`."""
    limits = [float(value) for value in (task.timeout, task.timeout_seconds) if value]
    return min(limits) if limits else None
