"""Secret scan of a migration run: after the legacy block-to-task migration, no secret value is anywhere it could
be read back.

What is built: a legacy (block-based) installation of one org (devtools/legacy_install) whose secrets are
distinctive values made for this test — the warehouse password (in the legacy DbtCliProfile block and the
warehouse credentials Secret), the git token (in the URL the legacy git-pull Secret holds; the bare repository is
served over HTTP only to that token), the Airbyte password (the AirbyteServer block; an emulator of our own that
accepts only it) — plus the webhook secret (settings.WEBHOOK_SECRET) and the proxy token (PROXY_TEST_TOKEN).

What runs: a legacy deployment ("Orders hourly": sync, git pull, dbt run) on the session's worker through the
legacy flow; then `verify_block_migration` and `migrate_blocks_to_tasks` phase 1, phase 2, `--switch-entrypoint`
and phase 3 `--confirm` (each step as a dry run first, as docs/migration.md says) and `verify_block_migration`
again; then a user of the org (`createorganduser`) runs the migrated deployment through the API on the worker (the
pipeline flow: sync, git pull, dbt run, reading the converted Secret-JSON profile and the git URL Secret), its
webhook is delivered (twice) with the webhook secret, `reconcile_locks` runs, and the API's read routes are called.

What is scanned, after all of that (so after phase 3 deleted the legacy operation and profile blocks, which held
the warehouse password in clear by design of the legacy world and are not part of the state after migration):
- the Django database dump (`manage.py dumpdata`);
- through Prefect's REST API, as anyone who can reach it sees them (no include_secrets): every deployment (with
  its parameters), every flow run of the org's deployments — the legacy run and the migrated one — with their
  parameters and state messages, their logs and artifacts, every block document, the automations, and the events
  Prefect recorded from the first legacy run on (those its event persister has stored by the time of the scan);
- every response body seen from the legacy run on: the API and the webhook (Django test client) and the proxy
  (httpx: starting the legacy run, the migration commands, the webhook, the API and the migrated run);
- the log records of Django and the proxy (captured from the legacy run on);
- the stdout and stderr of every management command run (the migration steps, dry runs, verify, createorganduser,
  reconcile_locks);
- the Prefect server and worker log files, and the files in the org's dbt directory.
The secrets themselves are still in Prefect, where they belong: the test reads them back with include_secrets to
show that the scan looked for values that exist (masked) in the Airbyte server block and the Secret blocks. As a
control, before the migration the same block document view shows the legacy profile's password in clear.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import uuid
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from ddpui.models import PrefectFlowRun
from ddpui.prefect_client import get_proxy
from devtools.legacy_install import AirbyteTarget, build_legacy_install
from tests.conftest import PROXY_TEST_TOKEN
from tests.support.git_http import serve_git_with_token
from tests.support.prefect_rest import prefect_client

from .conftest import RecordingClient, unique_email, wait_for_run
from .test_secret_scan import TERMINAL, _files, _prefect_documents

pytestmark = [pytest.mark.django_db, pytest.mark.prefect, pytest.mark.worker, pytest.mark.slow]


class _Commands:
    """Runs management commands in-process, keeping everything each one wrote to stdout and stderr."""

    def __init__(self):
        self.outputs: list[tuple[str, str]] = []

    def __call__(self, name: str, *args: str, succeeds: bool | None = True) -> str:
        out, err = StringIO(), StringIO()
        try:
            call_command(name, *args, stdout=out, stderr=err)
            succeeded = True
        except CommandError as error:
            err.write(f"CommandError: {error}\n")
            succeeded = False
        output = out.getvalue() + err.getvalue()
        self.outputs.append((" ".join([name, *args]), output))
        if succeeds is not None:
            assert succeeded == succeeds, output
        return output


@pytest.fixture
def token_git(tmp_path):
    """(directory for the legacy installation, git token, a `git_pull_url` for build_legacy_install): the bare
    repositories made under the directory are served over HTTP only to the token, and the git-pull Secret holds
    http://oauth2:<token>@.../<org>/sample-dbt.git."""
    root = (tmp_path / "legacy").resolve()
    root.mkdir()
    token = f"gittok{secrets.token_hex(12)}"
    with serve_git_with_token(root, token) as base_url:

        def git_pull_url(bare: Path) -> str:
            subprocess.run(["git", "update-server-info"], cwd=bare, check=True, capture_output=True)
            return base_url.replace("http://", f"http://oauth2:{token}@") + "/" + bare.relative_to(root).as_posix()

        yield root, token, git_pull_url


def _events_since(api: httpx.Client, since: str) -> list[str]:
    """Prefect's events since `since` (what the event persister has stored by now), page by page."""
    until = datetime.now(UTC).isoformat()
    body = {"filter": {"occurred": {"since": since, "until": until}}, "limit": 50}
    page = api.post("/events/filter", json=body).raise_for_status().json()
    pages = [json.dumps(page["events"])]
    while page.get("next_page"):
        page = api.get(page["next_page"]).raise_for_status().json()
        pages.append(json.dumps(page["events"]))
    return pages


def _block_documents_named(api: httpx.Client, name: str) -> str:
    """The block documents of that name, as the block document filter scanned below returns them."""
    body = {"block_documents": {"name": {"any_": [name]}}}
    return api.post("/block_documents/filter", json=body).raise_for_status().text


def _secret_block_value(api: httpx.Client, slug: str, name: str):
    response = api.get(f"/block_types/slug/{slug}/block_documents/name/{name}", params={"include_secrets": True})
    return response.raise_for_status().json()["data"]


def test_no_secret_survives_a_migration_run(
    settings, live_services, prefect_worker, airbyte_with_password, token_git, record_httpx, caplog
):
    settings.PREFECT_WORK_POOL = prefect_worker.pool
    settings.WEBHOOK_SECRET = f"whsecret{secrets.token_hex(12)}"
    data_dir, git_token, git_pull_url = token_git
    warehouse_password = f"whpw{secrets.token_hex(12)}"
    api = prefect_client(timeout=60)
    (install,) = build_legacy_install(
        org_names=[f"Scan Legacy {uuid.uuid4().hex[:6]}"],
        data_dir=data_dir,
        airbyte=AirbyteTarget(
            host="127.0.0.1", port=int(settings.AIRBYTE_SERVER_PORT), username="airbyte", password=airbyte_with_password
        ),
        work_pool=prefect_worker.pool,
        warehouse_password=warehouse_password,
        git_pull_url=git_pull_url,
    )
    orders = install.deployments["Orders hourly"]
    # the legacy world holds the secrets (the profile block in clear, by its design): what the scan must not find
    # after the migration
    profile_block = next(name for name, kind in install.blocks.items() if kind == "dbt CLI Profile")
    profile = _secret_block_value(api, "dbt-cli-profile", profile_block)
    assert profile["target_configs"]["extras"]["password"] == warehouse_password
    # a control for the scan: the very view of block documents scanned below shows that password now
    assert warehouse_password in _block_documents_named(api, profile_block)

    # from here on, everything the migration and the runs print, log, answer or send is recorded
    caplog.set_level(logging.DEBUG)
    since = datetime.now(UTC).isoformat()
    proxy_bodies = record_httpx([settings.PROXY_URL])
    client = RecordingClient()
    commands = _Commands()

    legacy_run = get_proxy().deployment(orders).create_run()
    legacy_state = wait_for_run(str(legacy_run.id), TERMINAL, timeout=300)["state"]
    assert legacy_state["type"] == "COMPLETED", legacy_state
    assert [result["slug"] for result in legacy_run.state(include_task_results=True).task_results] == [
        f"{install.slug}-sample-data-connection",
        f"{install.slug}-git-pull",  # pulled over HTTP with the token from the git-pull Secret
        f"{install.slug}-ddpui-dev-dbt-run-orders",  # with the legacy profile holding the password
    ]

    commands("verify_block_migration", "--all", succeeds=None)  # "not migrated" yet
    for step in (["--phase", "1"], ["--phase", "2"], ["--switch-entrypoint"], ["--phase", "3", "--confirm"]):
        assert "would " in commands("migrate_blocks_to_tasks", *step, "--all", "--dry-run")
        assert "migrated" in commands("migrate_blocks_to_tasks", *step, "--all")
        if step == ["--phase", "2"]:
            assert "no differences" in commands("verify_block_migration", "--all")
    assert "no org has legacy rows" in commands("verify_block_migration", "--all")
    # the migration carried the secrets over into Secret blocks (masked by Prefect) and deleted the legacy profile
    assert _block_documents_named(api, profile_block) == "[]"
    converted = json.loads(_secret_block_value(api, "secret", f"{install.slug}-dbt-profile")["value"])
    assert converted["credentials"]["password"] == warehouse_password
    assert git_token in _secret_block_value(api, "secret", f"{install.slug}-git-pull-url")["value"]
    server = _secret_block_value(api, "airbyte-server", f"{install.slug}-airbyte-server")
    assert server["password"] == airbyte_with_password

    # a user of the migrated org runs the migrated deployment through the API; its webhook is delivered
    email, password = unique_email("scan-migrated"), f"user-{secrets.token_hex(6)}"
    commands("createorganduser", "--org", install.name, "--email", email, "--password", password)
    assert get_user_model().objects.filter(username=email).exists()
    login = client.post("/api/v1/login/", {"email": email, "password": password}, "application/json")
    assert login.status_code == 200, login.content
    headers = {"HTTP_AUTHORIZATION": f"Bearer {login.json()['token']}", "HTTP_X_DALGO_ORG": install.slug}
    started = client.post(f"/api/prefect/v1/flows/{orders}/flow_run/", **headers)
    assert started.status_code == 200, started.content
    run_id = started.json()["flow_run_id"]
    run = wait_for_run(run_id, TERMINAL, timeout=300)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert [
        (result["slug"], result["status"])
        for result in get_proxy().flow_run(run_id).state(include_task_results=True).task_results
    ] == [
        ("airbyte-sync", "success"),
        ("git-pull", "success"),  # the token, read from the git URL Secret
        ("dbt-run", "success"),  # the password, read from the converted profile Secret
    ]
    webhook = {"HTTP_X_DDPUI_WEBHOOK_SECRET": settings.WEBHOOK_SECRET}
    for _ in range(2):  # a duplicate too
        delivered = client.post("/webhooks/v1/notification/", {"flow_run_id": run_id}, "application/json", **webhook)
        assert delivered.status_code == 200, delivered.content
    commands("reconcile_locks")
    recorded = PrefectFlowRun.objects.get(flow_run_id=run_id)
    assert (recorded.deployment_id, recorded.state_type) == (orders, "COMPLETED")
    for path in (
        f"/api/prefect/flow_runs/{run_id}",
        f"/api/prefect/flow_runs/{run_id}/logs",
        f"/api/prefect/v1/flows/{orders}/flow_runs/history",
        f"/api/prefect/v1/flows/{orders}",
        "/api/prefect/v1/flows/",
        "/api/airbyte/v1/connections",
        "/api/v1/organizations/warehouses",
        "/api/dbt/dbt_workspace",
        "/api/v1/audit",
    ):
        assert client.get(path, **headers).status_code == 200, path
    assert client.get(f"/api/prefect/flow_runs/{run_id}/logs", **headers).json()["logs"]["logs"]

    secret_values = {
        "warehouse password": warehouse_password,
        "git token": git_token,
        "git token (URL-encoded)": quote(git_token, safe=""),
        "Airbyte password": airbyte_with_password,
        "webhook secret": settings.WEBHOOK_SECRET,
        "proxy token": PROXY_TEST_TOKEN,
    }
    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    deployment_runs = api.post(
        "/flow_runs/filter", json={"deployments": {"id": {"any_": sorted(install.deployments.values())}}}
    ).raise_for_status()
    flow_run_ids = {found["id"] for found in deployment_runs.json()}
    assert flow_run_ids == {str(legacy_run.id), run_id}
    automations = api.post("/automations/filter", json={}).raise_for_status()
    places: list[tuple[str, str]] = [("dumpdata", dump.getvalue())]
    places += [(f"Prefect REST document {i}", text) for i, text in enumerate(_prefect_documents(flow_run_ids))]
    places.append(("Prefect automations", automations.text))
    events = _events_since(api, since)
    assert events[0] != "[]", "Prefect recorded no events to scan"
    places += [(f"Prefect events page {i}", text) for i, text in enumerate(events)]
    places += [(f"API response {i}", body.decode(errors="replace")) for i, body in enumerate(client.bodies)]
    places += [(f"proxy response {i}", body.decode(errors="replace")) for i, body in enumerate(proxy_bodies.bodies)]
    places.append(("Django and proxy log records", caplog.text))
    places += [(f"output of `manage.py {command}`", output) for command, output in commands.outputs]
    prefect_home = Path(os.environ["PREFECT_HOME"])
    places += [(name, data.decode(errors="replace")) for name, data in _files(prefect_home) if name.endswith(".log")]
    org_dir = Path(settings.CLIENT_DBT_ROOT) / install.slug
    places += [(name, data.decode(errors="replace")) for name, data in _files(org_dir)]

    assert len(client.bodies) > 10 and len(proxy_bodies.bodies) > 20, "too little traffic was recorded"
    assert len(commands.outputs) >= 12 and all(output for _, output in commands.outputs)
    assert any("prefect-worker" in name for name, _ in places), "the worker's log file was not scanned"
    hits = [f"{what} in {where}" for where, text in places for what, value in secret_values.items() if value in text]
    assert not hits, "secrets found:\n" + "\n".join(hits)
