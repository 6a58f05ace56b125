#!/usr/bin/env bash
# The test command: installs what it needs, then runs the whole suite on SQLite and, beside it, on PostgreSQL
# (installed from Debian's packages and started on 127.0.0.1 by scripts/postgres.sh) every test whose outcome
# can depend on Django's database (--database-tests-only, chosen at collection in tests/conftest.py).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/ddpui -x`.
# `bash scripts/test.sh --fast [pytest args]`: the fast tier only — every test that needs no Prefect server
# (chosen at collection from each test's fixtures, tests/conftest.py) and is not marked slow, on SQLite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup_venv.sh

if [ "${1:-}" = "--fast" ]; then
  shift
  export DDPUI_DATA_DIR="$(mktemp -d /tmp/ddpui-test-data.XXXXXX)"
  trap 'rm -rf "$DDPUI_DATA_DIR"' EXIT
  echo "[test] === fast tier on SQLite (no Prefect server) ==="
  env -u DATABASE_URL -u DDPUI_TEST_PG_DSN .venv/bin/python -m pytest -p no:cacheprovider --fast "$@"
  exit 0
fi

# the browser tests (tests/e2e) drive Debian's Chromium; Playwright never downloads a browser here
if [ ! -x /usr/bin/chromium ]; then
  echo "[test] installing chromium from Debian packages (for the browser tests)"
  aptlog="$(mktemp /tmp/ddpui-apt-chromium.XXXXXX.log)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$aptlog" 2>&1; then
    tail -n 20 "$aptlog" >&2
    echo "[test] chromium could not be installed (see $aptlog): failing" >&2
    exit 1
  fi
  rm -f "$aptlog"
fi

pgdir="$(mktemp -d /tmp/ddpui-test-pg.XXXXXX)"
pgport="${DDPUI_TEST_PG_PORT:-54329}"
work="$(mktemp -d /tmp/ddpui-test-passes.XXXXXX)"
pg_pass=""
cleanup() {
  # the PostgreSQL pass runs in a process group of its own: stop all of it if this script is stopped early
  [ -n "$pg_pass" ] && kill -- -"$pg_pass" 2>/dev/null || true
  bash scripts/postgres.sh stop "$pgdir" >/dev/null 2>&1 || true
  rm -rf "$pgdir" "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

echo "[test] starting PostgreSQL on 127.0.0.1:$pgport"
dsn="$(bash scripts/postgres.sh start "$pgdir" "$pgport")" || { echo "[test] PostgreSQL could not be started: failing" >&2; exit 1; }
export DDPUI_TEST_PG_DSN="$dsn"

# The two passes run side by side (most of a test's time is spent waiting on Prefect, workers, dbt and
# browsers, so two of them share 2 cores well): each its own Prefect server, data directory and pytest
# directory; the PostgreSQL pass's output is kept and printed after the SQLite pass's.
started=$SECONDS
mkdir -p "$work/sqlite-data" "$work/pg-data"
echo "[test] === the database's tests on PostgreSQL (Django and the Prefect server) start beside the SQLite pass; their output follows it ==="
DATABASE_URL="${dsn%/postgres}/ddpui" DDPUI_DATA_DIR="$work/pg-data" setsid .venv/bin/python -m pytest \
  -p no:cacheprovider --durations=15 --basetemp "$work/pg-tmp" --database-tests-only "$@" >"$work/pg.log" 2>&1 &
pg_pass=$!

echo "[test] === suite on SQLite ==="
set +e
env -u DATABASE_URL DDPUI_DATA_DIR="$work/sqlite-data" .venv/bin/python -m pytest \
  -p no:cacheprovider --durations=15 --basetemp "$work/sqlite-tmp" "$@"
sqlite_status=$?
echo "[test] SQLite pass ended (exit $sqlite_status) after $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
wait "$pg_pass"
pg_status=$?
pg_pass=""
if [ "$pg_status" -eq 5 ]; then
  pg_status=0  # pytest's "no tests collected": none of the tests asked for reaches Django's database
fi
set -e
echo "[test] === the database's tests on PostgreSQL (Django and the Prefect server) ==="
cat "$work/pg.log"
echo "[test] PostgreSQL pass ended (exit $pg_status); both after $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
if [ "$sqlite_status" -ne 0 ] || [ "$pg_status" -ne 0 ]; then
  echo "[test] FAILED: SQLite pass exit $sqlite_status, PostgreSQL pass exit $pg_status" >&2
  exit 1
fi
echo "[test] both runs passed"
