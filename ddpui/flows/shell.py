"""Shell tasks: commands in one bash script; `git pull` pointed at the URL held in a Secret block."""

from __future__ import annotations

import shlex

from prefect.blocks.system import Secret
from prefect_shell import ShellOperation

from ddpcontract.tasks import GIT_PULL_SECRET_ENV_KEY
from ddpui.flows.attempts import Deadline, TaskFailed, output_tail, run_process
from ddpui.flows.redaction import redact, register_url_secret

GIT_PULL_URL_ENV_VAR = "DDPUI_GIT_PULL_URL"


def git_pull_command(command: str) -> str:
    """Point a `git pull` command at the URL held in the environment variable instead of a named remote.

    `git pull [options]` pulls the current branch's namesake from the URL; `git pull [options] REMOTE
    [REFSPEC...]` keeps its refspecs and swaps the remote for the URL. Other commands are unchanged.
    """
    words = shlex.split(command)
    if words[:2] != ["git", "pull"] or any(char in command for char in ";&|<>`$()"):
        return command  # not a plain `git pull ...`: shell syntax is left alone
    options = [shlex.quote(word) for word in words[2:] if word.startswith("-")]
    positionals = [shlex.quote(word) for word in words[2:] if not word.startswith("-")]
    refspecs = positionals[1:] or ['"$(git rev-parse --abbrev-ref HEAD)"']
    return " ".join(["git", "pull", *options, f'"${GIT_PULL_URL_ENV_VAR}"', *refspecs])


def _shell_env(env: dict | None) -> tuple[dict[str, str], str | None]:
    """The environment for bash (values as strings) and the name of the git-pull Secret block, if any."""
    env = {str(key): str(value) for key, value in (env or {}).items()}
    secret_block = env.pop(GIT_PULL_SECRET_ENV_KEY, None)
    return env, secret_block


def build_shell_operation(commands: list[str], working_dir: str | None, env: dict | None) -> ShellOperation:
    env, secret_block = _shell_env(env)
    if secret_block:
        url = Secret.load(secret_block).get()
        if not isinstance(url, str) or not url:
            raise TaskFailed(f"Secret block {secret_block!r} does not hold a git URL", permanent=True)
        register_url_secret(url)
        env[GIT_PULL_URL_ENV_VAR] = url
        env.setdefault("GIT_TERMINAL_PROMPT", "0")  # a wrong token must fail, not wait for a password
        commands = [git_pull_command(command) for command in commands]
    # stop at the first failing command, and keep stderr in the output so failures can be explained
    script = ["set -e", "exec 2>&1", *commands]
    return ShellOperation(commands=script, working_dir=working_dir, env=env)


def run_shell(operation: ShellOperation, deadline: Deadline) -> dict:
    return_code, output = run_process(operation, deadline, "shell commands")
    output = redact(output)
    if return_code != 0:
        raise TaskFailed(f"exit code {return_code}: {output_tail(output)}")
    last_lines = output_tail(output).splitlines()
    return {"message": last_lines[-1].strip() if last_lines else "ok"}
