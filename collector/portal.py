"""What the portal shows, read from the store: a site's measurements (current state per
probe and target, history per figure and direction), the account roll-up (sites worst
first, open tickets, readiness verdicts, silent or outdated agents, tickets out of SLA) and
the partner's SLA targets.

Every reader takes the partner and an optional `customer_id` restriction (a customer
viewer sees one customer's sites only); a site or customer outside it is not found.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from collector import history, maintenance, profiles, readiness, sla, tenants
from collector.config import CollectorConfig
from collector.errors import Invalid, NotFound
from collector.evaluation import RuleBook
from collector.rollups import figures
from collector.rules import SEVERITY_RANK
from collector.schema import latest, sla_targets, ticket_events, tickets
from collector.timefmt import iso

SPANS = {"24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}
# The charts of a site: (probe, figure label, unit, [(field, direction), ...]).
CHARTS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    ("udp", "RTT", "ms", [("rtt_ms.avg", "")]),
    ("udp", "Jitter", "ms", [("jitter_ms", "out"), ("jitter_ms", "back")]),
    ("udp", "Loss", "%", [("loss_pct", "out"), ("loss_pct", "back")]),
    ("udp", "MOS", "", [("mos", "out"), ("mos", "back")]),
    ("sip_call", "Jitter", "ms", [("jitter_ms", "out"), ("jitter_ms", "back")]),
    ("sip_call", "Loss", "%", [("loss_pct", "out"), ("loss_pct", "back")]),
    ("sip_call", "MOS", "", [("mos", "out"), ("mos", "back")]),
    ("icmp", "RTT", "ms", [("rtt_ms.avg", "")]),
    ("icmp", "Jitter", "ms", [("jitter_ms", "rtt")]),
    ("icmp", "Loss", "%", [("loss_pct", "rtt")]),
]
MAX_CHART_TARGETS = 4  # targets per probe drawn (the others are listed in the current state)


def check_site(
    conn: sa.Connection, partner_id: str, site_id: str, customer_id: str | None = None
) -> dict[str, Any]:
    site = tenants.get_site(conn, partner_id, site_id)
    if customer_id is not None and site["customer_id"] != customer_id:
        raise NotFound(f"site {site_id} not found")
    return site


# -- a site's measurements ------------------------------------------------------------


def current(conn: sa.Connection, book: RuleBook, site_id: str) -> list[dict[str, Any]]:
    """The latest result per (probe, target) of the site with its key figures per
    direction and the level the site's rules give it now."""
    from collector.context import load_site_context
    from collector.rules import evaluate

    ctx = load_site_context(conn, site_id)
    by_probe = book.by_probe(ctx)
    rows = conn.execute(
        sa.select(latest).where(latest.c.site_id == site_id).order_by(latest.c.probe,
                                                                       latest.c.target)
    ).all()  # fmt: skip
    out = []
    for r in rows:
        worst = "ok"
        failing = []
        for rule in by_probe.get(r.probe, ()):
            level, value = evaluate(rule, r.success, r.measurement, ctx.contracted)
            if level and level != "ok":
                failing.append(f"{rule.description or rule.id}: {_num(value)}")
                if SEVERITY_RANK[level] > SEVERITY_RANK[worst]:
                    worst = level
        figs = []
        for f in figures(r.probe):
            if f.field.startswith("rtt_ms.") and f.field != "rtt_ms.avg":
                continue
            cur: Any = r.measurement
            for k in f.path:
                cur = cur.get(k) if isinstance(cur, dict) else None
            if isinstance(cur, int | float) and not isinstance(cur, bool):
                figs.append({"field": f.field, "direction": f.direction, "value": float(cur)})
        out.append({
            "probe": r.probe, "target": r.target, "at": iso(r.started_at),
            "success": r.success, "level": worst, "failing": failing, "figures": figs,
        })  # fmt: skip
    return out


def _num(v: float | None) -> str:
    return "failed" if v is None else f"{v:.4g}"


def _limit(book: RuleBook, ctx: Any, probe: str, field: str, direction: str) -> float | None:
    """The warning limit of the site's rule reading this figure, if one does."""
    path = next((".".join(f.path) for f in figures(probe)
                 if (f.field, f.direction) == (field, direction)), None)  # fmt: skip
    for rule in book.by_probe(ctx).get(probe, ()):
        if rule.field == path and rule.op in ("above", "below"):
            return rule.warning if rule.warning is not None else rule.critical
    return None


def charts(
    conn: sa.Connection, book: RuleBook, site_id: str, span: str, now: float
) -> list[dict[str, Any]]:
    """One chart per (probe, target, figure) the site has results of: its series per
    direction over the span, read from the roll-ups (hourly for 7 and 30 days) or the raw
    results (24 hours, and where an hour is not rolled up yet)."""
    from collector.context import load_site_context

    if span not in SPANS:
        raise Invalid(f"span must be one of {', '.join(SPANS)}")
    ctx = load_site_context(conn, site_id)
    since = now - SPANS[span]
    res: history.Resolution = "raw" if span == "24h" else "hour"
    probes = {r.probe for r in conn.execute(
        sa.select(latest.c.probe).where(latest.c.site_id == site_id).distinct())}  # fmt: skip
    out = []
    for probe, label, unit, figs in CHARTS:
        if probe not in probes:
            continue
        by_target: dict[str, list[dict[str, Any]]] = {}
        used = res
        for field, direction in figs:
            h = history.history(conn, site_id, probe, field, direction, None, since, now, res)
            if res == "hour" and not h["series"] and SPANS[span] <= history.RAW_LIMIT_S:
                h = history.history(conn, site_id, probe, field, direction, None, since, now,
                                    "raw")  # fmt: skip
                used = "raw"
            for s in h["series"]:
                pts = [(p["t"], p["p50"]) for p in s["points"] if p["p50"] is not None]
                by_target.setdefault(s["target"], []).append(
                    {"name": direction if direction in ("out", "back") else label,
                     "field": field, "direction": direction, "points": pts,
                     "limit": _limit(book, ctx, probe, field, direction)}
                )  # fmt: skip
        for target in sorted(by_target)[:MAX_CHART_TARGETS]:
            out.append({"probe": probe, "target": target, "figure": label, "unit": unit,
                        "resolution": used, "since": since, "until": now,
                        "series": by_target[target]})  # fmt: skip
    return out


# -- SLA ------------------------------------------------------------------------------


def get_targets(conn: sa.Connection, partner_id: str) -> dict[str, sla.Target]:
    rows = conn.execute(sa.select(sla_targets).where(sla_targets.c.partner_id == partner_id))
    return sla.targets_for({r.severity: sla.Target(r.response_s, r.resolution_s) for r in rows})


def put_targets(
    conn: sa.Connection, partner_id: str, targets: dict[str, sla.Target], now: float
) -> dict[str, sla.Target]:
    """Replace the partner's targets (a severity left out takes the defaults again)."""
    conn.execute(sla_targets.delete().where(sla_targets.c.partner_id == partner_id))
    if targets:
        conn.execute(sla_targets.insert(), [
            {"partner_id": partner_id, "severity": sev, "response_s": t.response_s,
             "resolution_s": t.resolution_s, "updated_at": now}
            for sev, t in targets.items()
        ])  # fmt: skip
    return get_targets(conn, partner_id)


def clocks(
    conn: sa.Connection, partner_id: str, rows: list[dict[str, Any]], now: float
) -> dict[str, dict[str, Any]]:
    """The SLA clock of each ticket in `rows` (as tickets.list_tickets answers them), by id,
    with a line for a person per clock."""
    if not rows:
        return {}
    targets = get_targets(conn, partner_id)
    ids = [r["id"] for r in rows]
    events: dict[str, list[tuple[float, str]]] = {i: [] for i in ids}
    for i in range(0, len(ids), 500):
        q = sa.select(ticket_events.c.ticket_id, ticket_events.c.at, ticket_events.c.kind).where(
            ticket_events.c.ticket_id.in_(ids[i : i + 500])
        )
        for tid, at, kind in conn.execute(q):
            events[tid].append((at, kind))
    q_open = sa.select(tickets.c.id, tickets.c.opened_at).where(tickets.c.id.in_(ids))
    opened = {tid: at for tid, at in conn.execute(q_open)}
    out = {}
    for r in rows:
        sev = r["severity"] if r["severity"] in targets else "warning"
        c = sla.clock(sev, opened[r["id"]], events[r["id"]], targets, now)
        d = c.as_dict()
        d["response"]["text"] = sla.describe(c.response)
        d["resolution"]["text"] = sla.describe(c.resolution)
        out[r["id"]] = d
    return out


# -- the roll-up ----------------------------------------------------------------------


def rollup(
    conn: sa.Connection, config: CollectorConfig, partner_id: str, now: float,
    customer_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Every site (of one customer, when given) with its state, open tickets, last
    readiness verdict, agents and maintenance, worst first; the silent or outdated agents;
    the open tickets out of SLA."""
    customers = {c["id"]: c["name"] for c in tenants.list_customers(conn, partner_id)}
    if customer_id is not None and customer_id not in customers:
        raise NotFound(f"customer {customer_id} not found")
    site_rows = tenants.list_sites(conn, partner_id, customer_id)
    site_ids = {s["id"] for s in site_rows}
    open_rows = [t for t in _open_tickets(conn, partner_id) if t["site_id"] in site_ids]
    sla_by_id = clocks(conn, partner_id, open_rows, now)
    in_maint = maintenance.active_sites(conn, partner_id, now)
    agents_by_site: dict[str, list[dict[str, Any]]] = {}
    bad_agents = []
    for a in tenants.list_agents(conn, partner_id):
        if a["site_id"] not in site_ids or a.get("revoked_at"):
            continue
        h = profiles.agent_health(a, now, silent_after_s=config.silent_agent_timeout_s,
                                  min_version=config.min_agent_version)  # fmt: skip
        view = {"id": a["id"], "hostname": a["hostname"], "site_id": a["site_id"],
                "version": a.get("version") or "", "last_seen_at": iso(a.get("last_seen_at")),
                **h}  # fmt: skip
        agents_by_site.setdefault(a["site_id"], []).append(view)
        if h["silent"] or h["outdated"]:
            bad_agents.append(view)
    out_sites = []
    for s in site_rows:
        mine = [t for t in open_rows if t["site_id"] == s["id"]]
        worst = max((t["severity"] for t in mine), key=lambda v: SEVERITY_RANK.get(v, 0),
                    default="ok")  # fmt: skip
        agents = agents_by_site.get(s["id"], [])
        tests = readiness.list_for_site(conn, partner_id, s["id"], limit=1)
        rank = SEVERITY_RANK.get(worst, 0) * 10 + (1 if any(a["silent"] for a in agents) else 0)
        out_sites.append({
            "id": s["id"], "name": s["name"], "customer_id": s["customer_id"],
            "customer": customers.get(s["customer_id"], ""), "state": worst,
            "open_tickets": len(mine),
            "out_of_sla": sum(1 for t in mine if sla_by_id[t["id"]]["breached"]),
            "agents": agents, "silent_agents": sum(1 for a in agents if a["silent"]),
            "in_maintenance": s["id"] in in_maint,
            "readiness": ({"id": tests[0]["id"], "verdict": tests[0].get("verdict"),
                           "state": tests[0].get("state"),
                           "at": tests[0].get("updated_at")} if tests else None),
            "rank": rank,
        })  # fmt: skip
    out_sites.sort(key=lambda x: (-x["rank"], x["name"]))
    names = {s["id"]: s["name"] for s in site_rows}
    late = [{**t, "site": names.get(t["site_id"], ""), "sla": sla_by_id[t["id"]]}
            for t in open_rows if sla_by_id[t["id"]]["breached"]]  # fmt: skip
    return {
        "customer_id": customer_id,
        "customer": customers.get(customer_id) if customer_id else None,
        "at": iso(now), "sites": out_sites, "agents_attention": bad_agents,
        "tickets_out_of_sla": late,
        "open_tickets": [{**t, "site": names.get(t["site_id"], ""), "sla": sla_by_id[t["id"]]}
                         for t in open_rows],
    }  # fmt: skip


def _open_tickets(conn: sa.Connection, partner_id: str) -> list[dict[str, Any]]:
    from collector.tickets import list_tickets

    return list_tickets(conn, partner_id, "open", limit=1000)
