"""Run the Airbyte emulator (a test double) from the command line.

    python -m devtools.airbyte_emulator --host 127.0.0.1 --port 8001 \\
        [--username airbyte --password password] [--no-auth] [--state-file PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys

from .server import EmulatorServer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.airbyte_emulator",
        description="Airbyte config API test double (never use in production).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port (default 8001, 0 = any)")
    parser.add_argument("--username", default="airbyte", help="basic auth user (default airbyte)")
    parser.add_argument("--password", default="password", help="basic auth password (default password)")
    parser.add_argument("--no-auth", action="store_true", help="accept requests without credentials")
    parser.add_argument(
        "--state-file", default=None, help="JSON file to load state from and save it to after each change"
    )
    parser.add_argument(
        "--sync-seconds", type=float, default=None, help="minimum duration of the running phase of a job (default 0.5)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    srv = EmulatorServer(
        host=args.host,
        port=args.port,
        username=None if args.no_auth else args.username,
        password=args.password,
        state_file=args.state_file,
        verbose=args.verbose,
    )
    if args.sync_seconds is not None:
        srv.configure(sync_seconds=args.sync_seconds)

    def _terminate(signum, frame):  # turn SIGTERM into a clean shutdown
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    logging.getLogger("devtools.airbyte_emulator").info(
        "Airbyte emulator (TEST DOUBLE) starting; state file: %s", args.state_file or "none (memory only)"
    )
    with contextlib.suppress(KeyboardInterrupt):
        srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
