"""Per-application state shared by the routes: store, rules, counters, clock, job wake-ups,
agents' last contact (batched), the agent key cache (dropped when the credentials epoch
moves) and each site's config version (dropped when the config epoch moves)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from collector import tenants
from collector.errors import Unauthorized
from collector.evaluation import RuleBook
from collector.jobwake import JobWaker
from collector.keys import hash_secret
from collector.schema import agents
from collector.stats import Stats
from collector.store import Store

# An agent's key is looked up once and cached; the cache is dropped whenever the database's
# credentials epoch moves (tenants.bump_epoch: a disable, revoke or rekey on any replica).
# The epoch is read at most every EPOCH_CHECK_S per process, before a cached key is trusted,
# so a credential taken away on one replica is refused on every replica within
# EPOCH_CHECK_S (plus the request in flight): the documented bound is 2 s. AUTH_CACHE_S only
# bounds how long an entry lives without an epoch change.
EPOCH_CHECK_S = 1.0
AUTH_CACHE_S = 300.0
SEEN_FLUSH_S = 2.0  # agents' last contact is written in one statement this often
CONFIG_CACHE_MAX = 200_000  # sites whose config version is kept; cleared when it is full


@dataclass
class AppState:
    store: Store
    book: RuleBook
    stats: Stats = field(default_factory=Stats)
    clock: Callable[[], float] = time.time
    waker: JobWaker = field(default_factory=lambda: JobWaker(time.time))
    loop: asyncio.AbstractEventLoop | None = None
    ingest_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    _agent_cache: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    _seen: dict[str, float] = field(default_factory=dict)
    _spool: dict[str, int] = field(default_factory=dict)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)
    _cache_gen: int = 0  # moves on every drop: a lookup begun before it is not cached
    _epoch: int | None = None
    _rules_epoch: int | None = None
    _config_epoch: int | None = None
    # site id -> the version (ETag) of its effective config, as the route last computed it
    _config_versions: dict[str, str] = field(default_factory=dict)
    _config_gen: int = 0  # moves on every drop: a version computed before it is not kept
    _epoch_read_at: float = float("-inf")
    _epoch_lock: asyncio.Lock | None = None
    epoch_reads: int = 0

    async def check_epoch(self) -> None:
        """Read the credentials and rules epochs if the last read is EPOCH_CHECK_S old (one
        read per process per second however many requests come); drop the key cache, or the
        rule book's site contexts, if one moved on any replica."""
        if time.monotonic() - self._epoch_read_at < EPOCH_CHECK_S:
            return
        if self._epoch_lock is None:
            self._epoch_lock = asyncio.Lock()
        async with self._epoch_lock:
            started = time.monotonic()
            if started - self._epoch_read_at < EPOCH_CHECK_S:
                return  # another request read it while this one waited
            epoch, rules, config = await run_in_threadpool(self._read_epoch)
            if epoch != self._epoch:
                self.drop_auth_cache()
                self._epoch = epoch
            if rules != self._rules_epoch:
                self.book.invalidate()
                self._rules_epoch = rules
            if config != self._config_epoch:
                self.drop_config_versions()
                self._config_epoch = config
            self._epoch_read_at = started

    def _read_epoch(self) -> tuple[int, int, int]:
        with self.store.read() as conn:
            epochs = (
                tenants.read_epoch(conn),
                tenants.read_rules_epoch(conn),
                tenants.read_config_epoch(conn),
            )
        self.epoch_reads += 1
        return epochs

    def drop_auth_cache(self) -> None:
        with self._cache_lock:
            self._agent_cache.clear()
            self._cache_gen += 1

    def drop_config_versions(self) -> None:
        with self._cache_lock:
            self._config_versions.clear()
            self._config_gen += 1

    def config_version(self, site_id: str) -> str | None:
        """The site's config version as last computed here, if no change to profiles or
        to the site's customer was seen since (trust it after `check_epoch`)."""
        return self._config_versions.get(site_id)

    @property
    def config_gen(self) -> int:
        """Read before computing a config; hand it to `keep_config_version`."""
        return self._config_gen

    def keep_config_version(self, site_id: str, version: str, gen: int) -> None:
        """Remember a version computed from the database, unless the cache was dropped
        since `gen` was read (the computation may have read what the drop was for)."""
        with self._cache_lock:
            if gen != self._config_gen:
                return
            if len(self._config_versions) >= CONFIG_CACHE_MAX:
                self._config_versions.clear()
            self._config_versions[site_id] = version

    def note_seen(self, agent_id: str, now: float, spool_depth: int | None = None) -> None:
        """Record an agent's contact (and the spool depth it reported, if it did); written
        to the database by `flush_seen` (every SEEN_FLUSH_S, before silence checks and
        scrapes, and at shutdown) rather than per request. Readers in this process see it
        at once (`fresh_seen`); other replicas see it at most SEEN_FLUSH_S (plus the write)
        late."""
        with self._cache_lock:
            self._seen[agent_id] = max(now, self._seen.get(agent_id, 0.0))
            if spool_depth is not None:
                self._spool[agent_id] = spool_depth

    def flush_seen(self) -> int:
        with self._cache_lock:
            seen, self._seen = self._seen, {}
            spool, self._spool = self._spool, {}
        if not seen:
            return 0
        rows = [{"aid": a, "ts": ts} for a, ts in seen.items()]
        stmt = (
            agents.update()
            .where(agents.c.id == sa.bindparam("aid"))
            .where(
                sa.or_(agents.c.last_seen_at.is_(None), agents.c.last_seen_at < sa.bindparam("ts"))
            )
            .values(last_seen_at=sa.bindparam("ts"))
        )
        depths = [{"aid": a, "depth": d} for a, d in spool.items()]
        with self.store.write() as conn:
            conn.execute(stmt, rows)
            if depths:
                conn.execute(
                    agents.update()
                    .where(agents.c.id == sa.bindparam("aid"))
                    .values(spool_depth=sa.bindparam("depth")),
                    depths,
                )
        return len(rows)

    def fresh_seen(self, agent: dict[str, Any]) -> dict[str, Any]:
        """`agent` (a row as a dict) with the contact noted here but not yet written."""
        with self._cache_lock:
            pending = self._seen.get(agent["id"])
            depth = self._spool.get(agent["id"])
        if depth is not None:
            agent = {**agent, "spool_depth": depth}
        last = agent.get("last_seen_at")
        if pending is not None and (last is None or pending > last):
            return {**agent, "last_seen_at": pending}
        return agent

    def signal_jobs(self, site_id: str) -> None:
        """Wake this process's long polls for the site at once (other replicas hear of the
        job through the database: jobs.create_job sends the NOTIFY)."""
        self.waker.signal(site_id)

    def cached_agent(self, key: str) -> dict[str, Any] | None:
        with self._cache_lock:
            hit = self._agent_cache.get(hash_secret(key))
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def agent_for_key(self, key: str) -> dict[str, Any]:
        h = hash_secret(key)
        now = time.monotonic()
        gen = self._cache_gen
        with self.store.read() as conn:
            agent = tenants.agent_by_key(conn, key)
        with self._cache_lock:
            if len(self._agent_cache) > 100_000:
                self._agent_cache.clear()
            if gen == self._cache_gen:  # no drop since the lookup began: it is current
                self._agent_cache[h] = (now + AUTH_CACHE_S, agent)
        return agent


def bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing 'Authorization: Bearer <key>' header")
    return token.strip()


def app_state(request: Request) -> AppState:
    qs: AppState = request.app.state.qs
    return qs


async def current_partner(request: Request) -> AsyncIterator[dict[str, Any]]:
    """The partner routes' dependency: the caller's partner row, once
    `collector.api.auth.partner_for_route` checked the caller's role has this route's
    right and a customer viewer's scope; a change that succeeded is audited."""
    from collector.api.auth import audit_change, partner_for_route

    partner = await partner_for_route(request)
    yield partner
    await audit_change(request, partner)


async def current_agent(request: Request) -> dict[str, Any]:
    key = bearer(request)
    st = app_state(request)
    # A cached key is trusted only while the credentials epoch read within the last
    # EPOCH_CHECK_S is unchanged; a hit needs no thread hop.
    await st.check_epoch()
    agent = st.cached_agent(key)
    if agent is None:
        agent = await run_in_threadpool(st.agent_for_key, key)
    return agent
