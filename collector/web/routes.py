"""The support web pages (/ui): log in with e-mail and password, sites, readiness tests,
tickets, SLA and quality reports (the people, audit and brand pages are in
web/routes_admin.py; the portal's measurement pages in web/routes_portal.py).

Authentication: the login form checks a user's e-mail and argon2 password hash and starts a
server-side session (collector/users.py): the HttpOnly, SameSite=Strict cookie holds a
random id whose hash is stored; logging out ends it. Every page resolves the caller with
the API's dependency (collector/api/auth.py) into one `Principal` and checks its role's
right in collector/authz.py (403 page), and a customer viewer's scope (404 page). Every
form carries an anti-forgery token bound to that session (web/csrf.py); a POST without the
right token, or whose Origin/Referer names another site, is refused with a 403 page. Pages
load their script and style from /ui/static/ (the CSP of api/security.py forbids inline
ones). Every query is scoped to the logged-in partner through the same store functions as
the API.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from html import escape
from pathlib import Path
from typing import Any, ParamSpec
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError

from agent.wire.readiness import CallInfo
from collector import audit, authz, brand, readiness, reports, tenants, tickets, users
from collector.api.auth import SESSION_COOKIE, principal_and_partner
from collector.api.routes_partner import _read, _write
from collector.api.state import AppState, app_state
from collector.authz import Principal
from collector.errors import CollectorError, Unauthorized
from collector.timefmt import iso
from collector.web import csrf

router = APIRouter(prefix="/ui", include_in_schema=False)
COOKIE = SESSION_COOKIE
ENV = Environment(
    loader=PackageLoader("collector.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
CALLINFO_FIELDS = [
    ("user", "User"), ("caller_number", "Caller number"), ("callee_number", "Callee number"),
    ("call_time", "Time of the bad call"), ("firewall", "Firewall make/model"),
    ("circuit_speed", "Circuit speed"), ("notes", "Notes"),
]  # fmt: skip


P = ParamSpec("P")
STATIC_DIR = Path(__file__).with_name("static")


def _static_files() -> dict[str, tuple[bytes, str]]:
    from agent.wire.report import STYLE

    files = {"report.css": (STYLE.encode(), "text/css; charset=utf-8")}
    for f in STATIC_DIR.iterdir():
        kind = {".css": "text/css", ".js": "text/javascript"}.get(f.suffix)
        if kind:
            files[f.name] = (f.read_bytes(), f"{kind}; charset=utf-8")
    return files


STATIC = _static_files()


def _cookie(request: Request, resp: Response, name: str, value: str, **kw: Any) -> None:
    resp.set_cookie(name, value, httponly=True, samesite="strict", path="/ui",
                    secure=request.url.scheme == "https", **kw)  # fmt: skip


def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    """A page, with the anti-forgery token of this browser's session for its forms (a
    browser without a nonce cookie gets one)."""
    nonce = request.cookies.get(csrf.NONCE_COOKIE)
    fresh = not nonce
    if not nonce:
        nonce = csrf.new_nonce()
    ctx.setdefault("callinfo_fields", CALLINFO_FIELDS)
    partner = ctx.get("partner")
    if partner is not None:
        ctx.setdefault("brand", partner.get("brand"))
        ctx.setdefault("who", partner.get("principal"))
    ctx["csrf"] = csrf.token(nonce, request.cookies.get(COOKIE, ""))
    resp = HTMLResponse(ENV.get_template(name).render(**ctx), status_code=status)
    if fresh:
        _cookie(request, resp, csrf.NONCE_COOKIE, nonce)
    return resp


class FormRefused(Exception):
    """A POST that may not have come from our own page: answered with the 403 page."""


def guarded(fn: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    """Answer a refused form (`FormRefused` from `_form`) with a 403 page naming why, and a
    store or permission error with a page naming it (its status: 403, 404, 409, 422)."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> Response:
        request = kwargs["request"]
        assert isinstance(request, Request)
        try:
            return await fn(*args, **kwargs)
        except FormRefused as exc:
            p = await _partner(request)
            return render(request, "forbidden.html", 403, partner=p, reason=str(exc))
        except CollectorError as exc:  # 403 (role), 404 (not found or out of scope), 4xx
            if exc.status == 401:
                return _to_login(request)
            p = await _partner(request)
            return render(request, "error.html", exc.status, partner=p, reason=exc.message)

    return run


async def _partner(request: Request) -> dict[str, Any] | None:
    """The logged-in caller's partner row, with its `Principal` under "principal" and its
    `Brand` under "brand"; None when not logged in. (Pages check rights with `_may`.)"""
    if not request.cookies.get(COOKIE):
        return None
    try:
        who, partner = await principal_and_partner(request, web=True)
    except Unauthorized:
        return None
    b = await _read(app_state(request), lambda c: brand.for_partner(c, who.partner_id))
    return {**partner, "principal": who, "brand": b}


def _who(p: dict[str, Any]) -> Principal:
    who: Principal = p["principal"]
    return who


def _may(p: dict[str, Any], right: str) -> Principal:
    """The caller, if their role has `right` (else Forbidden: the 403 page)."""
    who = _who(p)
    authz.require(who, right)
    return who


async def _audit(request: Request, p: dict[str, Any], action: str, target: str = "",
                 data: dict[str, Any] | None = None) -> None:  # fmt: skip
    st, who = app_state(request), _who(p)
    await _write(st, lambda c: audit.record(c, p["id"], who.actor, action, st.clock(), target,
                                            data))  # fmt: skip


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form body of a POST from one of our own pages: its anti-forgery token
    must match this browser's session, always; an Origin or Referer naming another site is
    refused too. Raises FormRefused."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is not None and urlsplit(origin).netloc != request.url.netloc:
        raise FormRefused(
            "The form was sent from another site "
            f"({urlsplit(origin).netloc or origin!r}, not {request.url.netloc})."
        )
    body = (await request.body()).decode("utf-8", errors="replace")
    form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
    nonce = request.cookies.get(csrf.NONCE_COOKIE)
    if not csrf.valid(nonce, request.cookies.get(COOKIE, ""), form.pop(csrf.FIELD, None)):
        why = (
            "its anti-forgery token is missing or does not match your session"
            if nonce
            else "your browser sent no anti-forgery cookie (cookies may be blocked)"
        )
        raise FormRefused(f"The form could not be verified: {why}. "
                          "It may be a page from before you logged in or out.")  # fmt: skip
    return form


def _ts(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, int | float):
        return iso(v)
    return str(v)


# --------------------------------------------------------------------------- login


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The pages' script and style files."""
    if name not in STATIC:
        return HTMLResponse("no such file", status_code=404)
    body, kind = STATIC[name]
    return Response(body, media_type=kind, headers={"Cache-Control": "public, max-age=300"})


async def _host_brand(request: Request) -> brand.Brand | None:
    """The brand of a partner's custom domain this page was asked for (the Host header)."""
    host = request.headers.get("host", "")
    return await _read(app_state(request), lambda c: brand.for_host(c, host))


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/ui/") -> HTMLResponse:
    nxt = next if next.startswith("/ui") else "/ui/"
    b = await _host_brand(request)
    return render(request, "login.html", next=nxt, partner=None, brand=b)


@router.post("/login")
@guarded
async def login(request: Request) -> Response:
    form = await _form(request)
    email, password = form.get("email", "").strip(), form.get("password", "")
    nxt = form.get("next", "/ui/")
    if not nxt.startswith("/ui"):
        nxt = "/ui/"
    st = app_state(request)
    agent = request.headers.get("user-agent", "")

    def run(c: Any) -> str:
        u = users.authenticate(c, email, password)
        sid = users.create_session(c, u["id"], st.clock(), agent)
        audit.record(c, u["partner_id"], f"user:{u['email']}", "session.login", st.clock(),
                     u["email"])  # fmt: skip
        return sid

    try:
        sid = await _write(st, run)
    except Unauthorized as exc:  # a 401: counted by the failed-login throttle
        b = await _host_brand(request)
        why = exc.message[:1].upper() + exc.message[1:] + "."
        return render(request, "login.html", 401, next=nxt, partner=None, brand=b,
                      error=why, email=email[:254])  # fmt: skip
    resp = RedirectResponse(nxt, status_code=303)
    _cookie(request, resp, COOKIE, sid, max_age=int(users.SESSION_MAX_S))
    _cookie(request, resp, csrf.NONCE_COOKIE, csrf.new_nonce())  # a new session, a new nonce
    return resp


@router.post("/logout")
@guarded
async def logout(request: Request) -> Response:
    await _form(request)
    sid = request.cookies.get(COOKIE)
    if sid:
        st = app_state(request)
        await _write(st, lambda c: users.end_session(c, sid, st.clock()))
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/ui")
    resp.delete_cookie(csrf.NONCE_COOKIE, path="/ui")
    return resp


# --------------------------------------------------------------------------- sites


def _sites_overview(st: AppState, c: Any, who: Principal) -> list[dict[str, Any]]:
    pid = who.partner_id
    worst = tickets.worst_open_by_site(c)
    customers = {x["id"]: x["name"] for x in tenants.list_customers(c, pid)}
    seen: dict[str, Any] = {}
    for a in map(st.fresh_seen, tenants.list_agents(c, pid)):
        last = a.get("last_seen_at")
        if last is not None and (a["site_id"] not in seen or last > seen[a["site_id"]]):
            seen[a["site_id"]] = last
    out = []
    for s in tenants.list_sites(c, pid, who.customer_id):
        state = worst.get(s["id"], "ok")
        tests = readiness.list_for_site(c, pid, s["id"], limit=1)
        out.append({
            "id": s["id"], "name": s["name"], "customer": customers.get(s["customer_id"], ""),
            "state": state, "state_label": {"ok": "OK"}.get(state, f"{state} ticket"),
            "last_seen": (_ts(seen.get(s["id"])) or "")[:19].replace("T", " ") or None,
            "readiness": tests[0] if tests else None,
        })  # fmt: skip
    return out


@router.get("/", response_class=HTMLResponse)
@guarded
async def sites_page(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "read")
    st = app_state(request)
    rows = await _read(st, lambda c: _sites_overview(st, c, who))
    return render(request, "sites.html", partner=p, sites=rows)


def _site_page_data(st: AppState, c: Any, who: Principal, site_id: str) -> dict[str, Any]:
    pid = who.partner_id
    authz.scope_site(c, who, site_id)
    site = tenants.get_site(c, pid, site_id)
    agents = [
        {"hostname": a["hostname"], "last_seen": (_ts(a.get("last_seen_at")) or "")[:19]}
        for a in map(st.fresh_seen, tenants.list_agents(c, pid, site_id))
    ]
    return {
        "site": site, "agents": agents, "facts": readiness.site_call_info(site),
        "callinfo": site.get("call_info") or {},
        "tests": readiness.list_for_site(c, pid, site_id),
        "tickets": tickets.list_tickets(c, pid, "open", site_id),
    }  # fmt: skip


@router.get("/sites/{site_id}", response_class=HTMLResponse)
@guarded
async def site_page(request: Request, site_id: str, span: str = "24h") -> Response:
    from collector.web.routes_portal import site_section

    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "read")
    st = app_state(request)

    def run(c: Any) -> dict[str, Any]:
        data = _site_page_data(st, c, who, site_id)
        section = site_section(st, c, p["id"], site_id, span)
        return {**data, "portal": section, "sla": section["sla"]}

    data = await _read(st, run)
    defaults = {"calls": 10, "responder": "", "options": ""}
    return render(request, "site.html", partner=p, defaults=defaults,
                  callinfo_action=f"/ui/sites/{site_id}/call_info", **data)  # fmt: skip


@router.post("/sites/{site_id}/readiness")
@guarded
async def run_readiness(request: Request, site_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "tests.run")
    form = await _form(request)
    st = app_state(request)
    try:
        options: dict[str, Any] = json.loads(form["options"]) if form.get("options") else {}
        if not isinstance(options, dict):
            raise ValueError("advanced options must be a JSON object")
        if form.get("calls"):
            options["calls"] = int(form["calls"])
        if form.get("responder", "").strip():
            options["responder"] = form["responder"].strip()
        job = await _write(st, lambda c: readiness.queue(c, p["id"], site_id, options, None,
                                                         True, st.clock()))  # fmt: skip
    except (ValueError, CollectorError) as exc:
        if isinstance(exc, CollectorError) and exc.status in (403, 404):
            raise
        msg = exc.message if isinstance(exc, CollectorError) else str(exc)
        data = await _read(st, lambda c: _site_page_data(st, c, who, site_id))
        return render(request, "site.html", 400, partner=p, error=msg,
                      defaults={"calls": form.get("calls", 10),
                                "responder": form.get("responder", ""),
                                "options": form.get("options", "")},
                      callinfo_action=f"/ui/sites/{site_id}/call_info", **data)  # fmt: skip
    st.signal_jobs(site_id)
    await _audit(request, p, "readiness.run", f"site_id={site_id}", {"job_id": job["id"]})
    return RedirectResponse(f"/ui/readiness/{job['id']}", status_code=303)


@router.post("/sites/{site_id}/call_info")
@guarded
async def site_call_info(request: Request, site_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "sites.write")
    form = await _form(request)
    info = {k: form.get(k, "").strip() for k, _ in CALLINFO_FIELDS}
    info = {k: v for k, v in info.items() if v}
    st, actor = app_state(request), tickets.web_actor(p)
    await _write(st, lambda c: audit.update_site(c, p["id"], site_id, {"call_info": info},
                                                 actor, st.clock()))  # fmt: skip
    return RedirectResponse(f"/ui/sites/{site_id}", status_code=303)


# --------------------------------------------------------------------------- readiness


async def _readiness_view(request: Request, p: dict[str, Any], job_id: str) -> dict[str, Any]:
    who = _may(p, "read")

    def run(c: Any) -> dict[str, Any]:
        authz.scope_job(c, who, job_id)
        return readiness.view(c, p["id"], job_id)

    return await _read(app_state(request), run)


@router.get("/readiness/{job_id}", response_class=HTMLResponse)
@guarded
async def readiness_page(request: Request, job_id: str) -> Response:
    from agent.wire.report import load_json, render_body

    p = await _partner(request)
    if p is None:
        return _to_login(request)
    test = await _readiness_view(request, p, job_id)
    site = await _read(app_state(request), lambda c: tenants.get_site(c, p["id"], test["site_id"]))
    html = render_body(load_json(test["report"])) if test["report"] else ""
    return render(request, "readiness.html", partner=p, test=test, site=site, report_html=html)


@router.get("/readiness/{job_id}/status")
async def readiness_status(request: Request, job_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return JSONResponse({"detail": "not logged in"}, status_code=401)
    v = await _readiness_view(request, p, job_id)
    keep = ("id", "state", "progress", "message", "verdict", "ticket_id")
    return JSONResponse({k: v[k] for k in keep})


@router.get("/readiness/{job_id}/report.{fmt}")
@guarded
async def readiness_report(request: Request, job_id: str, fmt: str) -> Response:
    from agent.wire.report import load_json, to_html, to_json

    p = await _partner(request)
    if p is None:
        return _to_login(request)
    v = await _readiness_view(request, p, job_id)
    if v["report_error"] is not None:
        text = f"This test's report cannot be shown: {v['report_error']}"
        return HTMLResponse(escape(text), status_code=409)
    if v["report"] is None or fmt not in ("html", "json"):
        return HTMLResponse("no such report", status_code=404)
    rep = load_json(v["report"])
    b: brand.Brand = p["brand"]
    name = f"readiness-{job_id[:8]}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "html":
        return HTMLResponse(to_html(rep, issuer=b.issuer_line()), headers=headers)
    body = to_json(rep, issued_by=b.metadata())
    return Response(body, media_type="application/json", headers=headers)


@router.post("/readiness/{job_id}/ticket")
@guarded
async def readiness_ticket(request: Request, job_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "tickets.write")
    await _form(request)
    st = app_state(request)
    cfg = st.store.config
    actor = tickets.web_actor(p)
    tid = await _write(st, lambda c: readiness.open_ticket(c, cfg, p["id"], job_id, st.clock(),
                                                          actor))  # fmt: skip
    await _audit(request, p, "ticket.open", f"ticket_id={tid}", {"job_id": job_id})
    return RedirectResponse(f"/ui/tickets/{tid}", status_code=303)


# --------------------------------------------------------------------------- tickets


@router.get("/reports", response_class=HTMLResponse)
@guarded
async def reports_page(request: Request) -> Response:
    """The partner's reports (a customer viewer: their customer's)."""
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    mine = _may(p, "read").customer_id

    def run(c: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
        names = {x["id"]: x["name"] for x in tenants.list_customers(c, p["id"])
                 if mine is None or x["id"] == mine}  # fmt: skip
        return reports.list_reports(c, p["id"], mine), names

    rows, names = await _read(app_state(request), run)
    return render(request, "reports.html", partner=p, reports=rows, customers=names)


@router.get("/reports/{report_id}/report.{fmt}")
@guarded
async def report_download(request: Request, report_id: str, fmt: str) -> Response:
    from collector.api.routes_reports import report_file

    p = await _partner(request)
    if p is None:
        return _to_login(request)
    mine = _may(p, "read").customer_id
    if fmt not in ("html", "pdf") or len(report_id) > 64:
        return HTMLResponse("no such report", status_code=404)
    return await report_file(request, p["id"], report_id, fmt, mine)


@router.get("/tickets", response_class=HTMLResponse)
@guarded
async def tickets_page(request: Request, state: str = "open") -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "read")
    st_filter = state if state in ("open", "acknowledged", "resolved") else "open"
    from collector.web.routes_portal import ticket_clocks

    st = app_state(request)

    def run(c: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        rows = tickets.list_tickets(c, p["id"], st_filter)
        if who.customer_id is not None:
            mine = {s["id"] for s in tenants.list_sites(c, p["id"], who.customer_id)}
            rows = [t for t in rows if t["site_id"] in mine]
        return rows, ticket_clocks(st, c, p["id"], rows)

    rows, clocks = await _read(st, run)
    return render(request, "tickets.html", partner=p, tickets=rows, sla=clocks)


@router.get("/tickets/{ticket_id}", response_class=HTMLResponse)
@guarded
async def ticket_page(request: Request, ticket_id: str, notice: str = "") -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    from collector.web.routes_portal import ticket_clocks

    who = _may(p, "read")
    st = app_state(request)

    def run(c: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        authz.scope_ticket(c, who, ticket_id)
        t = tickets.get_ticket(c, p["id"], ticket_id)
        return t, ticket_clocks(st, c, p["id"], [t])

    t, clocks = await _read(st, run)
    ev = t.get("evidence") or {}
    return render(
        request, "ticket.html", partner=p, ticket=t, notice=notice[:300], sla=clocks,
        bad_calls=ev.get("bad_calls") or {},
        readiness_job=ev.get("readiness_job_id"), failed_checks=ev.get("failed_checks") or [],
        results=ev.get("results") or [], rule=ev.get("rule"),
        callinfo={**((ev.get("site") or {}).get("call_info") or {}), **(ev.get("call_info") or {})},
        callinfo_action=f"/ui/tickets/{ticket_id}/call_info",
    )  # fmt: skip


TICKET_RIGHTS = {"ack": "tickets.write", "resolve": "tickets.write",
                 "comments": "ticket.comment", "call_info": "ticket.comment"}  # fmt: skip


@router.post("/tickets/{ticket_id}/{action}")
@guarded
async def ticket_action(request: Request, ticket_id: str, action: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    if action not in TICKET_RIGHTS:
        return HTMLResponse("unknown action", status_code=404)
    who = _may(p, TICKET_RIGHTS[action])
    form = await _form(request)
    st = app_state(request)
    await _read(st, lambda c: authz.scope_ticket(c, who, ticket_id))
    actor, msg, now = tickets.web_actor(p), form.get("message", "").strip(), st.clock()
    cfg = st.store.config
    try:
        if action == "ack":
            await _write(st, lambda c: tickets.acknowledge(c, p["id"], ticket_id, actor, msg, now))
        elif action == "resolve":
            await _write(st, lambda c: tickets.resolve(c, cfg, p["id"], ticket_id, actor, msg,
                                                       now))  # fmt: skip
        elif action == "comments":
            if not msg:
                raise ValueError("a comment cannot be empty")
            await _write(st, lambda c: tickets.comment(c, p["id"], ticket_id, actor, msg, now))
        else:
            info = CallInfo.model_validate({k: form.get(k, "").strip() or None
                                            for k, _ in CALLINFO_FIELDS})  # fmt: skip
            await _write(
                st,
                lambda c: readiness.add_ticket_call_info(c, p["id"], ticket_id, info, actor, now),
            )
    except (CollectorError, ValueError, ValidationError) as exc:
        msg = exc.message if isinstance(exc, CollectorError) else str(exc)
        return RedirectResponse(f"/ui/tickets/{ticket_id}?notice={quote(msg)}", status_code=303)
    await _audit(request, p, f"ticket.{action}", f"ticket_id={ticket_id}")
    return RedirectResponse(f"/ui/tickets/{ticket_id}", status_code=303)
