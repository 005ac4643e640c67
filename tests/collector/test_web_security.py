"""Web hardening over real HTTP on loopback (a real uvicorn, SQLite and PostgreSQL): security
headers on every answer, anti-forgery tokens on every form of the support pages, the
failed-authentication throttle per client address (and X-Forwarded-For only from trusted
proxies), the per-partner request rate; the limiter's pieces with the time passed in."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from collector.api.security import (
    Buckets,
    Security,
    client_address,
    credential,
    failure_key,
    parse_networks,
)
from collector.web import csrf
from tests.collector.conftest import (
    LiveServer,
    icmp,
    new_tenant,
    web_login,
    web_login_as,
    web_user,
)

STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


@pytest.fixture
def server() -> Iterator[Any]:
    """Start a collector like `collector serve` does: uvicorn believes no proxy header (the
    collector's own `web.trusted_proxies` decides)."""
    started: list[LiveServer] = []

    def start(store: Any, **app_kw: Any) -> LiveServer:
        srv = LiveServer(store, **app_kw)
        srv.server.config.proxy_headers = False
        started.append(srv.start())
        return srv

    yield start
    for s in started:
        s.stop()


def _frozen_clock(srv: LiveServer) -> list[float]:
    """Hand the running app's security middleware a clock the test moves: [seconds]."""
    now = [1000.0]
    mw: Any = srv.app.middleware_stack
    while not isinstance(mw, Security):
        mw = mw.app
    mw.clock = lambda: now[0]
    return now


def _key(client: httpx.Client) -> str:
    return str(client.headers["Authorization"]).removeprefix("Bearer ")


def _hidden(html: str, action: str) -> dict[str, str]:
    m = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>(.*?)</form>', html, re.S)
    assert m, f"no form posting to {action}"
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', m.group(1)))


def _login(srv: LiveServer, key: str) -> httpx.Client:
    return web_login(srv, key)


# --------------------------------------------------------------------------- headers


def test_every_answer_carries_the_security_headers(make_store: Any, server: Any) -> None:
    srv = server(make_store())
    t = new_tenant(srv, "acme")
    ui = _login(srv, _key(t.partner))
    answers = {
        "/healthz": httpx.get(f"{srv.url}/healthz"),
        "/ui/login": httpx.get(f"{srv.url}/ui/login"),
        "/ui/": ui.get("/ui/"),
        "/ui/static/ui.css": ui.get("/ui/static/ui.css"),
        "/api/v1/customers": t.partner.get("/api/v1/customers"),
        "401": httpx.get(f"{srv.url}/api/v1/customers"),
        "404": httpx.get(f"{srv.url}/nope"),
        "422": t.partner.post("/api/v1/customers", json={}),
        "413": httpx.post(f"{srv.url}/ui/login", content=b"k=" + b"x" * 200_000),
    }
    for what, r in answers.items():
        h = r.headers
        assert h["content-security-policy"] == STRICT_CSP, what
        assert h["x-frame-options"] == "DENY", what
        assert h["x-content-type-options"] == "nosniff", what
        assert h["referrer-policy"] == "same-origin", what
    # Authenticated answers are never stored by a browser or a proxy; static files may be.
    for what in ("/ui/login", "/ui/", "/api/v1/customers", "401", "422"):
        assert answers[what].headers["cache-control"] == "no-store", what
    assert answers["/ui/static/ui.css"].headers["cache-control"] == "public, max-age=300"
    assert answers["/ui/static/ui.css"].headers["content-type"].startswith("text/css")


def test_the_pages_have_no_inline_script_or_style(make_store: Any, server: Any) -> None:
    srv = server(make_store())
    t = new_tenant(srv, "acme")
    ui = _login(srv, _key(t.partner))
    jid = t.partner.post(
        f"/api/v1/sites/{t.site_id}/readiness", json={"options": {"responder": "192.0.2.7"}}
    ).json()["id"]
    pages = ["/ui/login", "/ui/", f"/ui/sites/{t.site_id}", "/ui/tickets", f"/ui/readiness/{jid}"]
    for page in pages:
        html = ui.get(page).text
        assert "<style" not in html and " style=" not in html, page
        assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [], page
        assert re.search(r"\son[a-z]+=", html) is None, page  # no event handler attributes
    assert '<script src="/ui/static/readiness.js">' in ui.get(f"/ui/readiness/{jid}").text
    assert ui.get("/ui/static/readiness.js").headers["content-type"].startswith("text/javascript")
    assert ".qsr" in ui.get("/ui/static/report.css").text
    assert ui.get("/ui/static/../routes.py").status_code == 404
    # The downloadable report is a page of its own with inline style: that and nothing else.
    r = t.agent.post(f"/api/v1/agent/jobs/{jid}/status",
                     json={"state": "done", "report": {"readiness": _report()}})  # fmt: skip
    assert r.status_code == 200, r.text
    for got in (ui.get(f"/ui/readiness/{jid}/report.html"),
                t.partner.get(f"/api/v1/readiness/{jid}/report.html")):  # fmt: skip
        assert got.status_code == 200 and "<style>" in got.text
        assert got.headers["content-security-policy"] == (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
            "frame-ancestors 'none'; form-action 'none'"
        )


# --------------------------------------------------------------------------- CSRF


def test_a_form_without_the_session_token_is_refused_and_changes_nothing(
    make_store: Any, server: Any
) -> None:
    srv = server(make_store(rules={"rtt": {"trip_after": 1}}))
    t = new_tenant(srv, "acme")
    t.post(icmp(300))
    [tk] = t.partner.get("/api/v1/tickets").json()
    page = f"/ui/tickets/{tk['id']}"
    action = f"{page}/comments"
    email, password = web_user(srv, _key(t.partner))
    ui = web_login_as(srv, email, password)
    good = _hidden(ui.get(page).text, action)
    assert set(good) == {"csrf"} and len(good["csrf"]) >= 40
    origin = {"Origin": srv.url}

    def events() -> int:
        return len(t.partner.get(f"/api/v1/tickets/{tk['id']}").json()["events"])

    before = events()
    # A forged POST as another site would send it: the browser attaches the cookies, but the
    # page that posts cannot know the token. No Origin header does not let it through.
    for label, data, headers in [
        ("no token", {"message": "x"}, {}),
        ("no token, same Origin", {"message": "x"}, origin),
        ("wrong token", {"message": "x", "csrf": "A" * 43}, origin),
        ("empty token", {"message": "x", "csrf": ""}, {}),
    ]:
        r = ui.post(action, data=data, headers=headers)
        assert r.status_code == 403, label
        assert r.headers["content-type"].startswith("text/html"), label
        assert "This form was refused" in r.text and "anti-forgery token" in r.text, label
        assert "Nothing was changed" in r.text, label
    # The right token from another site's page: the Origin (or Referer) names it.
    r = ui.post(action, data={**good, "message": "x"}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "evil.example" in r.text
    r = ui.post(action, data={**good, "message": "x"},
                headers={"Referer": "https://evil.example/a"})  # fmt: skip
    assert r.status_code == 403
    # Another browser's token (its own session) is no good here, and ours not there.
    other = _login(srv, _key(t.partner))
    theirs = _hidden(other.get(page).text, action)
    assert theirs["csrf"] != good["csrf"]
    assert ui.post(action, data={**theirs, "message": "x"}).status_code == 403
    assert events() == before
    # The page's own form goes through, with or without Origin.
    assert ui.post(action, data={**good, "message": "one"}, headers=origin).status_code == 303
    assert ui.post(action, data={**good, "message": "two"}).status_code == 303
    assert events() == before + 2
    # A token is bound to the session: after logging out and in again the old one fails.
    logout = _hidden(ui.get(page).text, "/ui/logout")
    assert ui.post("/ui/logout", data={}).status_code == 403  # no logout by forgery either
    assert ui.get("/ui/").status_code == 200
    assert ui.post("/ui/logout", data=logout).status_code == 303
    assert ui.get("/ui/", follow_redirects=False).status_code == 303
    again = _hidden(ui.get("/ui/login").text, "/ui/login")
    r = ui.post("/ui/login", data={**again, "email": email, "password": password})
    assert r.status_code == 303
    assert ui.post(action, data={**good, "message": "stale"}).status_code == 403
    assert events() == before + 2


def test_every_form_of_the_pages_carries_a_token_and_needs_it(make_store: Any, server: Any) -> None:
    srv = server(make_store(rules={"rtt": {"trip_after": 1}}))
    t = new_tenant(srv, "acme")
    t.post(icmp(300))
    [tk] = t.partner.get("/api/v1/tickets").json()
    ui = _login(srv, _key(t.partner))
    ticket, site = f"/ui/tickets/{tk['id']}", f"/ui/sites/{t.site_id}"
    forms = {
        ticket: [f"{ticket}/ack", f"{ticket}/resolve", f"{ticket}/comments",
                 f"{ticket}/call_info", "/ui/logout"],
        site: [f"{site}/readiness", f"{site}/call_info", "/ui/logout"],
    }  # fmt: skip
    for page, actions in forms.items():
        html = ui.get(page).text
        assert sorted(re.findall(r'<form[^>]*action="([^"]+)"', html)) == sorted(actions)
        for action in actions:
            assert "csrf" in _hidden(html, action), action
            r = ui.post(action, data={"message": "m", "calls": "2", "user": "u"})
            assert r.status_code == 403, action
    assert t.partner.get(f"/api/v1/tickets/{tk['id']}").json()["state"] == "open"
    assert t.partner.get(f"/api/v1/sites/{t.site_id}/readiness").json() == []
    # The login form itself: no token, no login (a page of ours posts it, nobody else).
    fresh = httpx.Client(base_url=srv.url, timeout=30)
    email, password = web_user(srv, _key(t.partner))
    creds = {"email": email, "password": password}
    r = fresh.post("/ui/login", data=creds)
    assert r.status_code == 403 and "qs_session" not in r.headers.get("set-cookie", "")
    assert fresh.post("/ui/login", data={**creds, "csrf": "x"}).status_code == 403


def test_tokens_are_bound_to_nonce_and_session() -> None:
    n1, n2 = csrf.new_nonce(), csrf.new_nonce()
    t = csrf.token(n1, "qsp_session")
    assert csrf.valid(n1, "qsp_session", t)
    assert not csrf.valid(n2, "qsp_session", t)
    assert not csrf.valid(n1, "qsp_other", t)
    assert not csrf.valid(n1, "qsp_session", None) and not csrf.valid(None, "qsp_session", t)


# --------------------------------------------------------------------------- throttles


def test_failed_authentications_from_an_address_get_429_but_working_keys_still_pass(
    make_store: Any, server: Any
) -> None:
    srv = server(make_store())  # the defaults: 10 failures at once, then one per 6 s
    now = _frozen_clock(srv)
    t = new_tenant(srv, "acme")
    t.post(icmp(20))  # the agent's key has worked from this address
    assert t.partner.get("/api/v1/customers").status_code == 200
    bad = {"Authorization": "Bearer qsp_guess"}
    # A key is not "seen working" by a 2xx of a route that does not check it.
    assert httpx.get(f"{srv.url}/healthz", headers=bad).status_code == 200
    assert httpx.get(f"{srv.url}/ui/login", headers=bad).status_code == 200
    codes = [httpx.get(f"{srv.url}/api/v1/customers", headers=bad).status_code for _ in range(10)]
    assert codes == [401] * 10
    r = httpx.get(f"{srv.url}/api/v1/customers", headers=bad)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "6"
    assert "too many failed authentications from 127.0.0.1" in r.json()["detail"]
    assert "web.auth_failures_max" in r.json()["detail"]
    # A new guess, a made-up agent key, no key, an enrollment: all refused while over budget.
    assert httpx.get(f"{srv.url}/api/v1/customers",
                     headers={"Authorization": "Bearer qsp_other"}).status_code == 429  # fmt: skip
    enroll = {"token": "qse_guess", "hostname": "h", "version": "0.1.0"}
    assert httpx.post(f"{srv.url}/api/v1/enroll", json=enroll).status_code == 429
    # Keys seen working from here still work: the other agents behind the same NAT ship.
    assert t.post(icmp(21))["stored"] == 1
    assert t.partner.get("/api/v1/customers").status_code == 200
    # Counted in the collector's stats.
    snap = srv.state.stats.snapshot()
    assert snap["auth_failures"] == 10 and snap["throttled"]["auth_failures"] >= 3
    # The budget refills, one try per 6 s: the address may try once more, then waits again.
    now[0] += 5.0
    assert httpx.get(f"{srv.url}/api/v1/customers", headers=bad).status_code == 429
    now[0] += 1.0
    assert httpx.get(f"{srv.url}/api/v1/customers", headers=bad).status_code == 401
    r = httpx.get(f"{srv.url}/api/v1/customers", headers=bad)
    assert r.status_code == 429 and r.headers["retry-after"] == "6"
    # The operator sees them on /metrics (the partner's own scrape does not).
    now[0] += 60.0
    text = httpx.get(f"{srv.url}/metrics", headers=srv.scrape_headers).text
    assert "qos_scout_auth_failures_total 11.0" in text
    assert 'qos_scout_throttled_total{reason="auth_failures"} 5.0' in text
    assert 'qos_scout_throttled_total{reason="partner_rate"} 0.0' in text
    assert "qos_scout_throttled" not in t.partner.get("/api/v1/metrics").text


def test_health_checks_and_a_working_scrape_token_pass_a_throttled_address(
    make_store: Any, server: Any
) -> None:
    """A load balancer's health check and the operator's Prometheus share an address with a
    client that guessed keys: /healthz and /readyz are never throttled, and a scrape token
    seen working keeps working (both answered 429 once the address was over budget)."""
    srv = server(make_store())
    _frozen_clock(srv)
    assert httpx.get(f"{srv.url}/metrics", headers=srv.scrape_headers).status_code == 200
    bad = {"Authorization": "Bearer qsp_guess"}
    codes = [httpx.get(f"{srv.url}/api/v1/customers", headers=bad).status_code for _ in range(11)]
    assert codes == [401] * 10 + [429]
    assert httpx.get(f"{srv.url}/healthz").status_code == 200
    assert httpx.get(f"{srv.url}/readyz").status_code == 200
    assert httpx.get(f"{srv.url}/metrics", headers=srv.scrape_headers).status_code == 200
    assert httpx.get(f"{srv.url}/metrics", headers=bad).status_code == 429


def test_failed_web_logins_are_throttled_with_a_page(make_store: Any, server: Any) -> None:
    srv = server(make_store(web={"auth_failures_max": 3}))
    t = new_tenant(srv, "acme")
    ui = httpx.Client(base_url=srv.url, timeout=30)
    form = _hidden(ui.get("/ui/login").text, "/ui/login")
    email, password = web_user(srv, _key(t.partner))
    for _ in range(3):
        r = ui.post("/ui/login", data={**form, "email": email, "password": "wrong-password"})
        assert r.status_code == 401 and "Wrong e-mail or password." in r.text
    # Even the right password waits: guessing must not go on by trying it in between.
    r = ui.post("/ui/login", data={**form, "email": email, "password": password})
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("text/html")
    assert "Too many requests" in r.text and "try again in" in r.text
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["content-security-policy"] == STRICT_CSP
    # A partner already logged in keeps working from that address.
    assert t.partner.get("/api/v1/customers").status_code == 200


def test_forwarded_for_is_believed_only_from_trusted_proxies(make_store: Any, server: Any) -> None:
    bad = {"Authorization": "Bearer qsp_guess"}

    def fail(srv: LiveServer, client: str) -> int:
        h = {**bad, "X-Forwarded-For": client}
        return httpx.get(f"{srv.url}/api/v1/customers", headers=h).status_code

    # Default: nobody is trusted, the header changes nothing (the peer is 127.0.0.1).
    srv = server(make_store(web={"auth_failures_max": 3}))
    assert [fail(srv, f"203.0.113.{i}") for i in range(4)] == [401, 401, 401, 429]
    # Behind a trusted proxy the client is the right-most hop the proxy did not write.
    srv = server(make_store(web={"auth_failures_max": 3, "trusted_proxies": ["127.0.0.0/8"]}))
    assert [fail(srv, "203.0.113.1") for _ in range(4)] == [401, 401, 401, 429]
    assert fail(srv, "203.0.113.2") == 401  # another client behind the same proxy
    assert fail(srv, "203.0.113.1, 127.0.0.1") == 429  # a second trusted hop is skipped
    assert fail(srv, "203.0.113.1, 198.51.100.9") == 401  # spoofed left part ignored


def test_a_partner_over_its_request_rate_gets_429_others_do_not(
    make_store: Any, server: Any
) -> None:
    srv = server(make_store(web={"partner_requests_per_s": 0.05, "partner_burst": 5}))
    a, b = new_tenant(srv, "acme"), new_tenant(srv, "globex")  # 4 requests each so far
    codes = [a.partner.get("/api/v1/customers").status_code for _ in range(3)]
    r = a.partner.get("/api/v1/customers")
    assert codes[:2] == [200, 200] and 429 in [*codes, r.status_code]
    r = r if r.status_code == 429 else a.partner.get("/api/v1/customers")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "web.partner_requests_per_s" in r.json()["detail"]
    # A user's web session is a credential of its own, with its own budget.
    ui = _login(srv, _key(a.partner))
    pages = [ui.get("/ui/").status_code for _ in range(8)]  # the first one proves it
    assert pages[0] == 200 and pages[-1] == 429, pages
    # Another partner and the agents are not slowed down.
    assert b.partner.get("/api/v1/customers").status_code == 200
    assert a.post(icmp(20))["stored"] == 1
    assert srv.state.stats.snapshot()["throttled"]["partner_rate"] >= 2


def test_token_buckets_with_the_time_passed_in() -> None:
    b = Buckets(rate=1.0, burst=3, max_keys=100)
    assert [b.take("k", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("k", 0.0) == pytest.approx(1.0)
    assert b.take("k", 0.5) == pytest.approx(0.5)
    assert b.take("k", 1.0) == 0.0
    assert b.wait("other", 0.0) == 0.0  # an unknown key waits for nothing
    for _ in range(5):
        b.spend("f", 10.0)
    assert b.wait("f", 10.0) == pytest.approx(1.0)  # spent to empty, not below
    assert b.wait("f", 11.0) == 0.0


def test_the_buckets_forget_the_least_recently_seen_keys() -> None:
    b = Buckets(rate=1.0, burst=1, max_keys=100)
    t0 = time.perf_counter()
    for i in range(10_000):
        b.spend(f"198.51.{i // 256}.{i % 256}", 0.0)
    per_op_us = (time.perf_counter() - t0) / 10_000 * 1e6
    assert len(b) == 100
    assert b.wait("198.51.0.0", 0.0) == 0.0  # forgotten: a fresh budget
    assert b.wait("198.51.39.15", 0.0) > 0  # the last one seen is remembered
    print(f"bucket spend: {per_op_us:.2f} us per call")


def test_client_address_and_credential_from_the_scope() -> None:
    def scope(peer: str, *xff: str, **extra: Any) -> dict[str, Any]:
        headers = [(b"x-forwarded-for", v.encode()) for v in xff]
        headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        return {"client": (peer, 5000), "headers": headers, "path": extra.get("path", "/ui/")}

    nobody = parse_networks([])
    proxies = parse_networks(["10.0.0.0/8", "2001:db8::/32"])
    assert client_address(scope("10.0.0.1", "203.0.113.5"), nobody) == "10.0.0.1"
    assert client_address(scope("10.0.0.1", "203.0.113.5"), proxies) == "203.0.113.5"
    assert client_address(scope("10.0.0.1", "1.1.1.1, 203.0.113.5, 10.0.0.2"), proxies) == (
        "203.0.113.5"
    )
    assert client_address(scope("10.0.0.1", "1.1.1.1", "203.0.113.5"), proxies) == "203.0.113.5"
    assert client_address(scope("10.0.0.1", "garbage"), proxies) == "10.0.0.1"
    assert client_address(scope("10.0.0.1", "10.0.0.3"), proxies) == "10.0.0.3"  # all trusted
    assert client_address(scope("10.0.0.1", "[2001:db9::1]:443"), proxies) == "2001:db9::1"
    assert client_address(scope("10.0.0.1"), proxies) == "10.0.0.1"
    assert client_address(scope("192.0.2.1", "203.0.113.5"), proxies) == "192.0.2.1"
    assert failure_key("192.0.2.1") == "192.0.2.1"
    assert (
        failure_key("2001:db8:1:2:aaaa::1")
        == failure_key("2001:db8:1:2::ffff")
        == ("2001:db8:1:2::/64")
    )
    assert failure_key("::ffff:192.0.2.1") == "192.0.2.1"
    cred = credential({"path": "/api/v1/x", "headers": [(b"authorization", b"Bearer qsa_k")]})
    assert cred is not None and cred[1] is False  # an agent's key: no partner rate
    cred = credential({"path": "/ui/", "headers": [(b"cookie", b"a=b; qs_session=qsp_k")]})
    assert cred is not None and cred[1] is True
    assert credential({"path": "/api/v1/x", "headers": [(b"cookie", b"qs_session=k")]}) is None


# --------------------------------------------------------------------------- browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


def _report() -> dict[str, Any]:
    from datetime import UTC, datetime

    from agent.wire.readiness import Check, ReadinessReport, Series

    rep = ReadinessReport(
        verdict="fail", started_at=datetime(2030, 1, 1, tzinfo=UTC), duration_s=30.0,
        responder="192.0.2.7",
        checks=[Check(id="voice.jitter.out", group="voice", name="Jitter", status="fail")],
        series=[Series(title="Jitter upstream", x_label="s", y_label="ms",
                       points=[(0.0, 3.0), (1.0, 45.0), (2.0, 38.0)], limit=30.0)],
    )  # fmt: skip
    return rep.model_dump(mode="json")


def _note_failure(failed: list[str], status: int, url: str) -> None:
    if status >= 400:
        failed.append(f"{status} {url}")


def test_the_pages_work_in_chromium_under_the_csp(make_store: Any, server: Any) -> None:
    """Every page in a real browser: styled, the readiness page's progress updates live
    from its script file, forms submit with their token, and the browser reports no CSP
    violation (a page still using inline script or style would)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)")
    srv = server(make_store(rules={"rtt": {"trip_after": 1}}))
    t = new_tenant(srv, "acme")
    t.post(icmp(300))
    [tk] = t.partner.get("/api/v1/tickets").json()
    queued = t.partner.post(
        f"/api/v1/sites/{t.site_id}/readiness",
        json={"options": {"responder": "192.0.2.7"}, "open_ticket": False},
    )
    jid = queued.json()["id"]
    console: list[str] = []
    failed: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("response", lambda r: _note_failure(failed, r.status, r.url))
            page.add_init_script(
                "document.addEventListener('securitypolicyviolation', e => console.error("
                "'CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
            )
            page.goto(f"{srv.url}/ui/")
            email, password = web_user(srv, _key(t.partner))
            page.get_by_label("E-mail").fill(email)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("heading", name="Sites").wait_for()
            # The stylesheet applied: the header has its blue background.
            bg = page.eval_on_selector("header", "e => getComputedStyle(e).backgroundColor")
            assert bg == "rgb(13, 71, 161)", bg
            # The readiness page polls its status from /ui/static/readiness.js.
            page.goto(f"{srv.url}/ui/readiness/{jid}")
            assert page.locator("#state").inner_text() == "queued"
            r = t.agent.post(f"/api/v1/agent/jobs/{jid}/status",
                             json={"state": "running", "progress": 0.5,
                                   "message": "measuring the voice stream"})  # fmt: skip
            assert r.status_code == 200, r.text
            page.locator("#message", has_text="measuring the voice stream").wait_for()
            assert page.locator("#progress").get_attribute("value") is not None
            assert page.eval_on_selector("#progress", "e => e.value") == 0.5
            # Done: the script reloads the page, which embeds the report and its plots.
            r = t.agent.post(
                f"/api/v1/agent/jobs/{jid}/status",
                json={"state": "done", "report": {"readiness": _report()}},
            )
            assert r.status_code == 200, r.text
            page.get_by_text("Verdict:").wait_for()
            assert page.locator(".qsr svg").count() == 1
            fail = page.eval_on_selector(".qsr .b-fail", "e => getComputedStyle(e).backgroundColor")
            assert fail == "rgb(198, 40, 40)", fail  # report.css applied
            # A form of the page, submitted by the browser with its token.
            page.goto(f"{srv.url}/ui/tickets/{tk['id']}")
            page.get_by_label("Note (optional)").fill("looking")
            page.get_by_role("button", name="Acknowledge").click()
            page.locator("#ticket-state", has_text="acknowledged").wait_for()
            for path in ("/ui/tickets", f"/ui/sites/{t.site_id}"):
                page.goto(f"{srv.url}{path}")
                page.wait_for_load_state("load")
            page.get_by_role("button", name="Log out").click()
            page.get_by_role("heading", name="Log in").wait_for()
            # The collector's pages cannot be framed by another page.
            framer = browser.new_page()
            with framer.expect_console_message(lambda m: "frame-ancestors" in m.text) as refused:
                framer.set_content(f'<iframe src="{srv.url}/ui/login"></iframe>')
            assert "has been blocked" in refused.value.text
        finally:
            browser.close()
    assert [c for c in console if "violation" in c.lower() or "refused" in c.lower()] == []
    # Nothing the pages load is missing (the browser may ask for a favicon, there is none).
    assert [f for f in failed if not f.endswith("/favicon.ico")] == []
    assert [c for c in console if c.startswith("error") and "404" not in c] == []
    assert t.partner.get(f"/api/v1/tickets/{tk['id']}").json()["state"] == "acknowledged"


# --------------------------------------------------------------------------- serve


def test_collector_serve_believes_forwarded_headers_only_from_its_trusted_proxies(
    tmp_path: Any,
) -> None:
    """The real `collector serve` process: uvicorn's own proxy-header handling (which trusts
    127.0.0.1 by default) is off, so only `web.trusted_proxies` decides."""
    from tests.collector.peers import start_collector
    from tests.collector.pg import free_port

    bad = {"Authorization": "Bearer qsp_guess"}

    def serve(name: str, web: str) -> tuple[Any, str]:
        cfg = tmp_path / f"{name}.yml"
        cfg.write_text(f"db: sqlite:///{tmp_path}/{name}.db\nweb: {web}\n")
        port = free_port()
        return start_collector(port, "--config", str(cfg)), f"http://127.0.0.1:{port}"

    def fail(url: str, client: str) -> int:
        h = {**bad, "X-Forwarded-For": client}
        return httpx.get(f"{url}/api/v1/customers", headers=h).status_code

    proc, url = serve("default", "{auth_failures_max: 2}")
    try:
        assert [fail(url, f"203.0.113.{i}") for i in range(3)] == [401, 401, 429]
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    proc, url = serve("proxied", "{auth_failures_max: 2, trusted_proxies: [127.0.0.1]}")
    try:
        assert [fail(url, "203.0.113.1") for _ in range(3)] == [401, 401, 429]
        assert fail(url, "203.0.113.2") == 401
        # X-Forwarded-Proto from the proxy: the cookies are Secure behind a TLS front.
        r = httpx.get(f"{url}/ui/login", headers={"X-Forwarded-Proto": "https"})
        assert "secure" in r.headers["set-cookie"].lower()
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    # The access log names the client the throttle saw, not the proxy.
    assert proc.stderr is not None
    lines = [json.loads(x) for x in proc.stderr.read().decode().splitlines() if x.startswith("{")]
    clients = {x.get("client") for x in lines if x.get("path") == "/api/v1/customers"}
    assert clients == {"203.0.113.1", "203.0.113.2"}, clients


@pytest.mark.parametrize(
    ("web", "message"),
    [
        ({"trusted_proxies": ["proxy.local"]}, "web.trusted_proxies: 'proxy.local' is not an IP "
         "address or network (e.g. 10.0.0.5 or 10.0.0.0/24)"),
        ({"trusted": []}, "web.trusted: unknown key"),
        ({"partner_requests_per_s": -1},
         "web.partner_requests_per_s: Input should be greater than or equal to 0"),
        ({"max_tracked": 10}, "web.max_tracked: Input should be greater than or equal to 100"),
    ],
)  # fmt: skip
def test_the_web_config_names_what_is_wrong(web: dict[str, Any], message: str) -> None:
    from collector.config import ConfigFileError, parse_config

    with pytest.raises(ConfigFileError) as exc:
        parse_config({"web": web})
    assert str(exc.value) == f"config: {message}"
    cfg = parse_config({"web": {"trusted_proxies": ["10.0.0.5", " 2001:db8::/32 "]}})
    assert cfg.web.trusted_proxies == ["10.0.0.5", "2001:db8::/32"]
