"""The support web page in headless Chromium (Debian's `chromium`, driven by Playwright): a
technician logs in, opens a site, runs a readiness test against a real agent on a link with
upstream jitter, watches its progress, reads the report's verdict, opens the ticket it
raised and acknowledges it, all under the
collector's Content-Security-Policy (no violation reported by the browser), with axe-core
finding no serious or critical violation on any page (when `make venv` installed it).
Screenshots are saved to the test's temp directory (or to $QS_SCREENSHOT_DIR when set)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.readiness.stackfix import ReadinessStack, readiness_stack

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).resolve().parents[2] / ".venv/node/node_modules/axe-core/axe.min.js"
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
    email, password = "tech@tier1.example", "tech-" + uuid.uuid4().hex
    made = subprocess.run(
        rs.stack.command("collector", "user", "create", "--partner", rs.stack.partner_id,
                         "--role", "technician", "--email", email, "--password-stdin",
                         "--db", rs.stack.db_url),
        capture_output=True, text=True, timeout=60, input=password + "\n",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    axe_js = AXE.read_text() if AXE.exists() else None
    checked: list[str] = []

    def shot(page: Any, name: str) -> None:
        """The screenshot, and axe-core on the page: 0 serious or critical violations."""
        page.screenshot(path=str(shots / name), full_page=True)
        if axe_js is None:
            return
        page.evaluate(axe_js)  # by the devtools protocol: not bound by the page's CSP
        found = page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.slice(0, 4).map(n => n.target.join(' '))}))"
        )
        bad = [v for v in found if v["impact"] in ("serious", "critical")]
        assert not bad, f"axe on {name}: {bad}"
        checked.append(name)

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
            page.get_by_label("E-mail").fill(email)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("heading", name="Sites").wait_for()
            shot(page, "1-sites.png")

            page.get_by_role("link", name="Main office").click()
            page.get_by_role("heading", name="Run readiness test").wait_for()
            page.get_by_label("Simultaneous calls the site needs").fill("2")
            page.locator("summary").click()
            page.get_by_label("Advanced options (JSON)").fill(json.dumps(rs.options))
            shot(page, "2-site.png")
            page.get_by_role("button", name="Run readiness test").click()

            page.wait_for_url("**/ui/readiness/**")
            progress = page.locator("#progress")
            assert progress.count() == 1, "no progress bar on a test that just started"
            # live progress: the agent's own step messages appear without a reload
            page.wait_for_function(
                "() => { const m = document.getElementById('message');"
                " return m && /voice stream|NAT|gateway|report/.test(m.textContent); }"
            )
            shot(page, "3-progress.png")

            page.get_by_text("Verdict:").wait_for(timeout=90_000)
            verdict = page.locator(".verdict").inner_text()
            assert "FAIL" in verdict and "Not ready for voice" in verdict
            row = page.locator("#check-voice\\.jitter\\.out")
            assert row.get_attribute("data-status") == "fail"
            assert "ms" in row.inner_text()
            shot(page, "4-report.png")

            page.locator("#ticket-link").click()
            page.get_by_role("button", name="Acknowledge").wait_for()
            assert "Jitter upstream" in page.locator("h1").inner_text()
            shot(page, "5-ticket.png")
            page.get_by_label("Note (optional)").fill("customer called back, checking QoS")
            page.get_by_role("button", name="Acknowledge").click()
            page.locator("#ticket-state", has_text="acknowledged").wait_for()
            assert "customer called back" in page.locator("ol").inner_text()
            shot(page, "6-acknowledged.png")
        finally:
            browser.close()
    assert [c for c in console if "violation" in c.lower() or "refused" in c.lower()] == []
    assert axe_js is None or len(checked) == 6
    t = rs.api("GET", "/api/v1/tickets", params={"site_id": rs.stack.site_id}).json()
    assert [x["state"] for x in t] == ["acknowledged"]
    assert len(list(shots.glob("*.png"))) == 6
    if not os.environ.get("QS_SCREENSHOT_DIR"):
        shutil.rmtree(tmp_path / "stack", ignore_errors=True)
