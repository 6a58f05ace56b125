"""Two workers, each with its own disk, running the same org's tasks at different times (issue 20 item 2).

Each "worker" here is a worker-local cache directory (DDPUI_WORKER_CACHE_DIR) and its flow run a real one, run in
this process against the session's Prefect server; the copy is made as a `git pull` task makes it
(`workspace.shell_directory`), from the git URL in a real Secret block. Between the runs the org pushes to its
repository, once rewriting the branch's history: whichever worker runs next, and however stale its copy, it runs
the branch's tip.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from prefect import flow
from prefect.blocks.system import Secret
from prefect.logging.handlers import APILogHandler

from ddpcontract.tasks import ShellTaskConfig, TaskType
from ddpui.flows import workspace
from ddpui.flows.attempts import Deadline
from tests.support.orgsetup import _git

pytestmark = [pytest.mark.prefect]


@flow(name="ddpui-test-materialise", persist_result=False)
def materialise_on_this_worker(repository: dict) -> str:
    """What a `git pull` task does before its commands: the worker's copy for the target, under its lock."""
    config = ShellTaskConfig(type=TaskType.SHELL_OPERATION, slug="git-pull", commands=["true"], repository=repository)
    with workspace.shell_directory(config, Deadline(120)) as directory:
        return directory


def _commit(author: Path, files: dict[str, str | None], message: str) -> str:
    for name, text in files.items():
        if text is None:
            (author / name).unlink()
        else:
            (author / name).write_text(text)
    _git("add", "-A", cwd=author)
    _git("commit", "-q", "-m", message, cwd=author)
    return _head(author)


def _head(copy: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=copy, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_two_workers_each_run_the_branch_tip_whatever_their_copy_saw_last(prefect_server, tmp_path, monkeypatch):
    bare, author = tmp_path / "org.git", tmp_path / "author"
    author.mkdir()
    _git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    _git("init", "-q", "-b", "main", cwd=author)
    first = _commit(author, {"model_a.sql": "select 1\n", "old_model.sql": "select 0\n"}, "first")
    _git("push", "-q", str(bare), "main", cwd=author)
    block = f"test-git-url-{uuid.uuid4().hex[:8]}"
    Secret(value=bare.as_uri()).save(block, overwrite=True)
    repository = {"git_url_block": block, "branch": "main", "org_slug": "org-two-workers", "target": "default"}

    def run_on(worker: str) -> Path:
        monkeypatch.setenv(workspace.CACHE_DIR_ENV, str(tmp_path / worker))
        copy = Path(materialise_on_this_worker(repository))
        assert copy.is_relative_to(tmp_path / worker)  # its own disk, nobody else's
        return copy

    copy_1 = run_on("worker-1")
    assert _head(copy_1) == first

    second = _commit(author, {"model_b.sql": "select 2\n"}, "second")
    _git("push", "-q", str(bare), "main", cwd=author)
    copy_2 = run_on("worker-2")  # never saw the org: clones
    assert _head(copy_2) == second
    assert _head(copy_1) == first  # worker 1's copy is not touched by worker 2's run

    # the branch's history is rewritten (amend + force push): worker 1's copy is two steps behind and diverged
    _git("reset", "-q", "--hard", first, cwd=author)
    rewritten = _commit(author, {"old_model.sql": None, "model_c.sql": "select 3\n"}, "rewritten")
    _git("push", "-q", "--force", str(bare), "main", cwd=author)
    assert run_on("worker-1") == copy_1
    assert _head(copy_1) == rewritten
    assert sorted(path.name for path in copy_1.glob("*.sql")) == ["model_a.sql", "model_c.sql"]

    # and worker 2 follows the same tip on its next run, dropping the commit that is no longer on the branch
    assert run_on("worker-2") == copy_2
    assert _head(copy_2) == rewritten
    assert sorted(path.name for path in copy_2.glob("*.sql")) == ["model_a.sql", "model_c.sql"]
    assert (
        "@"
        not in subprocess.run(
            ["git", "remote", "get-url", "origin"], cwd=copy_2, check=True, capture_output=True, text=True
        ).stdout
    )
    APILogHandler().flush()  # this process's flow runs' log lines, sent while the session's server is up
