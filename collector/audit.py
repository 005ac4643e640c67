"""The audit trail of a site's gathered call info: who changed it (the authenticated
credential), when, and from what to what. Ticket changes are ticket events
(collector/tickets.py); this is the same for what is kept on the site itself."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from collector import tenants
from collector.schema import site_events
from collector.timefmt import iso

ACTOR_MAX = 200  # site_events.actor


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
    after = row.get("call_info") or {}
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
