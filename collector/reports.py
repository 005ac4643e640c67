"""SLA and quality reports: one customer's or one site's figures over a period, from the
hourly roll-ups where they exist and the raw results otherwise, kept as generated.

Availability of voice quality (the definition the report prints, `DEFINITION`): the
measured time is cut into hours. An hour of a site is *measured* when at least one voice
result (`VOICE_PROBES`: the udp stream and the SIP test call) started in it; its good share
is the share of those results that succeeded with every figure inside the site's rule
thresholds (`rules.inside_thresholds`: the warning limits of the rules in force, so a
warning is outside). Good time = the sum of the good shares of the measured hours (in
hours); availability = good time / measured time. An hour without a voice result is *not
measured*: reported as such, counted neither good nor bad. A customer's report sums the
hours of its sites. The period is the hours whose start lies in [since, until).

Where the figures come from, per site and hour: the hourly roll-up (`rollups`: `good`,
`count` and the value histograms `hist`) when the hour is rolled and not waiting to be
rolled again; otherwise the hour's raw results, summarised by the same code
(`rollups.summarise`). Percentiles are nearest rank over the month's values rounded to
0.01 (the histograms' resolution); the MOS distribution counts results per MOS band.

Tickets of the period (opened in it) carry the time to acknowledge (to the first of
acknowledged or resolved) and to resolve; a ticket is out of SLA when either took longer
than the target of its severity (`DEFAULT_SLA_TARGETS`, or the targets passed in), or is
still running past it when the report is made.
"""

from __future__ import annotations

import base64
import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from collector import portal, readiness, rollups, sla
from collector.config import CollectorConfig, SmtpChannel
from collector.errors import Invalid, NotFound
from collector.rules import Rule
from collector.schema import (
    customers,
    jobs,
    partners,
    report_schedules,
    reports,
    rollup_pending,
    sites,
    tickets,
)
from collector.schema import outbox as outbox_table
from collector.schema import rollups as rollup_table
from collector.tenants import get_customer, get_site

log = logging.getLogger(__name__)
HOUR_S = 3600.0
VOICE_PROBES = ("udp", "sip_call")
DIRECTIONS = ("out", "back")
QUANTILES = (("p50", 50), ("p95", 95), ("p99", 99))
# Percentile figures per direction ("rtt": the round trip).
FIGURES = {"out": ("loss_pct", "jitter_ms", "mos"), "back": ("loss_pct", "jitter_ms", "mos"),
           "rtt": ("rtt_ms.avg",)}  # fmt: skip
# MOS bands: ITU-T G.107 Annex B user satisfaction (R 90/80/70/60/50 as MOS), lower bound in.
MOS_BANDS = (
    (4.34, 5.0, "very satisfied"),
    (4.03, 4.34, "satisfied"),
    (3.60, 4.03, "some users dissatisfied"),
    (3.10, 3.60, "many users dissatisfied"),
    (2.58, 3.10, "nearly all users dissatisfied"),
    (0.0, 2.58, "not recommended"),
)
# Tickets: seconds to acknowledge and to resolve, per severity. THE one place the defaults
# live; per-partner targets are passed to `build` as `sla_targets`.
# The collector's default ticket targets (collector/sla.py), in this module's terms.
DEFAULT_SLA_TARGETS: dict[str, dict[str, float]] = {
    sev: {"ack_s": response_s, "resolve_s": resolution_s}
    for sev, (response_s, resolution_s) in sla.DEFAULT_TARGETS.items()
}
WORST_HOURS = 10
MAX_RANGE_S = 93 * 86400.0
DEFINITION = (
    "Availability of voice quality is the share of the measured time in which every voice "
    "figure was inside the thresholds. Time is counted in hours: an hour is measured when at "
    "least one voice test (the UDP voice stream or the SIP test call) ran in it, and its good "
    "share is the share of those tests that succeeded with every figure (round trip, loss, "
    "jitter and MOS in each direction) inside the warning thresholds of the site's rules. "
    "Good time is the sum of the good shares; availability is good time divided by measured "
    "time. Hours without any voice test are reported as not measured and count neither way."
)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        raise Invalid(
            f"timezone {name!r} is unknown (an IANA name such as Europe/Berlin)"
        ) from None


def month_range(year: int, month: int, tz: str = "UTC") -> tuple[float, float]:
    """[since, until) of a calendar month in the timezone `tz`, as Unix seconds."""
    if not 1 <= month <= 12 or not 2000 <= year <= 9998:
        raise Invalid(f"month {year:04d}-{month:02d} is out of range")
    z = zone(tz)
    start = datetime(year, month, 1, tzinfo=z)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=z)
    return start.timestamp(), end.timestamp()


def previous_month(now: float, tz: str) -> tuple[int, int]:
    local = datetime.fromtimestamp(now, zone(tz))
    return (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)


# --------------------------------------------------------------------------- pure maths


@dataclass
class Hour:
    """One site's voice results in one hour: how many, how many inside the thresholds, and
    the lowest MOS."""

    count: int = 0
    good: int = 0
    min_mos: float | None = None

    def share(self) -> float:
        return self.good / self.count


def merge_hist(into: dict[float, int], hist: Mapping[str, int] | None) -> None:
    for k, n in (hist or {}).items():
        into[float(k)] += int(n)


def hist_quantile(hist: Mapping[float, int], pct: int) -> float | None:
    """Nearest rank (the value at rank ceil(pct / 100 * n), in integers so that no rounding
    moves it) of the values a histogram counts."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, -(-pct * total // 100))
    seen = 0
    for v in sorted(hist):
        seen += hist[v]
        if seen >= rank:
            return v
    return max(hist)  # pragma: no cover - the ranks add up to total


def mos_bands(hist: Mapping[float, int]) -> list[dict[str, Any]]:
    return [
        {"from": lo, "to": hi, "label": label,
         "count": sum(n for v, n in hist.items() if lo <= v < hi or (hi == 5.0 and v >= hi))}
        for lo, hi, label in MOS_BANDS
    ]  # fmt: skip


def availability(hours: Iterable[Hour], total_h: float) -> dict[str, Any]:
    hs = [h for h in hours if h.count]
    good = sum(h.share() for h in hs)
    measured = float(len(hs))
    return {
        "total_h": total_h,
        "measured_h": measured,
        "good_h": good,
        "bad_h": measured - good,
        "not_measured_h": max(0.0, total_h - measured),
        "pct": 100.0 * good / measured if measured else None,
    }


def ticket_sla(
    t: Mapping[str, Any], targets: Mapping[str, Mapping[str, float]], now: float
) -> dict[str, Any]:
    """Time to acknowledge and to resolve, and whether the ticket is out of its SLA."""
    opened = t["opened_at"]
    acked = min(x for x in (t.get("acked_at"), t.get("resolved_at"), math.inf) if x is not None)
    resolved = t.get("resolved_at")
    ack_s = acked - opened if acked != math.inf else None
    resolve_s = resolved - opened if resolved is not None else None
    target = targets.get(t["severity"]) or {}
    why = []
    ack_t, res_t = target.get("ack_s"), target.get("resolve_s")
    if ack_t is not None and (ack_s if ack_s is not None else now - opened) > ack_t:
        why.append("acknowledged late" if ack_s is not None else "not acknowledged in time")
    if res_t is not None and (resolve_s if resolve_s is not None else now - opened) > res_t:
        why.append("resolved late" if resolve_s is not None else "not resolved in time")
    return {"ack_s": ack_s, "resolve_s": resolve_s, "out_of_sla": bool(why),
            "why": ", ".join(why)}  # fmt: skip


# --------------------------------------------------------------------------- gathering


def _brand(conn: sa.Connection, partner_id: str) -> dict[str, Any]:
    """The partner's brand on the report (collector/brand.py): name, colours, and the logo
    inlined as a data: URI (the PDF is rendered with no access to the portal)."""
    from collector import brand

    name = conn.execute(sa.select(partners.c.name).where(partners.c.id == partner_id)).scalar()
    if name is None:
        return {"name": "", "primary": "#1f4e79", "accent": "#2e7d32", "logo": None}
    b = brand.for_partner(conn, partner_id)
    logo = brand.logo(conn, partner_id)
    uri = f"data:{logo[1]};base64,{base64.b64encode(logo[0]).decode()}" if logo else None
    return {"name": b.name, "primary": b.primary_color, "accent": b.accent_color,
            "logo": uri, "support": b.support_contact}  # fmt: skip


def partner_timezone(conn: sa.Connection, partner_id: str) -> str:
    """The timezone a partner's months are taken in unless a request or schedule names one
    ("UTC" today)."""
    return "UTC"


def _sla_targets(conn: sa.Connection, partner_id: str) -> Mapping[str, Mapping[str, float]]:
    """The partner's ticket SLA targets per severity (set through `PUT /api/v1/sla/targets`,
    the collector's defaults for a severity the partner left alone)."""
    targets = portal.get_targets(conn, partner_id)
    return {sev: {"ack_s": t.response_s, "resolve_s": t.resolution_s} for sev, t in targets.items()}


def _unrolled_ranges(
    conn: sa.Connection, site_id: str, since: float, until: float, legacy: set[float]
) -> list[tuple[float, float]]:
    """The hours of [since, until) whose hourly roll-up is missing, waiting to be redone or
    in `legacy`, as ranges of consecutive hours."""
    rolled = set(
        conn.execute(
            sa.select(rollup_table.c.bucket).distinct().where(
                rollup_table.c.period == "hour", rollup_table.c.site_id == site_id,
                rollup_table.c.bucket >= since, rollup_table.c.bucket < until,
            )
        ).scalars()
    )  # fmt: skip
    pend = rollup_pending
    pending = set(
        conn.execute(
            sa.select(pend.c.bucket).where(
                pend.c.period == "hour", pend.c.site_id == site_id,
                pend.c.bucket >= since, pend.c.bucket < until,
            )
        ).scalars()
    )  # fmt: skip
    out: list[tuple[float, float]] = []
    h = math.ceil(since / HOUR_S) * HOUR_S
    while h < until:
        if h not in rolled or h in pending or h in legacy:
            if out and out[-1][1] == h:
                out[-1] = (out[-1][0], h + HOUR_S)
            else:
                out.append((h, h + HOUR_S))
        h += HOUR_S
    return out


def _site_hours(
    conn: sa.Connection,
    site_id: str,
    since: float,
    until: float,
    base: Mapping[str, Rule],
    hists: dict[tuple[str, str], dict[float, int]],
) -> dict[float, Hour]:
    """A site's voice hours in [since, until); adds its values to `hists`. An hour rolled
    before `good` was counted (migration 0010) is read from the raw rows, as an unrolled
    one; when they are gone too, it is not measured."""
    hours: dict[float, Hour] = defaultdict(Hour)
    r = rollup_table
    q = sa.select(
        r.c.bucket, r.c.field, r.c.direction, r.c.count.label("results"), r.c.good, r.c.min,
        r.c.hist,
    ).where(
        r.c.period == "hour", r.c.site_id == site_id, r.c.bucket >= since, r.c.bucket < until,
        r.c.probe.in_(VOICE_PROBES),
    )  # fmt: skip
    rows = conn.execute(q).all()
    legacy = {x.bucket for x in rows if x.field == "" and x.good is None}
    unrolled = _unrolled_ranges(conn, site_id, since, until, legacy)
    skip = {h for lo, hi in unrolled for h in _hours_of(lo, hi)}
    for row in rows:
        if row.bucket in skip:
            continue
        _add(hours[row.bucket], hists, row.field, row.direction, row.results, row.good,
             row.min, row.hist)  # fmt: skip
    judge = rollups.judge_for(conn, site_id, base)
    for lo, hi in unrolled:
        raw = [x for x in rollups.raw_rows(conn, site_id, lo, hi) if x.probe in VOICE_PROBES]
        by_hour: dict[float, list[Any]] = defaultdict(list)
        for x in raw:
            by_hour[math.floor(x.started_at / HOUR_S) * HOUR_S].append(x)
        for h, rows in by_hour.items():
            for s in rollups.summarise(rows, judge):
                _add(hours[h], hists, s["field"], s["direction"], s["count"], s["good"],
                     s["min"], s["hist"])  # fmt: skip
    return {h: v for h, v in hours.items() if v.count}


def _hours_of(lo: float, hi: float) -> Iterable[float]:
    h = lo
    while h < hi:
        yield h
        h += HOUR_S


def _add(
    hour: Hour, hists: dict[tuple[str, str], dict[float, int]], field: str, direction: str,
    count: int, good: int | None, vmin: float | None, hist: Mapping[str, int] | None,
) -> None:  # fmt: skip
    if field == "":
        hour.count += count
        hour.good += good or 0
        return
    if field == "mos" and vmin is not None:
        hour.min_mos = vmin if hour.min_mos is None else min(hour.min_mos, vmin)
    if hist:
        merge_hist(hists[(field, direction or "rtt")], hist)


def build(
    conn: sa.Connection,
    partner_id: str,
    customer_id: str,
    site_id: str | None,
    since: float,
    until: float,
    tz: str,
    now: float,
    base: Mapping[str, Rule],
    sla_targets: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """The report's figures (JSON-ready) for a customer (all its sites) or one of its sites.
    Raises NotFound for another partner's customer or site, Invalid for a bad range."""
    if until <= since:
        raise Invalid("since must be before until")
    if until - since > MAX_RANGE_S:
        raise Invalid(f"a report covers at most {MAX_RANGE_S / 86400:g} days")
    zone(tz)
    customer = get_customer(conn, partner_id, customer_id)
    if site_id is not None:
        site = get_site(conn, partner_id, site_id)
        if site["customer_id"] != customer_id:
            raise NotFound(f"site {site_id} not found")
        site_rows = [site]
    else:
        site_rows = [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(sites.c.id, sites.c.name)
                .where(sites.c.customer_id == customer_id, sites.c.partner_id == partner_id)
                .order_by(sites.c.name)
            )
        ]
    targets = sla_targets if sla_targets is not None else DEFAULT_SLA_TARGETS
    first = math.ceil(since / HOUR_S) * HOUR_S
    total_h = float(len(range(int(first), int(until), int(HOUR_S)))) if until > first else 0.0
    hists: dict[tuple[str, str], dict[float, int]] = defaultdict(lambda: defaultdict(int))
    all_hours: list[tuple[str, float, Hour]] = []
    per_site = []
    for s in site_rows:
        hours = _site_hours(conn, s["id"], since, until, base, hists)
        all_hours += [(s["name"], h, v) for h, v in hours.items()]
        per_site.append({"id": s["id"], "name": s["name"],
                         "availability": availability(hours.values(), total_h)})  # fmt: skip
    site_names = {s["id"]: s["name"] for s in site_rows}
    ids = list(site_names)
    total = availability([h for _, _, h in all_hours], total_h * len(site_rows))
    z = zone(tz)
    daily: dict[str, list[Hour]] = defaultdict(list)
    for _, h, v in all_hours:
        daily[datetime.fromtimestamp(h, z).date().isoformat()].append(v)
    worst = sorted((x for x in all_hours if x[2].good < x[2].count),
                   key=lambda x: (x[2].share(), x[1]))[:WORST_HOURS]  # fmt: skip
    return {
        "partner_id": partner_id,
        "customer": {"id": customer["id"], "name": customer["name"]},
        "site": {"id": site_id, "name": site_names[site_id]} if site_id else None,
        "since": since, "until": until, "timezone": tz, "generated_at": now,
        "definition": DEFINITION,
        "availability": total,
        "sites": per_site,
        "daily": [{"day": d, **availability(v, 24.0 * len(site_rows))}
                  for d, v in sorted(daily.items())],
        "worst_hours": [
            {"site": n, "hour": h, "results": v.count, "good": v.good,
             "good_pct": 100.0 * v.share(), "min_mos": v.min_mos}
            for n, h, v in worst
        ],
        "mos": {d: mos_bands(hists[("mos", d)]) for d in DIRECTIONS},
        "percentiles": {
            d: {f: _quantiles(hists[(f, d)]) for f in fs} for d, fs in FIGURES.items()
        },
        "readiness": _readiness(conn, partner_id, ids, site_names, since, until),
        "tickets": _tickets(conn, ids, site_names, since, until, targets, now),
        "sla_targets": {k: dict(v) for k, v in targets.items()},
    }  # fmt: skip


def _quantiles(hist: Mapping[float, int]) -> dict[str, Any]:
    out: dict[str, Any] = {name: hist_quantile(hist, q) for name, q in QUANTILES}
    out["n"] = sum(hist.values())
    return out


def _readiness(
    conn: sa.Connection, partner_id: str, site_ids: list[str], names: Mapping[str, str],
    since: float, until: float,
) -> list[dict[str, Any]]:  # fmt: skip
    if not site_ids:
        return []
    q = (
        sa.select(jobs.c.id, jobs.c.site_id, jobs.c.created_at, jobs.c.state, jobs.c.spec,
                  jobs.c.report)
        .where(jobs.c.site_id.in_(site_ids), jobs.c.kind == "suite",
               jobs.c.created_at >= since, jobs.c.created_at < until)
        .order_by(jobs.c.created_at)
    )  # fmt: skip
    out = []
    for j in conn.execute(q):
        if (j.spec or {}).get("suite") != "readiness":
            continue
        verdict: str | None
        try:
            rep = readiness.report_of(dict(j._mapping))
            verdict = rep.verdict if rep else None
        except ValueError:
            verdict = "unreadable"
        out.append({"id": j.id, "site": names.get(j.site_id, ""), "at": j.created_at,
                    "state": j.state, "verdict": verdict or j.state})  # fmt: skip
    return out


def _tickets(
    conn: sa.Connection, site_ids: list[str], names: Mapping[str, str], since: float,
    until: float, targets: Mapping[str, Mapping[str, float]], now: float,
) -> list[dict[str, Any]]:  # fmt: skip
    if not site_ids:
        return []
    cols = [c for c in tickets.c if c.name != "evidence"]
    q = (
        sa.select(*cols)
        .where(tickets.c.site_id.in_(site_ids), tickets.c.opened_at >= since,
               tickets.c.opened_at < until)
        .order_by(tickets.c.opened_at)
    )  # fmt: skip
    out = []
    for t in conn.execute(q):
        m = dict(t._mapping)
        out.append({"id": m["id"], "site": names.get(m["site_id"], ""), "rule": m["rule_id"],
                    "severity": m["severity"], "state": m["state"], "title": m["title"],
                    "opened_at": m["opened_at"], **ticket_sla(m, targets, now)})  # fmt: skip
    return out


# --------------------------------------------------------------------------- storage


def _meta(r: Any) -> dict[str, Any]:
    from collector.timefmt import iso

    return {
        "id": r.id, "customer_id": r.customer_id, "site_id": r.site_id, "kind": r.kind,
        "title": r.title, "since": iso(r.since), "until": iso(r.until), "timezone": r.timezone,
        "created_at": iso(r.created_at), "emailed_to": r.emailed_to or [],
    }  # fmt: skip


META_COLS = (reports.c.id, reports.c.customer_id, reports.c.site_id, reports.c.kind,
             reports.c.title, reports.c.since, reports.c.until, reports.c.timezone,
             reports.c.created_at, reports.c.emailed_to)  # fmt: skip


def title_of(data: Mapping[str, Any]) -> str:
    z = zone(data["timezone"])
    lo = datetime.fromtimestamp(data["since"], z)
    hi = datetime.fromtimestamp(data["until"], z)
    scope = data["customer"]["name"] + (f" / {data['site']['name']}" if data["site"] else "")
    title = f"SLA and quality report: {scope}, {lo:%Y-%m-%d %H:%M} to {hi:%Y-%m-%d %H:%M}"
    # It is also an e-mail's subject: no line breaks or other control characters.
    return "".join(ch if ch.isprintable() else " " for ch in title)[:300]


def store_report(
    conn: sa.Connection, data: Mapping[str, Any], html: str, kind: str, now: float,
    pdf: bytes | None = None, emailed_to: list[str] | None = None,
) -> str:  # fmt: skip
    """Keep a generated report; returns its id. A second monthly report of the same customer
    and month is refused by the database (`uq_reports_monthly`): IntegrityError."""
    rid = str(uuid.uuid4())
    conn.execute(reports.insert().values(
        id=rid, partner_id=data["partner_id"], customer_id=data["customer"]["id"],
        site_id=(data["site"] or {}).get("id"), kind=kind, since=data["since"],
        until=data["until"], timezone=data["timezone"], title=title_of(data), created_at=now,
        data=dict(data), html=html, pdf=pdf, emailed_to=emailed_to,
    ))  # fmt: skip
    return rid


def _scoped(partner_id: str, customer_id: str | None) -> Any:
    q = reports.c.partner_id == partner_id
    return q if customer_id is None else sa.and_(q, reports.c.customer_id == customer_id)


def list_reports(
    conn: sa.Connection, partner_id: str, customer_id: str | None = None,
    site_id: str | None = None, limit: int = 200,
) -> list[dict[str, Any]]:  # fmt: skip
    """A partner's reports, newest first; `customer_id` restricts them to one customer's
    (a customer viewer sees only theirs)."""
    q = sa.select(*META_COLS).where(_scoped(partner_id, customer_id))
    if site_id is not None:
        q = q.where(reports.c.site_id == site_id)
    q = q.order_by(reports.c.created_at.desc(), reports.c.id).limit(limit)
    return [_meta(r) for r in conn.execute(q)]


def get_report(
    conn: sa.Connection, partner_id: str, report_id: str, customer_id: str | None = None,
    what: str = "meta",
) -> Any:  # fmt: skip
    """A report's metadata with its figures (`meta`), its page (`html`) or its PDF (`pdf`,
    None until rendered). NotFound for another partner's (or customer's) report."""
    cols = {"meta": [*META_COLS, reports.c.data], "html": [reports.c.html],
            "pdf": [reports.c.pdf]}[what]  # fmt: skip
    r = conn.execute(
        sa.select(*cols).where(reports.c.id == report_id, _scoped(partner_id, customer_id))
    ).first()
    if r is None:
        raise NotFound(f"report {report_id} not found")
    if what == "meta":
        return {**_meta(r), "data": r.data}
    return r[0]


def set_pdf(conn: sa.Connection, report_id: str, pdf: bytes) -> None:
    conn.execute(reports.update().where(reports.c.id == report_id).values(pdf=pdf))


# --------------------------------------------------------------------------- schedules


def get_schedule(conn: sa.Connection, partner_id: str, customer_id: str) -> dict[str, Any]:
    get_customer(conn, partner_id, customer_id)
    r = conn.execute(
        sa.select(report_schedules).where(report_schedules.c.customer_id == customer_id)
    ).first()
    if r is None:
        raise NotFound(f"customer {customer_id} has no report schedule")
    return dict(r._mapping)


def put_schedule(
    conn: sa.Connection, partner_id: str, customer_id: str, values: Mapping[str, Any],
    now: float,
) -> dict[str, Any]:  # fmt: skip
    get_customer(conn, partner_id, customer_id)
    tz = values.get("timezone") or partner_timezone(conn, partner_id)
    zone(tz)
    row = {**values, "timezone": tz, "partner_id": partner_id, "updated_at": now}
    key = report_schedules.c.customer_id == customer_id
    if conn.execute(sa.select(report_schedules.c.customer_id).where(key)).first():
        conn.execute(report_schedules.update().where(key).values(**row))
    else:
        conn.execute(report_schedules.insert().values(customer_id=customer_id, **row))
    return get_schedule(conn, partner_id, customer_id)


def delete_schedule(conn: sa.Connection, partner_id: str, customer_id: str) -> None:
    get_schedule(conn, partner_id, customer_id)
    conn.execute(report_schedules.delete().where(report_schedules.c.customer_id == customer_id))


def due_schedules(conn: sa.Connection, now: float) -> list[dict[str, Any]]:
    """The enabled schedules whose last month's report is due at `now` (its day has come in
    the schedule's timezone) and not yet made, with the month's range."""
    q = (
        sa.select(report_schedules, partners.c.name.label("partner_name"))
        .join(customers, customers.c.id == report_schedules.c.customer_id)
        .join(partners, partners.c.id == report_schedules.c.partner_id)
        .where(report_schedules.c.enabled.is_(True))
    )
    out = []
    for s in conn.execute(q):
        year, month = previous_month(now, s.timezone)
        since, until = month_range(year, month, s.timezone)
        local = datetime.fromtimestamp(until, zone(s.timezone))
        due_at = local.replace(day=s.day_of_month).timestamp()
        if now < due_at:
            continue
        done = conn.execute(
            sa.select(reports.c.id).where(
                reports.c.customer_id == s.customer_id, reports.c.kind == "monthly",
                reports.c.since == since,
            )
        ).first()  # fmt: skip
        if done is None:
            out.append({**dict(s._mapping), "since": since, "until": until})
    return out


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


# --------------------------------------------------------------------------- making them


def generate(
    conn: sa.Connection, partner_id: str, customer_id: str, site_id: str | None,
    since: float, until: float, tz: str, now: float, base: Mapping[str, Rule],
    sla_targets: Mapping[str, Mapping[str, float]] | None = None,
) -> tuple[dict[str, Any], str]:  # fmt: skip
    """The report's figures and its page: the ticket targets are `sla_targets`, else the
    partner's (`_sla_targets`); the brand is the partner's (`_brand`)."""
    from collector.reportpage import to_html

    if sla_targets is None:
        sla_targets = _sla_targets(conn, partner_id)
    data = build(conn, partner_id, customer_id, site_id, since, until, tz, now, base,
                 sla_targets)  # fmt: skip
    return data, to_html(data, _brand(conn, partner_id))


def email_channel(config: CollectorConfig, partner_name: str) -> SmtpChannel | None:
    """The e-mail channel a partner's reports go out by: the first that takes the
    partner's notifications (its own, or the operator's)."""
    for ch in config.notifications:
        if isinstance(ch, SmtpChannel) and ch.takes(partner_name):
            return ch
    return None


def report_email(
    data: Mapping[str, Any], title: str, pdf: bytes, to: list[str], sender: str = ""
) -> dict[str, Any]:
    """The outbox payload of a report e-mail (notifiers.send_email), signed with the
    partner's brand (`sender`), never the product's name."""
    a = data["availability"]
    pct = "not measured" if a["pct"] is None else f"{a['pct']:.3f} %"
    month = datetime.fromtimestamp(data["since"], zone(data["timezone"])).strftime("%Y-%m")
    name = f"sla-report-{month}.pdf"
    text = (
        f"{title}\n\nAvailability of voice quality: {pct} of the measured time "
        f"({a['measured_h']:.0f} h measured, {a['not_measured_h']:.0f} h not measured).\n"
        f"The full report is attached ({name}).\n"
    )
    if sender:
        text += f"\n-- \n{sender}\n"
    attachment = {"filename": name, "data_b64": base64.b64encode(pdf).decode()}
    return {"event": "report", "to": list(to), "subject": title, "text": text,
            "attachment": attachment}  # fmt: skip


def send_monthly(store: Any, now: float) -> int:
    """Make and e-mail every monthly report that is due; returns how many this call made.

    Each is made outside any transaction, then stored and queued for e-mail in one: the
    unique index `uq_reports_monthly` lets one of several collectors (or one restarted
    half-way) store it; the others' inserts are refused and they queue nothing, so each
    report is kept and sent once."""
    from collector.reportpage import to_pdf

    made = 0
    base = rollups.base_rules(store)
    with store.read() as conn:
        due = due_schedules(conn, now)
    for s in due:
        try:
            with store.read() as conn:
                data, html = generate(conn, s["partner_id"], s["customer_id"], None,
                                      s["since"], s["until"], s["timezone"], now, base)  # fmt: skip
            pdf = to_pdf(html)
        except Exception:  # one customer's failure must not hold up the others' reports
            log.exception("monthly report of customer %s failed", s["customer_id"])
            continue
        ch = email_channel(store.config, s["partner_name"])
        to = list(s["recipients"]) if ch is not None else []
        try:
            with store.write() as conn:
                rid = store_report(conn, data, html, "monthly", now, pdf, to)
                if ch is not None and to:
                    signed = _brand(conn, s["partner_id"])
                    sender = " · ".join(x for x in (signed["name"], signed.get("support")) if x)
                    payload = report_email(data, title_of(data), pdf, to, sender)
                    conn.execute(outbox_table.insert().values(
                        channel=ch.name, partner_id=s["partner_id"], payload=payload,
                        created_at=now, next_attempt_at=now, attempts=0, last_error="",
                        state="pending",
                    ))  # fmt: skip
        except sa.exc.IntegrityError:
            continue  # another collector stored it first
        made += 1
        log.info("monthly report %s made for customer %s%s", rid, s["customer_id"],
                 f", e-mailed via {ch.name}" if ch and to else ", no e-mail channel")  # fmt: skip
    return made
