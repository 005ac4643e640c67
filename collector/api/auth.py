"""The one dependency that turns a request into a `Principal` (collector/authz.py), for
the API and the support pages alike: a web session cookie, a user's API token
(`Authorization: Bearer qsu_...`) or the partner key (automation; acts as an admin)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from collector import audit, authz, tenants, users
from collector.api.state import app_state, bearer
from collector.errors import Unauthorized

SESSION_COOKIE = "qs_session"


def _resolve(conn: sa.Connection, key: str | None, sid: str | None, now: float
             ) -> tuple[authz.Principal, dict[str, Any], str | None]:  # fmt: skip
    """(the caller, its partner, the session hash whose use is due to be recorded)."""
    if key is not None:
        if key.startswith(users.TOKEN_PREFIX):
            u = users.token_user(conn, key)
        else:
            partner = tenants.partner_by_key(conn, key)
            return authz.for_partner_key(partner), partner, None
    elif sid:
        u = users.session_user(conn, sid, now)
    else:
        raise Unauthorized("not logged in")
    partner = tenants.get_partner(conn, u["partner_id"])
    touch = u["session"] if u.get("touch_due") else None
    return authz.for_user(u, partner["name"]), partner, touch


async def principal_and_partner(
    request: Request, *, web: bool = False
) -> tuple[authz.Principal, dict[str, Any]]:
    """The caller and its partner's row; Unauthorized when there is none. `web`: the
    support pages (the session cookie), else the API (the bearer credential)."""
    key = None if web else bearer(request)
    sid = request.cookies.get(SESSION_COOKIE) if web else None
    st = app_state(request)

    def run() -> tuple[authz.Principal, dict[str, Any]]:
        now = st.clock()
        with st.store.read() as conn:
            who, partner, touch = _resolve(conn, key, sid, now)
        if touch is not None:  # a session's use, for its idle expiry: a write a minute
            with st.store.write() as conn:
                users.touch_session(conn, touch, now)
        return who, partner

    return await run_in_threadpool(run)


async def current_principal(request: Request) -> authz.Principal:
    """FastAPI dependency for new API routes: the caller, with no right checked yet."""
    return (await principal_and_partner(request))[0]


async def partner_for_route(request: Request) -> dict[str, Any]:
    """The partner routes' dependency: the caller's partner row (with the `Principal`
    under "principal"), once the route's right (authz.API_RIGHTS) is checked for the
    caller's role and every object its path names is in a customer viewer's scope."""
    p, partner = await principal_and_partner(request)
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    authz.require(p, authz.route_right(request.method, path))
    params = {k: v for k, v in request.path_params.items() if k in authz.SCOPE_PARAMS}
    if params:
        st = app_state(request)

        def check() -> None:
            with st.store.read() as conn:
                authz.scope_params(conn, p, params)

        await run_in_threadpool(check)
    return {**partner, "principal": p}


# Routes that write their own, more detailed, audit entries.
SELF_AUDITED = (
    "/api/v1/users",
    "/api/v1/me/",
    "/api/v1/brand",
    "/api/v1/sites/{site_id}",
    "/api/v1/maintenance",
)


async def audit_change(request: Request, partner: dict[str, Any]) -> None:
    """After a partner route changed something (any method but GET/HEAD that succeeded):
    an audit entry naming the caller, the route's action and the objects its path names."""
    if request.method in ("GET", "HEAD"):
        return
    route = request.scope.get("route")
    path: str = getattr(route, "path", request.url.path)
    if path.startswith(SELF_AUDITED[:3]) or (path == SELF_AUDITED[3] and request.method == "PATCH"):
        return
    action = getattr(route, "name", "") or f"{request.method} {path}"
    target = " ".join(f"{k}={v}" for k, v in sorted(request.path_params.items()))
    who: authz.Principal = partner["principal"]
    st = app_state(request)

    def run() -> None:
        with st.store.write() as conn:
            audit.record(conn, partner["id"], who.actor, action, st.clock(), target,
                         {"method": request.method, "route": path})  # fmt: skip

    await run_in_threadpool(run)
