"""The operator console as a person uses it, in a real browser (Debian's Chromium, headless, driven by
Playwright): log into the admin, open the demo pipeline, run it with the "Run now" action, and follow the
run in the flow-run history until it shows Completed with its tasks' results.

The stack is the local demo (`python -m devtools.demo --no-run`) on free ports; Prefect reports each state
change to Django's webhook, which is what moves the run along in the admin.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import DEMO_EMAIL, DEMO_PASSWORD

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# as root in a container, without a GPU or a network beyond 127.0.0.1
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RUN_TIMEOUT = 240


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium package"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return str(CHROMIUM)


@pytest.fixture
def browser_page(chromium_path, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def screenshot(page, name: str, tmp_path: Path) -> Path:
    directory = Path(os.environ.get("DDPUI_SCREENSHOT_DIR", tmp_path))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_operator_runs_a_pipeline_from_the_admin_and_sees_its_results(demo, browser_page, tmp_path):
    from playwright.sync_api import expect

    demo.start("--no-run")
    ready = demo.wait_ready(timeout=300)
    page = browser_page
    base = ready["django_url"]

    # log in
    page.goto(f"{base}/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    page.get_by_label("Username").fill(DEMO_EMAIL)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()

    # open the pipeline from the pipelines list
    page.get_by_role("link", name=re.compile(r"^Org data flowv1s$", re.IGNORECASE)).click()
    page.get_by_role("link", name=ready["pipeline"], exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"^Change org data flowv1"))).to_be_visible()
    expect(page.locator("#id_cron")).to_have_value("0 2 * * *")
    expect(page.locator("#id_deployment_id")).to_have_value(ready["deployment_id"])
    expect(page.locator(".inline-group tbody tr.form-row.has_original")).to_have_count(5)

    # back to the list, select it, "Run now"
    page.get_by_role("link", name=re.compile(r"^Org data flowv1s$", re.IGNORECASE)).first.click()
    row = page.locator("#result_list tbody tr", has_text=ready["pipeline"])
    row.locator("input.action-select").check()
    page.locator("select[name=action]").select_option(label="Run now")
    page.get_by_role("button", name="Go").click()
    message = page.locator("ul.messagelist li.success")
    expect(message).to_contain_text(f"{ready['pipeline']}: started flow run")
    flow_run_id = re.search(r"started flow run ([0-9a-f-]{36})", message.inner_text()).group(1)

    # the run history: the run's row, reloaded until it is over
    page.goto(f"{base}/admin/ddpui/prefectflowrun/")
    run_row = page.locator("#result_list tbody tr", has_text=flow_run_id)
    expect(run_row).to_have_count(1)
    deadline = time.monotonic() + RUN_TIMEOUT
    while not re.search(r"\b(COMPLETED|FAILED|CRASHED|CANCELLED)\b", run_row.inner_text()):
        assert time.monotonic() < deadline, f"run {flow_run_id} still '{run_row.inner_text()}' in the admin"
        time.sleep(2)
        page.reload()
    screenshot(page, "admin-run-history", tmp_path)
    assert "COMPLETED" in run_row.inner_text(), run_row.inner_text()
    assert "Completed" in run_row.inner_text()

    # the run itself: its tasks' results, as the admin shows them
    run_row.locator("th a").click()
    expect(page.get_by_role("heading", name=re.compile(r"prefect flow run", re.IGNORECASE))).to_be_visible()
    # (page.content(): the results may be shown as text or inside a form field)
    deadline = time.monotonic() + 30
    while "dbt-test" not in page.content():
        assert time.monotonic() < deadline, "the run's task results never appeared in the admin"
        time.sleep(1)
        page.reload()
    shown = page.content()
    shot = screenshot(page, "admin-flow-run", tmp_path)
    for slug in ("airbyte-sync", "git-pull", "dbt-deps", "dbt-run", "dbt-test"):
        assert slug in shown, f"{slug} not among the task results shown ({shot})"
    assert "success" in shown, shot

    # Ctrl-C stops everything the demo started
    assert demo.stop() == 130
    assert demo.leftovers() == []
    assert demo.busy_ports() == []
