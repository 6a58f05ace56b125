"""Benchmark: webhook deliveries processed per second by one Django process (target: at least 100/s).

Real parts: a Prefect server, the proxy as its own process (as in production), Django in this process with
a throwaway database (SQLite unless DATABASE_URL is set; PostgreSQL is the production case). The scenario
is the load test's (tests/reliability/webhook_load.py): 200 notifications for 50 runs of 30 pipelines,
runs already in their final states. Each round restores the records and delivers all 200 again, from
1 thread and from --threads threads; every round must end in the same state. Prints figures and the machine.

Two figures: end to end (every delivery asks the proxy, which asks the Prefect server: on this machine all
of them share the same cores), and Django alone, where the proxy's answers recorded in the first round are
replayed in-process, so only Django's own work (parsing, database, locks, audit) is timed.

    DATABASE_URL=postgresql://... .venv/bin/python bench/webhook_load.py [--rounds 3] [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.processes import (  # noqa: E402
    REPO_ROOT,
    ManagedProcess,
    PrefectServer,
    free_port,
    prefect_env,
    wait_http_ok,  # noqa: E402
)

HOME = Path(tempfile.mkdtemp(prefix="ddpui-bench-webhook-"))
PORT = free_port()
POOL = "bench-idle"  # no worker: runs stay in the states the scenario sets
SECRET = "bench-webhook-secret"
os.environ.update(
    PREFECT_API_URL=f"http://127.0.0.1:{PORT}/api",
    PREFECT_HOME=str(HOME),
    DDPUI_DATA_DIR=str(HOME / "django"),
    DJANGO_SETTINGS_MODULE="ddpui.settings",
    PROXY_TOKEN="bench-token",
    EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    DDPUI_LOG_LEVEL="WARNING",
)


def _first_line(path: str, prefix: str) -> str:
    try:
        with open(path) as lines:
            return next((line for line in lines if line.startswith(prefix)), "")
    except OSError:
        return ""


def machine() -> str:
    kib = _first_line("/proc/meminfo", "MemTotal").split()[1:2]
    memory = f", {int(kib[0]) / 1024 / 1024:.1f} GiB RAM" if kib else ""
    cpu = _first_line("/proc/cpuinfo", "model name").partition(":")[2].strip() or "unknown CPU"
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}){memory}, "
        f"Python {platform.python_version()}, Django {version('django')}, Prefect {version('prefect')}"
    )


class RecordingTransport:
    """An httpx transport that answers from the network and remembers every answer."""

    def __init__(self):
        import httpx

        self.inner = httpx.HTTPTransport()
        self.answers: dict[tuple[str, str], tuple[int, str, bytes]] = {}

    def handle_request(self, request):
        import httpx

        response = self.inner.handle_request(request)
        content = response.read()
        answer = (response.status_code, response.headers.get("content-type", ""), content)
        self.answers[(request.method, str(request.url))] = answer
        return httpx.Response(answer[0], headers={"content-type": answer[1]}, content=answer[2])

    def close(self) -> None:
        self.inner.close()


class ReplayTransport:
    """An httpx transport that gives the recorded answer to the same request, without any I/O."""

    def __init__(self, answers: dict):
        self.answers = answers

    def handle_request(self, request):
        import httpx

        status, content_type, content = self.answers[(request.method, str(request.url))]
        return httpx.Response(status, headers={"content-type": content_type}, content=content)

    def close(self) -> None:
        pass


def use_proxy_transport(transport) -> None:
    """Makes get_proxy() return a client whose requests go through `transport`."""
    from django.conf import settings

    from ddpui.prefect_client import client

    client._default = client.PrefectProxy(settings.PROXY_URL, settings.PROXY_TOKEN, transport=transport)
    client._default_key = (settings.PROXY_URL, settings.PROXY_TOKEN)


def rounds(scenario, *, threads: int, count: int, expected: dict | None) -> tuple[list[float], dict]:
    rates = []
    for _ in range(count):
        scenario.restore_initial()
        statuses, seconds = scenario.deliver(threads=threads)
        assert statuses == [200] * len(scenario.deliveries), sorted(set(statuses))
        state = scenario.end_state()
        expected = expected or state
        assert state == expected, "a round ended in another state"
        rates.append(len(scenario.deliveries) / seconds)
    return rates, expected


def report(label: str, rates: list[float]) -> str:
    return (
        f"{label}: {statistics.median(rates):6.1f} deliveries/s median "
        f"(min {min(rates):.1f}, max {max(rates):.1f}; {len(rates)} rounds of 200)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--prefect-database-url",
        default=os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL"),
        help="run the Prefect server on this database (postgresql+asyncpg://...) instead of SQLite",
    )
    args = parser.parse_args()

    server = PrefectServer(HOME, PORT, database_url=args.prefect_database_url)
    server.start()
    import httpx

    httpx.post(f"{server.api_url}/work_pools/", json={"name": POOL, "type": "process"}, timeout=30)
    proxy_port = free_port()
    proxy = ManagedProcess(
        [sys.executable, "-m", "proxy", "--host", "127.0.0.1", "--port", str(proxy_port), "--log-level", "warning"],
        env=prefect_env(server.api_url, HOME, PROXY_TOKEN="bench-token", PROXY_WORK_POOL=POOL),
        log_path=HOME / "proxy.log",
        cwd=REPO_ROOT,
    )
    proxy.start()
    os.environ["PROXY_URL"] = f"http://127.0.0.1:{proxy_port}"

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment

    settings.PREFECT_WORK_POOL = POOL
    settings.WEBHOOK_SECRET = SECRET
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        wait_http_ok(f"{os.environ['PROXY_URL']}/proxy/health", timeout=60, process=proxy.process, log=proxy.log_path)
        from tests.ddpui.pipelines.conftest import make_pipeline_org
        from tests.factories import make_orgtask
        from tests.reliability.webhook_load import build_scenario

        org, orguser, _, _ = make_pipeline_org("Bench Org", connections=0)
        scenario = build_scenario(org=org, orguser=orguser, make_orgtask=make_orgtask, webhook_secret=SECRET)
        print(f"machine: {machine()}")
        prefect_db = "PostgreSQL" if args.prefect_database_url else "SQLite"
        print(f"Django database: {connection.vendor}; proxy: separate process; Prefect server on {prefect_db}")
        print(f"scenario: {len(scenario.deliveries)} deliveries for {len(scenario.run_ids)} runs")
        recorder = RecordingTransport()
        use_proxy_transport(recorder)
        results, expected = {}, None
        for threads in (1, args.threads):
            results[f"end to end, {threads} thread(s)"], expected = rounds(
                scenario, threads=threads, count=args.rounds, expected=expected
            )
        use_proxy_transport(ReplayTransport(recorder.answers))
        for threads in (1, args.threads):
            results[f"Django alone, {threads} thread(s)"], expected = rounds(
                scenario, threads=threads, count=args.rounds, expected=expected
            )
        for label, rates in results.items():
            print(report(label, rates))
        print("target: >= 100 deliveries/s in one process; every round ended in the same state: yes")
    finally:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        proxy.stop()
        server.stop()


if __name__ == "__main__":
    main()
