"""Tickets: one not-resolved ticket per (site, rule, target), with events and evidence.

open -> acknowledged -> resolved; resolved automatically when the condition clears, and
reopened (not duplicated) when it trips again within the flap window. The database enforces
the one not-resolved ticket per key (a unique partial index), so collectors opening the same
ticket at once end with one ticket: the late ones add their trip to it as an event.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from agent.wire.errors import category_message
from collector.channels import external_for
from collector.config import CollectorConfig
from collector.context import SiteContext
from collector.errors import Conflict, NotFound
from collector.keys import new_id
from collector.locks import lock_site
from collector.messages import evidence_summary
from collector.outbox import enqueue
from collector.rules import SEVERITY_RANK, Rule
from collector.schema import latest, results, rule_state, ticket_events, tickets
from collector.timefmt import iso

OPEN_STATES = ("open", "acknowledged")
ACTOR_MAX = 200  # ticket_events.actor
SUPPRESSED_EVERY_S = 900.0  # one kept trip per rule and target in maintenance, this often


def partner_actor(partner: dict[str, Any]) -> str:
    """The audit actor of a request on the API: the user of a user's token
    ("user:<e-mail>"), else the partner key ("partner:<name>")."""
    who = partner.get("principal")
    if who is not None and who.email:
        return f"user:{who.email}"[:ACTOR_MAX]
    return f"partner:{partner['name']}"[:ACTOR_MAX]


def web_actor(partner: dict[str, Any]) -> str:
    """The audit actor of someone logged in on the support web pages ("user:<e-mail>")."""
    who = partner.get("principal")
    if who is not None and who.email:
        return f"user:{who.email}"[:ACTOR_MAX]
    return f"web:{partner['name']}"[:ACTOR_MAX]


def _event(
    conn: sa.Connection,
    ticket_id: str,
    kind: str,
    now: float,
    message: str = "",
    actor: str = "collector",
    data: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        ticket_events.insert().values(
            ticket_id=ticket_id, at=now, kind=kind, actor=actor, message=message, data=data or {}
        )
    )


def _result_dict(r: Any) -> dict[str, Any]:
    """A stored result as evidence; a failed one's error says what its category means."""
    d = dict(r._mapping)
    d["started_at"] = iso(d["started_at"])
    d["received_at"] = iso(d.get("received_at"))
    err = d.get("error")
    if isinstance(err, dict):
        d["error"] = {**err, "meaning": category_message(err.get("category"))}
    return d


def build_evidence(
    conn: sa.Connection, ctx: SiteContext, rule: Rule, target: str, bad_ids: list[str]
) -> dict[str, Any]:
    """The results that tripped the rule, the latest trace and host metrics, the site info."""
    tripped = []
    if bad_ids:
        q = sa.select(results).where(results.c.id.in_(bad_ids)).order_by(results.c.started_at)
        tripped = [_result_dict(r) for r in conn.execute(q)]
    context: dict[str, Any] = {}
    for probe in ("trace", "host"):
        q = (
            sa.select(latest.c.result_id)
            .where(latest.c.site_id == ctx.site_id, latest.c.probe == probe)
            .order_by(latest.c.started_at.desc())
            .limit(1)
        )
        rid = conn.execute(q).scalar()
        if rid:
            r = conn.execute(sa.select(results).where(results.c.id == rid)).first()
            context[probe] = _result_dict(r) if r else None
    return {
        "rule": rule.model_dump(),
        "target": target,
        "results": tripped,
        "context": context,
        "site": ctx.site_info(),
    }


def _notify(
    conn: sa.Connection, config: CollectorConfig | None, ctx: SiteContext, ticket_id: str,
    event: str, now: float, message: str = "",
) -> None:  # fmt: skip
    """A ticket event to the outbox (`outbox.enqueue` decides which channels take it).
    Without `config` (acks, comments) only the partner's own channels can take it."""
    t = conn.execute(sa.select(tickets).where(tickets.c.id == ticket_id)).one()
    payload = {
        "event": event,
        "at": iso(now),
        "message": message,
        "evidence": evidence_summary(t.evidence or {}),
        "ticket": {
            "id": t.id,
            "partner": ctx.partner_name,
            "customer": ctx.customer_name,
            "customer_id": t.customer_id,
            "site": ctx.site["name"],
            "site_id": t.site_id,
            "rule": t.rule_id,
            "target": t.target,
            "severity": t.severity,
            "state": t.state,
            "title": t.title,
            "opened_at": iso(t.opened_at),
            "resolved_at": iso(t.resolved_at),
            "reopen_count": t.reopen_count,
        },
    }
    window = _maintenance(conn, ctx, now)
    if window is not None:  # held back: the ticket says so instead
        _event(conn, ticket_id, "notification_suppressed", now,
               f"{event}: not notified, in maintenance ({window['description']})",
               data={"maintenance": window})  # fmt: skip
        return
    enqueue(conn, config, ctx.partner_id, ctx.partner_name, payload, now)


def _maintenance(conn: sa.Connection, ctx: SiteContext, now: float) -> dict[str, Any] | None:
    from collector.maintenance import active_window

    return active_window(conn, ctx.partner_id, ctx.customer_id, ctx.site_id, now)


def _suppressed(
    conn: sa.Connection, ctx: SiteContext, rule: Rule, target: str, level: str,
    evidence: dict[str, Any], window: dict[str, Any], now: float,
) -> None:  # fmt: skip
    """A trip in a maintenance window opens no ticket: its evidence is kept as a site
    event marked with the window, at most one per rule and target every
    SUPPRESSED_EVERY_S (a silent agent trips again at every check while the window lasts)."""
    from collector.schema import site_events

    recent = conn.execute(
        sa.select(site_events.c.data).where(
            site_events.c.site_id == ctx.site_id,
            site_events.c.kind == "suppressed_in_maintenance",
            site_events.c.at > now - SUPPRESSED_EVERY_S,
        )
    ).scalars()
    if any(d.get("rule") == rule.id and d.get("target") == target for d in recent):
        return
    conn.execute(
        site_events.insert().values(
            site_id=ctx.site_id, partner_id=ctx.partner_id, at=now,
            kind="suppressed_in_maintenance", actor="collector",
            data={"rule": rule.id, "target": target, "level": level, "maintenance": window,
                  "evidence": evidence},
        )
    )  # fmt: skip


def _key(ctx: SiteContext, rule: Rule, target: str) -> tuple[Any, ...]:
    """One ticket per (site, rule, target): the clauses selecting it."""
    return (
        tickets.c.site_id == ctx.site_id,
        tickets.c.rule_id == rule.id,
        tickets.c.target == target,
    )


def _open_ticket_id(conn: sa.Connection, ctx: SiteContext, rule: Rule, target: str) -> Any:
    return conn.execute(
        sa.select(tickets.c.id).where(*_key(ctx, rule, target), tickets.c.state.in_(OPEN_STATES))
    ).scalar()


def trip(
    conn: sa.Connection, config: CollectorConfig, ctx: SiteContext, rule: Rule, target: str,
    level: str, bad_ids: list[str], now: float,
) -> str | None:  # fmt: skip
    """The condition tripped: open a ticket, or reopen the one resolved within the window.
    In a maintenance window of the site no ticket is opened (None): the evidence is kept as
    a site event marked "in maintenance" (an open ticket still gets the new evidence).

    The database holds one not-resolved ticket per key (`uq_tickets_open_key`): when another
    collector opened it first, between our check and our write, the write is refused and
    this trip becomes an event on that ticket."""
    evidence = build_evidence(conn, ctx, rule, target, bad_ids)
    existing = _open_ticket_id(conn, ctx, rule, target)
    if existing:  # still open (e.g. the condition was reset by hand); refresh its evidence
        _refresh(conn, existing, evidence, level, now)
        return str(existing)
    window = _maintenance(conn, ctx, now)
    if window is not None:
        _suppressed(conn, ctx, rule, target, level, evidence, window, now)
        return None
    try:
        with conn.begin_nested():
            tid, event = _open_or_reopen(conn, config, ctx, rule, target, level, evidence, now)
    except sa.exc.IntegrityError:
        winner = conn.execute(
            sa.select(tickets.c.id, tickets.c.severity).where(
                *_key(ctx, rule, target), tickets.c.state.in_(OPEN_STATES)
            )
        ).first()
        if winner is None:  # refused for another reason than an open ticket of this key
            raise
        return _join(conn, config, ctx, rule, winner, level, evidence, now)
    _notify(conn, config, ctx, tid, event, now)
    return tid


def _join(
    conn: sa.Connection, config: CollectorConfig, ctx: SiteContext, rule: Rule, winner: Any,
    level: str, evidence: dict[str, Any], now: float,
) -> str:  # fmt: skip
    """Another collector opened the ticket as this one tripped: the trip is an event on it,
    and escalates it (with its notification) when it is worse."""
    tid = str(winner.id)
    worse = SEVERITY_RANK.get(level, 0) > SEVERITY_RANK.get(winner.severity, 0)
    _refresh(conn, tid, evidence, level if worse else winner.severity, now)
    if worse:
        _event(conn, tid, "escalated", now, f"severity now {level} (tripped again as it opened)")
        _notify(conn, config, ctx, tid, "escalated", now)
    else:
        _event(conn, tid, "tripped", now, f"{rule.description} ({level}), as it opened")
    return tid


def _refresh(
    conn: sa.Connection, ticket_id: str, evidence: dict[str, Any], level: str, now: float
) -> None:
    conn.execute(
        tickets.update()
        .where(tickets.c.id == ticket_id)
        .values(evidence=evidence, severity=level, updated_at=now)
    )


def _open_or_reopen(
    conn: sa.Connection, config: CollectorConfig, ctx: SiteContext, rule: Rule, target: str,
    level: str, evidence: dict[str, Any], now: float,
) -> tuple[str, str]:  # fmt: skip
    """Reopen the ticket resolved within the flap window, or open a new one; returns its id
    and the event. Raises IntegrityError when another ticket of the key is open."""
    recent = conn.execute(
        sa.select(tickets.c.id)
        .where(*_key(ctx, rule, target), tickets.c.state == "resolved")
        .where(tickets.c.resolved_at >= now - config.flap_window_s)
        .order_by(tickets.c.resolved_at.desc())
        .limit(1)
    ).scalar()
    if recent:
        conn.execute(
            tickets.update()
            .where(tickets.c.id == recent)
            .values(
                state="open",
                severity=level,
                updated_at=now,
                resolved_at=None,
                acked_at=None,
                reopen_count=tickets.c.reopen_count + 1,
                evidence=evidence,
            )
        )
        _event(conn, recent, "reopened", now, f"{rule.description} again ({level})")
        return str(recent), "reopened"
    tid = new_id()
    conn.execute(
        tickets.insert().values(
            id=tid,
            partner_id=ctx.partner_id,
            customer_id=ctx.customer_id,
            site_id=ctx.site_id,
            rule_id=rule.id,
            target=target,
            severity=level,
            state="open",
            title=f"{ctx.site['name']}: {rule.description or rule.id} ({target})",
            opened_at=now,
            updated_at=now,
            reopen_count=0,
            evidence=evidence,
        )
    )
    _event(conn, tid, "opened", now, f"{rule.description} ({level})")
    return tid, "opened"


def escalate(
    conn: sa.Connection, config: CollectorConfig, ctx: SiteContext, rule: Rule, target: str,
    level: str, now: float,
) -> None:  # fmt: skip
    tid = _open_ticket_id(conn, ctx, rule, target)
    if tid is None:
        return
    conn.execute(tickets.update().where(tickets.c.id == tid).values(severity=level, updated_at=now))
    _event(conn, tid, "escalated", now, f"severity now {level}")
    _notify(conn, config, ctx, tid, "escalated", now)


def clear(
    conn: sa.Connection, config: CollectorConfig, ctx: SiteContext, rule: Rule, target: str,
    now: float,
) -> None:  # fmt: skip
    """The condition cleared: resolve the ticket automatically."""
    tid = _open_ticket_id(conn, ctx, rule, target)
    if tid is None:
        return
    conn.execute(
        tickets.update()
        .where(tickets.c.id == tid)
        .values(state="resolved", resolved_at=now, updated_at=now)
    )
    _event(conn, tid, "auto_resolved", now, f"{rule.clear_after} good evaluations in a row")
    _notify(conn, config, ctx, tid, "resolved", now)


def open_manual_ticket(
    conn: sa.Connection, config: CollectorConfig, ctx: SiteContext, *, rule_id: str,
    target: str, severity: str, title: str, evidence: dict[str, Any], message: str,
    actor: str, now: float,
) -> str:  # fmt: skip
    """Open a ticket no rule tripped (a failed readiness test, a technician's finding), with
    its evidence, the "opened" event and a notification through the outbox, as a tripped
    rule's. One open ticket per (site, rule_id, target): the open one is returned as it is."""
    existing = conn.execute(
        sa.select(tickets.c.id).where(
            tickets.c.site_id == ctx.site_id,
            tickets.c.rule_id == rule_id,
            tickets.c.target == target,
            tickets.c.state.in_(OPEN_STATES),
        )
    ).scalar()
    if existing:
        return str(existing)
    tid = new_id()
    try:
        with conn.begin_nested():  # another collector may open it between check and write
            conn.execute(
                tickets.insert().values(
                    id=tid, partner_id=ctx.partner_id, customer_id=ctx.customer_id,
                    site_id=ctx.site_id, rule_id=rule_id, target=target, severity=severity,
                    state="open", title=title, opened_at=now, updated_at=now, reopen_count=0,
                    evidence=evidence,
                )
            )  # fmt: skip
    except sa.exc.IntegrityError:
        winner = conn.execute(
            sa.select(tickets.c.id).where(
                tickets.c.site_id == ctx.site_id,
                tickets.c.rule_id == rule_id,
                tickets.c.target == target,
                tickets.c.state.in_(OPEN_STATES),
            )
        ).scalar()
        if winner is None:
            raise
        return str(winner)
    _event(conn, tid, "opened", now, message, actor)
    _notify(conn, config, ctx, tid, "opened", now)
    return tid


def attach_evidence(
    conn: sa.Connection, partner_id: str, ticket_id: str, key: str, values: dict[str, Any], *,
    kind: str, message: str, actor: str, now: float,
) -> dict[str, Any]:  # fmt: skip
    """Merge `values` into the ticket's `evidence[key]` and record it as a `kind` event
    (e.g. gathered call info); returns the ticket with its events and evidence."""
    t = conn.execute(
        sa.select(tickets.c.evidence).where(
            tickets.c.id == ticket_id, tickets.c.partner_id == partner_id
        )
    ).first()
    if t is None:
        raise NotFound(f"ticket {ticket_id} not found")
    evidence = dict(t.evidence or {})
    evidence[key] = {**(evidence.get(key) or {}), **values}
    conn.execute(
        tickets.update().where(tickets.c.id == ticket_id).values(evidence=evidence, updated_at=now)
    )
    _event(conn, ticket_id, kind, now, message, actor, values)
    out = get_ticket(conn, partner_id, ticket_id)
    out["evidence"] = evidence
    return out


# -- partner API ----------------------------------------------------------------------


def _ticket_out(r: Any) -> dict[str, Any]:
    d = dict(r._mapping)
    for k in ("opened_at", "updated_at", "acked_at", "resolved_at"):
        d[k] = iso(d[k])
    return d


def list_tickets(
    conn: sa.Connection, partner_id: str, state: str | None = None, site_id: str | None = None,
    severity: str | None = None, limit: int = 200,
) -> list[dict[str, Any]]:  # fmt: skip
    cols = [c for c in tickets.c if c.name != "evidence"]
    q = sa.select(*cols).where(tickets.c.partner_id == partner_id)
    if state == "open":  # "open" filters what still needs attention
        q = q.where(tickets.c.state.in_(OPEN_STATES))
    elif state:
        q = q.where(tickets.c.state == state)
    if site_id:
        q = q.where(tickets.c.site_id == site_id)
    if severity:
        q = q.where(tickets.c.severity == severity)
    q = q.order_by(tickets.c.updated_at.desc()).limit(limit)
    return [_ticket_out(r) for r in conn.execute(q)]


def get_ticket(conn: sa.Connection, partner_id: str, ticket_id: str) -> dict[str, Any]:
    r = conn.execute(
        sa.select(tickets).where(tickets.c.id == ticket_id, tickets.c.partner_id == partner_id)
    ).first()
    if r is None:
        raise NotFound(f"ticket {ticket_id} not found")
    out = _ticket_out(r)
    ev = conn.execute(
        sa.select(ticket_events)
        .where(ticket_events.c.ticket_id == ticket_id)
        .order_by(ticket_events.c.id)
    )
    out["events"] = [
        {"at": iso(e.at), "kind": e.kind, "actor": e.actor, "message": e.message, "data": e.data}
        for e in ev
    ]
    out["external"] = external_for(conn, partner_id, ticket_id)
    return out


def _site_ctx_for_ticket(conn: sa.Connection, t: dict[str, Any]) -> SiteContext:
    from collector.context import load_site_context

    return load_site_context(conn, t["site_id"])


def acknowledge(
    conn: sa.Connection, partner_id: str, ticket_id: str, actor: str, message: str, now: float
) -> dict[str, Any]:
    t = get_ticket(conn, partner_id, ticket_id)
    if t["state"] != "open":
        raise Conflict(f"ticket {ticket_id} is {t['state']}, only an open ticket can be acked")
    conn.execute(
        tickets.update()
        .where(tickets.c.id == ticket_id)
        .values(state="acknowledged", acked_at=now, updated_at=now)
    )
    _event(conn, ticket_id, "acknowledged", now, message, actor)
    _notify(conn, None, _site_ctx_for_ticket(conn, t), ticket_id, "acknowledged", now, message)
    return get_ticket(conn, partner_id, ticket_id)


def resolve(
    conn: sa.Connection, config: CollectorConfig, partner_id: str, ticket_id: str, actor: str,
    message: str, now: float,
) -> dict[str, Any]:  # fmt: skip
    """Resolve by hand; the rule's state is reset so a condition still present trips anew."""
    t = get_ticket(conn, partner_id, ticket_id)
    if t["state"] == "resolved":
        raise Conflict(f"ticket {ticket_id} is already resolved")
    conn.execute(
        tickets.update()
        .where(tickets.c.id == ticket_id)
        .values(state="resolved", resolved_at=now, updated_at=now)
    )
    lock_site(conn, t["site_id"])  # not while another collector evaluates the site
    conn.execute(
        rule_state.delete().where(
            rule_state.c.site_id == t["site_id"],
            rule_state.c.rule_id == t["rule_id"],
            rule_state.c.target == t["target"],
        )
    )
    _event(conn, ticket_id, "resolved", now, message, actor)
    _notify(conn, config, _site_ctx_for_ticket(conn, t), ticket_id, "resolved", now, message)
    return get_ticket(conn, partner_id, ticket_id)


def comment(
    conn: sa.Connection, partner_id: str, ticket_id: str, actor: str, message: str, now: float
) -> dict[str, Any]:
    t = get_ticket(conn, partner_id, ticket_id)
    _event(conn, ticket_id, "comment", now, message, actor)
    _notify(conn, None, _site_ctx_for_ticket(conn, t), ticket_id, "comment", now, message)
    conn.execute(tickets.update().where(tickets.c.id == ticket_id).values(updated_at=now))
    return get_ticket(conn, partner_id, ticket_id)


def worst_open_by_site(conn: sa.Connection) -> dict[str, str]:
    q = sa.select(tickets.c.site_id, tickets.c.severity).where(tickets.c.state.in_(OPEN_STATES))
    worst: dict[str, str] = {}
    for site_id, sev in conn.execute(q):
        if sev == "critical" or site_id not in worst:
            worst[site_id] = sev
    return worst
