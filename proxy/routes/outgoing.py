"""Outgoing webhooks: a JSON message to the URL held by a Secret block (alerts to a chat channel)."""

from __future__ import annotations

from proxy import outgoing, schemas
from proxy.dependencies import Prefect, resource_router

router = resource_router(tags=["outgoing webhooks"], prefix="/outgoing-webhooks")


@router.post("/send")
async def send_outgoing_webhook(request: schemas.OutgoingWebhookSend, client: Prefect) -> schemas.OutgoingWebhookSent:
    """200 whether or not the URL took the message (`delivered`, `statusCode`, `error` say how it went);
    404 for an unknown block, 422 when the block holds no http(s) URL."""
    return await outgoing.outgoing_webhook_send(client, request=request)
