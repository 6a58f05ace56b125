"""Is my data fresh? Each connection's last successful sync (whichever pipeline or manual sync ran it, taken
from the run's per-task results when run_states records the run), its optional freshness limit, and the
check, on the reconciler's schedule, that raises one stale-connection alert per staleness episode.

Pipelines get the same question answered by their last successful run (`pipelines_last_successful_runs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ddpcontract.flows import TaskStatus
from ddpcontract.states import DBT_TEST_FAILED_STATE_NAME, StateType
from ddpcontract.tasks import TaskType
from ddpui.errors import InvalidInput
from ddpui.models.alerts import Alert, AlertEvent, ConnectionFreshness
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.models.tasks import OrgTask
from ddpui.services.alerts.events import event_key
from ddpui.services.alerts.facts import SYNC_SLUG, connection_names
from ddpui.services.alerts.raising import alert_raise

MAX_LIMIT_HOURS = 24 * 366


@dataclass(frozen=True)
class Freshness:
    last_successful_sync_at: datetime | None
    limit_hours: int | None
    is_stale: bool


def _stale_after(row: ConnectionFreshness) -> datetime | None:
    if not row.freshness_limit_hours:
        return None
    reference = row.last_successful_sync_at or row.limit_set_at
    return reference + timedelta(hours=row.freshness_limit_hours) if reference else None


def freshness_of(row: ConnectionFreshness | None, *, now: datetime | None = None) -> Freshness:
    """A connection's freshness as the API shows it (`row` None: never synced by a run we recorded, no limit)."""
    if row is None:
        return Freshness(last_successful_sync_at=None, limit_hours=None, is_stale=False)
    now = now or timezone.now()
    return Freshness(
        last_successful_sync_at=row.last_successful_sync_at,
        limit_hours=row.freshness_limit_hours,
        is_stale=row.stale_after is not None and row.stale_after <= now,
    )


def freshness_limit_set(*, sync_task: OrgTask, hours: int | None) -> ConnectionFreshness:
    """Sets (or with None removes) the connection's freshness limit; call inside the caller's transaction."""
    if hours is not None and not (1 <= int(hours) <= MAX_LIMIT_HOURS):
        raise InvalidInput(f"freshnessLimitHours must be between 1 and {MAX_LIMIT_HOURS} (or null for no limit)")
    with transaction.atomic():
        row, _ = ConnectionFreshness.objects.select_for_update().get_or_create(sync_task=sync_task)
        if row.freshness_limit_hours != hours:
            row.freshness_limit_hours = hours
            row.limit_set_at = timezone.now() if hours is not None else None
            row.stale_after = _stale_after(row)
            row.save()
    return row


def _sync_time(result: dict, record: PrefectFlowRun) -> datetime | None:
    ended = parse_datetime(str(result.get("ended_at") or "")) if result.get("ended_at") else None
    return ended or record.end_time


def freshness_record_run(record: PrefectFlowRun) -> int:
    """Moves each connection this run synced successfully to the sync's end time (never backwards: a late
    report of an older run changes nothing). Called by run_states inside the transaction recording the
    run's results. Returns the connections moved."""
    if record.org_id is None:
        return 0
    synced = [
        result
        for result in record.task_results or []
        if result.get("status") == TaskStatus.SUCCESS
        and (result.get("type") == TaskType.AIRBYTE_CONNECTION or result.get("connection_id"))
    ]
    if not synced:
        return 0
    tasks = OrgTask.objects.filter(org_id=record.org_id, task__slug=SYNC_SLUG)
    by_uuid = {str(task.uuid): task for task in tasks}
    by_connection = {task.connection_id: task for task in by_uuid.values() if task.connection_id}
    moved = 0
    for result in synced:
        task = by_uuid.get(str(result.get("orgtask_uuid"))) or by_connection.get(str(result.get("connection_id")))
        at = _sync_time(result, record)
        if task is None or at is None:
            continue
        row, _ = ConnectionFreshness.objects.get_or_create(sync_task=task)
        if row.last_successful_sync_at is not None and row.last_successful_sync_at >= at:
            continue
        row.last_successful_sync_at = at
        row.last_successful_flow_run_id = record.flow_run_id
        row.stale_after = _stale_after(row)
        row.save(update_fields=["last_successful_sync_at", "last_successful_flow_run_id", "stale_after", "updated_at"])
        moved += 1
    return moved


def connections_check_stale(*, now: datetime | None = None) -> list[str]:
    """Raises the stale-connection alert of every connection past its limit, once per staleness episode (the
    episode is named by the last successful sync it started from). Two queries when nothing is new."""
    now = now or timezone.now()
    rows = list(ConnectionFreshness.objects.filter(stale_after__lte=now).select_related("sync_task__org"))
    if not rows:
        return []
    keys = {
        row.pk: event_key(
            AlertEvent.CONNECTION_STALE,
            row.sync_task.uuid,
            (row.last_successful_sync_at or row.limit_set_at).isoformat(),
        )
        for row in rows
    }
    raised_before = set(Alert.objects.filter(key__in=keys.values()).values_list("key", flat=True))
    done = []
    for row in rows:
        if keys[row.pk] in raised_before:
            continue
        org, task = row.sync_task.org, row.sync_task
        name = connection_names(org=org, connection_ids=[task.connection_id]).get(task.connection_id)
        last = row.last_successful_sync_at
        facts = {
            "org": org.name,
            "org_slug": org.slug,
            "connection": name,
            "connection_id": task.connection_id,
            "freshness_pk": row.pk,
            "limit_hours": row.freshness_limit_hours,
            "limit_set_at": row.limit_set_at.isoformat() if row.limit_set_at else None,
            "last_successful_sync_at": last.isoformat() if last else None,
            "last_successful_flow_run_id": row.last_successful_flow_run_id,
            "age_seconds": (now - last).total_seconds() if last else None,
            "stale_since": row.stale_after.isoformat(),
        }
        with transaction.atomic():
            alert = alert_raise(
                org=org,
                event=AlertEvent.CONNECTION_STALE,
                key=keys[row.pk],
                occurred_at=row.stale_after,
                facts=facts,
                sync_task=task,
            )
        if alert is not None:
            done.append(f"connection {task.connection_id} of {org.slug} is stale: alert raised")
    return done


# ------------------------------------------------------------------------------------------ pipelines

_SUCCESSFUL = Q(state_type=StateType.COMPLETED) & ~Q(state_name=DBT_TEST_FAILED_STATE_NAME)


LAST_SUCCESSFUL_RUN_FIELDS = ("last_success_flow_run_id", "last_success_start_time", "last_success_end_time")


def last_successful_run_fields() -> dict[str, Subquery]:
    """Annotations for a queryset of OrgDataFlowv1: the newest run of each that completed with every task
    succeeding (a run whose dbt tests failed is not a success) — its id, start and end, in the same query."""
    newest = PrefectFlowRun.objects.filter(_SUCCESSFUL, deployment_id=OuterRef("deployment_id")).order_by(
        "-start_time", "-id"
    )
    return {
        "last_success_flow_run_id": Subquery(newest.values("flow_run_id")[:1]),
        "last_success_start_time": Subquery(newest.values("start_time")[:1]),
        "last_success_end_time": Subquery(newest.values("end_time")[:1]),
    }


def last_successful_run_of(row: dict) -> dict | None:
    """{flow_run_id, start_time, end_time} from a row annotated with last_successful_run_fields(), or None."""
    if not row.get("last_success_flow_run_id"):
        return None
    return {
        "flow_run_id": row["last_success_flow_run_id"],
        "start_time": row["last_success_start_time"],
        "end_time": row["last_success_end_time"],
    }
