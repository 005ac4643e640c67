"""The partner's audit log: every change (users, roles, sessions, brand, customers, sites,
tokens, agents, ticket actions, call info) with who made it ("user:<e-mail>" or the
partner key), when, and what (`record`, `list_log`); and the site's call-info trail
(site events, before and after), which also lands in the log."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from collector import tenants
from collector.schema import audit_log, site_events
from collector.timefmt import iso

ACTOR_MAX = 200  # site_events.actor, audit_log.actor
TARGET_MAX = 200


def record(
    conn: sa.Connection, partner_id: str, actor: str, action: str, now: float,
    target: str = "", data: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """One audit log entry (`action` like "user.invite", "site.update", "ticket.ack")."""
    conn.execute(
        audit_log.insert().values(
            partner_id=partner_id, at=now, actor=actor[:ACTOR_MAX], action=action[:64],
            target=target[:TARGET_MAX], data=data or {},
        )
    )  # fmt: skip


def list_log(conn: sa.Connection, partner_id: str, limit: int = 500) -> list[dict[str, Any]]:
    """The partner's audit log, newest first."""
    q = (
        sa.select(audit_log)
        .where(audit_log.c.partner_id == partner_id)
        .order_by(audit_log.c.id.desc())
        .limit(limit)
    )
    return [
        {"at": iso(e.at), "actor": e.actor, "action": e.action, "target": e.target,
         "data": e.data}
        for e in conn.execute(q)
    ]  # fmt: skip


def update_site(
    conn: sa.Connection, partner_id: str, site_id: str, values: dict[str, Any], actor: str,
    now: float,
) -> dict[str, Any]:  # fmt: skip
    """`tenants.update_site`, and a `call_info` site event naming `actor` (with the call
    info before and after) when the change touches the site's call info."""
    before = tenants.get_site(conn, partner_id, site_id).get("call_info") or {}
    row = tenants.update_site(conn, partner_id, site_id, values)
    if values:  # what rules and evidence read of the site: every replica reloads it
        tenants.bump_rules_epoch(conn, now)
    if "customer_id" in values:  # the customer's profile layer: the agents' config moves
        tenants.bump_config_epoch(conn, now)
    after = row.get("call_info") or {}
    if values:
        changed = sorted(k for k in values if k != "call_info" or after != before)
        record(conn, partner_id, actor, "site.update", now, site_id, {"fields": changed})
    if "call_info" in values and after != before:
        conn.execute(
            site_events.insert().values(
                site_id=site_id, partner_id=partner_id, at=now, kind="call_info",
                actor=actor[:ACTOR_MAX], data={"before": before, "after": after},
            )
        )  # fmt: skip
    return row


def list_site_events(
    conn: sa.Connection, partner_id: str, site_id: str, limit: int = 200
) -> list[dict[str, Any]]:
    """The site's audit events, newest first; another partner's site is not found."""
    tenants.get_site(conn, partner_id, site_id)
    q = (
        sa.select(site_events)
        .where(site_events.c.site_id == site_id, site_events.c.partner_id == partner_id)
        .order_by(site_events.c.id.desc())
        .limit(limit)
    )
    return [
        {"at": iso(e.at), "kind": e.kind, "actor": e.actor, "data": e.data} for e in conn.execute(q)
    ]
