"""Warm start: flow runs that begin in a tenth of a second instead of seconds.

A process worker starts every flow run as a new `python -m prefect.engine`, which spends seconds importing
Prefect before the flow's first task can start. A *warm server* next to the worker imports all of that once
and forks a ready interpreter for each run; the work pool's command becomes a tiny *launcher* that asks
the warm server for such a fork and stands in for it towards the worker:

    python -m ddpui.flows.warm_start serve                # next to each worker (same user, same environment)
    python -m ddpui.flows.warm_start configure-pool ddpui # once: the pool's command becomes the launcher

- The launcher (`... warm_start launch`, the pool's command) sends the warm server its environment, working
  directory, arguments and standard input/output/error (file descriptors over a Unix socket). The server
  forks a supervisor, which forks the engine; the engine takes over those descriptors, environment and
  directory, and runs `prefect.engine` as `python -m prefect.engine` would.
- Signals the worker sends the launcher (SIGTERM when a run is cancelled) are forwarded to the engine; the
  launcher exits with the engine's exit status; if the launcher is killed, the engine is killed.
- Whenever the warm path is not certain to behave like a cold start — no warm server, another Python, a
  different `PREFECT_*` setting or `PYTHONPATH` than the server was started with — the launcher becomes
  `python -m prefect.engine` itself (exec), exactly the default.
- The server imports Prefect and the libraries the flows use, never the project's own modules: those are
  loaded by each run from the deployment's directory, as in a cold start.

Only the standard library is imported at module level: the launcher must start in milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import socket
import struct
import sys
from pathlib import Path

SOCKET_ENV = "DDPUI_WARM_START_SOCKET"
_SOCKET_NAME = "ddpui-warm-start.sock"
_HEADER = struct.Struct("!I")
_STATUS = struct.Struct("!i")
_FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# how long a launcher and the server wait for each other before the run starts cold / the request is dropped
_HANDSHAKE_SECONDS = 10
# what the server imports before forking: Prefect's engine and the libraries the flows use
_PRELOAD = (
    "prefect",
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.flows",
    "prefect.tasks",
    "prefect.futures",
    "prefect.task_runners",
    "prefect.artifacts",
    "prefect.blocks.system",
    "prefect.client.orchestration",
    "prefect.deployments.steps",
    "prefect.runner",
    "prefect._internal.control_listener",
    "prefect_shell",
    "airbyte_prefect.server",
    "airbyte_prefect.connections",
    "httpx",
    "pydantic",
)
# environment variables a run may have that the server did not: set per run, read at run time
_PER_RUN_PREFIXES = ("PREFECT__",)
# settings of other Prefect components, which a flow run does not read
_IGNORED_PREFIXES = ("PREFECT_WORKER_", "PREFECT_SERVER_", "PREFECT_UI_")

logger = logging.getLogger("ddpui.warm_start")


def socket_path() -> str:
    configured = os.environ.get(SOCKET_ENV)
    if configured:
        return configured
    home = os.environ.get("PREFECT_HOME") or os.path.join(os.path.expanduser("~"), ".prefect")
    return os.path.join(home, _SOCKET_NAME)


def launcher_command() -> str:
    """The work pool command that starts flow runs through the warm server."""
    return f"{sys.executable} -m ddpui.flows.warm_start launch"


def _fingerprint(env: dict[str, str]) -> dict[str, str]:
    """What must be equal between the server's environment and a run's for a fork to act as a cold start."""
    kept = {
        key: value
        for key, value in env.items()
        if key.startswith("PREFECT_") and not key.startswith(_PER_RUN_PREFIXES + _IGNORED_PREFIXES)
    }
    kept["PYTHONPATH"] = env.get("PYTHONPATH", "")
    return kept


def _mismatch(server_env: dict[str, str], run_env: dict[str, str], executable: str) -> str | None:
    """Why a run cannot start warm, or None."""
    if executable != sys.executable:
        return f"the run's Python is {executable}, the warm server's {sys.executable}"
    ours, theirs = _fingerprint(server_env), _fingerprint(run_env)
    differing = sorted(key for key in set(ours) | set(theirs) if ours.get(key) != theirs.get(key))
    if differing:
        return f"environment differs from the warm server's: {', '.join(differing)}"
    return None


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        data.extend(chunk)
    return bytes(data)


# ------------------------------------------------------------------------------------------ launcher


def _cold_start(args: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *args])


def launch(args: list[str]) -> None:
    """The work pool's command: run this flow run in a fork of the warm server, or start cold."""
    path = socket_path()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(_HANDSHAKE_SECONDS)  # a wedged warm server must not hold the run back
    try:
        conn.connect(path)
        request = json.dumps(
            {"args": args, "cwd": os.getcwd(), "env": dict(os.environ), "executable": sys.executable}
        ).encode()
        socket.send_fds(conn, [_HEADER.pack(len(request))], [0, 1, 2])
        conn.sendall(request)
        answer = _recv_exactly(conn, 1)
    except (OSError, ConnectionError):
        conn.close()
        _cold_start(args)
        return
    if answer != b"+":  # the server says this run must start cold
        conn.close()
        _cold_start(args)
        return
    conn.settimeout(None)  # the run may take hours

    def forward(signum, _frame) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(bytes([signum]))

    for signum in _FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    try:
        (status,) = _STATUS.unpack(_recv_exactly(conn, _STATUS.size))
    except (OSError, ConnectionError):
        status = 1  # the supervisor died: the run's state says what happened
    if status < 0:  # the engine was killed by a signal: end the same way
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    os._exit(status)


# ------------------------------------------------------------------------------------------ server


def _preload() -> None:
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in _PRELOAD:
            importlib.import_module(name)


def _become_engine(request: dict, fds: list[int]) -> None:
    """In the forked engine process: take over the launcher's stdio, environment and directory, run the engine."""
    os.setsid()
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGPIPE else signal.SIG_IGN)  # as Python starts
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = [sys.executable, *request["args"]]
    sys.path[0] = request["cwd"]  # as `python -m` sets it
    import runpy

    runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


def _supervise(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked supervisor: fork the engine, forward the launcher's signals, report the exit status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for signum in _FORWARDED_SIGNALS:  # it only relays them: it ends when the engine or the launcher does
        signal.signal(signum, signal.SIG_IGN)
    engine = os.fork()
    if engine == 0:
        conn.close()
        try:
            _become_engine(request, fds)
        except SystemExit:
            raise
        except BaseException:
            logger.exception("the warm engine failed")
            raise SystemExit(1) from None
        raise SystemExit(0)
    for fd in fds:
        os.close(fd)
    conn.sendall(b"+")
    while True:
        readable, _, _ = select.select([conn], [], [], 0.2)
        if readable:
            data = conn.recv(16)
            if not data:  # the launcher is gone (killed): so must the engine be
                with contextlib.suppress(ProcessLookupError):
                    os.kill(engine, signal.SIGKILL)
            for signum in data:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(engine, signum)
        done, status = os.waitpid(engine, os.WNOHANG)
        if done:
            with contextlib.suppress(OSError):
                conn.sendall(_STATUS.pack(os.waitstatus_to_exitcode(status)))
            os._exit(0)


def serve(path: str) -> None:
    """Preload, then fork a supervised engine for every launcher that connects; runs until SIGTERM."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    _preload()
    import threading

    if threading.active_count() != 1:  # forking a process with other threads could copy a held lock
        raise SystemExit(f"preloading started threads ({threading.enumerate()}): the warm server cannot fork safely")
    server_env = dict(os.environ)
    server_pid = os.getpid()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)  # the runs get this user's environment: only this user may ask for one
    listener.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped automatically
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    logger.info("warm server ready on %s (pid %s)", path, server_pid)
    try:
        while True:
            conn, _ = listener.accept()
            conn.settimeout(_HANDSHAKE_SECONDS)
            fds: list[int] = []
            try:
                header, fds, _flags, _address = socket.recv_fds(conn, _HEADER.size, 3)
                if len(header) < _HEADER.size:
                    header += _recv_exactly(conn, _HEADER.size - len(header))
                (size,) = _HEADER.unpack(header)
                request = json.loads(_recv_exactly(conn, size))
                reason = _mismatch(server_env, request["env"], request["executable"])
                if reason or len(fds) != 3:
                    logger.info("cold start: %s", reason or "the launcher sent no standard streams")
                    conn.sendall(b"-")
                    continue
                if os.fork() == 0:
                    supervisor_pid = os.getpid()
                    listener.close()
                    conn.settimeout(None)
                    try:
                        _supervise(conn, request, fds)
                    except BaseException:
                        if os.getpid() == supervisor_pid:  # the supervisor never returns into the server's loop
                            os._exit(1)
                        raise  # the engine's exit (SystemExit): the interpreter ends as after a cold run
                    return
                logger.info("started flow run %s warm", request["env"].get("PREFECT__FLOW_RUN_ID"))
            except (OSError, ConnectionError, ValueError, KeyError) as error:
                logger.warning("could not start a run warm: %s", error)
            finally:
                if os.getpid() == server_pid:
                    conn.close()
                    for fd in fds:
                        os.close(fd)
    finally:
        if os.getpid() == server_pid:
            listener.close()
            Path(path).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ work pool


def configure_pool(pool: str, command: str | None) -> None:
    """Make the launcher the default command of the process work pool `pool` (None: Prefect's default)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate

    with get_client(sync_client=True) as client:
        work_pool = client.read_work_pool(pool)
        if work_pool.type != "process":
            raise SystemExit(f"work pool {pool} is of type {work_pool.type}: the warm start is for process pools")
        template = work_pool.base_job_template
        if not template.get("variables"):  # a pool made through the API without one: Prefect's default
            from prefect.workers.process import ProcessWorker

            template = ProcessWorker.get_default_base_job_template()
        command_variable = template["variables"]["properties"]["command"]
        if command is None:
            command_variable.pop("default", None)
        else:
            command_variable["default"] = command
        client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["launch"]:  # the hot path: no argparse
        launch(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m ddpui.flows.warm_start", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the warm server next to a worker")
    serve_parser.add_argument("--socket", default=None, help=f"default: ${SOCKET_ENV} or $PREFECT_HOME/{_SOCKET_NAME}")
    pool_parser = commands.add_parser("configure-pool", help="make the launcher the work pool's command")
    pool_parser.add_argument("pool")
    pool_parser.add_argument("--reset", action="store_true", help="back to Prefect's default command")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.socket or socket_path())
    else:
        configure_pool(args.pool, None if args.reset else launcher_command())
        print(f"work pool {args.pool}: command = {'(Prefect default)' if args.reset else launcher_command()}")


if __name__ == "__main__":
    main()
