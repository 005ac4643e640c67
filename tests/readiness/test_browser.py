"""The support web page in headless Chromium (Debian's `chromium`, driven by Playwright):
log in, open a site, run a readiness test against a real agent, watch its progress, read
the report's verdict, open the ticket it raised and acknowledge it, all under the
collector's Content-Security-Policy (no violation reported by the browser). Screenshots are
saved to the test's temp directory (or to $QS_SCREENSHOT_DIR when set)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.readiness.stackfix import ReadinessStack, readiness_stack

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture
def rs(tmp_path: Path) -> Iterator[ReadinessStack]:
    yield from readiness_stack(tmp_path / "stack")


def test_tier1_runs_a_readiness_test_and_acknowledges_its_ticket_in_the_browser(
    rs: ReadinessStack, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)")
    shots = Path(os.environ.get("QS_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    base = rs.stack.collector_url
    console: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.set_default_timeout(30_000)
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.add_init_script(
                "document.addEventListener('securitypolicyviolation', e => console.error("
                "'CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
            )
            page.goto(f"{base}/ui/")
            assert "/ui/login" in page.url
            page.get_by_label("E-mail").fill(rs.stack.admin_email)
            page.get_by_label("Password").fill(rs.stack.admin_password)
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("heading", name="Sites").wait_for()
            page.screenshot(path=str(shots / "1-sites.png"), full_page=True)

            page.get_by_role("link", name="Main office").click()
            page.get_by_role("heading", name="Run readiness test").wait_for()
            page.get_by_label("Simultaneous calls the site needs").fill("2")
            page.locator("summary").click()
            page.get_by_label("Advanced options (JSON)").fill(json.dumps(rs.options))
            page.screenshot(path=str(shots / "2-site.png"), full_page=True)
            page.get_by_role("button", name="Run readiness test").click()

            page.wait_for_url("**/ui/readiness/**")
            progress = page.locator("#progress")
            assert progress.count() == 1, "no progress bar on a test that just started"
            # live progress: the agent's own step messages appear without a reload
            page.wait_for_function(
                "() => { const m = document.getElementById('message');"
                " return m && /voice stream|NAT|gateway|report/.test(m.textContent); }"
            )
            page.screenshot(path=str(shots / "3-progress.png"), full_page=True)

            page.get_by_text("Verdict:").wait_for(timeout=90_000)
            verdict = page.locator(".verdict").inner_text()
            assert "FAIL" in verdict and "Not ready for voice" in verdict
            row = page.locator("#check-voice\\.jitter\\.out")
            assert row.get_attribute("data-status") == "fail"
            assert "ms" in row.inner_text()
            page.screenshot(path=str(shots / "4-report.png"), full_page=True)

            page.locator("#ticket-link").click()
            page.get_by_role("button", name="Acknowledge").wait_for()
            assert "Jitter upstream" in page.locator("h1").inner_text()
            page.screenshot(path=str(shots / "5-ticket.png"), full_page=True)
            page.get_by_label("Note (optional)").fill("customer called back, checking QoS")
            page.get_by_role("button", name="Acknowledge").click()
            page.locator("#ticket-state", has_text="acknowledged").wait_for()
            assert "customer called back" in page.locator("ol").inner_text()
            page.screenshot(path=str(shots / "6-acknowledged.png"), full_page=True)
        finally:
            browser.close()
    assert [c for c in console if "violation" in c.lower() or "refused" in c.lower()] == []
    t = rs.api("GET", "/api/v1/tickets", params={"site_id": rs.stack.site_id}).json()
    assert [x["state"] for x in t] == ["acknowledged"]
    assert len(list(shots.glob("*.png"))) == 6
    if not os.environ.get("QS_SCREENSHOT_DIR"):
        shutil.rmtree(tmp_path / "stack", ignore_errors=True)
