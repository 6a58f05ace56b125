"""Writes the audit trail. Details must never carry secrets: callers pass ids, names and states only."""

from __future__ import annotations

from enum import StrEnum

from ddpui.models.audit import AuditEvent
from ddpui.models.org import Org, OrgUser


class AuditAction(StrEnum):
    """Every action the audit trail records, in one place: `<object>.<verb>`."""

    PIPELINE_CREATED = "pipeline.created"
    PIPELINE_UPDATED = "pipeline.updated"
    PIPELINE_DELETED = "pipeline.deleted"
    PIPELINE_SCHEDULE_RESUMED = "pipeline.schedule_resumed"
    PIPELINE_SCHEDULE_PAUSED = "pipeline.schedule_paused"
    PIPELINE_RUN_TRIGGERED = "pipeline.run_triggered"
    TRANSFORM_TASKS_CREATED = "tasks.transform_created"
    TRANSFORM_TASKS_DELETED = "tasks.transform_deleted"
    TASK_CREATED = "task.created"
    TASK_DELETED = "task.deleted"
    TASK_RUN_TRIGGERED = "task.run_triggered"
    RUN_CANCELLED = "run.cancelled"
    RUN_RETRIED = "run.retried"
    RUN_CANCELLED_OVERLAP = "run.cancelled_overlap"
    LOCKS_TAKEN = "locks.taken"
    LOCKS_RELEASED = "locks.released"
    MIGRATION_PHASE_1 = "migration.1"
    MIGRATION_PHASE_2 = "migration.2"
    MIGRATION_PHASE_3 = "migration.3"
    MIGRATION_SWITCH_ENTRYPOINT = "migration.switch-entrypoint"
    MIGRATION_ROLLBACK_ENTRYPOINT = "migration.rollback-entrypoint"
    AIRBYTE_WORKSPACE_ATTACHED = "airbyte_workspace.attached"
    WAREHOUSE_CREATED = "warehouse.created"
    WAREHOUSE_UPDATED = "warehouse.updated"
    WAREHOUSE_DELETED = "warehouse.deleted"
    SOURCE_CREATED = "source.created"
    SOURCE_UPDATED = "source.updated"
    SOURCE_DELETED = "source.deleted"
    CONNECTION_CREATED = "connection.created"
    CONNECTION_UPDATED = "connection.updated"
    CONNECTION_DELETED = "connection.deleted"
    CONNECTION_RESET = "connection.reset"
    DBT_WORKSPACE_CREATED = "dbt_workspace.created"
    DBT_WORKSPACE_REPOSITORY_CHANGED = "dbt_workspace.repository_changed"
    DBT_WORKSPACE_SCHEMA_CHANGED = "dbt_workspace.schema_changed"
    DBT_WORKSPACE_DELETED = "dbt_workspace.deleted"
    ALERTS_WEBHOOK_SET = "alerts_webhook.set"
    ALERTS_WEBHOOK_REMOVED = "alerts_webhook.removed"
    DBT_TARGET_CREATED = "dbt_target.created"
    DBT_TARGET_UPDATED = "dbt_target.updated"
    DBT_TARGET_DELETED = "dbt_target.deleted"


def audit_record(
    *,
    org: Org | None,
    action: AuditAction,
    object_type: str,
    object_id: str = "",
    orguser: OrgUser | None = None,
    actor: str | None = None,
    details: dict | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        org=org,
        orguser=orguser,
        actor=actor or (orguser.user.email if orguser is not None else "system"),
        action=AuditAction(action).value,
        object_type=object_type,
        object_id=str(object_id),
        details=details or {},
    )


def audit_list(*, org: Org, limit: int, offset: int) -> tuple[int, list[AuditEvent]]:
    events = AuditEvent.objects.filter(org=org)
    return events.count(), list(events.order_by("-created_at", "-id")[offset : offset + limit])
