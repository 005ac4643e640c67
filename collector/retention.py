"""Expiry: raw results past their retention, roll-ups past theirs, and the space they held.

Raw results are kept `retention.raw_days` (a partner's `raw_retention_days` overrides it),
roll-ups `retention.rollup_days`. On PostgreSQL whole daily partitions are dropped once they
end before the longest raw retention of any partner (collector/partitions.py); the rows of a
partner with a shorter retention are deleted from the partitions still kept. On SQLite rows
are deleted in batches of `retention.delete_batch`, each its own short write transaction
(ingest waits for one batch at most, not for the whole expiry), then free pages beyond
`retention.sqlite_keep_free_pct` % of the file are given back by incremental vacuum when the
database has `auto_vacuum=INCREMENTAL` (every database the collector creates; an older file
reuses its free pages for new rows but keeps its size: see docs/collector.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from collector import partitions
from collector.config import RetentionConfig
from collector.schema import partners, results, rollup_pending, rollups, sites

log = logging.getLogger(__name__)

DAY_S = 86400.0
VACUUM_STEP_PAGES = 2000  # pages freed per incremental_vacuum transaction


@dataclass
class Expired:
    """What one expiry pass removed."""

    results: int = 0
    rollups: int = 0
    partitions: list[str] = field(default_factory=list)
    pages_freed: int = 0


def ensure_partitions(store: Any, now: float) -> list[str]:
    """PostgreSQL: create the daily partitions from yesterday to `partitions_ahead_days`
    ahead; returns the names created (none on SQLite)."""
    if store.is_sqlite:
        return []
    ahead = store.config.retention.partitions_ahead_days
    with store.write() as conn:
        return partitions.ensure(conn, now - DAY_S, now + ahead * DAY_S)


def expire(store: Any, now: float) -> Expired:
    cfg: RetentionConfig = store.config.retention
    out = Expired()
    with store.read() as conn:
        rows = conn.execute(sa.select(partners.c.id, partners.c.raw_retention_days)).all()
    keep = {pid: days or cfg.raw_days for pid, days in rows}
    longest = max([cfg.raw_days, *keep.values()])
    if not store.is_sqlite:
        with store.write() as conn:
            out.partitions = partitions.drop_before(conn, now - longest * DAY_S)
    for pid, days in sorted(keep.items()):
        if store.is_sqlite or days < longest:
            out.results += _delete_partner(store, pid, now - days * DAY_S, cfg.delete_batch)
    out.rollups = _delete_batches(
        store, rollups, [rollups.c.bucket < now - cfg.rollup_days * DAY_S], cfg.delete_batch,
        (rollups.c.period, rollups.c.bucket, rollups.c.site_id, rollups.c.probe,
         rollups.c.target, rollups.c.field, rollups.c.direction),
    )  # fmt: skip
    # A bucket left pending past the longest raw retention can never be rolled.
    with store.write() as conn:
        conn.execute(rollup_pending.delete().where(rollup_pending.c.bucket < now - longest * DAY_S))
    if store.is_sqlite:
        out.pages_freed = reclaim(store, cfg.sqlite_keep_free_pct)
    if out.results or out.rollups or out.partitions:
        log.info(
            "retention: %d raw results, %d roll-up rows, %d partitions removed, %d pages freed",
            out.results, out.rollups, len(out.partitions), out.pages_freed,
        )  # fmt: skip
    return out


SITES_PER_STATEMENT = 500


def _delete_partner(store: Any, partner_id: str, cutoff: float, batch: int) -> int:
    with store.read() as conn:
        q = sa.select(sites.c.id).where(sites.c.partner_id == partner_id).order_by(sites.c.id)
        mine = list(conn.execute(q).scalars())
    total = 0
    for i in range(0, len(mine), SITES_PER_STATEMENT):
        some = mine[i : i + SITES_PER_STATEMENT]
        total += _delete_batches(
            store,
            results,
            [results.c.site_id.in_(some), results.c.started_at < cutoff],
            batch,
            (results.c.id, results.c.started_at),
        )
    return total


def _delete_batches(
    store: Any, table: sa.Table, where: list[Any], batch: int, key: tuple[Any, ...]
) -> int:
    """Delete the rows matching `where`, `batch` at a time, a transaction each."""
    total = 0
    while True:
        chosen = sa.select(*key).where(*where).limit(batch)
        with store.write() as conn:
            n = conn.execute(table.delete().where(sa.tuple_(*key).in_(chosen))).rowcount
        total += n
        if n < batch:
            return total


def reclaim(store: Any, keep_free_pct: float) -> int:
    """SQLite with incremental auto-vacuum: give back free pages beyond `keep_free_pct` % of
    the file (those below it are reused by the next rows without growing the file)."""
    with store.read() as conn:
        mode = conn.exec_driver_sql("PRAGMA auto_vacuum").scalar()
        free = conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar() or 0
    if mode != 2:
        return 0
    excess = free - int(pages * keep_free_pct / 100)
    freed = 0
    while excess > 0:
        step = min(excess, VACUUM_STEP_PAGES)
        # The pragma frees one page per step and the driver's execute steps once: a script
        # runs it to the end, in a transaction of its own, beside the store's writers.
        with store.write_lock(), store.engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.executescript(f"PRAGMA incremental_vacuum({step});")
        freed += step
        excess -= step
    return freed
