#!/usr/bin/env bash
# The test command: installs what it needs, then runs the whole suite on SQLite, then again on PostgreSQL
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
cleanup() { bash scripts/postgres.sh stop "$pgdir" >/dev/null 2>&1 || true; rm -rf "$pgdir"; }
trap cleanup EXIT

echo "[test] starting PostgreSQL on 127.0.0.1:$pgport"
dsn="$(bash scripts/postgres.sh start "$pgdir" "$pgport")" || { echo "[test] PostgreSQL could not be started: failing" >&2; exit 1; }
export DDPUI_TEST_PG_DSN="$dsn"
export DDPUI_DATA_DIR="$(mktemp -d /tmp/ddpui-test-data.XXXXXX)"

started=$SECONDS
echo "[test] === suite on SQLite ==="
env -u DATABASE_URL .venv/bin/python -m pytest -p no:cacheprovider "$@"

echo "[test] === the database's tests on PostgreSQL (Django and the Prefect server) ==="
DATABASE_URL="${dsn%/postgres}/ddpui" .venv/bin/python -m pytest -p no:cacheprovider --database-tests-only "$@"
echo "[test] both runs passed in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
