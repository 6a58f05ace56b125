#!/usr/bin/env bash
# Installs PostgreSQL from Debian's packages if needed and starts/stops a throwaway cluster on 127.0.0.1.
#   scripts/postgres.sh start DIR PORT   -> prints the DSN of the "postgres" superuser (password "postgres")
#   scripts/postgres.sh stop DIR
set -euo pipefail
cmd="${1:?usage: postgres.sh start|stop DIR [PORT]}"
dir="${2:?data directory required}"
port="${3:-54329}"

pg_bin() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  echo "$d"
}

ensure_installed() {
  if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/pg_ctl" ]; then
    echo "[postgres] installing postgresql from Debian packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
  fi
  [ -x "$(pg_bin)/pg_ctl" ] || { echo "[postgres] pg_ctl not found after install" >&2; exit 1; }
}

case "$cmd" in
  start)
    ensure_installed
    bin="$(pg_bin)"
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      pwfile="$(mktemp)"; echo postgres > "$pwfile"; chown postgres "$pwfile"
      su postgres -c "$bin/initdb -D '$dir' -U postgres --pwfile='$pwfile' --auth-local=trust --auth-host=md5" >/dev/null
      rm -f "$pwfile"
    fi
    su postgres -c "$bin/pg_ctl -D '$dir' -l '$dir/server.log' -o \"-c listen_addresses=127.0.0.1 -p $port -k '$dir' -c max_connections=200 -c fsync=off\" -w start" >&2
    echo "postgresql://postgres:postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    bin="$(pg_bin)"
    [ -f "$dir/postmaster.pid" ] && su postgres -c "$bin/pg_ctl -D '$dir' -m fast -w stop" >&2 || true
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
