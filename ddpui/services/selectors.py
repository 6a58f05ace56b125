"""Reads that are reused. Every selector takes the org explicitly, so a cross-org read cannot happen."""

from __future__ import annotations

import uuid as uuid_module

from ddpui.errors import NotFound
from ddpui.models.org import Org
from ddpui.models.tasks import OrgTask


def orgtask_get(*, org: Org, orgtask_uuid: str) -> OrgTask:
    try:
        parsed = uuid_module.UUID(str(orgtask_uuid))
    except ValueError:
        raise NotFound(f"task {orgtask_uuid} not found") from None
    task = OrgTask.objects.select_related("task").filter(org=org, uuid=parsed).first()
    if task is None:
        raise NotFound(f"task {orgtask_uuid} not found")
    return task
