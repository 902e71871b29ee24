"""The web view in a real browser (Debian's chromium driven by Playwright): a live run, then
the same run finished."""

from __future__ import annotations

import os
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from agentmem.devservers import ServerUrls
from tests.orchestrator.runs import cli_env, finish, start_cli

CHROMIUM = os.environ.get("AGENTMEM_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(400),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"no chromium at {CHROMIUM}: `make test-browser` installs it (apt-get install "
        "chromium); AGENTMEM_CHROMIUM names another executable",
    ),
]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed: `make test-browser` installs it"
)


def wait_for_run_page(url: str) -> None:
    """Until the run's page answers 200 (the run has published its request)."""
    for _ in range(600):
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not appear within a minute")


def test_a_live_run_updates_in_the_browser_and_its_finished_page_shows_everything(
    servers: ServerUrls, web_url: str, tmp_path: Path
) -> None:
    """While the run goes on, its page fills in by itself; finished, it shows 5 sections, their
    versions and reviews, the timeline with LLM bars, and the facts."""
    run_id = f"web-{uuid.uuid4().hex[:8]}"
    env = cli_env(
        servers.redis_url, servers.database_url, tmp_path, AGENTMEM_STUB_DELAY_SECONDS="0.3"
    )
    process = start_cli(env, "run", "-q", "--run-id", run_id)
    page_url = f"{web_url}/runs/{run_id}"
    # AGENTMEM_SCREENSHOT_DIR=docs/images refreshes the README's picture of a run page.
    screenshot = Path(os.environ.get("AGENTMEM_SCREENSHOT_DIR", tmp_path)) / "run-page.png"
    try:
        wait_for_run_page(page_url)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(page_url)
            live = page.locator("#live")
            assert "run finished" not in live.inner_text()
            # No reload from here on: the page follows the run's server-sent events.
            page.wait_for_function(
                "document.querySelectorAll('section.part').length === 5", timeout=120_000
            )
            page.wait_for_function(
                "document.getElementById('live').textContent === 'run finished'",
                timeout=240_000,
            )
            code, _, stderr = finish(process)
            assert code == 0, stderr[-2000:]

            page.goto(page_url)
            assert page.locator("section.part").count() == 5
            assert page.locator("section.part small.state-approved").count() == 5
            assert page.locator("svg.timeline rect.llm").count() > 10
            assert page.locator("svg.timeline line.handoff").count() > 10
            assert page.locator("details.version").count() == 10
            assert page.locator("ul.comments li").count() >= 5  # what review asked for
            assert page.locator("tr[id^=fact-]").count() == 40
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))  # the top of the page: state, timeline
            browser.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert screenshot.stat().st_size > 10_000
