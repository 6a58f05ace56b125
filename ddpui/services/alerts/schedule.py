"""Missed runs: a cron slot of a scheduled pipeline for which no run happened at all. Checked on the
reconciler's schedule; late runs (a run that exists but has not started) are run_states' business.

For each scheduled pipeline, the newest slot at least ALERTS_LATE_AFTER_MINUTES old (and at most
ALERTS_MISSED_LOOKBACK_HOURS older) is covered when we know a run of the pipeline expected at or after it.
Only the uncovered ones are asked about in Prefect, in one batch: is the schedule on, and is there a run we
did not hear of? A run found is recorded (then it is at worst late); none is a missed run.
"""

from __future__ import annotations

import logging
import zoneinfo
from datetime import UTC, datetime, timedelta

from cronsim import CronSim, CronSimError
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from ddpcontract import proxy_api as api
from ddpui.models.alerts import Alert, AlertEvent
from ddpui.models.audit import AuditEvent
from ddpui.models.dataflows import OrgDataFlowv1
from ddpui.models.flow_runs import PrefectFlowRun
from ddpui.prefect_client import get_proxy
from ddpui.services.alerts.events import event_key
from ddpui.services.alerts.raising import alert_raise, late_after
from ddpui.services.audit import AuditAction

logger = logging.getLogger(__name__)

# a run counts for a slot if it was expected from this long before it on (Prefect's own runs: at the slot)
SLOT_TOLERANCE = timedelta(seconds=60)


def last_slot(cron: str, tz: str | None, *, before: datetime) -> datetime | None:
    """The newest time at or before `before` the cron expression fires (in its time zone), in UTC."""
    try:
        zone = zoneinfo.ZoneInfo(tz) if tz else UTC
        # CronSim steps strictly before its start: start a second later to include `before` itself
        slot = next(CronSim(cron, (before + timedelta(seconds=1)).astimezone(zone), reverse=True))
    except (CronSimError, zoneinfo.ZoneInfoNotFoundError, StopIteration, ValueError):
        return None
    return slot.astimezone(UTC)


def _run_time(run: api.FlowRun) -> datetime | None:
    return run.start_time or run.expected_start_time


def runs_check_missed(*, now: datetime | None = None) -> list[str]:
    """Raises a missed-run alert for each scheduled pipeline whose latest due slot had no run. Queries only
    (no Prefect call) unless a slot looks uncovered; then one batch of two proxy calls."""
    from ddpui.services.run_states import run_state_apply  # run_states imports the alerts package

    now = now or timezone.now()
    due_before = now - late_after()
    oldest = due_before - timedelta(hours=settings.ALERTS_MISSED_LOOKBACK_HOURS)
    slots: dict[str, tuple[OrgDataFlowv1, datetime]] = {}
    for dataflow in (
        OrgDataFlowv1.objects.filter(dataflow_type=OrgDataFlowv1.DataflowType.ORCHESTRATE)
        .exclude(cron__isnull=True)
        .exclude(cron="")
        .select_related("org")
    ):
        slot = last_slot(dataflow.cron, dataflow.timezone, before=due_before)
        # a slot before the pipeline (or its last change) existed was never expected to run
        if slot is not None and slot >= oldest and slot >= dataflow.updated_at:
            slots[dataflow.deployment_id] = (dataflow, slot)
    if not slots:
        return []
    known = dict(
        PrefectFlowRun.objects.filter(deployment_id__in=list(slots), expected_start_time__gte=oldest - SLOT_TOLERANCE)
        .values("deployment_id")
        .annotate(latest=Max("expected_start_time"))
        .values_list("deployment_id", "latest")
    )
    resumed = dict(
        AuditEvent.objects.filter(action=AuditAction.PIPELINE_SCHEDULE_RESUMED, object_id__in=list(slots))
        .values("object_id")
        .annotate(at=Max("created_at"))
        .values_list("object_id", "at")
    )
    candidates = {
        deployment_id: (dataflow, slot)
        for deployment_id, (dataflow, slot) in slots.items()
        if not (known.get(deployment_id) and known[deployment_id] >= slot - SLOT_TOLERANCE)
        and not (resumed.get(deployment_id) and resumed[deployment_id] > slot)
    }
    keys = {
        deployment_id: event_key(AlertEvent.RUN_MISSED, deployment_id, slot.isoformat())
        for deployment_id, (_, slot) in candidates.items()
    }
    raised_before = set(Alert.objects.filter(key__in=keys.values()).values_list("key", flat=True))
    candidates = {
        deployment_id: value for deployment_id, value in candidates.items() if keys[deployment_id] not in raised_before
    }
    if not candidates:
        return []
    proxy = get_proxy()
    states = proxy.deployments.schedule_states(deployment_ids=list(candidates))
    off = set(states.paused) | set(states.missing)
    active = [deployment_id for deployment_id in candidates if deployment_id not in off]
    newest = {
        run.deployment_id: run
        for run in (proxy.flow_runs.filter(deployment_ids=active, limit_per_deployment=1) if active else [])
    }
    done = []
    for deployment_id in active:
        dataflow, slot = candidates[deployment_id]
        run = newest.get(deployment_id)
        run_time = _run_time(run) if run else None
        if run_time is not None and run_time >= slot - SLOT_TOLERANCE:
            run_state_apply(org=dataflow.org, run=run)  # a run we had not heard of: recorded, late rule applies
            continue
        facts = {
            "org": dataflow.org.name,
            "org_slug": dataflow.org.slug,
            "pipeline": dataflow.name,
            "dataflow_id": dataflow.id,
            "deployment_id": deployment_id,
            "cron": dataflow.cron,
            "timezone": dataflow.timezone,
            "due_at": slot.isoformat(),
            "last_run_at": run_time.isoformat() if run_time else None,
        }
        with transaction.atomic():
            alert = alert_raise(
                org=dataflow.org,
                event=AlertEvent.RUN_MISSED,
                key=keys[deployment_id],
                occurred_at=slot,
                facts=facts,
                dataflow=dataflow,
            )
        if alert is not None:
            done.append(f"pipeline {deployment_id} of {dataflow.org.slug} missed its run due at {slot.isoformat()}")
    return done
