"""POST /webhooks/v1/notification/ — Prefect flow-run state notifications."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ddpui.errors import DomainError
from ddpui.services.webhooks import webhook_handle, webhook_parse

SECRET_HEADER = "X-Ddpui-Webhook-Secret"


@csrf_exempt
@require_POST
def notification(request: HttpRequest) -> JsonResponse:
    secret = settings.WEBHOOK_SECRET
    if not secret:
        return JsonResponse({"detail": "the webhook is disabled: set WEBHOOK_SECRET"}, status=401)
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        return JsonResponse({"detail": f"missing or wrong {SECRET_HEADER} header"}, status=401)
    try:
        flow_run_id = webhook_parse(request.body)
        outcome = webhook_handle(flow_run_id=flow_run_id)
    except DomainError as exc:
        return JsonResponse({"detail": exc.message}, status=exc.status_code)
    return JsonResponse({"status": "ok", "flow_run_id": flow_run_id, "outcome": outcome})
