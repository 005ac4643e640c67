"""The FastAPI application: routes, error mapping, /healthz, /readyz, /metrics (behind the
operator's scrape token), background loops (outbox delivery, silent-agent check) tied to
the application's lifespan; and the app of the separate metrics listener."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry

from agent.wire import VERSION
from collector import jobs
from collector.api import (
    responses,
    routes_agent,
    routes_channels,
    routes_history,
    routes_partner,
    routes_portal,
    routes_profiles,
    routes_readiness,
    routes_reports,
    routes_tickets,
    routes_users,
)
from collector.api.fastconfig import FastConfig
from collector.api.fastpoll import FastJobPoll, find_security
from collector.api.limits import BodyLimit
from collector.api.nul import RefuseNul
from collector.api.scrape import ShardParam, ShardsParam, scrape, shard_of
from collector.api.security import Security
from collector.api.state import AppState
from collector.db import current_revision, head_revision
from collector.errors import CollectorError, Unauthorized
from collector.evaluation import RuleBook
from collector.jobwake import JobWaker, PgJobWaker, notify_job
from collector.logs import AccessLog
from collector.metrics import ExpositionCache, StoreCollector
from collector.secretbox import SecretBox
from collector.store import Store
from collector.web import channels as web_channels
from collector.web import routes as web_routes
from collector.web import routes_admin as web_admin
from collector.web import routes_manage as web_manage
from collector.web import routes_portal as web_portal
from collector.worker import (
    alertmanager_loop,
    checkpoint_loop,
    gc_loop,
    jobs_sweep_loop,
    outbox_loop,
    report_loop,
    retention_loop,
    seen_loop,
    silent_loop,
)


def create_app(
    store: Store,
    *,
    clock: Callable[[], float] = time.time,
    background: bool = True,
    registry: CollectorRegistry | None = None,
    freeze_gc: bool = False,
    fast_poll: bool = True,
) -> FastAPI:
    """Build the app over a migrated store. `background=False` leaves the delivery and
    silent-agent loops to the caller (tests drive them by hand). `freeze_gc=True` (the
    `serve` command: it owns the process) runs `gc_loop`, which keeps the garbage
    collector's pauses short. `fast_poll=False` leaves every job poll and config check to
    the FastAPI routes (tests compare the two paths)."""
    SecretBox.from_config(store.config.channels)  # a bad master key fails at start
    st = AppState(
        store=store, book=RuleBook(store.config), clock=clock, waker=make_waker(store, clock)
    )
    reg = registry or CollectorRegistry(auto_describe=False)
    reg.register(StoreCollector(store, st.stats, clock, before=st.flush_seen))
    cache = ExpositionCache(store.config.metrics.cache_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        st.loop = asyncio.get_running_loop()
        st.waker.start(st.loop)
        tasks = [asyncio.create_task(st.waker.run())]
        for expires_at, site_id in await run_in_threadpool(_leases, store):
            st.waker.arm_lease(expires_at, site_id)
        if background:
            tasks += [
                asyncio.create_task(outbox_loop(st)),
                asyncio.create_task(silent_loop(st)),
                asyncio.create_task(alertmanager_loop(st)),
                asyncio.create_task(retention_loop(st)),
                asyncio.create_task(report_loop(st)),
            ]
        tasks.append(asyncio.create_task(seen_loop(st)))
        tasks.append(asyncio.create_task(jobs_sweep_loop(st)))
        if store.is_sqlite:
            tasks.append(asyncio.create_task(checkpoint_loop(st)))
        if freeze_gc:
            tasks.append(asyncio.create_task(gc_loop()))
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with suppress(asyncio.CancelledError):
                    await t

    docs = store.config.api_docs
    app = FastAPI(
        title="qos-scout collector",
        version=VERSION,
        description="Tenants, enrollment, result ingest, rules, tickets and on-demand jobs.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    scrape_token = store.config.metrics.scrape_token()
    app.state.qs = st
    app.state.registry = reg
    app.state.metrics_cache = cache
    app.include_router(routes_agent.router)
    app.include_router(routes_partner.router)
    app.include_router(routes_profiles.router)
    app.include_router(routes_history.router)
    app.include_router(routes_tickets.router)
    app.include_router(routes_readiness.router)
    app.include_router(routes_portal.router)
    app.include_router(routes_reports.router)
    app.include_router(routes_channels.router)
    app.include_router(web_routes.router)
    app.include_router(web_portal.router)
    app.include_router(web_channels.router)
    app.include_router(routes_users.router)
    app.include_router(web_admin.router)
    app.include_router(web_manage.router)

    @app.exception_handler(CollectorError)
    async def _collector_error(_req: Request, exc: CollectorError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses=responses.READYZ)
    async def readyz() -> JSONResponse:
        """The database answers and its schema is at the newest revision."""
        try:
            rev = await run_in_threadpool(current_revision, store.engine)
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        head = head_revision()
        if rev != head:
            reason = f"schema at revision {rev}, expected {head}"
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ok", "revision": rev})

    @app.get(
        "/metrics", tags=["ops"], response_class=PlainTextResponse, responses=responses.METRICS
    )
    async def metrics(request: Request, shard: ShardParam = None, shards: ShardsParam = None
                      ) -> Response:  # fmt: skip
        """Every partner's series and the process's own counters (docs/metrics.md), for the
        operator's Prometheus: `Authorization: Bearer <scrape token>` (config
        `metrics.token_file`); 401 without it. A partner scrapes `/api/v1/metrics`.
        `?shard=i&shards=n`: only the sites of shard i of n (docs/metrics.md, "Sharded
        scrapes")."""
        check_scrape_token(request, scrape_token)
        return await scrape(app, None, shard_of(shard, shards))

    app.add_middleware(RefuseNul)  # inside the body limit: never reads more than it allows
    app.add_middleware(BodyLimit, limits=store.config.limits)
    app.add_middleware(Security, config=store.config.web, stats=st.stats)
    app.add_middleware(AccessLog)
    if fast_poll:
        _front_fast_poll(app, st)
    return app


def _front_fast_poll(app: FastAPI, st: AppState) -> None:
    """Put `FastJobPoll` and `FastConfig` in front of the app's middleware stack when
    Starlette builds it (at its first request), so the ordinary job poll and config check
    skip every layer but their own."""
    build = app.build_middleware_stack

    def build_with_fast_poll() -> Any:
        stack = build()
        security = find_security(stack)
        if security is None:
            return stack
        config = FastConfig(stack, state=st, security=security, owner=app)
        return FastJobPoll(config, state=st, security=security, owner=app)

    app.build_middleware_stack = build_with_fast_poll  # type: ignore[method-assign]


def make_waker(store: Store, clock: Callable[[], float]) -> JobWaker:
    """In process on SQLite; LISTEN/NOTIFY on PostgreSQL, where replicas share the queue."""
    if store.is_sqlite:
        return JobWaker(clock)

    def notify(site_id: str) -> None:
        with store.write() as conn:
            notify_job(conn, site_id)

    dsn = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return PgJobWaker(clock, dsn, notify)


def _leases(store: Store) -> list[tuple[float, str]]:
    with store.read() as conn:
        return jobs.leases(conn)


def check_scrape_token(request: Request, token: str | None) -> None:
    """Unauthorized unless the request carries the operator's scrape token."""
    if token is None:
        raise Unauthorized(
            "no scrape token is configured on this collector: the operator sets "
            "metrics.token_file (or QOS_SCOUT_METRICS_TOKEN) and scrapes with "
            "'Authorization: Bearer <token>'; partners scrape /api/v1/metrics with their key"
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("/metrics needs 'Authorization: Bearer <scrape token>'")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("wrong scrape token for /metrics")


def create_metrics_app(app: FastAPI) -> FastAPI:
    """The app of the separate metrics listener (config `metrics.listen`): `/metrics` of
    `app` and nothing else; the scrape token is required when one is configured."""
    st: AppState = app.state.qs
    token = st.store.config.metrics.scrape_token()
    side = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @side.exception_handler(CollectorError)
    async def _collector_error(_req: Request, exc: CollectorError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @side.get("/metrics")
    async def metrics(request: Request, shard: ShardParam = None, shards: ShardsParam = None
                      ) -> Response:  # fmt: skip
        if token is not None:
            check_scrape_token(request, token)
        return await scrape(app, None, shard_of(shard, shards))

    return side
