#!/usr/bin/env bash
# The main command: sets everything up on embedded defaults and runs the service.
# Today: Django (SQLite, or DATABASE_URL) with the admin and the v1 API on 127.0.0.1, and a demo
# org + admin login created idempotently. Ctrl-C stops it; running it again is safe.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup_venv.sh

port="${DDPUI_PORT:-8000}"
email="${DDPUI_DEMO_EMAIL:-admin@example.org}"
password="${DDPUI_DEMO_PASSWORD:-ddpui-demo-password}"
py=.venv/bin/python

echo "[run] applying database migrations"
$py manage.py migrate --noinput | grep -vE "^\s+Applying|^Operations to perform|^\s+Apply all" || true
$py manage.py createorganduser --org "Demo Org" --email "$email" --password "$password" --role account-manager --staff

cat <<TXT

  ddpui is starting on http://127.0.0.1:$port
    admin     http://127.0.0.1:$port/admin/   (login: $email / $password)
    API docs  http://127.0.0.1:$port/api/docs
  Ctrl-C stops it.

TXT
exec $py manage.py runserver "127.0.0.1:$port" --noreload
