"""The Django side's only way to Prefect: HTTP calls to the proxy service.

    prefect = PrefectProxy(base_url, token)
    run = prefect.deployment(deployment_id).create_run(parameters=...)   # one POST
    run.state(); run.logs(offset=0); run.cancel()
    prefect.deployments.create(...); prefect.flow_runs.filter(deployment_ids=[...], limit_per_deployment=1)

Answers are the proxy's own response models (`ddpcontract.proxy_api`: `api.FlowRun`, `api.Deployment`, ...),
ids as their canonical text. Every failure is one of three typed errors (ProxyError 502, ProxyNotFound 404,
ProxyUnavailable 503), which the API maps to `{"detail": ...}`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pydantic
from django.conf import settings

from ddpcontract import proxy_api as api
from ddpcontract.tasks import TaskType
from ddpui.errors import NotFound, UpstreamError, UpstreamUnavailable


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


class ProxyError(UpstreamError):
    """The proxy (or Prefect behind it) refused the call."""


class ProxyConflict(ProxyError):
    """Prefect refused the call because of what exists already (409): e.g. a block of that name."""


class ProxyNotFound(NotFound):
    """The proxy says the object does not exist in Prefect."""


class ProxyUnavailable(UpstreamUnavailable):
    """The proxy, or Prefect behind it, could not be reached."""


Answer = TypeVar("Answer", bound=pydantic.BaseModel)
Result = TypeVar("Result")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:300]


# A pooled keep-alive connection the proxy closed as it was reused, or a connection refused for a moment, is
# tried again after these pauses (a few hundred milliseconds in all); anything else is answered at once.
_RECONNECT_PAUSES = (0.1, 0.3, 0.6)


def _safe_to_send_again(method: str, error: httpx.TransportError) -> bool:
    """Whether a call that failed in transport may be sent again: a read (GET) always; a write only when the
    connection was never made, so the proxy cannot have acted on it."""
    return method.upper() == "GET" or isinstance(error, httpx.ConnectError)


class PrefectProxy:
    def __init__(
        self, base_url: str, token: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )
        self._lock = threading.Lock()
        self.calls = 0  # requests made; tests assert list pages cost a constant number

    # -- transport -------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, json: Any = None, params: dict | None = None) -> Any:
        with self._lock:
            self.calls += 1
        for pause in (*_RECONNECT_PAUSES, None):
            try:
                response = self._http.request(method, path, json=json, params=params)
                break
            except httpx.TransportError as exc:
                if pause is None or not _safe_to_send_again(method, exc):
                    raise ProxyUnavailable(
                        f"the Prefect proxy at {self.base_url} is unreachable ({exc.__class__.__name__})"
                    ) from exc
                time.sleep(pause)
        if response.status_code == 404:
            raise ProxyNotFound(f"not found in Prefect: {_detail(response)}")
        if response.status_code == 503:
            raise ProxyUnavailable(f"Prefect is unavailable: {_detail(response)}")
        if response.status_code == 401:
            raise ProxyError("the Prefect proxy refused our token: check PROXY_TOKEN on both sides")
        if response.status_code == 409:
            raise ProxyConflict(f"Prefect refused the call (409): {_detail(response)}")
        if response.status_code >= 400:
            raise ProxyError(f"Prefect refused the call ({response.status_code}): {_detail(response)}")
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def call(self, model: type[Answer], method: str, path: str, **request: Any) -> Answer:
        """One request whose answer is read as `model` (a response model of the proxy's contract)."""
        body = self.request(method, path, **request)
        try:
            return model.model_validate(body)
        except pydantic.ValidationError as exc:
            fields = ", ".join(sorted({".".join(map(str, error["loc"])) or "body" for error in exc.errors()}))
            raise ProxyError(f"the proxy answered {method} {path} in an unexpected shape ({fields})") from None

    # -- nouns -----------------------------------------------------------------------------------
    def deployment(self, deployment_id: str) -> Deployment:
        return Deployment(self, deployment_id)

    def flow_run(self, flow_run_id: str) -> FlowRun:
        return FlowRun(self, flow_run_id)

    @property
    def deployments(self) -> Deployments:
        return Deployments(self)

    @property
    def flow_runs(self) -> FlowRuns:
        return FlowRuns(self)

    @property
    def blocks(self) -> Blocks:
        return Blocks(self)

    @property
    def task_runs(self) -> AdhocRuns:
        return AdhocRuns(self)

    def health(self) -> api.Health:
        return self.call(api.Health, "GET", "/proxy/health")

    def flow_run_notifications(self, name: str) -> FlowRunNotifications:
        return FlowRunNotifications(self, name)

    def outgoing_webhook(self, block_name: str) -> OutgoingWebhook:
        return OutgoingWebhook(self, block_name)


class Deployment:
    def __init__(self, proxy: PrefectProxy, deployment_id: str, *, name: str | None = None):
        self.proxy = proxy
        self.id = deployment_id
        self.name = name  # known when this object comes from a create

    def get(self) -> api.Deployment:
        return self.proxy.call(api.Deployment, "GET", f"/proxy/deployments/{self.id}")

    def update(
        self, *, parameters: dict | None = None, cron: Any = UNSET, timezone: str | None = None
    ) -> api.Deployment:
        """An omitted cron keeps the schedule; cron=None removes it."""
        body: dict[str, Any] = {}
        if parameters is not None:
            body["parameters"] = parameters
        if cron is not UNSET:
            body["cron"] = cron
            if timezone:
                body["timezone"] = timezone
        return self.proxy.call(api.Deployment, "PUT", f"/proxy/v1/deployments/{self.id}", json=body)

    def delete(self) -> None:
        self.proxy.request("DELETE", f"/proxy/deployments/{self.id}")

    def set_schedule(self, *, active: bool) -> None:
        self.proxy.request("POST", f"/proxy/deployments/{self.id}/set_schedule/{'active' if active else 'inactive'}")

    def set_entrypoint(self, entrypoint: str) -> api.Deployment:
        return self.proxy.call(
            api.Deployment, "PATCH", f"/proxy/v1/deployments/{self.id}/entrypoint", json={"entrypoint": entrypoint}
        )

    def create_run(self, *, parameters: dict | None = None) -> FlowRun:
        body = {"parameters": parameters} if parameters else {}
        created = self.proxy.call(api.FlowRunRef, "POST", f"/proxy/deployments/{self.id}/flow_run", json=body)
        return FlowRun(self.proxy, created.flow_run_id, name=created.name)


# the proxy's largest page of logs (Prefect's own limit for /logs/filter)
LOG_PAGE_LIMIT = 200


class FlowRun:
    def __init__(self, proxy: PrefectProxy, flow_run_id: str, *, name: str | None = None):
        self.proxy = proxy
        self.id = flow_run_id
        self.name = name

    def state(self, *, include_task_results: bool = False) -> api.FlowRun:
        """The run as Prefect has it; its `task_results` (one more Prefect call in the proxy) only when asked for,
        null otherwise."""
        params = {"include_task_results": "true"} if include_task_results else None
        return self.proxy.call(api.FlowRun, "GET", f"/proxy/flow_runs/{self.id}", params=params)

    def logs(self, *, offset: int = 0, limit: int | None = None) -> api.FlowRunLogs:
        params = {"offset": offset}
        if limit:
            params["limit"] = limit
        return self.proxy.call(api.FlowRunLogs, "GET", f"/proxy/flow_runs/logs/{self.id}", params=params)

    def cancel(self) -> api.FlowRunStateChange:
        return self.proxy.call(api.FlowRunStateChange, "POST", f"/proxy/flow_runs/{self.id}/cancel")

    def retry(self) -> api.FlowRunStateChange:
        return self.proxy.call(api.FlowRunStateChange, "POST", f"/proxy/flow_runs/{self.id}/retry")


class Deployments:
    def __init__(self, proxy: PrefectProxy):
        self.proxy = proxy

    def create(
        self,
        *,
        name: str,
        org_slug: str,
        parameters: dict,
        cron: str | None = None,
        timezone: str | None = None,
        entrypoint: str | None = None,
        work_pool_name: str | None = None,
        work_queue_name: str | None = None,
        unique_suffix: bool = False,
    ) -> Deployment:
        """unique_suffix: the proxy names the deployment `name` + "-" + 32 random hex digits (the returned
        Deployment's `name`), new by construction, and so makes one Prefect call instead of two. The name is then
        cut to the length the suffix leaves room for."""
        body: dict[str, Any] = {"deployment_name": name, "org_slug": org_slug, "parameters": parameters}
        if unique_suffix:
            body |= {"deployment_name": name[: api.UNIQUE_BASE_MAX], "unique_suffix": True}
        for key, value in (
            ("cron", cron),
            ("timezone", timezone),
            ("entrypoint", entrypoint),
            ("work_pool_name", work_pool_name or getattr(settings, "PREFECT_WORK_POOL", None)),
            ("work_queue_name", work_queue_name),
        ):
            if value:
                body[key] = value
        created = self.proxy.call(api.DeploymentRef, "POST", "/proxy/v1/deployments/", json=body)
        return Deployment(self.proxy, created.deployment_id, name=created.name)

    def filter(self, *, org_slug: str | None = None, deployment_ids: list[str] | None = None) -> list[api.Deployment]:
        body: dict[str, Any] = {}
        if org_slug:
            body["org_slug"] = org_slug
        if deployment_ids is not None:
            body["deployment_ids"] = deployment_ids
        return self.proxy.call(api.DeploymentList, "POST", "/proxy/deployments/filter", json=body).deployments

    def schedule_states(self, *, deployment_ids: list[str]) -> api.ScheduleStates:
        """Which of `deployment_ids` are paused and which Prefect lacks; every other one is active in Prefect."""
        return self.proxy.call(
            api.ScheduleStates, "POST", "/proxy/deployments/schedule_states", json={"deployment_ids": deployment_ids}
        )


class FlowRuns:
    def __init__(self, proxy: PrefectProxy):
        self.proxy = proxy

    def filter(
        self,
        *,
        flow_run_ids: list[str] | None = None,
        deployment_ids: list[str] | None = None,
        state_types: list[str] | None = None,
        limit_per_deployment: int | None = None,
        limit: int | None = None,
        include_future: bool | None = None,
        include_task_results: bool | None = None,
    ) -> list[api.FlowRun]:
        """Runs matching every given criterion, newest first. `flow_run_ids`: at most 200 a call."""
        body: dict[str, Any] = {}
        for key, value in (
            ("flow_run_ids", flow_run_ids),
            ("include_future", include_future),
            ("include_task_results", include_task_results),
            ("deployment_ids", deployment_ids),
            ("state_types", state_types),
            ("limit_per_deployment", limit_per_deployment),
            ("limit", limit),
        ):
            if value is not None:
                body[key] = value
        return self.proxy.call(api.FlowRunList, "POST", "/proxy/flow_runs/filter", json=body).flow_runs


class _BlockKind:
    def __init__(self, proxy: PrefectProxy, path: str):
        self.proxy = proxy
        self.path = path

    def create(self, **body) -> api.BlockRef:
        return self.proxy.call(api.BlockRef, "POST", self.path, json=body)

    def update(self, **body) -> api.BlockRef:
        return self.proxy.call(api.BlockRef, "PUT", self.path, json=body)


class _SecretKind(_BlockKind):
    def merge(self, *, blockName: str, secret: dict) -> api.SecretMerged:  # noqa: N803 - the proxy's field name
        """Replace a Secret holding a JSON object with `secret`, except that every value sent as the mask
        (`**********`) keeps the stored one; the proxy does the merge, so the stored secrets never come here."""
        return self.proxy.call(api.SecretMerged, "PATCH", self.path, json={"blockName": blockName, "secret": secret})


class Blocks:
    def __init__(self, proxy: PrefectProxy):
        self.proxy = proxy
        self.airbyte_server = _BlockKind(proxy, "/proxy/blocks/airbyte/server/")
        self.dbt_cli_profile = _BlockKind(proxy, "/proxy/blocks/dbtcli/profile/")
        self.secret = _SecretKind(proxy, "/proxy/blocks/secret/")

    def delete(self, block_id: str) -> None:
        self.proxy.request("DELETE", f"/proxy/blocks/{block_id}")


class AdhocRuns:
    """One task run on a worker, outside any pipeline (e.g. `dbt run --select orders`)."""

    def __init__(self, proxy: PrefectProxy):
        self.proxy = proxy

    def start(self, *, org_slug: str, task: dict) -> FlowRun:
        is_dbt = task["type"] == TaskType.DBT_CORE_OPERATION
        path = "/proxy/v1/flows/dbtcore/run/" if is_dbt else "/proxy/flows/shell/run/"
        created = self.proxy.call(api.FlowRunRef, "POST", path, json={"org_slug": org_slug, "task": task})
        return FlowRun(self.proxy, created.flow_run_id, name=created.name)


class FlowRunNotifications:
    """The Prefect automation (and its webhook block) that posts every flow-run state change to a URL."""

    PATH = "/proxy/automations/flow-run-notifications/"

    def __init__(self, proxy: PrefectProxy, name: str):
        self.proxy = proxy
        self.name = name

    def upsert(self, *, url: str, secret_header_name: str, secret: str) -> api.FlowRunNotificationsWritten:
        """Creates or updates both; the answer says which (`block_change`, `automation_change`), never the secret."""
        body = {"name": self.name, "url": url, "secret_header_name": secret_header_name, "secret": secret}
        return self.proxy.call(api.FlowRunNotificationsWritten, "PUT", self.PATH, json=body)

    def get(self) -> api.FlowRunNotifications:
        return self.proxy.call(api.FlowRunNotifications, "GET", f"{self.PATH}{self.name}")

    def delete(self) -> api.FlowRunNotificationsDeleted:
        return self.proxy.call(api.FlowRunNotificationsDeleted, "DELETE", f"{self.PATH}{self.name}")


class OutgoingWebhook:
    """A URL kept in a Secret block (an org's alert webhook): the proxy posts to it; we never see the URL."""

    def __init__(self, proxy: PrefectProxy, block_name: str):
        self.proxy = proxy
        self.block_name = block_name

    def send(self, *, payload: dict, timeout_seconds: float) -> api.OutgoingWebhookSent:
        """One POST of `payload` to the URL, within `timeout_seconds`: whether it went, and why not."""
        body = {"blockName": self.block_name, "payload": payload, "timeoutSeconds": timeout_seconds}
        return self.proxy.call(api.OutgoingWebhookSent, "POST", "/proxy/outgoing-webhooks/send", json=body)


_default: PrefectProxy | None = None
_default_key: tuple | None = None


# Proxy calls a request makes while it reads the database meanwhile (see `meanwhile`). The calls only do HTTP:
# no database connection is ever opened on these threads.
_MEANWHILE = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ddpui-proxy-call")


def meanwhile(call: Callable[..., Result], /, *args: Any, **kwargs: Any) -> Future[Result]:
    """Starts a proxy call on a shared thread and returns its future: the request's own thread reads the
    database in the meantime, and `.result()` gives the answer or raises the call's error."""
    return _MEANWHILE.submit(call, *args, **kwargs)


def get_proxy() -> PrefectProxy:
    """The process-wide client built from settings (rebuilt when the settings change, e.g. in tests)."""
    global _default, _default_key
    key = (settings.PROXY_URL, settings.PROXY_TOKEN)
    if _default is None or _default_key != key:
        _default, _default_key = PrefectProxy(settings.PROXY_URL, settings.PROXY_TOKEN), key
    return _default


class BlockMigration:
    """The proxy's routes for moving a block-based installation to tasks (docs/migration.md).

    Reads of legacy blocks never carry their secrets, and the dbt profile is converted inside the proxy.
    """

    def __init__(self, proxy: PrefectProxy):
        self.proxy = proxy

    def describe_blocks(self, block_names: list[str]) -> api.LegacyBlockList:
        """The non-secret facts of the named blocks (and the names not found), in one call."""
        if not block_names:
            return api.LegacyBlockList(blocks=[], missing=[])
        return self.proxy.call(
            api.LegacyBlockList, "POST", "/proxy/legacy/blocks/describe", json={"block_names": list(block_names)}
        )

    def dbt_cli_profile_from_dbtcore(
        self,
        *,
        dbtcore_block_name: str,
        cli_profile_block_name: str,
        profile: dict | None = None,
        target_schema: str | None = None,
    ) -> api.DbtCliProfileBlock:
        body: dict[str, Any] = {
            "dbtcore_block_name": dbtcore_block_name,
            "cli_profile_block_name": cli_profile_block_name,
        }
        if profile is not None:
            body["profile"] = profile
        if target_schema is not None:
            body["target_schema"] = target_schema
        return self.proxy.call(api.DbtCliProfileBlock, "POST", "/proxy/blocks/dbtcli/profile/from_dbtcore/", json=body)

    def secret_get(self, block_name: str) -> api.BlockRef:
        """The id and name of a Secret block (never its value)."""
        return self.proxy.call(api.BlockRef, "GET", f"/proxy/blocks/secret/{block_name}")

    def dbt_cli_profile_get(self, block_name: str) -> api.DbtCliProfileBlock:
        """What the profile is (name, target, warehouse type, schema, threads, location): no credentials."""
        return self.proxy.call(
            api.DbtCliProfileBlock, "GET", "/proxy/blocks/dbtcli/profile/", params={"block_name": block_name}
        )
