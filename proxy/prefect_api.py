"""One long-lived async Prefect client per app instance, plus the Prefect settings it runs under.

Reusing one client keeps its HTTP connections to Prefect open between requests (a new client per request
would pay a TCP connect and a CSRF-token round trip every time). Each app instance carries its own Prefect
settings (API URL, retry count), entered around every request, so two proxies in one process (the tests)
can point at different Prefect servers.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
from prefect.client.orchestration import PrefectClient, get_client
from prefect.context import SettingsContext, get_settings_context
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES

from proxy.errors import NotFound
from proxy.lean_http import LeanHTTP
from proxy.settings import ProxySettings

# Prefect gzips every answer over 1 kB unless told not to: between the proxy and Prefect (loopback or a LAN)
# compressing and decompressing costs both processes more CPU than the bytes it saves.
HTTPX_SETTINGS = {"headers": {"Accept-Encoding": "identity"}}


class PrefectConnection:
    def __init__(self, settings: ProxySettings):
        base = get_settings_context()
        prefect_settings = base.settings.copy_with_update(
            updates={
                PREFECT_API_URL: settings.prefect_api_url,
                PREFECT_CLIENT_MAX_RETRIES: settings.prefect_client_retries,
            }
        )
        self._settings_context = SettingsContext(profile=base.profile, settings=prefect_settings)
        self._client: PrefectClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @contextmanager
    def settings_context(self) -> Iterator[None]:
        """Make this instance's Prefect settings current.

        Sets the context variable Prefect reads (`SettingsContext.get()`) to one context built up front:
        entering a fresh `SettingsContext` would validate the whole settings model on every request.
        """
        token = SettingsContext.__var__.set(self._settings_context)
        try:
            yield
        finally:
            SettingsContext.__var__.reset(token)

    async def client(self) -> PrefectClient:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is loop:
            return self._client
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            if self._client is None or self._client_loop is not loop:
                with self.settings_context():
                    client = get_client(httpx_settings=HTTPX_SETTINGS)
                    await client.__aenter__()
                if str(client.api_url).startswith("http://"):
                    _LEAN[client] = LeanHTTP(str(client.api_url), dict(client._client.headers))
                self._client, self._client_loop = client, loop
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            lean = _LEAN.pop(client, None)
            if lean is not None:
                await lean.aclose()
            await client.__aexit__(None, None, None)


# The lean client of each app's Prefect client, for plain-http Prefect servers (see proxy.lean_http)
_LEAN: weakref.WeakKeyDictionary[PrefectClient, LeanHTTP] = weakref.WeakKeyDictionary()


async def prefect_json(
    client: PrefectClient,
    method: str,
    path: str,
    *,
    not_found: str | None = None,
    missing_ok: bool = False,
    **request: Any,
) -> Any:
    """One call to Prefect, answered as plain JSON: through the lean client (proxy.lean_http) when Prefect is
    served over plain http, otherwise through the Prefect client's own `request`; both retry and fail alike.

    Reads that the proxy only reshapes skip parsing into Prefect's response models (a flow run or deployment
    model costs a fraction of a millisecond to validate, a page of 200 runs tens of milliseconds).
    `not_found` turns Prefect's 404 into the proxy's NotFound with that message; with `missing_ok` a 404 answers
    None instead (a lookup that may miss, such as whether a name is free, then costs no exception).
    """
    lean = _LEAN.get(client)
    try:
        if lean is not None and lean.usable_for(method) and request.keys() <= {"json", "params"}:
            try:
                status, body = await lean.request(
                    method, path, params=request.get("params"), json=request.get("json"), answer_404=missing_ok
                )
                return None if status == 404 else orjson.loads(body)
            except httpx.HTTPStatusError as exc:
                if not lean.csrf_refusal(exc.response):
                    raise
                # Prefect's CSRF protection is on: its writes need the token Prefect's client fetches
        response = await client.request(method, path, **request)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            if missing_ok:
                return None
            if not_found is not None:
                raise NotFound(not_found) from None
        raise
    return response.json()
