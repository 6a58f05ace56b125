#!/usr/bin/env bash
# The main command: installs what is missing, then runs the local demo (devtools/demo.py): the Prefect
# server, a worker, the proxy, Django and the Airbyte emulator on 127.0.0.1, a demo org set up through the
# API, and one pipeline run followed to its end. State lives in var/demo. Ctrl-C stops everything it
# started; running it again is safe. Extra arguments go to the demo (`bash scripts/run.sh --help`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup_venv.sh
exec .venv/bin/python -m devtools.demo "$@"
