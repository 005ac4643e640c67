"""Cardinality bounds at ingest: how many distinct targets one agent, and how many series
one partner, may keep fresh in `latest` (the rows /metrics exposes as series).

A series is a (agent, probe, target) row of `latest` newer than `metrics_stale_after_s`.
An item that would add one past `limits.max_targets_per_agent` (distinct targets of the
agent) or `limits.max_series_per_partner` is refused by itself, with the bound named;
results for series the agent already reports are always stored. A series older than the
stale window no longer counts, so an agent whose targets changed recovers within a day.

Cost: none per item. A batch whose series this process already knows fresh needs no query;
a batch with a new series reads the agent's fresh series (one query) and, at most every
`PARTNER_COUNT_TTL_S` or when the bound is near, the partner's count (one more). Replicas
each keep their own cache; the bound may be passed by the batches that run at the same
moment on different connections (a few hundred series at most), never more.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from agent.wire.results import LOAD_TEST_TAG
from collector.config import CollectorConfig, LimitsConfig
from collector.schema import agents, latest
from collector.store import Store

PARTNER_COUNT_TTL_S = 30.0
MAX_CACHED_AGENTS = 200_000

Key = tuple[str, str]  # (probe, target)


@dataclass
class SeriesCache:
    """What this process knows: each agent's fresh series with their newest start time, and
    each partner's count of fresh series with the time it was read."""

    agents: dict[str, dict[Key, float]] = field(default_factory=dict)
    partners: dict[str, tuple[float, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def forget(self, agent_id: str, partner_id: str) -> None:
        with self.lock:
            self.agents.pop(agent_id, None)
            self.partners.pop(partner_id, None)


_CACHES: weakref.WeakKeyDictionary[Store, SeriesCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def series_cache(store: Store) -> SeriesCache:
    """The cache of this store (one per store object, so per process and database)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(store)
        if cache is None:
            cache = _CACHES[store] = SeriesCache()
        return cache


def counted(row: dict[str, Any]) -> bool:
    """Does this row become a series? (Load-test results never reach `latest`.)"""
    return LOAD_TEST_TAG not in (row["tags"] or {})


def admit(
    conn: sa.Connection,
    config: CollectorConfig,
    cache: SeriesCache,
    agent: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    now: float,
) -> dict[int, str]:
    """Positions of `rows` refused by the cardinality bounds, each with its reason."""
    limits = config.limits
    cutoff = now - config.metrics_stale_after_s
    agent_id, partner_id = agent["id"], agent["partner_id"]
    wanted = [(i, (r["probe"], r["target"]), r["started_at"]) for i, r in enumerate(rows)
              if counted(r)]  # fmt: skip
    if not wanted:
        return {}
    with cache.lock:
        known = cache.agents.get(agent_id)
        if known is not None and all(known.get(k, -1.0) >= cutoff for _, k, _ in wanted):
            for _, k, ts in wanted:
                known[k] = max(known[k], ts)
            return {}
    fresh: dict[Key, float] = {
        (p, t): ts
        for p, t, ts in conn.execute(
            sa.select(latest.c.probe, latest.c.target, latest.c.started_at).where(
                latest.c.agent_id == agent_id, latest.c.started_at >= cutoff
            )
        )
    }
    new = {k for _, k, _ in wanted if k not in fresh}
    count = _partner_count(conn, cache, partner_id, cutoff, now, len(new), limits) if new else 0
    targets = {t for _, t in fresh}
    refused: dict[int, str] = {}
    for i, k, ts in wanted:
        if k in fresh:
            fresh[k] = max(fresh[k], ts)
            continue
        probe, target = k
        if target not in targets and len(targets) >= limits.max_targets_per_agent:
            refused[i] = (
                f"target {target!r}: agent already reports {len(targets)} distinct targets "
                "(limits.max_targets_per_agent)"
            )
            continue
        if count >= limits.max_series_per_partner:
            refused[i] = (
                f"target {target!r}, probe {probe!r}: partner already has {count} series "
                "(limits.max_series_per_partner)"
            )
            continue
        fresh[k] = ts
        targets.add(target)
        count += 1
    with cache.lock:
        if len(cache.agents) >= MAX_CACHED_AGENTS:
            cache.agents.clear()
        cache.agents[agent_id] = fresh
        if new:
            read_at = cache.partners.get(partner_id, (now, 0))[0]
            cache.partners[partner_id] = (read_at, count)
    return refused


def _partner_count(
    conn: sa.Connection,
    cache: SeriesCache,
    partner_id: str,
    cutoff: float,
    now: float,
    adding: int,
    limits: LimitsConfig,
) -> int:
    """The partner's fresh series: this process's count while it is recent and far from the
    bound, else read again."""
    with cache.lock:
        hit = cache.partners.get(partner_id)
    if (
        hit is not None
        and now - hit[0] < PARTNER_COUNT_TTL_S
        and hit[1] + adding < limits.max_series_per_partner
    ):
        return hit[1]
    n = conn.execute(
        sa.select(sa.func.count())
        .select_from(latest.join(agents, agents.c.id == latest.c.agent_id))
        .where(agents.c.partner_id == partner_id, latest.c.started_at >= cutoff)
    ).scalar_one()
    with cache.lock:
        cache.partners[partner_id] = (now, int(n))
    return int(n)
