"""The org's dbt repository on the worker that runs a git or dbt task: one copy per org and target in a worker-local
cache, made by the flow run itself (docs/flows.md#repository). No worker needs Django's disk.

A task whose config has `repository` runs in `<cache>/<org slug>/<target>/dbtrepo`:

- a missing copy is cloned from the git URL held in the Secret block `git_url_block` (the URL, token included, is
  registered for redaction and never written to disk: the clone's `origin` is the URL without credentials), at
  the tracked branch;
- an existing copy is brought to the branch's tip once per flow run (fetch + hard reset), so a run reads the same
  revision whichever worker runs it; a copy cloned from another repository (the workspace moved) is replaced;
- when the project declares packages (packages.yml / dependencies.yml), `dbt deps` installs them into the copy
  if they are missing or their declaration changed since the last install.

Each copy has a file lock beside it: updates (the steps above, a `git pull`) hold it exclusively, a dbt command
holds it shared. So two flow runs on one worker never update a copy at once, and no update changes the files a
running dbt command reads. Targets never share a copy: a `git pull` for dev cannot change what a prod `dbt run`
reads.

The cache is `DDPUI_WORKER_CACHE_DIR`, by default `ddpui-worker-cache` in the worker's Prefect home
(`PREFECT_HOME`, else `~/.prefect`): each worker of the production layout has its own.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from prefect import get_run_logger
from prefect.blocks.system import Secret
from prefect.context import FlowRunContext, TaskRunContext

from ddpcontract.tasks import DbtTaskConfig, RepositoryConfig, ShellTaskConfig
from ddpui.flows import control
from ddpui.flows.attempts import Deadline, TaskCancelled, TaskFailed, TaskTimedOut, kill_process_group, output_tail
from ddpui.flows.redaction import redact, register_url_secret

CACHE_DIR_ENV = "DDPUI_WORKER_CACHE_DIR"
COPY_DIR_NAME = "dbtrepo"
PACKAGE_FILES = ("packages.yml", "dependencies.yml")
_PACKAGES_PATH = re.compile(r"^packages-install-path:\s*[\"']?([^\"'\s#]+)", re.MULTILINE)
_LOCK_POLL_SECONDS = 0.2
# an update of a copy that has no deadline of its own gives up after this long
_GIT_TIMEOUT_SECONDS = 600
_INTERPRETER_BIN = str(Path(sys.executable).parent)


def cache_root() -> Path:
    """Where this worker keeps its copies."""
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    home = os.environ.get("PREFECT_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".prefect")
    return (Path(home).expanduser() / "ddpui-worker-cache").resolve()


def copy_home(repository: RepositoryConfig) -> Path:
    """The directory of one org's copy for one target: the clone, its lock and its packages marker."""
    return cache_root() / repository.org_slug / repository.target


def plain_url(url: str) -> str:
    """The git URL without credentials (what the copy's `origin` is set to)."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def packages_digest(project: Path) -> str | None:
    """A digest of the project's package declarations, or None when it declares none."""
    files = [project / name for name in PACKAGE_FILES if (project / name).is_file()]
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def packages_dir(project: Path) -> Path:
    """Where dbt installs the project's packages (`packages-install-path`, dbt_packages by default)."""
    try:
        found = _PACKAGES_PATH.search((project / "dbt_project.yml").read_text())
    except OSError:
        found = None
    return project / (found.group(1) if found else "dbt_packages")


def packages_needed(project: Path, installed_digest: str | None) -> str | None:
    """The digest to record after `dbt deps` when the project's packages must be installed: it declares some,
    and they are not installed or were installed for other declarations. None when nothing is to do."""
    digest = packages_digest(project)
    if digest is None:
        return None
    if installed_digest == digest and packages_dir(project).is_dir():
        return None
    return digest


class _CopyLock:
    """The file lock of one copy: exclusive for updates, shared while a dbt command reads the copy. Waits end with
    the task's deadline or the run's cancellation."""

    def __init__(self, path: Path, deadline: Deadline):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.deadline = deadline
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def take(self, mode: int) -> None:
        waited = False
        while True:
            try:
                fcntl.flock(self.fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if not waited:
                get_run_logger().info("waiting for another run using the repository copy %s", self.path.parent)
                waited = True
            remaining = self.deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise TaskTimedOut(f"timed out after {self.deadline.seconds:g} seconds waiting for the repository copy")
            if control.current().wait(_LOCK_POLL_SECONDS):
                raise TaskCancelled()

    def close(self) -> None:
        os.close(self.fd)  # releases the lock


def _run_id() -> str | None:
    task_context = TaskRunContext.get()
    if task_context is not None:
        return str(task_context.task_run.flow_run_id)
    flow_context = FlowRunContext.get()
    return str(flow_context.flow_run.id) if flow_context and flow_context.flow_run else None


# the copies this process has brought up to date, per flow run: each is updated once per run
_refreshed: dict[str | None, set[Path]] = {}
_refreshed_lock = threading.Lock()


def _command(args: list[str], *, cwd: Path, deadline: Deadline, env: dict[str, str], what: str) -> str:
    """Runs a command in a session of its own (stopped with the run, killed at the deadline); its output, redacted.
    A non-zero exit fails the task with the output's last lines."""
    remaining = deadline.remaining()
    timeout = _GIT_TIMEOUT_SECONDS if remaining is None else remaining
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    with control.current().on_stop(lambda: kill_process_group(process.pid)):
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_process_group(process.pid)
            process.communicate()
            raise TaskTimedOut(f"{what} did not finish within {timeout:g} seconds") from None
    if control.current().stopping:
        raise TaskCancelled(f"{what} stopped: the flow run was cancelled")
    output = redact(output or "")
    if process.returncode != 0:
        raise TaskFailed(f"{what} failed (exit code {process.returncode}): {output_tail(output.splitlines())}")
    return output


def _git_env() -> dict[str, str]:
    # a wrong token must fail, never wait for a password nobody types
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0"}


def _pull_url(repository: RepositoryConfig) -> str:
    url = Secret.load(repository.git_url_block).get()
    if not isinstance(url, str) or not url.strip():
        raise TaskFailed(f"Secret block {repository.git_url_block!r} does not hold a git URL", permanent=True)
    url = url.strip()
    register_url_secret(url)
    return url


def _origin(copy: Path) -> str | None:
    if not (copy / ".git").exists():
        return None
    done = subprocess.run(
        ["git", "remote", "get-url", "origin"], cwd=copy, env=_git_env(), capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip() if done.returncode == 0 else None


def _clone(repository: RepositoryConfig, url: str, home: Path, deadline: Deadline) -> Path:
    """A fresh clone beside the copy's place, moved there once complete (a half-made clone is never the copy)."""
    copy = home / COPY_DIR_NAME
    staging = home / f".clone-{uuid.uuid4().hex[:12]}"
    branch = ["--branch", repository.branch] if repository.branch else []
    for leftover in home.glob(".clone-*"):  # of a run killed while cloning
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        _command(
            ["git", "clone", "--quiet", *branch, "--", url, str(staging)],
            cwd=home,
            deadline=deadline,
            env=_git_env(),
            what="cloning the org's repository",
        )
        _command(
            ["git", "remote", "set-url", "origin", plain_url(url)],
            cwd=staging,
            deadline=deadline,
            env=_git_env(),
            what="setting the copy's origin",
        )
        shutil.rmtree(copy, ignore_errors=True)
        staging.rename(copy)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return copy


def _bring_to_tip(repository: RepositoryConfig, url: str, copy: Path, deadline: Deadline) -> None:
    # a git command killed in this copy (a cancelled run) leaves its lock file: nobody else works here now
    (copy / ".git" / "index.lock").unlink(missing_ok=True)
    ref = f"refs/heads/{repository.branch}" if repository.branch else "HEAD"
    _command(["git", "fetch", "--quiet", "--", url, ref], cwd=copy, deadline=deadline, env=_git_env(), what="git fetch")
    if repository.branch:
        switch = ["git", "checkout", "--quiet", "--force", "-B", repository.branch, "FETCH_HEAD"]
    else:
        switch = ["git", "reset", "--quiet", "--hard", "FETCH_HEAD"]
    _command(switch, cwd=copy, deadline=deadline, env=_git_env(), what="updating the repository copy")


def _install_packages(home: Path, copy: Path, deadline: Deadline) -> None:
    marker = home / "packages.sha256"
    installed = marker.read_text().strip() if marker.is_file() else None
    digest = packages_needed(copy, installed)
    if digest is None:
        return
    get_run_logger().info("installing the dbt packages of the repository copy (dbt deps)")
    env = {
        **os.environ,
        "PATH": f"{_INTERPRETER_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_USE_COLORS": "false",
    }
    _command(["dbt", "deps"], cwd=copy, deadline=deadline, env=env, what="dbt deps")
    marker.write_text(digest)


def _update_or_clone(repository: RepositoryConfig, home: Path, copy: Path, deadline: Deadline) -> None:
    url = _pull_url(repository)
    if _origin(copy) == plain_url(url):
        try:
            _bring_to_tip(repository, url, copy, deadline)
            return
        except (TaskCancelled, TaskTimedOut):
            raise
        except TaskFailed as error:  # a broken copy (e.g. a run killed in the middle of an update)
            get_run_logger().warning("the repository copy could not be updated (%s): cloning it again", error)
    get_run_logger().info(
        "cloning the org's repository (%s) into %s",
        f"branch {repository.branch}" if repository.branch else "its default branch",
        copy,
    )
    _clone(repository, url, home, deadline)


def materialise(repository: RepositoryConfig, deadline: Deadline) -> Path:
    """The copy for the task, cloned or brought to the branch's tip (once per flow run), its packages installed.
    The caller holds the copy's lock exclusively."""
    home = copy_home(repository)
    copy = home / COPY_DIR_NAME
    run_id = _run_id()
    with _refreshed_lock:
        updated = copy in _refreshed.get(run_id, set())
    if not updated:
        _update_or_clone(repository, home, copy, deadline)
        with _refreshed_lock:
            _refreshed.setdefault(run_id, set()).add(copy)
    _install_packages(home, copy, deadline)
    return copy


@contextmanager
def shell_directory(config: ShellTaskConfig, deadline: Deadline) -> Iterator[str | None]:
    """The directory a shell task (git pull) runs in: the worker's copy for its target, held exclusively while the
    commands run; without `repository`, the task's working_dir."""
    if config.repository is None:
        yield config.working_dir
        return
    lock = _CopyLock(copy_home(config.repository) / ".lock", deadline)
    try:
        lock.take(fcntl.LOCK_EX)
        yield str(materialise(config.repository, deadline))
    finally:
        lock.close()


@contextmanager
def dbt_project(config: DbtTaskConfig, deadline: Deadline) -> Iterator[str]:
    """The dbt project a dbt task runs: the worker's copy for its target, made ready under the exclusive lock and
    read under the shared one while the commands run; without `repository`, the task's project_dir."""
    if config.repository is None:
        yield config.project_dir
        return
    lock = _CopyLock(copy_home(config.repository) / ".lock", deadline)
    try:
        lock.take(fcntl.LOCK_EX)
        copy = materialise(config.repository, deadline)
        lock.take(fcntl.LOCK_SH)  # a reader from now on: other dbt commands may share the copy
        yield str(copy)
    finally:
        lock.close()
