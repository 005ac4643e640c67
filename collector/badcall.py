""" "The bad call": every measurement of a site in a window around the time a user reported a
bad call, each figure graded by the site's effective rules through the same `rules.evaluate`
as ingest (so a figure is marked failing exactly when it would count towards a ticket), and
the window attached to a ticket as evidence.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from collector import tenants, tickets
from collector.config import CollectorConfig
from collector.context import load_site_context
from collector.errors import Invalid, NotFound
from collector.evaluation import RuleBook
from collector.rules import SEVERITY_RANK, evaluate
from collector.schema import results
from collector.timefmt import iso

DEFAULT_WINDOW_MIN = 30
MAX_WINDOW_MIN = 12 * 60
MAX_ROWS = 2000  # results read in one window
EVIDENCE_ROWS = 300
EARLIEST, LATEST = (
    946_684_800.0,
    4_102_444_800.0,
)  # 2000-01-01, 2100-01-01 (UTC)  # results kept in a ticket's evidence (the failing ones first)


def _site(conn: sa.Connection, partner_id: str, site_id: str, customer_id: str | None) -> Any:
    site = tenants.get_site(conn, partner_id, site_id)
    if customer_id is not None and site["customer_id"] != customer_id:
        raise NotFound(f"site {site_id} not found")
    return site


def window(
    conn: sa.Connection, book: RuleBook, partner_id: str, site_id: str, at: float,
    before_min: int = DEFAULT_WINDOW_MIN, after_min: int = DEFAULT_WINDOW_MIN,
    customer_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The site's results in [at - before, at + after], oldest first, each with the figures
    its rules read, their level and the rule's limits; `worst` per result and overall."""
    if not EARLIEST <= at <= LATEST:
        raise Invalid("the call's time must be between the years 2000 and 2100")
    for name, v in (("before_min", before_min), ("after_min", after_min)):
        if not 0 <= v <= MAX_WINDOW_MIN:
            raise Invalid(f"{name} must be between 0 and {MAX_WINDOW_MIN} minutes")
    if before_min + after_min == 0:
        raise Invalid("the window is empty: give before_min or after_min")
    _site(conn, partner_id, site_id, customer_id)
    ctx = load_site_context(conn, site_id)
    by_probe = book.by_probe(ctx)
    since, until = at - before_min * 60.0, at + after_min * 60.0
    q = (
        sa.select(results.c.id, results.c.started_at, results.c.probe, results.c.target,
                  results.c.success, results.c.error, results.c.measurement)
        .where(results.c.site_id == site_id, results.c.started_at >= since,
               results.c.started_at <= until)
        .order_by(results.c.started_at)
        .limit(MAX_ROWS + 1)
    )  # fmt: skip
    rows = conn.execute(q).all()
    if len(rows) > MAX_ROWS:
        raise Invalid(f"the window holds more than {MAX_ROWS} results: narrow it")
    out = []
    counts = {"ok": 0, "warning": 0, "critical": 0}
    for r in rows:
        checks = []
        worst = "ok"
        for rule in by_probe.get(r.probe, ()):
            level, value = evaluate(rule, r.success, r.measurement, ctx.contracted)
            if level is None:
                continue
            checks.append({
                "rule": rule.id, "description": rule.description, "field": rule.field,
                "op": rule.op, "value": value, "warning": rule.warning,
                "critical": rule.critical, "level": level,
            })  # fmt: skip
            if SEVERITY_RANK[level] > SEVERITY_RANK[worst]:
                worst = level
        counts[worst] += 1
        out.append({
            "id": str(r.id), "started_at": iso(r.started_at), "probe": r.probe,
            "target": r.target, "success": r.success, "error": r.error,
            "measurement": _scalars(r.measurement), "checks": checks, "worst": worst,
            "offset_s": round(r.started_at - at, 3),
        })  # fmt: skip
    overall = max(counts, key=lambda k: SEVERITY_RANK[k] if counts[k] else -1)
    return {
        "site_id": site_id, "at": iso(at), "since": iso(since), "until": iso(until),
        "before_min": before_min, "after_min": after_min, "counts": counts,
        "worst": overall if rows else "ok", "results": out,
    }  # fmt: skip


def _scalars(m: Any) -> Any:
    """A measurement without its per-packet arrays (the figures only)."""
    if isinstance(m, dict):
        return {k: _scalars(v) for k, v in m.items() if not isinstance(v, list)}
    return m


def evidence(win: dict[str, Any]) -> dict[str, Any]:
    """The window as kept in a ticket: the failing results first, then the others, at most
    EVIDENCE_ROWS (the counts say how many there were)."""
    rows = sorted(win["results"], key=lambda r: -SEVERITY_RANK[r["worst"]])[:EVIDENCE_ROWS]
    rows.sort(key=lambda r: r["started_at"])
    return {**win, "results": rows, "kept": len(rows)}


def attach(
    conn: sa.Connection, config: CollectorConfig, book: RuleBook, partner_id: str,
    site_id: str, at: float, before_min: int, after_min: int, ticket_id: str | None,
    actor: str, now: float, customer_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Attach the window around `at` to the site's open ticket `ticket_id`, or to a new
    ticket for the site (`ticket_id` None); returns the ticket."""
    win = evidence(window(conn, book, partner_id, site_id, at, before_min, after_min,
                          customer_id))  # fmt: skip
    key = win["at"]
    label = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    c = win["counts"]
    message = (f"bad call at {label}: {len(win['results'])} results in the window, "
               f"{c['critical']} critical, {c['warning']} warning")  # fmt: skip
    if ticket_id is None:
        ctx = load_site_context(conn, site_id)
        severity = win["worst"] if win["worst"] != "ok" else "warning"
        ticket_id = tickets.open_manual_ticket(
            conn, config, ctx, rule_id="bad_call", target=key, severity=severity,
            title=f"{ctx.site['name']}: bad call reported at {label}",
            evidence={"bad_calls": {key: win}, "site": ctx.site_info()},
            message=message, actor=actor, now=now,
        )  # fmt: skip
        return tickets.get_ticket(conn, partner_id, ticket_id)
    t = tickets.get_ticket(conn, partner_id, ticket_id)
    if t["site_id"] != site_id:
        raise NotFound(f"ticket {ticket_id} not found for site {site_id}")
    if t["state"] not in tickets.OPEN_STATES:
        raise Invalid(f"ticket {ticket_id} is resolved: attach to an open ticket or a new one")
    return tickets.attach_evidence(
        conn, partner_id, ticket_id, "bad_calls", {key: win},
        kind="bad_call", message=message, actor=actor, now=now,
    )  # fmt: skip
