"""A reusable harness for browser tests of the support portal: one Chromium per module
(Debian's /usr/bin/chromium through Playwright), a real collector on SQLite with a real SMTP
server (aiosmtpd) for its e-mails, screenshots at laptop and phone sizes into a directory
the test prints, and axe-core run on every page a test visits (`portal.check(page, name)`:
0 serious or critical violations).

axe-core comes from `make venv` (`npm install --prefix .venv/node axe-core@4`); without it,
or without Chromium, these tests skip saying why."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography.fernet import Fernet

from collector.config import CollectorConfig
from collector.store import Store
from tests.collector.conftest import SCRAPE_TOKEN, LiveServer, new_tenant, web_user
from tests.collector.pg import free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
AXE = Path(__file__).resolve().parents[2] / ".venv" / "node" / "node_modules" / "axe-core"
SIZES = {"laptop": (1366, 768), "phone": (390, 844)}
BAD_IMPACTS = ("serious", "critical")


class Inbox:
    """What the real SMTP server received: (recipients, raw message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf8")))
        return "250 Message accepted for delivery"

    def to(self, rcpt: str, timeout_s: float = 20.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for rcpts, raw in self.messages:
                if rcpt in rcpts:
                    return raw
            time.sleep(0.05)
        raise AssertionError(f"no e-mail to {rcpt} within {timeout_s} s")


@dataclass
class Portal:
    srv: LiveServer
    inbox: Inbox
    shots: Path
    browser: Any
    axe_source: str
    visited: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.srv.url

    def new_page(self, size: str = "laptop") -> Any:
        w, h = SIZES[size]
        page = self.browser.new_page(viewport={"width": w, "height": h})
        page.set_default_timeout(30_000)
        return page

    def check(self, page: Any, name: str) -> None:
        """axe-core on the page as it is (0 serious or critical violations) and a
        screenshot at each size."""
        page.evaluate(self.axe_source)  # evaluated by the devtools protocol: not CSP-bound
        found = page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " targets: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))"
        )
        bad = [v for v in found if v["impact"] in BAD_IMPACTS]
        assert not bad, f"axe on {name} ({page.url}): {bad}"
        size = page.viewport_size
        for label, (w, h) in SIZES.items():
            page.set_viewport_size({"width": w, "height": h})
            page.screenshot(path=str(self.shots / f"{name}-{label}.png"), full_page=True)
        page.set_viewport_size(size)
        self.visited.append(name)


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)")
    if not (AXE / "axe.min.js").exists():
        pytest.skip(f"axe-core is not installed ({AXE}): run make venv with npm present")
    shots = Path(os.environ.get("QS_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {shots}")
    inbox, port = Inbox(), free_port()
    smtpd = Controller(inbox, hostname="127.0.0.1", port=port)
    smtpd.start()
    db = tmp_path_factory.mktemp("portal") / "collector.sqlite3"
    store = Store(
        CollectorConfig(
            db=f"sqlite:///{db}", metrics={"token": SCRAPE_TOKEN},
            mail={"host": "127.0.0.1", "port": port, "from": "portal@example.net"},
            channels={"master_keys": [Fernet.generate_key().decode()]},
        )
    )  # fmt: skip
    store.migrate()
    srv = LiveServer(store, background=False).start()
    axe = (AXE / "axe.min.js").read_text()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                yield Portal(srv, inbox, shots, browser, axe)
            finally:
                browser.close()
    finally:
        srv.stop()
        store.dispose()
        smtpd.stop()


__all__ = ["Portal", "new_tenant", "web_user"]
