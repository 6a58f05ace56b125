"""Concurrency scenarios over every write path, shared by tests/reliability/test_concurrency.py (which asserts
them on SQLite and on PostgreSQL) and bench/concurrency.py (which prints their figures).

Each request runs Django's whole handler stack (middleware included) through the test client in a thread of
its own with its own database connection, as a threaded server's workers do: the database sees real
concurrent transactions. Runs live in a work pool no worker polls; the scenarios move them through their
states in Prefect themselves (as a worker would), so runs start and end while requests are in flight.

Needs Django set up, the proxy in front of the Prefect server, settings.PREFECT_WORK_POOL naming an idle
pool, and settings.WEBHOOK_SECRET set.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections
from django.test import Client

from ddpui.services.pipelines import TaskRef, pipeline_create
from tests.factories import auth_headers
from tests.support.prefect_rest import prefect_set_state

WEBHOOK = "/webhooks/v1/notification/"
ENDINGS = ["COMPLETED", "FAILED", "COMPLETED", "CANCELLED", "CRASHED"]


@dataclass
class Figures:
    """What a scenario saw: status counts per kind of request, and how long it took."""

    name: str
    statuses: dict[str, Counter] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)

    def count(self, kind: str, status: int) -> None:
        self.statuses.setdefault(kind, Counter())[status] += 1

    def server_errors(self) -> int:
        return sum(n for counter in self.statuses.values() for status, n in counter.items() if status >= 500)

    def total(self, kind: str) -> int:
        return sum(self.statuses.get(kind, Counter()).values())

    def line(self) -> str:
        parts = [
            f"{kind}: " + ", ".join(f"{n}x{status}" for status, n in sorted(counter.items()))
            for kind, counter in sorted(self.statuses.items())
        ]
        return f"{self.name}: {'; '.join(parts)}; 5xx: {self.server_errors()}; {self.seconds:.1f} s" + "".join(
            f"; {note}" for note in self.notes
        )


def _in_thread(work: Callable[[Client], None]) -> Callable[[], None]:
    """Runs `work` with a client of its own; closes the thread's database connections afterwards."""

    def run() -> None:
        try:
            work(Client(raise_request_exception=False))
        finally:
            connections.close_all()

    return run


def _pipelines(org, orguser, make_orgtask, count: int, slug: str = "dbt-run") -> list[str]:
    ids = []
    for i in range(count):
        task = make_orgtask(org, slug)
        dataflow = pipeline_create(
            org=org,
            orguser=orguser,
            name=f"concurrency {slug} {i}",
            connections=[],
            transform_tasks=[TaskRef(key=str(task.uuid), seq=0)],
            cron=None,
        )
        ids.append(dataflow.deployment_id)
    return ids


def _notify(client: Client, flow_run_id: str, form: int) -> int:
    if form == 0:
        body, content_type = f'{{"flow_run_id": "{flow_run_id}"}}', "application/json"
    else:
        body, content_type = f"Flow run brave-fox with id {flow_run_id} entered state Running", "text/plain"
    return client.post(WEBHOOK, body, content_type, HTTP_X_DDPUI_WEBHOOK_SECRET=settings.WEBHOOK_SECRET).status_code


def webhook_storm(*, org, orguser, make_orgtask, deliveries: int = 2000, threads: int = 8, seed: int = 13) -> Figures:
    """`deliveries` notifications from `threads` threads, while a driver thread keeps triggering runs of 6
    pipelines through the API, moving them to Running and to an end in Prefect (and notifying each end, as
    Prefect would), and a seventh pipeline gets runs Prefect starts on its own (a schedule)."""
    figures = Figures(f"webhook storm ({deliveries} deliveries, {threads} threads, runs starting and ending)")
    deployment_ids = _pipelines(org, orguser, make_orgtask, 6)
    scheduled_id = _pipelines(org, orguser, make_orgtask, 1, slug="dbt-test")[0]
    headers = auth_headers(orguser, org.slug)
    rng = random.Random(seed)
    run_ids: list[str] = []
    run_ids_lock = threading.Lock()
    sent = iter(range(deliveries))
    sent_lock = threading.Lock()
    done = threading.Event()

    def deliver(client: Client) -> None:
        local = random.Random(rng.random())
        while True:
            with sent_lock:
                index = next(sent, None)
            if index is None:
                return
            while True:
                with run_ids_lock:
                    recent = run_ids[-12:]
                if recent:
                    break
                time.sleep(0.01)  # the driver has not started its first run yet
            figures.count("notification", _notify(client, local.choice(recent), index % 2))

    def drive(client: Client) -> None:
        from ddpui.prefect_client import get_proxy

        live: dict[str, str] = {}  # deployment id -> its live run
        ending = 0
        while not done.is_set():
            for deployment_id in deployment_ids:
                if deployment_id in live:
                    run_id = live.pop(deployment_id)
                    prefect_set_state(run_id, ENDINGS[ending % len(ENDINGS)])
                    ending += 1
                    figures.count("notification", _notify(client, run_id, 0))
                response = client.post(f"/api/prefect/v1/flows/{deployment_id}/flow_run/", **headers)
                figures.count("trigger", response.status_code)
                if response.status_code == 200:
                    run_id = response.json()["flow_run_id"]
                    prefect_set_state(run_id, "RUNNING")
                    live[deployment_id] = run_id
                    with run_ids_lock:
                        run_ids.append(run_id)
            scheduled = get_proxy().deployment(scheduled_id).create_run().id
            prefect_set_state(scheduled, "RUNNING")
            with run_ids_lock:
                run_ids.append(scheduled)
            prefect_set_state(scheduled, "COMPLETED")
        for run_id in live.values():  # every run ends, so the scenario leaves nothing live
            prefect_set_state(run_id, "COMPLETED")
            figures.count("notification", _notify(client, run_id, 0))

    started = time.perf_counter()
    driver = threading.Thread(target=_in_thread(drive), name="storm-driver")
    driver.start()
    workers = [threading.Thread(target=_in_thread(deliver), name=f"storm-{i}") for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=600)
    done.set()
    driver.join(timeout=120)
    figures.seconds = time.perf_counter() - started
    assert not driver.is_alive() and not any(worker.is_alive() for worker in workers), "a thread hung"
    figures.notes.append(f"{figures.total('notification') / figures.seconds:.0f} notifications/s")
    figures.notes.append(f"{len(run_ids)} runs")
    figures.run_ids = list(run_ids)
    return figures


def concurrent_triggers(*, org, orguser, deployment_ids: list[str], count: int = 20) -> Figures:
    """`count` triggers at once (all released together by a barrier), spread over `deployment_ids`."""
    figures = Figures(f"{count} concurrent triggers of {len(deployment_ids)} pipeline(s)")
    headers = auth_headers(orguser, org.slug)
    barrier = threading.Barrier(count)

    def trigger(i: int) -> int:
        try:
            client = Client(raise_request_exception=False)
            barrier.wait(timeout=60)
            path = f"/api/prefect/v1/flows/{deployment_ids[i % len(deployment_ids)]}/flow_run/"
            return client.post(path, **headers).status_code
        finally:
            connections.close_all()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=count) as pool:
        for status in pool.map(trigger, range(count)):
            figures.count("trigger", status)
    figures.seconds = time.perf_counter() - started
    return figures


def concurrent_reads(*, org, orguser, make_orgtask, count: int = 50) -> Figures:
    """`count` reads at once of the run (which records its state), the pipeline's history, the pipeline and
    the pipeline list, while the run moves Pending -> Running -> Completed in Prefect."""
    figures = Figures(f"{count} concurrent reads of runs and pipelines during a run")
    deployment_id = _pipelines(org, orguser, make_orgtask, 1)[0]
    headers = auth_headers(orguser, org.slug)
    started_run = Client().post(f"/api/prefect/v1/flows/{deployment_id}/flow_run/", **headers)
    assert started_run.status_code == 200, started_run.content
    run_id = started_run.json()["flow_run_id"]
    paths = [
        f"/api/prefect/flow_runs/{run_id}",
        f"/api/prefect/v1/flows/{deployment_id}/flow_runs/history",
        f"/api/prefect/v1/flows/{deployment_id}",
        "/api/prefect/v1/flows/",
    ]
    barrier = threading.Barrier(count + 1)

    def read(i: int) -> None:
        try:
            client = Client(raise_request_exception=False)
            barrier.wait(timeout=60)
            path = paths[i % len(paths)]
            figures.count(
                path.replace(run_id, "{id}").replace(deployment_id, "{id}"), client.get(path, **headers).status_code
            )
        finally:
            connections.close_all()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=count + 1) as pool:
        futures = [pool.submit(read, i) for i in range(count)]
        barrier.wait(timeout=60)
        for state in ("PENDING", "RUNNING", "COMPLETED"):
            prefect_set_state(run_id, state)
        for future in futures:
            future.result()
    figures.seconds = time.perf_counter() - started
    figures.run_ids = [run_id]
    return figures
