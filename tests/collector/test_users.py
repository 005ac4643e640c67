"""People, not keys: an invitation e-mailed through a real SMTP server (aiosmtpd) is followed
to set a password and log in; sessions end at logout, when idle, when old and when revoked;
every API route and support page answers each role as collector/authz.py allows (403),
another partner's and another customer's objects are 404; a customer viewer never sees the
product's or another partner's name; the brand is validated. One collector per database
(SQLite and PostgreSQL) for the whole module."""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from cryptography.fernet import Fernet
from fastapi.routing import APIRoute

from collector import users
from collector.config import CollectorConfig
from collector.store import Store
from tests.collector.conftest import (
    SCRAPE_TOKEN,
    TEMPLATE_DB,
    LiveServer,
    form_fields,
    icmp,
    new_tenant,
    web_login_as,
    web_user,
)
from tests.collector.peers import wait_for
from tests.collector.pg import free_port
from tests.collector.test_readiness_report import _report

PRODUCT = re.compile(r"qos[-_ ]?scout", re.I)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf8")))
        return "250 Message accepted for delivery"


@dataclass
class World:
    srv: LiveServer
    inbox: _Inbox
    offset: list[float]
    a: Any  # tenant "acme": customer 1, its site, agent, a ticket and a readiness test
    b: Any  # tenant "globex": another partner
    c2: str = ""  # acme's second customer
    s2: str = ""  # its site
    job: str = ""
    ticket: str = ""
    token_id: str = ""
    window: str = ""  # a maintenance window of acme's first site
    report: str = ""  # a report of acme's first customer
    channel: str = ""  # acme's PSA channel
    page_channel: str = ""  # another, for the pages (the API table's DELETE removes the first)
    creds: dict[str, tuple[str, str]] = field(default_factory=dict)  # role -> e-mail, pw
    api: dict[str, httpx.Client] = field(default_factory=dict)  # role -> user token client

    def key(self, t: Any) -> str:
        return str(t.partner.headers["authorization"]).split()[1]


def _db(request: pytest.FixtureRequest, tmp: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp}/collector.sqlite3"
        return
    cluster = request.getfixturevalue("pg_cluster")
    with cluster.database("u", TEMPLATE_DB) as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    inbox, port = _Inbox(), free_port()
    smtpd = Controller(inbox, hostname="127.0.0.1", port=port)
    smtpd.start()
    db = _db(request, tmp_path_factory.mktemp("users"))
    url = next(db)
    store = Store(
        CollectorConfig(
            db=url, metrics={"token": SCRAPE_TOKEN}, rules={"rtt": {"trip_after": 1}},
            mail={"host": "127.0.0.1", "port": port, "from": "portal@example.net",
                  "portal_url": "http://127.0.0.1:1"},
            web={"partner_requests_per_s": 0},
            channels={"master_keys": [Fernet.generate_key().decode()]},
        )
    )  # fmt: skip
    store.migrate()
    offset = [0.0]
    srv = LiveServer(store, clock=lambda: time.time() + offset[0], background=False).start()
    try:
        w = World(srv, inbox, offset, new_tenant(srv, "acme"), new_tenant(srv, "globex"))
        w.a.post(icmp(300))
        [tk] = w.a.partner.get("/api/v1/tickets").json()
        w.ticket = tk["id"]
        c2 = w.a.partner.post("/api/v1/customers", json={"name": "Second Customer"}).json()
        w.c2 = c2["id"]
        s2 = w.a.partner.post("/api/v1/sites", json={"customer_id": w.c2, "name": "s2-branch"})
        w.s2 = s2.json()["id"]
        w.token_id = w.a.partner.post(f"/api/v1/sites/{w.s2}/tokens", json={}).json()["id"]
        body = {"options": {"responder": "192.0.2.7"}, "open_ticket": False}
        w.job = w.a.partner.post(f"/api/v1/sites/{w.a.site_id}/readiness", json=body).json()["id"]
        status = {"state": "done", "report": {"readiness": _report(1)}}
        done = w.a.agent.post(f"/api/v1/agent/jobs/{w.job}/status", json=status)
        assert done.status_code == 200, done.text
        window = {"scope": "site", "scope_id": w.a.site_id, "schedule": {
            "kind": "weekly", "weekday": "sunday", "start": "02:30", "duration_min": 60,
            "timezone": "UTC"}}  # fmt: skip
        w.window = w.a.partner.post("/api/v1/maintenance", json=window).json()["id"]
        month = {"customer_id": w.a.customer_id, "month": "2026-01"}
        rep = w.a.partner.post("/api/v1/reports", json=month)
        assert rep.status_code == 201, rep.text
        w.report = rep.json()["id"]
        psa = {"type": "connectwise", "name": "psa", "url": "https://psa.example.invalid/v4",
               "company": "acme", "client_id": "c", "public_key": "p", "private_key": "k",
               "board": "Voice"}  # fmt: skip
        ch = w.a.partner.post("/api/v1/channels", json=psa)
        assert ch.status_code == 201, ch.text
        w.channel = str(ch.json()["id"])
        ch = w.a.partner.post("/api/v1/channels", json={**psa, "name": "psa-page"})
        w.page_channel = str(ch.json()["id"])
        roles = {"admin": None, "technician": None, "customer": w.a.customer_id}
        for role, cust in roles.items():
            w.creds[role] = web_user(srv, w.key(w.a), role, cust)
        w.creds["other"] = web_user(srv, w.key(w.b), "admin")
        for who, (mail, pw) in w.creds.items():
            ui = web_login_as(srv, mail, pw)
            tok = form_fields(ui.get("/ui/account").text, "/ui/account/tokens")
            page = ui.post("/ui/account/tokens", data={**tok, "name": "test"})
            token = re.search(r"<code>(qsu_[^<]+)</code>", page.text)
            assert page.status_code == 201 and token, page.text[:300]
            bearer = {"Authorization": f"Bearer {token.group(1)}"}
            w.api[who] = httpx.Client(base_url=srv.url, timeout=30, headers=bearer)
        yield w
    finally:
        srv.stop()
        store.dispose()
        smtpd.stop()
        next(db, None)


# --------------------------------------------------------------------------- invitations


def test_an_invitation_arrives_by_email_sets_a_password_once_and_logs_in(world: World) -> None:
    w = world
    brand = {"name": "Acme Voice Care", "primary_color": "#123456", "accent_color": "#abcdef",
             "support_contact": "help@acme.example"}  # fmt: skip
    assert w.api["admin"].put("/api/v1/brand", json=brand).status_code == 200
    admin = web_login_as(w.srv, *w.creds["admin"])
    form = form_fields(admin.get("/ui/users").text, "/ui/users")
    invitee = f"viewer-{uuid.uuid4().hex[:6]}@customer.example"
    r = admin.post("/ui/users", data={**form, "email": invitee, "role": "customer",
                                      "customer_id": w.a.customer_id})  # fmt: skip
    assert r.status_code == 201 and f"Invitation sent to {invitee}." in r.text, r.text[:500]
    _rcpts, raw = wait_for(lambda: [m for m in w.inbox.messages if invitee in m[0]][-1:],
                           what="the invitation e-mail")[0]  # fmt: skip
    msg = email.message_from_string(raw, policy=email.policy.default)
    assert msg["Subject"] == "Your Acme Voice Care support portal account"
    text = msg.get_content()
    assert not PRODUCT.search(raw) and "help@acme.example" in text
    link = re.search(r"http://127\.0\.0\.1:1(/ui/invite/\S+)", text)
    assert link, text
    ui = httpx.Client(base_url=w.srv.url, timeout=30)
    page = ui.get(link.group(1))
    assert page.status_code == 200 and invitee in page.text and "Acme Voice Care" in page.text
    fields = form_fields(page.text, link.group(1))
    short = ui.post(link.group(1), data={**fields, "password": "short", "password2": "short"})
    assert short.status_code == 422 and "password: must be 10 to 256" in short.text
    pw = "correct horse battery"
    done = ui.post(link.group(1), data={**fields, "password": pw, "password2": pw})
    assert done.status_code == 303 and done.headers["location"].startswith("/ui/login")
    assert ui.get(link.group(1)).status_code == 404  # single use
    viewer = web_login_as(w.srv, invitee, pw)
    home = viewer.get("/ui/")
    assert "acme-hq" in home.text and "s2-branch" not in home.text
    log = w.api["admin"].get("/api/v1/audit").json()
    admin_mail = w.creds["admin"][0]
    assert {(e["actor"], e["action"], e["target"]) for e in log} >= {
        (f"user:{admin_mail}", "user.invite", invitee),
        (f"user:{invitee}", "user.accept_invitation", invitee),
        (f"user:{admin_mail}", "brand.update", ""),
    }


def test_an_expired_invitation_is_refused(world: World) -> None:
    w = world
    r = w.api["admin"].post(
        "/api/v1/users", json={"email": "late@example.com", "role": "technician"}
    )
    assert r.status_code == 201 and r.json()["invitation_link"] is None  # e-mailed
    [(_, raw)] = [m for m in w.inbox.messages if "late@example.com" in m[0]]
    path = re.search(r"(/ui/invite/\S+)", raw).group(1)  # type: ignore[union-attr]
    w.offset[0] = users.INVITE_TTL_S + 1
    try:
        page = httpx.get(w.srv.url + path)
        assert page.status_code == 404 and "has expired" in page.text
    finally:
        w.offset[0] = 0.0


# --------------------------------------------------------------------------- sessions


def test_sessions_end_at_logout_when_idle_when_old_and_when_revoked(world: World) -> None:
    w = world
    mail, pw = w.creds["technician"]
    one, two = web_login_as(w.srv, mail, pw), web_login_as(w.srv, mail, pw)
    cookie = one.cookies["qs_session"]
    listed = w.api["technician"].get("/api/v1/me/sessions").json()
    assert len(listed) >= 2
    # Logout ends the session on the server: the old cookie replayed is not let in.
    out = form_fields(one.get("/ui/").text, "/ui/logout")
    assert one.post("/ui/logout", data=out).status_code == 303
    replay = httpx.Client(base_url=w.srv.url, cookies={"qs_session": cookie}, timeout=30)
    assert replay.get("/ui/", follow_redirects=False).status_code == 303
    # Revoking a session from the account page logs that browser out.
    three = web_login_as(w.srv, mail, pw)
    page = three.get("/ui/account").text
    ids = re.findall(r'action="/ui/account/sessions/([0-9a-f]+)/revoke"', page)
    own = re.search(r"\(this one\)</td>\s*<td><form[^>]*sessions/([0-9a-f]+)/revoke", page)
    assert own and len(ids) >= 2, page
    for sid in ids:
        if sid != own.group(1):
            tok = form_fields(three.get("/ui/account").text, f"/ui/account/sessions/{sid}/revoke")
            assert three.post(f"/ui/account/sessions/{sid}/revoke", data=tok).status_code == 303
    assert two.get("/ui/", follow_redirects=False).status_code == 303
    assert three.get("/ui/", follow_redirects=False).status_code == 200
    # Idle expiry, then the absolute one even for a session in use.
    four = web_login_as(w.srv, mail, pw)
    try:
        w.offset[0] = users.SESSION_IDLE_S + 1
        assert four.get("/ui/", follow_redirects=False).status_code == 303
        w.offset[0] = 0.0
        five = web_login_as(w.srv, mail, pw)
        step = users.SESSION_IDLE_S - 60
        while w.offset[0] + step < users.SESSION_MAX_S:
            w.offset[0] += step
            assert five.get("/ui/", follow_redirects=False).status_code == 200
        w.offset[0] = users.SESSION_MAX_S + 1
        assert five.get("/ui/", follow_redirects=False).status_code == 303
    finally:
        w.offset[0] = 0.0
    actions = [e["action"] for e in w.api["admin"].get("/api/v1/audit").json()]
    assert "session.revoke" in actions


# --------------------------------------------------------------------------- roles


ROLES = ("admin", "technician", "customer")
A, T, C = "admin", "technician", "customer"
# Every partner route: the roles that may use it. A route missing here fails the test.
API: dict[tuple[str, str], set[str]] = {
    ("GET", "/api/v1/partner"): {A, T},
    ("GET", "/api/v1/customers"): {A, T},
    ("POST", "/api/v1/customers"): {A, T},
    ("GET", "/api/v1/customers/{customer_id}"): {A, T, C},
    ("PATCH", "/api/v1/customers/{customer_id}"): {A, T},
    ("DELETE", "/api/v1/customers/{customer_id}"): {A, T},
    ("GET", "/api/v1/sites"): {A, T, C},
    ("POST", "/api/v1/sites"): {A, T},
    ("GET", "/api/v1/sites/{site_id}"): {A, T, C},
    ("PATCH", "/api/v1/sites/{site_id}"): {A, T},
    ("POST", "/api/v1/sites/{site_id}/tokens"): {A},
    ("GET", "/api/v1/agents"): {A, T},
    ("GET", "/api/v1/agents/{agent_id}"): {A, T},
    ("POST", "/api/v1/agents/{agent_id}/disable"): {A},
    ("POST", "/api/v1/agents/{agent_id}/enable"): {A},
    ("POST", "/api/v1/agents/{agent_id}/revoke"): {A},
    ("POST", "/api/v1/agents/{agent_id}/rotate-key"): {A},
    ("GET", "/api/v1/tokens"): {A},
    ("POST", "/api/v1/tokens/{token_id}/revoke"): {A},
    ("GET", "/api/v1/metrics"): {A, T},
    ("GET", "/api/v1/results"): {A, T},
    ("POST", "/api/v1/sites/{site_id}/jobs"): {A, T},
    ("GET", "/api/v1/jobs/{job_id}"): {A, T, C},
    ("GET", "/api/v1/rules"): {A, T},
    ("PUT", "/api/v1/rules/overrides"): {A, T},
    ("GET", "/api/v1/sites/{site_id}/history"): {A, T, C},
    ("GET", "/api/v1/profiles/{scope}/{scope_id}"): {A, T},
    ("PUT", "/api/v1/profiles/{scope}/{scope_id}"): {A, T},
    ("DELETE", "/api/v1/profiles/{scope}/{scope_id}"): {A, T},
    ("GET", "/api/v1/sites/{site_id}/config"): {A, T},
    ("POST", "/api/v1/sites/{site_id}/readiness"): {A, T},
    ("GET", "/api/v1/sites/{site_id}/readiness"): {A, T, C},
    ("GET", "/api/v1/readiness/{job_id}"): {A, T, C},
    ("GET", "/api/v1/readiness/{job_id}/report.html"): {A, T, C},
    ("GET", "/api/v1/readiness/{job_id}/report.json"): {A, T, C},
    ("POST", "/api/v1/readiness/{job_id}/ticket"): {A, T},
    ("GET", "/api/v1/sites/{site_id}/call_info/events"): {A, T},
    ("PUT", "/api/v1/tickets/{ticket_id}/call_info"): {A, T, C},
    ("GET", "/api/v1/tickets"): {A, T, C},
    ("GET", "/api/v1/tickets/{ticket_id}"): {A, T, C},
    ("POST", "/api/v1/tickets/{ticket_id}/ack"): {A, T},
    ("POST", "/api/v1/tickets/{ticket_id}/resolve"): {A, T},
    ("POST", "/api/v1/tickets/{ticket_id}/comments"): {A, T, C},
    ("GET", "/api/v1/audit"): {A},
    ("GET", "/api/v1/users"): {A},
    ("POST", "/api/v1/users"): {A},
    ("PATCH", "/api/v1/users/{user_id}"): {A},
    ("GET", "/api/v1/me/sessions"): {A, T, C},
    ("POST", "/api/v1/me/sessions/{session_id}/revoke"): {A, T, C},
    ("POST", "/api/v1/me/tokens"): {A, T, C},
    ("GET", "/api/v1/brand"): {A, T, C},
    ("PUT", "/api/v1/brand"): {A},
    ("GET", "/api/v1/sla/targets"): {A, T},
    ("PUT", "/api/v1/sla/targets"): {A},
    ("GET", "/api/v1/maintenance"): {A, T},
    ("POST", "/api/v1/maintenance"): {A, T},
    ("DELETE", "/api/v1/maintenance/{window_id}"): {A, T},
    ("GET", "/api/v1/sites/{site_id}/badcall"): {A, T, C},
    ("POST", "/api/v1/sites/{site_id}/badcall/attach"): {A, T},
    ("GET", "/api/v1/rollup"): {A, T},
    ("GET", "/api/v1/customers/{customer_id}/rollup"): {A, T, C},
    ("POST", "/api/v1/reports"): {A, T},
    ("GET", "/api/v1/reports"): {A, T, C},
    ("GET", "/api/v1/reports/{report_id}"): {A, T, C},
    ("GET", "/api/v1/reports/{report_id}/report.{fmt}"): {A, T, C},
    ("GET", "/api/v1/customers/{customer_id}/report-schedule"): {A, T},
    ("PUT", "/api/v1/customers/{customer_id}/report-schedule"): {A, T},
    ("DELETE", "/api/v1/customers/{customer_id}/report-schedule"): {A, T},
    ("GET", "/api/v1/channels"): {A},
    ("POST", "/api/v1/channels"): {A},
    ("GET", "/api/v1/channels/{channel_id}"): {A},
    ("PATCH", "/api/v1/channels/{channel_id}"): {A},
    ("DELETE", "/api/v1/channels/{channel_id}"): {A},
    ("POST", "/api/v1/channels/{channel_id}/test"): {A},
    ("GET", "/api/v1/channels/{channel_id}/mappings"): {A},
    ("PUT", "/api/v1/channels/{channel_id}/mappings/{scope_id}"): {A},
    ("DELETE", "/api/v1/channels/{channel_id}/mappings/{scope_id}"): {A},
}
# Support pages (GET): the roles that may see them; the others get 403.
UI: dict[str, set[str]] = {
    "/ui/": {A, T, C}, "/ui/tickets": {A, T, C}, "/ui/account": {A, T, C},
    "/ui/sites/{site_id}": {A, T, C}, "/ui/tickets/{ticket_id}": {A, T, C},
    "/ui/readiness/{job_id}": {A, T, C}, "/ui/readiness/{job_id}/status": {A, T, C},
    "/ui/readiness/{job_id}/report.{fmt}": {A, T, C},
    "/ui/users": {A}, "/ui/audit": {A}, "/ui/brand": {A},
    "/ui/manage": {A, T}, "/ui/manage/sites/{site_id}": {A, T},
    "/ui/home": {A, T, C}, "/ui/customers/{customer_id}": {A, T, C},
    "/ui/sites/{site_id}/badcall": {A, T, C}, "/ui/maintenance": {A, T},
    "/ui/reports": {A, T, C}, "/ui/reports/{report_id}/report.{fmt}": {A, T, C},
    "/ui/channels": {A}, "/ui/channels/new": {A}, "/ui/channels/{channel_id}": {A},
}  # fmt: skip
# Pages anyone may open (before logging in): not role-checked.
UI_PUBLIC = {"/ui/static/{name}", "/ui/login", "/ui/invite/{token}",
             "/ui/brand/{partner_id}/logo", "/ui/brand/{partner_id}/style.css"}  # fmt: skip


def all_routes(routes: Any) -> Iterator[APIRoute]:
    """Every route of the app, those of included routers too."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        elif hasattr(r, "original_router"):  # an included router (FastAPI >= 0.16x)
            yield from all_routes(r.original_router.routes)


def _partner_routes(app: Any) -> set[tuple[str, str]]:
    from collector.api.state import current_partner

    out = set()
    for r in all_routes(app.routes):
        if isinstance(r, APIRoute) and any(
            d.call is current_partner for d in r.dependant.dependencies
        ):
            out |= {(m, r.path) for m in r.methods}
    return out


def _fill(w: World, path: str, own: bool) -> str:
    """The path with the ids of acme's first customer (own) or its second one."""
    ids = {
        "site_id": w.a.site_id if own else w.s2, "customer_id": w.a.customer_id if own else w.c2,
        "ticket_id": w.ticket, "job_id": w.job, "agent_id": w.a.agent_id,
        "token_id": w.token_id, "scope": "site", "scope_id": w.a.site_id if own else w.s2,
        "user_id": "0" * 36, "session_id": "0" * 16, "fmt": "json",
        "window_id": w.window, "report_id": w.report, "channel_id": w.channel,
    }  # fmt: skip
    if "/reports/" in path:
        ids["fmt"] = "html"  # a report is a page or a PDF
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)


def test_every_api_route_answers_each_role_as_the_table_says(world: World) -> None:
    w = world
    routes = _partner_routes(w.srv.app)
    assert routes == set(API), (sorted(routes - set(API)), sorted(set(API) - routes))
    bad: list[str] = []
    for (method, path), allowed in sorted(API.items()):
        writes = method != "GET"
        for role in ROLES:
            url = _fill(w, path, own=True)
            # A write goes with a body no route accepts: an allowed role gets 422, not a change.
            r = w.api[role].request(method, url, json={"no such field": 1} if writes else None)
            want_ok = role in allowed
            if (want_ok and r.status_code in (401, 403)) or r.status_code >= 500:
                bad.append(f"{role} {method} {url}: {r.status_code} {r.text[:120]}")
            if not want_ok and r.status_code != 403:
                bad.append(f"{role} {method} {url}: {r.status_code}, expected 403")
        # Another partner's admin: acme's objects are not found.
        if "{" in path and "{scope}" not in path and "{session_id}" not in path:
            r = w.api["other"].request(method, _fill(w, path, True), json={"x": 1})
            if r.status_code != 404:
                bad.append(f"other partner {method} {path}: {r.status_code}, expected 404")
        # A customer viewer: the other customer's site is not found either.
        if C in allowed and ("{site_id}" in path or "{customer_id}" in path):
            r = w.api[C].request(method, _fill(w, path, own=False), json={"x": 1})
            if r.status_code != 404:
                bad.append(f"customer {method} {path} of another customer: {r.status_code}")
    assert not bad, "\n".join(bad)
    # Lists are cut to the customer viewer's customer.
    assert {s["id"] for s in w.api[C].get("/api/v1/sites").json()} == {w.a.site_id}
    assert w.api[C].get("/api/v1/sites", params={"customer_id": w.c2}).json() == []


def test_every_page_answers_each_role_as_the_table_says(world: World) -> None:
    w = world
    pages = {r.path for r in all_routes(w.srv.app.routes)
             if "GET" in r.methods and r.path.startswith("/ui")}  # fmt: skip
    assert pages == set(UI) | UI_PUBLIC, sorted(pages ^ (set(UI) | UI_PUBLIC))
    clients = {role: web_login_as(w.srv, *w.creds[role]) for role in (*ROLES, "other")}

    def page(path: str) -> str:
        return _fill(w, path, True).replace(w.channel, w.page_channel)

    bad = []
    for path, allowed in sorted(UI.items()):
        for role in ROLES:
            r = clients[role].get(page(path), follow_redirects=False)
            want = 200 if role in allowed else 403
            if r.status_code != want:
                bad.append(f"{role} {path}: {r.status_code}, expected {want}")
        if "{" in path:
            r = clients["other"].get(page(path), follow_redirects=False)
            if r.status_code != 404:
                bad.append(f"other partner {path}: {r.status_code}, expected 404")
    r = clients[C].get(f"/ui/sites/{w.s2}")
    if r.status_code != 404:
        bad.append(f"customer: another customer's site page {r.status_code}")
    assert not bad, "\n".join(bad)


def test_a_customer_viewer_never_sees_the_product_or_another_partner(world: World) -> None:
    w = world
    ui = web_login_as(w.srv, *w.creds[C])
    seen: dict[str, str] = {}
    todo = ["/ui/login", "/ui/"]
    while todo:
        path = todo.pop()
        if path in seen or len(seen) > 60:
            continue
        r = ui.get(path)
        assert r.status_code in (200, 409), (path, r.status_code)
        seen[path] = r.text
        todo += [h for h in re.findall(r'(?:href|src)="(/ui/[^"#?]*)', r.text)
                 if not h.startswith("/ui/static/")]  # fmt: skip
    assert f"/ui/readiness/{w.job}/report.html" in seen and f"/ui/tickets/{w.ticket}" in seen
    assert f"/ui/sites/{w.s2}" not in seen
    # Read-only: no form but comments and call info on a ticket, and logging out.
    # (a form that only reads, method="get", such as the bad-call window's, changes nothing)
    writes = re.compile(r'<form(?![^>]*method="get")[^>]*action="([^"]+)"')
    forms = {a for t in seen.values() for a in writes.findall(t)}
    allowed = re.compile(r"/ui/(logout|login|account/tokens|account/sessions/[0-9a-f]+/revoke"
                         r"|tickets/[^/]+/(comments|call_info))")  # fmt: skip
    assert f"/ui/tickets/{w.ticket}/comments" in forms
    assert all(allowed.fullmatch(a) for a in forms), forms
    for path, text in seen.items():
        assert not PRODUCT.search(text), (path, PRODUCT.search(text))
        assert "globex" not in text.lower(), path
    brand = w.api[A].get("/api/v1/brand").json()["name"]
    for doc in (ui.get(f"/ui/readiness/{w.job}/report.json").json(),
                w.api[C].get(f"/api/v1/readiness/{w.job}/report.json").json()):  # fmt: skip
        assert doc["issued_by"]["name"] == brand and doc["report_version"] == 1
        assert not PRODUCT.search(json.dumps(doc)) and "globex" not in json.dumps(doc)
    html = w.api[C].get(f"/api/v1/readiness/{w.job}/report.html").text
    assert f'<p class="issuer">{brand}' in html and not PRODUCT.search(html)

    # Disabled: the sessions end, the API tokens and the password stop working at once.
    mail, pw = w.creds[C]
    viewer = web_login_as(w.srv, mail, pw)
    [uid] = [u["id"] for u in w.api[A].get("/api/v1/users").json() if u["email"] == mail]
    assert w.api[A].patch(f"/api/v1/users/{uid}", json={"disabled": True}).status_code == 200
    try:
        assert viewer.get("/ui/", follow_redirects=False).status_code == 303
        assert w.api[C].get("/api/v1/sites").status_code == 401
        fresh = httpx.Client(base_url=w.srv.url, timeout=30)
        form = form_fields(fresh.get("/ui/login").text, "/ui/login")
        r = fresh.post("/ui/login", data={**form, "email": mail, "password": pw})
        assert r.status_code == 401 and "Wrong e-mail or password." in r.text
    finally:
        assert w.api[A].patch(f"/api/v1/users/{uid}", json={"disabled": False}).status_code == 200
    assert w.api[C].get("/api/v1/sites").status_code == 200


# --------------------------------------------------------------------------- brand


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_the_brand_is_validated_and_its_logo_served_as_an_image(world: World) -> None:
    w = world
    api = w.api["admin"]
    base = {"name": "Acme", "primary_color": "#0d47a1", "accent_color": "#2e7d32"}
    r = api.put("/api/v1/brand", json={**base, "primary_color": "red;}body{x:y"})
    assert r.status_code == 422 and "primary_color" in r.text
    r = api.put("/api/v1/brand", json={**base, "primary_color": "#12345g"})
    assert r.status_code == 422 and "primary_color: '#12345g' is not a colour" in r.text
    r = api.put("/api/v1/brand", json={**base, "domain": "not a domain"})
    assert r.status_code == 422 and "domain:" in r.text
    theirs = {**base, "name": "Globex Support", "domain": "portal.globex.example"}
    assert w.api["other"].put("/api/v1/brand", json=theirs).status_code == 200
    r = api.put("/api/v1/brand", json={**base, "domain": "portal.globex.example"})
    assert r.status_code == 409 and "taken" in r.text
    ui = web_login_as(w.srv, *w.creds[A])

    def upload(data: bytes, name: str) -> httpx.Response:
        tok = form_fields(ui.get("/ui/brand").text, "/ui/brand/logo")
        return ui.post("/ui/brand/logo", data=tok, files={"logo": (name, data)})

    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    r = upload(svg, "x.svg")
    assert r.status_code == 422 and "not a PNG, JPEG or GIF" in r.text
    assert upload(PNG, "logo.png").status_code == 303
    pid = w.api["admin"].get("/api/v1/partner").json()["id"]
    logo = httpx.get(f"{w.srv.url}/ui/brand/{pid}/logo")
    assert logo.content == PNG and logo.headers["content-type"] == "image/png"
    assert logo.headers["x-content-type-options"] == "nosniff"
    # The login page of the partner's own domain wears its brand; the bare one no one's.
    globex = httpx.get(f"{w.srv.url}/ui/login", headers={"Host": "portal.globex.example"})
    assert "Globex Support" in globex.text and not PRODUCT.search(globex.text)
    plain = httpx.get(f"{w.srv.url}/ui/login").text
    assert "globex" not in plain.lower() and "acme" not in plain.lower()


# --------------------------------------------------------------------------- manage


def test_customers_sites_tokens_agents_and_profiles_are_managed_on_the_pages(
    world: World,
) -> None:
    w = world
    tech = web_login_as(w.srv, *w.creds[T])
    admin = web_login_as(w.srv, *w.creds[A])

    def post(ui: httpx.Client, page: str, action: str, **data: str) -> httpx.Response:
        return ui.post(action, data={**form_fields(ui.get(page).text, action), **data})

    name = f"Shop {uuid.uuid4().hex[:6]}"
    assert post(tech, "/ui/manage", "/ui/manage/customers", name=name).status_code == 303
    [cust] = [c for c in w.api[T].get("/api/v1/customers").json() if c["name"] == name]
    r = post(tech, "/ui/manage", "/ui/manage/sites", customer_id=cust["id"], name=f"{name} HQ")
    assert r.status_code == 303
    page = r.headers["location"]
    site_id = page.rsplit("/", 1)[1]
    # A technician sees no token button and may not post one; the admin gets the commands.
    assert "/token" not in tech.get(page).text
    nonce = form_fields(tech.get(page).text, f"{page}/profile")
    assert tech.post(f"{page}/token", data=nonce).status_code == 403
    r = post(admin, page, f"{page}/token")
    token = re.search(r"--token (qse_\S+) --config", r.text)
    assert r.status_code == 201 and token and f"--collector {w.srv.url}" in r.text, r.text[:800]
    body = {"token": token.group(1), "hostname": "shop-box", "version": "0.0.1"}
    enr = httpx.post(f"{w.srv.url}/api/v1/enroll", json=body)
    assert enr.status_code == 201, enr.text
    row = re.search(r"<tr><td>shop-box</td><td>0\.0\.1 <span[^>]*>outdated</span>",
                    tech.get(page).text)  # fmt: skip
    assert row, tech.get(page).text
    # The profile: refused naming what is wrong, stored when right.
    bad = post(tech, page, f"{page}/profile", profile='{"modules": {"p": {"probe": "nope"}}}')
    assert bad.status_code == 422 and "nope" in bad.text
    good = {"modules": {"p": {"probe": "icmp", "targets": ["192.0.2.9"], "interval_s": 60}}}
    assert post(tech, page, f"{page}/profile", profile=json.dumps(good)).status_code == 303
    prof = w.api[T].get(f"/api/v1/profiles/site/{site_id}").json()
    assert prof["modules"]["p"]["targets"] == ["192.0.2.9"]
    # The admin revokes the agent: its key is refused from then on.
    agent_id = enr.json()["agent_id"]
    assert post(admin, page, f"/ui/manage/agents/{agent_id}/revoke").status_code == 303
    agent = httpx.get(f"{w.srv.url}/api/v1/agent/config",
                      headers={"Authorization": f"Bearer {enr.json()['agent_key']}"})  # fmt: skip
    assert agent.status_code == 401 and "revoked" in agent.text
    actions = {(e["action"], e["actor"]) for e in w.api[A].get("/api/v1/audit").json()}
    assert {("customer.create", f"user:{w.creds[T][0]}"), ("site.create", f"user:{w.creds[T][0]}"),
            ("profile.update", f"user:{w.creds[T][0]}"), ("token.create", f"user:{w.creds[A][0]}"),
            ("agent.revoke", f"user:{w.creds[A][0]}")} <= actions  # fmt: skip
