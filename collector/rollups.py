"""Hourly and daily roll-ups of the raw results, per site / probe / target / figure /
direction, computed incrementally by the worker.

Which figures: every series the probe's measurement model declares for /metrics
(`agent.wire.exposition.series_of`): its family is the figure (`rtt_ms`, `loss_pct`,
`mos`...), its `direction` label the direction (`out`, `back`, `rtt`, `up`, `down`; "" when
it has none) and any other label is appended to the figure (`rtt_ms.p95`,
`sip_timing_ms.srd`). A renamed field renames nothing here.

What: per bucket the results counted, those that succeeded (availability = ok / count), and
per figure how many results carried it and its min, p50, p95 and max (nearest rank: the
value at rank ceil(q * n) of the sorted values, so every figure is one that was measured).
Field "" is the availability row of each probe and target.

How: ingest marks the (site, hour) of each stored result in `rollup_pending`; the worker
rolls each marked hour once it has been closed `retention.grace_s`, from the raw rows, and
marks its day; a day is rolled from the raw rows of the whole day (percentiles cannot be
merged exactly from hourly ones), after it has closed. A result arriving late marks its
hour again, which is rolled again, then its day. A bucket whose raw rows are already past
their retention is never rolled again (the roll-up of the rows that were there is kept).
Results of a capacity ramp (`LOAD_TEST_TAG`) are left out, as the rules leave them out.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from agent.wire.exposition import series_of
from agent.wire.measurements import MEASUREMENTS
from agent.wire.results import LOAD_TEST_TAG
from collector.config import RetentionConfig
from collector.schema import partners, results, rollup_pending, rollups, sites

DAY_S = 86400.0
PERIODS = {"hour": 3600.0, "day": DAY_S}


@dataclass(frozen=True)
class Figure:
    path: tuple[str, ...]
    field: str
    direction: str


@functools.cache
def figures(probe: str) -> tuple[Figure, ...]:
    """The figures rolled up for a probe kind, from its model's declarations."""
    model = MEASUREMENTS.get(probe)
    if model is None:
        return ()
    out = []
    for s in series_of(model):
        labels = dict(s.labels)
        direction = labels.pop("direction", "")
        name = ".".join([s.family, *(v for _, v in sorted(labels.items()))])
        out.append(Figure(s.path, name, direction))
    return tuple(out)


def bucket_of(t: float, period: str) -> float:
    size = PERIODS[period]
    return math.floor(t / size) * size


def nearest_rank(values: list[float], q: float) -> float:
    """The value at rank ceil(q * n) (1-based) of the sorted values."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


def _number(measurement: Any, path: tuple[str, ...]) -> float | None:
    cur = measurement
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    if isinstance(cur, bool) or not isinstance(cur, int | float):
        return None
    return float(cur)


def summarise(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Raw rows (probe, target, success, measurement) of one bucket -> roll-up rows (without
    period, bucket and site)."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    values: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        c = counts[(r.probe, r.target)]
        c[0] += 1
        c[1] += bool(r.success)
        for f in figures(r.probe):
            v = _number(r.measurement, f.path)
            if v is not None:
                values[(r.probe, r.target, f.field, f.direction)].append(v)
    out = []
    for (probe, target), (count, ok) in counts.items():
        out.append(_row(probe, target, "", "", count, ok, []))
        for f in figures(probe):
            vals = values.get((probe, target, f.field, f.direction))
            if vals:
                out.append(_row(probe, target, f.field, f.direction, count, ok, vals))
    return out


def _row(
    probe: str, target: str, field: str, direction: str, count: int, ok: int, vals: list[float]
) -> dict[str, Any]:
    vals.sort()
    return {
        "probe": probe,
        "target": target,
        "field": field,
        "direction": direction,
        "count": count,
        "ok": ok,
        "n": len(vals),
        "min": vals[0] if vals else None,
        "p50": nearest_rank(vals, 0.5) if vals else None,
        "p95": nearest_rank(vals, 0.95) if vals else None,
        "max": vals[-1] if vals else None,
    }


def roll(conn: sa.Connection, period: str, bucket: float, site_id: str) -> int:
    """Replace the roll-up of one site's bucket by one computed from its raw rows; returns
    the number of roll-up rows written."""
    q = sa.select(
        results.c.probe, results.c.target, results.c.success, results.c.measurement,
        results.c.tags,
    ).where(
        results.c.site_id == site_id,
        results.c.started_at >= bucket,
        results.c.started_at < bucket + PERIODS[period],
    )  # fmt: skip
    rows = [r for r in conn.execute(q) if LOAD_TEST_TAG not in (r.tags or {})]
    key = (rollups.c.period == period, rollups.c.bucket == bucket, rollups.c.site_id == site_id)
    conn.execute(rollups.delete().where(*key))
    out = [{"period": period, "bucket": bucket, "site_id": site_id, **x} for x in summarise(rows)]
    if out:
        conn.execute(rollups.insert(), out)
    return len(out)


def raw_days(conn: sa.Connection, cfg: RetentionConfig) -> dict[str, int]:
    """Site id -> how many days its raw results are kept."""
    q = sa.select(sites.c.id, partners.c.raw_retention_days).join(
        partners, partners.c.id == sites.c.partner_id
    )
    return {sid: days or cfg.raw_days for sid, days in conn.execute(q)}


def _mark(conn: sa.Connection, is_sqlite: bool, period: str, bucket: float, site: str) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    ins = (sqlite.insert if is_sqlite else postgresql.insert)(rollup_pending)
    stmt = ins.values(period=period, bucket=bucket, site_id=site, seq=1)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["period", "bucket", "site_id"],
            set_={"seq": rollup_pending.c.seq + 1},
        )
    )


def roll_due(store: Any, now: float, limit: int = 500) -> int:
    """Roll every pending bucket that is due (hours, then days); returns how many buckets
    were rolled. Each bucket is its own transaction; on PostgreSQL a bucket another
    replica is rolling is skipped (`FOR UPDATE SKIP LOCKED`)."""
    cfg: RetentionConfig = store.config.retention
    with store.read() as conn:
        keep = raw_days(conn, cfg)
    done = 0
    for period, size in PERIODS.items():
        with store.read() as conn:
            due = conn.execute(
                sa.select(rollup_pending.c.bucket, rollup_pending.c.site_id)
                .where(
                    rollup_pending.c.period == period,
                    rollup_pending.c.bucket + size <= now - cfg.grace_s,
                )
                .order_by(rollup_pending.c.bucket)
                .limit(limit)
            ).all()
        for bucket, site in due:
            with store.write() as conn:
                key = (
                    rollup_pending.c.period == period,
                    rollup_pending.c.bucket == bucket,
                    rollup_pending.c.site_id == site,
                )
                q = sa.select(rollup_pending.c.seq).where(*key)
                if not store.is_sqlite:
                    q = q.with_for_update(skip_locked=True)
                seq = conn.execute(q).scalar()
                if seq is None:
                    continue  # rolled by another replica, or being rolled
                days = keep.get(site)
                if days is not None and bucket >= now - days * DAY_S:
                    roll(conn, period, bucket, site)
                    if period == "hour":
                        _mark(conn, store.is_sqlite, "day", bucket_of(bucket, "day"), site)
                    done += 1
                conn.execute(rollup_pending.delete().where(*key, rollup_pending.c.seq == seq))
    return done
