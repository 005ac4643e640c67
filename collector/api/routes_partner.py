"""Partner routes: customers, sites, tokens, agents (and their credentials' lifecycle),
results, jobs, rules and the partner's own Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from collector import audit, ingest, jobs, profiles, tenants, tickets
from collector.api.models import (
    CustomerIn,
    CustomerPatch,
    JobIn,
    OverridesIn,
    SiteIn,
    SitePatch,
    TokenIn,
)
from collector.api.responses import ERRORS
from collector.api.scrape import ShardParam, ShardsParam, scrape, shard_of
from collector.api.state import AppState, app_state, current_partner
from collector.errors import Invalid
from collector.rules import apply_overrides, effective_rules
from collector.schema import partners, sites
from collector.timefmt import iso

router = APIRouter(prefix="/api/v1", tags=["partners"], responses=ERRORS)
Partner = dict[str, Any]
PartnerDep = Annotated[Partner, Depends(current_partner)]
T = TypeVar("T")


async def _write(st: AppState, fn: Callable[[sa.Connection], T]) -> T:
    def run() -> T:
        with st.store.write() as conn:
            try:
                out = fn(conn)
            finally:
                moved = conn.info.pop(tenants.CONFIG_EPOCH_MOVED, False)
        if moved:  # this process's own change: its kept config versions go at once
            st.drop_config_versions()
        return out

    return await run_in_threadpool(run)


async def _read(st: AppState, fn: Callable[[sa.Connection], T]) -> T:
    def run() -> T:
        with st.store.read() as conn:
            return fn(conn)

    return await run_in_threadpool(run)


def _times(d: dict[str, Any]) -> dict[str, Any]:
    for k in (
        "created_at", "last_seen_at", "expires_at", "used_at", "disabled_at", "revoked_at",
        "key_rotated_at",
    ):  # fmt: skip
        if k in d:
            d[k] = iso(d[k])
    d.pop("key_hash", None)
    return d


# -- customers ------------------------------------------------------------------------


@router.get("/customers")
async def list_customers(p: PartnerDep, request: Request) -> list[Any]:
    rows = await _read(app_state(request), lambda c: tenants.list_customers(c, p["id"]))
    return [_times(r) for r in rows]


@router.post("/customers", status_code=201)
async def create_customer(p: PartnerDep, body: CustomerIn, request: Request) -> dict[str, Any]:
    st = app_state(request)
    row = await _write(
        st, lambda c: tenants.create_customer(c, p["id"], body.name, body.notes, st.clock())
    )
    return _times(row)


@router.get("/customers/{customer_id}")
async def get_customer(p: PartnerDep, customer_id: str, request: Request) -> dict[str, Any]:
    st = app_state(request)
    return _times(await _read(st, lambda c: tenants.get_customer(c, p["id"], customer_id)))


@router.patch("/customers/{customer_id}")
async def patch_customer(
    p: PartnerDep, customer_id: str, body: CustomerPatch, request: Request
) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True)
    row = await _write(
        app_state(request), lambda c: tenants.update_customer(c, p["id"], customer_id, values)
    )
    return _times(row)


@router.delete("/customers/{customer_id}", status_code=204)
async def delete_customer(p: PartnerDep, customer_id: str, request: Request) -> None:
    await _write(app_state(request), lambda c: tenants.delete_customer(c, p["id"], customer_id))


# -- sites ----------------------------------------------------------------------------


@router.get("/sites")
async def list_sites(p: PartnerDep, request: Request, customer_id: str | None = None) -> list[Any]:
    """The partner's sites (a customer viewer: their customer's only)."""
    scope = p["principal"].customer_id
    if scope is not None:
        customer_id = scope if customer_id in (None, scope) else "-"  # another's: none
    rows = await _read(app_state(request), lambda c: tenants.list_sites(c, p["id"], customer_id))
    return [_times(r) for r in rows]


@router.post("/sites", status_code=201)
async def create_site(p: PartnerDep, body: SiteIn, request: Request) -> dict[str, Any]:
    st = app_state(request)
    values = body.model_dump(exclude_none=True, exclude={"customer_id"})
    row = await _write(
        st, lambda c: tenants.create_site(c, p["id"], body.customer_id, values, st.clock())
    )
    return _times(row)


@router.get("/sites/{site_id}")
async def get_site(p: PartnerDep, site_id: str, request: Request) -> dict[str, Any]:
    return _times(await _read(app_state(request), lambda c: tenants.get_site(c, p["id"], site_id)))


@router.patch("/sites/{site_id}")
async def patch_site(
    p: PartnerDep, site_id: str, body: SitePatch, request: Request
) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True)
    st, actor = app_state(request), tickets.partner_actor(p)
    row = await _write(
        st, lambda c: audit.update_site(c, p["id"], site_id, values, actor, st.clock())
    )
    st.book.invalidate()
    return _times(row)


@router.post("/sites/{site_id}/tokens", status_code=201)
async def create_token(
    p: PartnerDep, site_id: str, request: Request, body: TokenIn | None = None
) -> dict[str, Any]:
    st = app_state(request)
    ttl = (body.ttl_s if body else None) or st.store.config.token_ttl_s
    out = await _write(st, lambda c: tenants.create_token(c, p["id"], site_id, ttl, st.clock()))
    return _times(out)


# -- agents and results ---------------------------------------------------------------


@router.get("/agents")
async def list_agents(p: PartnerDep, request: Request, site_id: str | None = None) -> list[Any]:
    """The partner's agents: state, software `version` and `outdated` (older than this
    collector's release or `min_agent_version`), `silent` (not heard from for
    `silent_agent_timeout_s`), and the `config_version` each reported running."""
    st = app_state(request)
    await run_in_threadpool(st.flush_seen)
    rows = await _read(st, lambda c: tenants.list_agents(c, p["id"], site_id))
    return [_agent_view(st, st.fresh_seen(r)) for r in rows]


@router.get("/agents/{agent_id}")
async def get_agent(p: PartnerDep, agent_id: str, request: Request) -> dict[str, Any]:
    st = app_state(request)
    row = await _read(st, lambda c: tenants.get_agent(c, p["id"], agent_id))
    return _agent_view(st, st.fresh_seen(row))


def _agent_view(st: AppState, a: dict[str, Any]) -> dict[str, Any]:
    cfg = st.store.config
    health = profiles.agent_health(
        a, st.clock(), silent_after_s=cfg.silent_agent_timeout_s, min_version=cfg.min_agent_version
    )
    a = {**a, "config_reported_at": iso(a.get("config_reported_at"))}
    return _times({**a, **health, "state": tenants.agent_state(a)})


@router.post("/agents/{agent_id}/disable")
async def disable_agent(p: PartnerDep, agent_id: str, request: Request) -> dict[str, Any]:
    """Refuse the agent's key (401 naming the time it was disabled) until it is enabled
    again; on every collector replica within 2 s."""
    st = app_state(request)
    a = await _write(
        st, lambda c: tenants.set_agent_disabled(c, p["id"], agent_id, True, st.clock())
    )
    st.drop_auth_cache()
    return _agent_view(st, a)


@router.post("/agents/{agent_id}/enable")
async def enable_agent(p: PartnerDep, agent_id: str, request: Request) -> dict[str, Any]:
    """Accept a disabled agent's key again (409 for a revoked agent: enroll it again)."""
    st = app_state(request)
    a = await _write(
        st, lambda c: tenants.set_agent_disabled(c, p["id"], agent_id, False, st.clock())
    )
    return _agent_view(st, a)


@router.post("/agents/{agent_id}/revoke")
async def revoke_agent(p: PartnerDep, agent_id: str, request: Request) -> dict[str, Any]:
    """Refuse the agent's key for good (401: "this agent was revoked at <time>; enroll it
    again with a new token"), on every collector replica within 2 s. Its results stay."""
    st = app_state(request)
    a = await _write(st, lambda c: tenants.revoke_agent(c, p["id"], agent_id, st.clock()))
    st.drop_auth_cache()
    return _agent_view(st, a)


@router.post("/agents/{agent_id}/rotate-key")
async def rotate_agent_key(p: PartnerDep, agent_id: str, request: Request) -> dict[str, Any]:
    """Issue a new key for the agent, shown only in this answer (`agent_key`); the old key
    is refused on every replica within 2 s. Put the new key in the agent's credentials file."""
    st = app_state(request)
    a, key = await _write(st, lambda c: tenants.rotate_agent_key(c, p["id"], agent_id, st.clock()))
    st.drop_auth_cache()
    return {**_agent_view(st, a), "agent_key": key}


# -- enrollment tokens ----------------------------------------------------------------


@router.get("/tokens")
async def list_tokens(
    p: PartnerDep, request: Request, site_id: Annotated[str | None, Query(max_length=64)] = None
) -> list[Any]:
    """The partner's enrollment tokens, newest first: `id` (the start of the token's hash;
    the token itself is never stored), site, `state` (valid, used, expired, revoked)."""
    st = app_state(request)
    rows = await _read(st, lambda c: tenants.list_tokens(c, p["id"], st.clock(), site_id))
    return [_times(r) for r in rows]


@router.post("/tokens/{token_id}/revoke")
async def revoke_token(p: PartnerDep, token_id: str, request: Request) -> dict[str, Any]:
    """Revoke an enrollment token that was not used yet: enrolling with it answers 401
    naming the revocation. A used token answers 409 (revoke its agent instead)."""
    st = app_state(request)
    return _times(
        await _write(st, lambda c: tenants.revoke_token(c, p["id"], token_id, st.clock()))
    )


# -- the partner's metrics ------------------------------------------------------------


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
async def partner_metrics(
    p: PartnerDep, request: Request, shard: ShardParam = None, shards: ShardsParam = None
) -> Response:
    """This partner's series only (results, sites, agents, open tickets; docs/metrics.md) in
    the Prometheus text format, for the partner's own Prometheus (scrape with
    `authorization: {credentials_file: <file holding the partner key>}`); `?shard=i&shards=n`
    for one shard of its sites."""
    return await scrape(request.app, p["id"], shard_of(shard, shards))


@router.get("/results")
async def list_results(
    p: PartnerDep,
    request: Request,
    site_id: str | None = None,
    probe: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[Any]:
    if not 1 <= limit <= 10_000:
        raise Invalid("limit must be between 1 and 10000")
    if since is not None and since.tzinfo is None:
        raise Invalid("since must carry a timezone (e.g. 2024-01-01T00:00:00Z)")
    ts = since.timestamp() if since else None
    return await _read(
        app_state(request),
        lambda c: ingest.list_results(c, p["id"], site_id, probe, ts, limit),
    )


# -- jobs -----------------------------------------------------------------------------


@router.post("/sites/{site_id}/jobs", status_code=201)
async def create_job(p: PartnerDep, site_id: str, body: JobIn, request: Request) -> dict[str, Any]:
    """Queue a job; a spec that is not the wire model of its kind, or a schema_version this
    collector does not know, is refused (422) with the field or the version named."""
    st = app_state(request)
    job = await _write(
        st,
        lambda c: jobs.create_job(
            c, p["id"], site_id, body.kind, body.spec, st.clock(), body.schema_version
        ),
    )
    st.signal_jobs(site_id)
    return job


@router.get("/jobs/{job_id}")
async def get_job(p: PartnerDep, job_id: str, request: Request) -> dict[str, Any]:
    return await _read(app_state(request), lambda c: jobs.get_job(c, p["id"], job_id))


# -- rules ----------------------------------------------------------------------------


@router.get("/rules")
async def get_rules(p: PartnerDep, request: Request, site_id: str | None = None) -> dict[str, Any]:
    """Effective rules (defaults, config, partner overrides, and the site's if asked)."""
    st = app_state(request)

    def run(c: sa.Connection) -> dict[str, Any]:
        partner_over = c.execute(
            sa.select(partners.c.rule_overrides).where(partners.c.id == p["id"])
        ).scalar_one()
        site_over: dict[str, Any] = {}
        if site_id:
            site_over = tenants.get_site(c, p["id"], site_id)["rule_overrides"] or {}
        rules = effective_rules(st.book.base, partner_over, site_over)
        return {
            "rules": [r.model_dump() for r in rules.values()],
            "overrides": {"partner": partner_over or {}, "site": site_over},
        }

    return await _read(st, run)


@router.put("/rules/overrides")
async def put_overrides(p: PartnerDep, body: OverridesIn, request: Request) -> dict[str, Any]:
    """Replace the partner's overrides, or one site's when `site_id` is given."""
    st = app_state(request)
    try:
        base = apply_overrides(st.book.base, p["rule_overrides"] or {})
        apply_overrides(base, body.overrides)
    except ValueError as exc:
        raise Invalid(str(exc)) from None

    def run(c: sa.Connection) -> dict[str, Any]:
        tenants.bump_rules_epoch(c, st.clock())  # every replica reloads the rules
        if body.site_id:
            tenants.get_site(c, p["id"], body.site_id)
            c.execute(
                sites.update()
                .where(sites.c.id == body.site_id)
                .values(rule_overrides=body.overrides)
            )
        else:
            c.execute(
                partners.update()
                .where(partners.c.id == p["id"])
                .values(rule_overrides=body.overrides)
            )
        return {"site_id": body.site_id, "overrides": body.overrides}

    out = await _write(st, run)
    st.book.invalidate()
    return out
