"""A site's history of one figure: raw results for short ranges, roll-ups for long ones.

Resolution `auto` reads the raw rows for a range up to RAW_MAX_S (2 days), the hourly
roll-ups up to HOUR_MAX_S (31 days) and the daily ones beyond; `raw`, `hour` and `day` ask
for one (raw at most RAW_LIMIT_S, 7 days). A raw point is one result (count 1; min = p50 =
p95 = max = its value); a roll-up point is a bucket. At most MAX_POINTS points are answered;
a range holding more is refused with a message saying how to narrow it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

import sqlalchemy as sa

from agent.wire.measurements import PROBE_KINDS
from agent.wire.results import LOAD_TEST_TAG
from collector.errors import Invalid
from collector.rollups import figures
from collector.schema import results, rollups
from collector.timefmt import iso

RAW_MAX_S = 2 * 86400.0
HOUR_MAX_S = 31 * 86400.0
RAW_LIMIT_S = 7 * 86400.0
MAX_RANGE_S = 400 * 86400.0
MAX_POINTS = 20_000

Resolution = Literal["auto", "raw", "hour", "day"]


def check_figure(probe: str, field: str | None, direction: str) -> None:
    """Refuse a probe or figure the probe's model does not declare, naming those it does."""
    if probe not in PROBE_KINDS:
        raise Invalid(f"probe {probe!r} is unknown (known: {', '.join(sorted(PROBE_KINDS))})")
    if field is None:
        if direction:
            raise Invalid("direction is given without a field")
        return
    known = {(f.field, f.direction) for f in figures(probe)}
    if (field, direction) not in known:
        names = ", ".join(f"{f}/{d}" if d else f for f, d in sorted(known)) or "none"
        raise Invalid(
            f"probe {probe!r} has no figure {field!r}"
            + (f" in direction {direction!r}" if direction else " without a direction")
            + f" (field/direction: {names})"
        )


def choose(resolution: Resolution, since: float, until: float) -> str:
    span = until - since
    if span <= 0:
        raise Invalid("since must be before until")
    if span > MAX_RANGE_S:
        raise Invalid(f"the range is longer than {MAX_RANGE_S / 86400:g} days")
    if resolution == "raw" and span > RAW_LIMIT_S:
        raise Invalid(f"resolution raw reads at most {RAW_LIMIT_S / 86400:g} days")
    if resolution != "auto":
        return resolution
    return "raw" if span <= RAW_MAX_S else "hour" if span <= HOUR_MAX_S else "day"


def history(
    conn: sa.Connection,
    site_id: str,
    probe: str,
    field: str | None,
    direction: str,
    target: str | None,
    since: float,
    until: float,
    resolution: Resolution = "auto",
) -> dict[str, Any]:
    check_figure(probe, field, direction)
    res = choose(resolution, since, until)
    if res == "raw":
        series = _raw(conn, site_id, probe, field, direction, target, since, until)
    else:
        series = _rolled(conn, res, site_id, probe, field, direction, target, since, until)
    return {
        "site_id": site_id,
        "probe": probe,
        "field": field,
        "direction": direction,
        "resolution": res,
        "since": iso(since),
        "until": iso(until),
        "series": [{"target": t, "points": pts} for t, pts in sorted(series.items())],
    }


def _too_many(res: str) -> Invalid:
    return Invalid(
        f"the range holds more than {MAX_POINTS} points at resolution {res}: narrow it, "
        "name a target, or ask for a coarser resolution"
    )


def _raw(
    conn: sa.Connection, site_id: str, probe: str, field: str | None, direction: str,
    target: str | None, since: float, until: float,
) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    path = next(
        (f.path for f in figures(probe) if (f.field, f.direction) == (field, direction)), None
    )
    cols = [results.c.started_at, results.c.target, results.c.success, results.c.tags]
    if path is not None:
        cols.append(results.c.measurement)
    q = sa.select(*cols).where(
        results.c.site_id == site_id,
        results.c.probe == probe,
        results.c.started_at >= since,
        results.c.started_at < until,
    )
    if target is not None:
        q = q.where(results.c.target == target)
    rows = conn.execute(q.order_by(results.c.started_at).limit(MAX_POINTS + 1)).all()
    if len(rows) > MAX_POINTS:
        raise _too_many("raw")
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if LOAD_TEST_TAG in (r.tags or {}):
            continue
        value = None
        if path is not None:
            cur: Any = r.measurement
            for key in path:
                cur = cur.get(key) if isinstance(cur, dict) else None
            if isinstance(cur, int | float) and not isinstance(cur, bool):
                value = float(cur)
        n = 0 if value is None else 1
        out[r.target].append(
            {"t": iso(r.started_at), "count": 1, "availability": 1.0 if r.success else 0.0,
             "n": n, "min": value, "p50": value, "p95": value, "max": value}
        )  # fmt: skip
    return out


def _rolled(
    conn: sa.Connection, period: str, site_id: str, probe: str, field: str | None,
    direction: str, target: str | None, since: float, until: float,
) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    t = rollups
    q = sa.select(t).where(
        t.c.period == period,
        t.c.site_id == site_id,
        t.c.probe == probe,
        t.c.field == (field or ""),
        t.c.direction == direction,
        t.c.bucket >= since,
        t.c.bucket < until,
    )
    if target is not None:
        q = q.where(t.c.target == target)
    rows = conn.execute(q.order_by(t.c.bucket).limit(MAX_POINTS + 1)).all()
    if len(rows) > MAX_POINTS:
        raise _too_many(period)
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r.target].append(
            {"t": iso(r.bucket), "count": r.count, "availability": r.ok / r.count,
             "n": r.n, "min": r.min, "p50": r.p50, "p95": r.p95, "max": r.max}
        )  # fmt: skip
    return out
