"""Benchmark/evidence: the concurrency figures of docs/reliability.md §6, on SQLite or PostgreSQL.

Runs the three concurrency tests (tests/reliability/concurrency.py holds the scenarios) with the real parts
the test suite uses (a Prefect server, the proxy, the Airbyte emulator) and prints each scenario's figures
(status counts, 5xx, seconds, notifications per second) and the machine:

    .venv/bin/python bench/concurrency.py                       # Django on SQLite
    .venv/bin/python bench/concurrency.py --postgres "$DSN"     # Django on PostgreSQL (DSN of the server)
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.partition(":")[2].strip() for line in lines if "model name" in line), "unknown CPU")
    python = platform.python_version()
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), Python {python}"


TESTS = [
    "tests/reliability/test_concurrency.py",
    "tests/ddpui/pipelines/test_concurrent_triggers.py",
]
PREFIXES = ("webhook storm", "20 concurrent triggers", "50 concurrent reads")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", metavar="DSN", help="a PostgreSQL server's DSN (…/postgres): Django uses it")
    args = parser.parse_args()
    env = {**os.environ, "DDPUI_DATA_DIR": tempfile.mkdtemp(prefix="ddpui-bench-concurrency-")}
    env.pop("DATABASE_URL", None)
    if args.postgres:
        env["DATABASE_URL"] = args.postgres.rsplit("/", 1)[0] + "/ddpui_bench"
        env["DDPUI_TEST_PG_DSN"] = args.postgres
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", *TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    print(f"machine: {machine()}; load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"Django database: {'PostgreSQL' if args.postgres else 'SQLite (WAL, IMMEDIATE, busy timeout)'}")
    print(f"Prefect server database: {'PostgreSQL' if args.postgres else 'SQLite'}; proxy: in the test process")
    for line in result.stdout.splitlines():
        line = line.lstrip(".")
        if line.startswith(PREFIXES):
            print(line)
    summary = [line for line in result.stdout.splitlines() if " passed" in line or " failed" in line]
    print(summary[-1] if summary else result.stdout[-2000:] + result.stderr[-2000:])
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
