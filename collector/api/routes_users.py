"""Users, the caller's own sessions and API tokens, the audit log and the brand, on the
API (the support pages have the same under /ui). Rights: collector/authz.py."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from collector import audit, brand, mail, users
from collector.api.responses import ERRORS
from collector.api.routes_partner import _read, _write
from collector.api.state import app_state, current_partner
from collector.authz import Principal
from collector.errors import Invalid
from collector.timefmt import iso

router = APIRouter(prefix="/api/v1", tags=["users"], responses=ERRORS)
PartnerDep = Annotated[dict[str, Any], Depends(current_partner)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserIn(_In):
    email: str = Field(max_length=254)
    role: Literal["admin", "technician", "customer"]
    customer_id: str | None = Field(default=None, max_length=36)
    name: str = Field(default="", max_length=200)


class UserPatch(_In):
    role: Literal["admin", "technician", "customer"] | None = None
    customer_id: str | None = Field(default=None, max_length=36)
    disabled: bool | None = None


class TokenIn(_In):
    name: str = Field(default="", max_length=200)


class BrandIn(_In):
    name: str = Field(max_length=200)
    primary_color: str = Field(max_length=7)
    accent_color: str = Field(max_length=7)
    support_contact: str = Field(default="", max_length=300)
    domain: str | None = Field(default=None, max_length=253)


def _who(p: dict[str, Any]) -> Principal:
    who: Principal = p["principal"]
    return who


def _user_out(u: dict[str, Any]) -> dict[str, Any]:
    return {**u, "created_at": iso(u["created_at"]), "disabled_at": iso(u["disabled_at"])}


def invitation_link(request: Request, b: brand.Brand, token: str) -> str:
    """The link an invitee follows: the configured portal URL (or this request's own
    origin), on the partner's custom domain when it has one."""
    cfg = app_state(request).store.config.mail
    base = cfg.portal_url if cfg else f"{request.url.scheme}://{request.url.netloc}"
    if b.domain:
        scheme = base.split("://", 1)[0]
        base = f"{scheme}://{b.domain}"
    return f"{base}/ui/invite/{token}"


async def send_invitation(request: Request, partner_id: str, u: dict[str, Any], token: str
                          ) -> str | None:  # fmt: skip
    """E-mail the invitation when `mail:` is configured (None), else return the link."""
    st = app_state(request)
    b = await _read(st, lambda c: brand.for_partner(c, partner_id))
    link = invitation_link(request, b, token)
    cfg = st.store.config.mail
    if cfg is None:
        return link
    subject, body = mail.invitation_text(b, link, users.ROLE_LABELS[u["role"]])
    await run_in_threadpool(mail.send, cfg, u["email"], subject, body)
    return None


@router.get("/users")
async def list_users(p: PartnerDep, request: Request) -> list[Any]:
    """The partner's users: role, customer (a customer viewer's), state (invited, active,
    disabled)."""
    rows = await _read(app_state(request), lambda c: users.list_users(c, p["id"]))
    return [_user_out(u) for u in rows]


MAIL_FAILED: dict[int | str, dict[str, Any]] = {
    502: {
        "description": "The invitation e-mail could not be handed to the SMTP "
        "server (`mail:`); the user exists: invite again."
    }
}


@router.post("/users", status_code=201, responses=MAIL_FAILED)
async def invite_user(p: PartnerDep, body: UserIn, request: Request) -> dict[str, Any]:
    """Invite a user: an e-mail with a single-use link to set a password (when the
    collector has `mail:`), else the link in `invitation_link` for the admin to pass on."""
    st, who = app_state(request), _who(p)
    u, token = await _write(
        st,
        lambda c: users.invite(
            c, p["id"], who.actor, body.email, body.role, st.clock(), body.customer_id, body.name
        ),
    )
    link = await send_invitation(request, p["id"], u, token)
    return {**_user_out(u), "invitation_link": link}


@router.patch("/users/{user_id}")
async def patch_user(
    p: PartnerDep, user_id: Annotated[str, Field(max_length=36)], body: UserPatch,
    request: Request,
) -> dict[str, Any]:  # fmt: skip
    """Change a user's role (a customer viewer's customer with it) or disable/enable them
    (their sessions end, their API tokens stop working)."""
    st, who = app_state(request), _who(p)
    if who.user_id == user_id and (body.disabled or (body.role and body.role != "admin")):
        raise Invalid("you cannot disable yourself or take your own admin role")
    u = await _write(st, lambda c: users.change(
        c, p["id"], who.actor, user_id, st.clock(), role=body.role,
        customer_id=body.customer_id, disabled=body.disabled))  # fmt: skip
    return _user_out(u)


def _needs_user(who: Principal) -> str:
    if who.user_id is None:
        raise Invalid("the partner key belongs to no user: use a user's token")
    return who.user_id


@router.get("/me/sessions")
async def my_sessions(p: PartnerDep, request: Request) -> list[Any]:
    """The caller's live web sessions."""
    st, uid = app_state(request), _needs_user(_who(p))
    rows = await _read(st, lambda c: users.list_sessions(c, uid, st.clock()))
    return [{"id": r["id"], "created_at": iso(r["created_at"]),
             "last_seen_at": iso(r["last_seen_at"]), "user_agent": r["user_agent"]}
            for r in rows]  # fmt: skip


@router.post("/me/sessions/{session_id}/revoke", status_code=204)
async def revoke_my_session(
    p: PartnerDep, session_id: Annotated[str, Field(max_length=64)], request: Request
) -> None:
    """End one of the caller's web sessions."""
    st, who = app_state(request), _who(p)
    uid = _needs_user(who)

    def run(c: Any) -> None:
        users.revoke_session(c, uid, session_id, st.clock())
        audit.record(c, p["id"], who.actor, "session.revoke", st.clock(), session_id)

    await _write(st, run)


@router.post("/me/tokens", status_code=201)
async def create_my_token(p: PartnerDep, body: TokenIn, request: Request) -> dict[str, Any]:
    """A new API token for the caller (shown once in `token`), with the caller's role and
    scope."""
    st, who = app_state(request), _who(p)
    uid = _needs_user(who)

    def run(c: Any) -> tuple[str, str]:
        out = users.create_token(c, uid, body.name, st.clock())
        audit.record(c, p["id"], who.actor, "token.create", st.clock(), out[0])
        return out

    tid, token = await _write(st, run)
    return {"id": tid, "name": body.name, "token": token}


@router.get("/audit")
async def audit_log(
    p: PartnerDep, request: Request, limit: Annotated[int, Query(ge=1, le=5000)] = 500
) -> list[Any]:
    """The partner's audit log, newest first."""
    return await _read(app_state(request), lambda c: audit.list_log(c, p["id"], limit))


@router.get("/brand")
async def get_brand(p: PartnerDep, request: Request) -> dict[str, Any]:
    b = await _read(app_state(request), lambda c: brand.for_partner(c, p["id"]))
    return {"name": b.name, "primary_color": b.primary_color, "accent_color": b.accent_color,
            "support_contact": b.support_contact, "domain": b.domain,
            "logo_url": b.logo_url}  # fmt: skip


@router.put("/brand")
async def put_brand(p: PartnerDep, body: BrandIn, request: Request) -> dict[str, Any]:
    """Set the brand (the logo is uploaded on the brand page)."""
    st, who = app_state(request), _who(p)

    def run(c: Any) -> None:
        brand.set_brand(c, p["id"], st.clock(), **body.model_dump())
        audit.record(c, p["id"], who.actor, "brand.update", st.clock(), "",
                     body.model_dump())  # fmt: skip

    await _write(st, run)
    return await get_brand(p, request)
