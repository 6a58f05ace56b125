"""A webhook load scenario shared by tests/reliability/test_webhook_load.py and bench/webhook_load.py.

50 runs of 30 pipelines reach their final state in Prefect first (so the end state cannot depend on
delivery order); then 200 notifications for them (every run 4 times, in the JSON and the message forms,
duplicates included) are delivered in a shuffled order, sequentially or from several threads.

- 20 pipelines each have one run triggered through our API (it holds the pipeline's locks), ending
  Completed, Failed, Crashed, Cancelled or still Running;
- 10 pipelines each have 3 runs Prefect started on its own (a schedule): at most one of them still
  Running (it takes the pipeline's locks), the others over.

Needs Django set up, a proxy in front of a Prefect server, and settings.PREFECT_WORK_POOL naming a pool
no worker polls (the runs must stay where the scenario puts them).
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from django.db import connections
from django.test import Client

from ddpui.models import AuditEvent, PrefectFlowRun, TaskLock
from ddpui.prefect_client import get_proxy
from ddpui.services.pipelines import TaskRef, pipeline_create, pipeline_run
from tests.support.prefect_rest import prefect_set_state

TRIGGERED_FINAL_STATES = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED", "RUNNING"]
SCHEDULED_FINAL_STATES = [("COMPLETED", "RUNNING", "FAILED"), ("CANCELLED", "COMPLETED", "CRASHED")]


@dataclass
class Scenario:
    webhook_secret: str
    run_ids: list[str]
    deliveries: list[tuple[str, str]]  # (content type, body)
    initial: dict = field(default_factory=dict)

    def snapshot_initial(self) -> None:
        self.initial = {
            "runs": list(PrefectFlowRun.objects.values()),
            "locks": list(TaskLock.objects.values()),
            "audit_max_id": AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0,
        }

    def restore_initial(self) -> None:
        """Back to the state before any delivery (our tables only: Prefect is not changed by deliveries)."""
        PrefectFlowRun.objects.all().delete()
        TaskLock.objects.all().delete()
        AuditEvent.objects.filter(id__gt=self.initial["audit_max_id"]).delete()
        PrefectFlowRun.objects.bulk_create([PrefectFlowRun(**row) for row in self.initial["runs"]])
        TaskLock.objects.bulk_create([TaskLock(**row) for row in self.initial["locks"]])

    def end_state(self) -> dict:
        """What the deliveries decided: each run's record, who holds which lock, what was audited."""
        runs = {
            row["flow_run_id"]: row
            for row in PrefectFlowRun.objects.values(
                "flow_run_id", "org_id", "deployment_id", "state_type", "state_name", "end_time", "task_results"
            )
        }
        locks = sorted(TaskLock.objects.values_list("orgtask_id", "flow_run_id", "locking_dataflow_id"))
        audited = Counter(
            AuditEvent.objects.filter(id__gt=self.initial["audit_max_id"]).values_list("action", "object_id")
        )
        return {"runs": runs, "locks": locks, "audited": audited}

    def deliver(self, threads: int) -> tuple[list[int], float]:
        """Posts every delivery (threads=1: one after the other, in order) and returns the statuses and the
        seconds taken. With several threads, each takes the next delivery from a shared queue and keeps its
        own client and database connection, as a server's worker threads do."""
        pending: queue.Queue = queue.Queue()
        for index, delivery in enumerate(self.deliveries):
            pending.put((index, delivery))
        statuses: list[int | None] = [None] * len(self.deliveries)

        def work() -> None:
            client = Client()
            try:
                while True:
                    try:
                        index, (content_type, body) = pending.get_nowait()
                    except queue.Empty:
                        return
                    statuses[index] = client.post(
                        "/webhooks/v1/notification/",
                        body,
                        content_type,
                        HTTP_X_DDPUI_WEBHOOK_SECRET=self.webhook_secret,
                    ).status_code
            finally:
                if threads > 1:
                    connections.close_all()

        started = time.perf_counter()
        if threads == 1:
            work()
        else:
            workers = [threading.Thread(target=work) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(timeout=300)
            assert not any(worker.is_alive() for worker in workers), "a delivery thread hung"
        return statuses, time.perf_counter() - started


def _set_state(flow_run_id: str, state_type: str) -> None:
    prefect_set_state(flow_run_id, state_type)


def build_scenario(*, org, orguser, make_orgtask, webhook_secret: str, seed: int = 20261124) -> Scenario:
    """Creates the pipelines and runs described in the module docstring; returns the deliveries to make."""
    rng = random.Random(seed)
    proxy = get_proxy()
    run_ids: list[str] = []
    for i, final in enumerate(TRIGGERED_FINAL_STATES * 4):
        task = make_orgtask(org, "dbt-run")
        dataflow = pipeline_create(
            org=org,
            orguser=orguser,
            name=f"triggered {i}",
            connections=[],
            transform_tasks=[TaskRef(key=str(task.uuid), seq=0)],
            cron=None,
        )
        run_id = pipeline_run(org=org, orguser=orguser, deployment_id=dataflow.deployment_id).flow_run_id
        _set_state(run_id, final)
        run_ids.append(run_id)
    for i in range(10):
        task = make_orgtask(org, "dbt-test")
        dataflow = pipeline_create(
            org=org,
            orguser=orguser,
            name=f"scheduled {i}",
            connections=[],
            transform_tasks=[TaskRef(key=str(task.uuid), seq=0)],
            cron=None,
        )
        for final in SCHEDULED_FINAL_STATES[i % 2]:
            run_id = proxy.deployment(dataflow.deployment_id).create_run().id
            _set_state(run_id, final)
            run_ids.append(run_id)
    assert len(run_ids) == 50
    deliveries = []
    for run_id in run_ids:
        deliveries += [
            ("application/json", f'{{"flow_run_id": "{run_id}"}}'),
            ("text/plain", f"Flow run brave-fox with id {run_id} entered state Running"),
            ("application/json", f'{{"flow_run": {{"id": "{run_id}"}}, "state": {{"type": "PENDING"}}}}'),
            ("application/json", f'{{"flow_run_id": "{run_id}"}}'),
        ]
    rng.shuffle(deliveries)
    scenario = Scenario(webhook_secret=webhook_secret, run_ids=run_ids, deliveries=deliveries)
    scenario.snapshot_initial()
    return scenario
