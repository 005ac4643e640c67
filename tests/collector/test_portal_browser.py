"""The portal in a real browser (Debian's Chromium through Playwright): the site page with
its charts, the bad-call view and the partner home at laptop and phone sizes, with
screenshots, and no horizontal overflow on the phone. One small module, so it can move onto
a shared browser harness."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.config import CollectorConfig
from collector.store import Store
from tests.collector.conftest import SCRAPE_TOKEN, LiveServer, icmp, new_tenant, result, web_user

CHROMIUM = "/usr/bin/chromium"
SIZES = {"laptop": (1366, 768), "phone": (390, 844)}


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not found (Debian package chromium)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def test_pages_fit_a_phone_and_a_laptop(browser: Any, tmp_path: Path) -> None:
    store = Store(CollectorConfig(db=f"sqlite:///{tmp_path}/c.sqlite3",
                                  metrics={"token": SCRAPE_TOKEN}))  # fmt: skip
    store.migrate()
    srv = LiveServer(store, background=False).start()
    try:
        t = new_tenant(srv, "acme", site={"name": "Head office with a rather long name"})
        voice = {"out": {"loss_pct": 0.0, "jitter_ms": 3.0, "mos": 4.3, "r_factor": 92.0},
                 "back": {"loss_pct": 6.0, "jitter_ms": 45.0, "mos": 3.2, "r_factor": 60.0},
                 "rtt_ms": {"avg": 24.0}, "loss_pct": 3.0}  # fmt: skip
        sent = [icmp(v, target="voip-edge.example.net") for v in (20, 35, 180, 420, 25)]
        sent.append(result("udp", "responder.example.net:862", voice))
        t.post(*sent)
        at = datetime.fromisoformat(sent[3]["started_at"]).astimezone(UTC)
        key = str(t.partner.headers["Authorization"]).removeprefix("Bearer ")
        email, password = web_user(srv, key, "technician")
        pages = {
            "site": f"/ui/sites/{t.site_id}",
            "badcall": f"/ui/sites/{t.site_id}/badcall?at={at:%Y-%m-%dT%H:%M}&tz=UTC&window=30",
            "home": "/ui/home",
        }
        shots = Path(os.environ.get("QS_SCREENSHOTS", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        for size, (w, h) in SIZES.items():
            ctx = browser.new_context(viewport={"width": w, "height": h})
            page = ctx.new_page()
            page.goto(f"{srv.url}/ui/login")
            page.fill("#email", email)
            page.fill("#password", password)
            page.click("button[type=submit]")
            page.wait_for_url(f"{srv.url}/ui/")
            for name, path in pages.items():
                t0 = time.monotonic()
                resp = page.goto(srv.url + path)
                assert resp is not None and resp.status == 200, (name, size)
                page.screenshot(path=str(shots / f"portal-{name}-{size}.png"), full_page=True)
                scroll_w = page.evaluate("document.documentElement.scrollWidth")
                inner_w = page.evaluate("window.innerWidth")
                if size == "phone":
                    assert scroll_w <= inner_w, (
                        f"{name} overflows the phone: {scroll_w} > {inner_w}"
                    )
                assert time.monotonic() - t0 < 30
            charts = page.locator("svg.chart")
            page.goto(srv.url + pages["site"])
            assert charts.count() >= 5
            box = charts.first.bounding_box()
            assert box is not None and box["width"] <= w and box["height"] > 50
            page.goto(srv.url + pages["badcall"])
            assert page.locator('tr[data-worst="critical"]').count() >= 1
            assert page.locator('tr[data-worst="ok"]').count() >= 1
            ctx.close()
        assert sorted(p.name for p in shots.glob("portal-*.png")) == sorted(
            f"portal-{n}-{s}.png" for n in pages for s in SIZES
        )
    finally:
        srv.stop()
        store.dispose()
