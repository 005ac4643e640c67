"""Per-application state shared by the routes: store, rules, counters, clock, job signals."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from collector import tenants
from collector.errors import Unauthorized
from collector.evaluation import RuleBook
from collector.keys import hash_secret
from collector.schema import agents
from collector.stats import Stats
from collector.store import Store

AUTH_CACHE_S = 300.0


@dataclass
class AppState:
    store: Store
    book: RuleBook
    stats: Stats = field(default_factory=Stats)
    clock: Callable[[], float] = time.time
    job_events: dict[str, asyncio.Event] = field(default_factory=dict)
    loop: asyncio.AbstractEventLoop | None = None
    ingest_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    _agent_cache: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    _seen: dict[str, float] = field(default_factory=dict)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)

    def note_seen(self, agent_id: str, now: float) -> None:
        """Record an agent's contact; written to the database by `flush_seen` (every
        couple of seconds, before silence checks and scrapes) rather than per request."""
        with self._cache_lock:
            self._seen[agent_id] = max(now, self._seen.get(agent_id, 0.0))

    def flush_seen(self) -> int:
        with self._cache_lock:
            seen, self._seen = self._seen, {}
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
        with self.store.write() as conn:
            conn.execute(stmt, rows)
        return len(rows)

    def signal_jobs(self, site_id: str) -> None:
        """Wake this process's long polls for the site (other replicas poll the table)."""
        ev = self.job_events.get(site_id)
        if ev is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(ev.set)

    def cached_agent(self, key: str) -> dict[str, Any] | None:
        with self._cache_lock:
            hit = self._agent_cache.get(hash_secret(key))
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def agent_for_key(self, key: str) -> dict[str, Any]:
        h = hash_secret(key)
        now = time.monotonic()
        with self.store.read() as conn:
            agent = tenants.agent_by_key(conn, key)
        with self._cache_lock:
            if len(self._agent_cache) > 100_000:
                self._agent_cache.clear()
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


async def current_partner(request: Request) -> dict[str, Any]:
    key = bearer(request)
    st = app_state(request)

    def lookup() -> dict[str, Any]:
        with st.store.read() as conn:
            return tenants.partner_by_key(conn, key)

    return await run_in_threadpool(lookup)


async def current_agent(request: Request) -> dict[str, Any]:
    key = bearer(request)
    st = app_state(request)
    # Keys are looked up at most every AUTH_CACHE_S per agent; a hit needs no thread hop.
    agent = st.cached_agent(key)
    if agent is None:
        agent = await run_in_threadpool(st.agent_for_key, key)
    return agent
