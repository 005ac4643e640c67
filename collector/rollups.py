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
Field "" is the availability row of each probe and target; it also counts the results
`good`: those that succeeded with every figure inside the site's rule thresholds
(`rules.inside_thresholds`, the rules in force when the bucket was rolled), which is what
the SLA reports' availability of voice quality is made of (collector/reports.py). The
voice figures the reports read (`HIST_FIELDS` of `HIST_PROBES`) also keep a histogram:
how many results had each value rounded to 0.01, so a month's percentiles come from the
hours exactly (to that rounding) and the MOS distribution can be drawn.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from agent.wire.exposition import series_of
from agent.wire.measurements import MEASUREMENTS
from agent.wire.results import LOAD_TEST_TAG
from collector.config import RetentionConfig
from collector.context import load_site_context
from collector.errors import NotFound
from collector.rules import Rule, apply_overrides, default_rules, effective_rules
from collector.rules import inside_thresholds as _inside
from collector.schema import partners, results, rollup_pending, rollups, sites

DAY_S = 86400.0
PERIODS = {"hour": 3600.0, "day": DAY_S}
HIST_PROBES = frozenset({"udp", "sip_call"})
HIST_FIELDS = frozenset({"loss_pct", "jitter_ms", "mos", "rtt_ms.avg"})
Judge = Callable[[str, bool, Any], bool]


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


def hist_key(v: float) -> str:
    """The histogram key of a value: rounded to 0.01 (half to even, as `round`)."""
    return repr(round(v, 2) + 0.0)


def summarise(rows: Iterable[Any], judge: Judge | None = None) -> list[dict[str, Any]]:
    """Raw rows (probe, target, success, measurement) of one bucket -> roll-up rows (without
    period, bucket and site). `judge(probe, success, measurement)` says whether a result is
    inside the thresholds (None: `good` is not counted)."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    values: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        c = counts[(r.probe, r.target)]
        c[0] += 1
        c[1] += bool(r.success)
        if judge is not None:
            c[2] += judge(r.probe, bool(r.success), r.measurement)
        for f in figures(r.probe):
            v = _number(r.measurement, f.path)
            if v is not None:
                values[(r.probe, r.target, f.field, f.direction)].append(v)
    out = []
    for (probe, target), (count, ok, good) in counts.items():
        row = _row(probe, target, "", "", count, ok, [])
        row["good"] = good if judge is not None else None
        out.append(row)
        for f in figures(probe):
            vals = values.get((probe, target, f.field, f.direction))
            if vals:
                row = _row(probe, target, f.field, f.direction, count, ok, vals)
                if probe in HIST_PROBES and f.field in HIST_FIELDS:
                    hist: dict[str, int] = defaultdict(int)
                    for v in vals:
                        hist[hist_key(v)] += 1
                    row["hist"] = dict(hist)
                out.append(row)
    return out


def judge_for(conn: sa.Connection, site_id: str, base: Mapping[str, Rule]) -> Judge | None:
    """The site's `inside_thresholds` under its effective rules (`base`, then the partner's
    and the site's overrides); None for a site that is gone."""
    try:
        ctx = load_site_context(conn, site_id)
    except NotFound:
        return None
    rules = effective_rules(base, ctx.partner_overrides, ctx.site.get("rule_overrides"))
    contracted = ctx.contracted
    return lambda probe, ok, m: _inside(rules, probe, ok, m, contracted)


def base_rules(store: Any) -> dict[str, Rule]:
    """The collector's rules before any partner or site override."""
    cfg = store.config
    return apply_overrides(default_rules(cfg.silent_agent_timeout_s), cfg.rules)


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
        "good": None,
        "hist": None,
    }


def raw_rows(conn: sa.Connection, site_id: str, since: float, until: float) -> list[Any]:
    """A site's raw rows in [since, until) as roll-ups read them (capacity ramps left out)."""
    q = sa.select(
        results.c.started_at, results.c.probe, results.c.target, results.c.success,
        results.c.measurement, results.c.tags,
    ).where(
        results.c.site_id == site_id,
        results.c.started_at >= since,
        results.c.started_at < until,
    )  # fmt: skip
    return [r for r in conn.execute(q) if LOAD_TEST_TAG not in (r.tags or {})]


def roll(
    conn: sa.Connection,
    period: str,
    bucket: float,
    site_id: str,
    base: Mapping[str, Rule] | None = None,
) -> int:
    """Replace the roll-up of one site's bucket by one computed from its raw rows; returns
    the number of roll-up rows written. `base`: the collector's rules (default: the
    built-in ones), which `good` is counted under with the site's overrides."""
    rows = raw_rows(conn, site_id, bucket, bucket + PERIODS[period])
    judge = judge_for(conn, site_id, base if base is not None else default_rules())
    key = (rollups.c.period == period, rollups.c.bucket == bucket, rollups.c.site_id == site_id)
    conn.execute(rollups.delete().where(*key))
    out = [
        {"period": period, "bucket": bucket, "site_id": site_id, **x}
        for x in summarise(rows, judge)
    ]
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
    base = base_rules(store)
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
                    roll(conn, period, bucket, site, base)
                    if period == "hour":
                        _mark(conn, store.is_sqlite, "day", bucket_of(bucket, "day"), site)
                    done += 1
                conn.execute(rollup_pending.delete().where(*key, rollup_pending.c.seq == seq))
    return done
