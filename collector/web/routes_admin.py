"""The support pages for people and the brand (/ui): accepting an invitation, the
caller's account (sessions, API tokens), users (admins), the audit log (admins), the
brand (admins) with its logo and colours (served as a style sheet: the CSP allows no
inline style). Rights: collector/authz.py; helpers: web/routes.py."""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from collector import audit, brand, tenants, users
from collector.api.routes_partner import _read, _write
from collector.api.routes_users import send_invitation
from collector.api.state import app_state
from collector.errors import CollectorError, Invalid
from collector.keys import hash_secret
from collector.timefmt import iso
from collector.web import csrf
from collector.web.routes import (
    COOKIE,
    FormRefused,
    _form,
    _may,
    _partner,
    _to_login,
    guarded,
    render,
)

router = APIRouter(prefix="/ui", include_in_schema=False)


# --------------------------------------------------------------------------- invitation


@router.get("/invite/{token}", response_class=HTMLResponse)
@guarded
async def invite_page(request: Request, token: str) -> Response:
    st = app_state(request)
    u = await _read(st, lambda c: users.invitation_user(c, token[:100], st.clock()))
    b = await _read(st, lambda c: brand.for_partner(c, u["partner_id"]))
    return render(request, "invite.html", partner=None, brand=b, invitee=u, token=token,
                  minimum=users.PASSWORD_MIN)  # fmt: skip


@router.post("/invite/{token}")
@guarded
async def accept_invite(request: Request, token: str) -> Response:
    form = await _form(request)
    st = app_state(request)
    pw = form.get("password", "")
    u = await _read(st, lambda c: users.invitation_user(c, token[:100], st.clock()))
    b = await _read(st, lambda c: brand.for_partner(c, u["partner_id"]))
    try:
        if pw != form.get("password2", ""):
            raise Invalid("the two passwords differ")
        users.check_password(pw)
    except Invalid as exc:
        return render(request, "invite.html", 422, partner=None, brand=b, invitee=u,
                      token=token, minimum=users.PASSWORD_MIN, error=exc.message)  # fmt: skip

    def run(c: Any) -> None:
        users.accept_invitation(c, token[:100], pw, st.clock())
        audit.record(c, u["partner_id"], f"user:{u['email']}", "user.accept_invitation",
                     st.clock(), u["email"])  # fmt: skip

    await _write(st, run)
    return RedirectResponse("/ui/login?next=/ui/", status_code=303)


# --------------------------------------------------------------------------- account


async def _account(request: Request, p: dict[str, Any], status: int = 200, **ctx: Any
                   ) -> Response:  # fmt: skip
    who = _may(p, "read")
    st = app_state(request)
    if who.user_id is None:
        raise Invalid("this session belongs to no user")
    uid = who.user_id
    sessions = await _read(st, lambda c: users.list_sessions(c, uid, st.clock()))
    current = hash_secret(request.cookies.get(COOKIE, ""))
    tokens = await _read(st, lambda c: users.list_tokens(c, uid))
    for s in sessions:
        s["current"] = s.pop("hash") == current
        s["created_at"], s["last_seen_at"] = iso(s["created_at"]), iso(s["last_seen_at"])
    for t in tokens:
        t["created_at"] = (iso(t["created_at"]) or "")[:19]
    return render(request, "account.html", status, partner=p, sessions=sessions, tokens=tokens,
                  role_label=users.ROLE_LABELS[who.role], **ctx)  # fmt: skip


@router.get("/account", response_class=HTMLResponse)
@guarded
async def account_page(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    return await _account(request, p)


@router.post("/account/sessions/{session_id}/revoke")
@guarded
async def revoke_session(request: Request, session_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "read")
    await _form(request)
    st = app_state(request)
    uid = who.user_id or ""

    def run(c: Any) -> None:
        users.revoke_session(c, uid, session_id[:64], st.clock())
        audit.record(c, p["id"], who.actor, "session.revoke", st.clock(), session_id[:64])

    await _write(st, run)
    return RedirectResponse("/ui/account", status_code=303)


@router.post("/account/tokens")
@guarded
async def create_token(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "read")
    form = await _form(request)
    st = app_state(request)
    uid = who.user_id or ""

    def run(c: Any) -> str:
        tid, token = users.create_token(c, uid, form.get("name", "")[:200], st.clock())
        audit.record(c, p["id"], who.actor, "token.create", st.clock(), tid)
        return token

    token = await _write(st, run)
    return await _account(request, p, 201, new_token=token)


# --------------------------------------------------------------------------- users


async def _users(request: Request, p: dict[str, Any], status: int = 200, **ctx: Any
                 ) -> Response:  # fmt: skip
    st = app_state(request)
    rows = await _read(st, lambda c: users.list_users(c, p["id"]))
    customers = await _read(st, lambda c: tenants.list_customers(c, p["id"]))
    return render(request, "users.html", status, partner=p, users=rows,
                  roles=users.ROLE_LABELS, customers={c["id"]: c["name"] for c in customers},
                  **ctx)  # fmt: skip


@router.get("/users", response_class=HTMLResponse)
@guarded
async def users_page(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "users")
    return await _users(request, p)


@router.post("/users")
@guarded
async def invite_user(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "users")
    form = await _form(request)
    st = app_state(request)
    role = form.get("role", "")
    cust = form.get("customer_id") or None
    try:
        u, token = await _write(st, lambda c: users.invite(
            c, p["id"], who.actor, form.get("email", "")[:254], role[:20], st.clock(),
            cust if role == "customer" else None))  # fmt: skip
        link = await send_invitation(request, p["id"], u, token)
    except CollectorError as exc:
        if exc.status in (403, 404):
            raise
        return await _users(request, p, exc.status, error=exc.message)
    notice = None if link else f"Invitation sent to {u['email']}."
    return await _users(request, p, 201, link=link, notice=notice)


@router.post("/users/{user_id}")
@guarded
async def change_user(request: Request, user_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "users")
    form = await _form(request)
    st = app_state(request)
    if user_id == who.user_id:
        raise Invalid("you cannot change your own role or disable yourself")
    role = form.get("role") or None
    disabled = {"yes": True, "no": False}.get(form.get("disabled", ""))
    cust = (form.get("customer_id") or None) if role == "customer" else None
    try:
        await _write(st, lambda c: users.change(c, p["id"], who.actor, user_id[:36], st.clock(),
                                                role=role, customer_id=cust,
                                                disabled=disabled))  # fmt: skip
    except CollectorError as exc:
        if exc.status in (403, 404):
            raise
        return await _users(request, p, exc.status, error=exc.message)
    return RedirectResponse("/ui/users", status_code=303)


# --------------------------------------------------------------------------- audit


@router.get("/audit", response_class=HTMLResponse)
@guarded
async def audit_page(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "audit")
    rows = await _read(app_state(request), lambda c: audit.list_log(c, p["id"]))
    return render(request, "audit.html", partner=p, entries=rows)


# --------------------------------------------------------------------------- brand


@router.get("/brand", response_class=HTMLResponse)
@guarded
async def brand_page(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "brand")
    return render(request, "brand.html", partner=p, max_kib=brand.LOGO_MAX_BYTES // 1024)


@router.post("/brand")
@guarded
async def save_brand(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "brand")
    form = await _form(request)
    st = app_state(request)
    fields = ("name", "primary_color", "accent_color", "support_contact", "domain")
    values = {k: form.get(k, "").strip()[:300] for k in fields}

    def run(c: Any) -> None:
        brand.set_brand(c, p["id"], st.clock(), name=values["name"],
                        primary_color=values["primary_color"],
                        accent_color=values["accent_color"],
                        support_contact=values["support_contact"],
                        domain=values["domain"] or None)  # fmt: skip
        audit.record(c, p["id"], who.actor, "brand.update", st.clock(), "", values)

    try:
        await _write(st, run)
    except CollectorError as exc:
        if exc.status in (403, 404):
            raise
        return render(request, "brand.html", exc.status, partner=p, error=exc.message,
                      max_kib=brand.LOGO_MAX_BYTES // 1024)  # fmt: skip
    return RedirectResponse("/ui/brand", status_code=303)


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """The fields of a multipart/form-data body (name -> bytes)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise Invalid("the logo must be sent as multipart/form-data")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = BytesParser(policy=HTTP).parsebytes(head + body)
    out: dict[str, bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            out[name] = payload
    return out


@router.post("/brand/logo")
@guarded
async def upload_logo(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "brand")
    parts = _multipart(request.headers.get("content-type", ""), await request.body())
    nonce = request.cookies.get(csrf.NONCE_COOKIE)
    if not csrf.valid(nonce, request.cookies.get(COOKIE, ""),
                      parts.get(csrf.FIELD, b"").decode(errors="replace")):  # fmt: skip
        raise FormRefused("The form could not be verified: reload the page and try again.")
    data = parts.get("logo", b"")
    st = app_state(request)
    b: brand.Brand = p["brand"]

    def run(c: Any) -> None:
        brand.set_brand(c, p["id"], st.clock(), name=b.name, primary_color=b.primary_color,
                        accent_color=b.accent_color, support_contact=b.support_contact,
                        domain=b.domain, logo_data=data or b"-")  # fmt: skip
        audit.record(c, p["id"], who.actor, "brand.logo", st.clock(), "", {"bytes": len(data)})

    try:
        await _write(st, run)
    except CollectorError as exc:
        if exc.status in (403, 404):
            raise
        return render(request, "brand.html", exc.status, partner=p, error=exc.message,
                      max_kib=brand.LOGO_MAX_BYTES // 1024)  # fmt: skip
    return RedirectResponse("/ui/brand", status_code=303)


@router.get("/brand/{partner_id}/logo")
async def logo(request: Request, partner_id: str) -> Response:
    """A partner's logo (public: the login page of its domain shows it), as the image type
    read from its bytes when it was uploaded."""
    found = await _read(app_state(request), lambda c: brand.logo(c, partner_id[:36]))
    if found is None:
        return HTMLResponse("no such logo", status_code=404)
    data, kind = found
    return Response(data, media_type=kind, headers={"Cache-Control": "private, max-age=300",
                                                    "Content-Disposition": "inline"})  # fmt: skip


@router.get("/brand/{partner_id}/style.css")
async def style(request: Request, partner_id: str) -> Response:
    """The brand's colours as a style sheet (validated hex colours only)."""
    try:
        b = await _read(app_state(request), lambda c: brand.for_partner(c, partner_id[:36]))
    except CollectorError:
        b = brand.Brand(partner_id[:36], "")
    css = (
        f"header{{background:{b.primary_color}}}a{{color:{b.primary_color}}}"
        f"header a{{color:#fff}}button{{background:{b.primary_color};"
        f"border-color:{b.primary_color}}}button.secondary{{color:{b.primary_color};"
        f"background:#fff}}h1{{border-bottom:3px solid {b.accent_color}}}"
    )
    return Response(css, media_type="text/css; charset=utf-8")
