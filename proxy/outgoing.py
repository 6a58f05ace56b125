"""Outgoing webhooks: POST a JSON message to the URL a Secret block holds (an org's alert webhook).

The URL is read from Prefect (the Secret's value) for each message and used only here: neither the answer
nor an error ever contains it (chat services keep their token in its path), only its host.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
from prefect.client.orchestration import PrefectClient

from proxy.blocks import secret_value
from proxy.errors import InvalidRequest
from proxy.schemas import OutgoingWebhookSend, OutgoingWebhookSent


def _scrubbed(text: str, url: str) -> str:
    """The text without the URL or its path (a chat service may echo either)."""
    parts = urlsplit(url)
    for secret in (url, parts.path, parts.query):
        if len(secret) > 1:
            text = text.replace(secret, "***")
    return " ".join(text.split())[:200]


async def outgoing_webhook_send(client: PrefectClient, *, request: OutgoingWebhookSend) -> OutgoingWebhookSent:
    url = str(await secret_value(client, name=request.blockName) or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"the Secret block {request.blockName!r} does not hold an http(s) URL")
    host = parts.hostname
    try:
        async with httpx.AsyncClient(timeout=request.timeoutSeconds, follow_redirects=False) as http:
            response = await asyncio.wait_for(http.post(url, json=request.payload), timeout=request.timeoutSeconds)
    except (TimeoutError, httpx.TimeoutException):
        return OutgoingWebhookSent(
            delivered=False, statusCode=None, error=f"{host} did not answer within {request.timeoutSeconds:g} s"
        )
    except httpx.HTTPError as exc:
        return OutgoingWebhookSent(
            delivered=False, statusCode=None, error=f"could not reach {host} ({type(exc).__name__})"
        )
    if 200 <= response.status_code < 300:
        return OutgoingWebhookSent(delivered=True, statusCode=response.status_code, error=None)
    said = _scrubbed(response.text, url)
    return OutgoingWebhookSent(
        delivered=False,
        statusCode=response.status_code,
        error=f"{host} answered {response.status_code}" + (f": {said}" if said else ""),
    )
