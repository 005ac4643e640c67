"""Managing without the command line (/ui/manage): customers and sites (create, rename),
a site's enrollment token with the copy-paste install commands, its agents' health
(version, last seen, config version; revoke), and its probe profile (the site's layer of
the agents' central config, collector/profiles.py). Technicians and admins edit
customers, sites and profiles; tokens and agents' keys are admins' (collector/authz.py)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from collector import audit, profiles, tenants
from collector.api.routes_partner import _read, _write
from collector.api.state import app_state
from collector.errors import CollectorError, Invalid, NotFound
from collector.timefmt import iso
from collector.web.routes import _form, _may, _partner, _to_login, guarded, render

router = APIRouter(prefix="/ui/manage", include_in_schema=False)


async def _overview(request: Request, p: dict[str, Any], status: int = 200, **ctx: Any
                    ) -> Response:  # fmt: skip
    st = app_state(request)

    def run(c: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return tenants.list_customers(c, p["id"]), tenants.list_sites(c, p["id"])

    customers, sites = await _read(st, run)
    names = {c["id"]: c["name"] for c in customers}
    for s in sites:
        s["customer"] = names.get(s["customer_id"], "")
    return render(request, "manage.html", status, partner=p, customers=customers,
                  sites=sites, **ctx)  # fmt: skip


@router.get("", response_class=HTMLResponse)
@guarded
async def manage_page(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "sites.write")
    return await _overview(request, p)


@router.post("/customers")
@guarded
async def create_customer(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "sites.write")
    form = await _form(request)
    st = app_state(request)
    name = form.get("name", "").strip()

    def run(c: Any) -> None:
        if not 1 <= len(name) <= 200:
            raise Invalid("customer name: 1 to 200 characters")
        row = tenants.create_customer(c, p["id"], name, form.get("notes", "")[:2000], st.clock())
        audit.record(c, p["id"], who.actor, "customer.create", st.clock(), row["id"],
                     {"name": name})  # fmt: skip

    try:
        await _write(st, run)
    except CollectorError as exc:
        return await _overview(request, p, exc.status, error=exc.message)
    return RedirectResponse("/ui/manage", status_code=303)


@router.post("/sites")
@guarded
async def create_site(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "sites.write")
    form = await _form(request)
    st = app_state(request)
    values = {"name": form.get("name", "").strip(), "address": form.get("address", "")[:500]}

    def run(c: Any) -> str:
        if not 1 <= len(values["name"]) <= 200:
            raise Invalid("site name: 1 to 200 characters")
        row = tenants.create_site(c, p["id"], form.get("customer_id", "")[:36], values,
                                  st.clock())  # fmt: skip
        tenants.bump_rules_epoch(c, st.clock())
        audit.record(c, p["id"], who.actor, "site.create", st.clock(), row["id"], values)
        return str(row["id"])

    try:
        sid = await _write(st, run)
    except CollectorError as exc:
        return await _overview(request, p, exc.status, error=exc.message)
    return RedirectResponse(f"/ui/manage/sites/{sid}", status_code=303)


def _site_data(st: Any, c: Any, pid: str, site_id: str) -> dict[str, Any]:
    site = tenants.get_site(c, pid, site_id)
    cfg = st.store.config
    agents = []
    for a in map(st.fresh_seen, tenants.list_agents(c, pid, site_id)):
        health = profiles.agent_health(a, st.clock(), silent_after_s=cfg.silent_agent_timeout_s,
                                       min_version=cfg.min_agent_version)  # fmt: skip
        agents.append({**a, **health, "state": tenants.agent_state(a),
                       "last_seen": (iso(a.get("last_seen_at")) or "never")[:19]})  # fmt: skip
    try:
        prof = profiles.get_profile(c, pid, "site", site_id)
        doc = json.dumps({"modules": prof.get("modules", {})}, indent=2)
    except NotFound:
        doc = json.dumps({"modules": {}}, indent=2)
    return {"site": site, "agents": agents, "profile": doc}


async def _site(request: Request, p: dict[str, Any], site_id: str, status: int = 200,
                **ctx: Any) -> Response:  # fmt: skip
    st = app_state(request)
    data = await _read(st, lambda c: _site_data(st, c, p["id"], site_id))
    base = f"{request.url.scheme}://{request.url.netloc}"
    return render(request, "manage_site.html", status, partner=p, collector_url=base,
                  **{**data, **ctx})  # fmt: skip


@router.get("/sites/{site_id}", response_class=HTMLResponse)
@guarded
async def site_page(request: Request, site_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "sites.write")
    return await _site(request, p, site_id[:64])


@router.post("/sites/{site_id}")
@guarded
async def edit_site(request: Request, site_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "sites.write")
    form = await _form(request)
    st = app_state(request)
    values = {"name": form.get("name", "").strip()[:200], "address": form.get("address", "")[:500]}
    try:
        if not values["name"]:
            raise Invalid("site name: 1 to 200 characters")
        await _write(st, lambda c: audit.update_site(c, p["id"], site_id[:64], values,
                                                     who.actor, st.clock()))  # fmt: skip
    except CollectorError as exc:
        if exc.status == 404:
            raise
        return await _site(request, p, site_id, exc.status, error=exc.message)
    st.book.invalidate()
    return RedirectResponse(f"/ui/manage/sites/{site_id}", status_code=303)


@router.post("/sites/{site_id}/token")
@guarded
async def new_token(request: Request, site_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "credentials")
    await _form(request)
    st = app_state(request)
    ttl = st.store.config.token_ttl_s

    def run(c: Any) -> dict[str, Any]:
        out = tenants.create_token(c, p["id"], site_id[:64], ttl, st.clock())
        audit.record(c, p["id"], who.actor, "token.create", st.clock(), out["id"],
                     {"site_id": site_id})  # fmt: skip
        return out

    tok = await _write(st, run)
    return await _site(request, p, site_id, 201, token=tok["token"],
                       token_expires=(iso(tok["expires_at"]) or "")[:16])  # fmt: skip


@router.post("/sites/{site_id}/profile")
@guarded
async def save_profile(request: Request, site_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "sites.write")
    form = await _form(request)
    st = app_state(request)
    text = form.get("profile", "")
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise Invalid("the profile must be a JSON object with 'modules'")

        def run(c: Any) -> None:
            profiles.put_profile(c, p["id"], "site", site_id[:64], doc, st.clock())
            audit.record(c, p["id"], who.actor, "profile.update", st.clock(), site_id[:64])

        await _write(st, run)
    except (ValueError, CollectorError) as exc:
        if isinstance(exc, CollectorError) and exc.status == 404:
            raise
        msg = exc.message if isinstance(exc, CollectorError) else f"not JSON: {exc}"
        return await _site(request, p, site_id, 422, error=msg, profile=text)
    return RedirectResponse(f"/ui/manage/sites/{site_id}", status_code=303)


@router.post("/agents/{agent_id}/revoke")
@guarded
async def revoke_agent(request: Request, agent_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    who = _may(p, "credentials")
    await _form(request)
    st = app_state(request)

    def run(c: Any) -> str:
        a = tenants.revoke_agent(c, p["id"], agent_id[:64], st.clock())
        audit.record(c, p["id"], who.actor, "agent.revoke", st.clock(), agent_id[:64])
        return str(a["site_id"])

    site_id = await _write(st, run)
    st.drop_auth_cache()
    return RedirectResponse(f"/ui/manage/sites/{site_id}", status_code=303)
