"""The notification outbox: rows written in the same transaction as the ticket change,
claimed with a lease by the delivery loop, retried with exponential backoff."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from collector.config import CollectorConfig, OutboxConfig
from collector.schema import outbox


def enqueue(
    conn: sa.Connection,
    config: CollectorConfig,
    partner_id: str,
    partner_name: str,
    payload: dict[str, Any],
    now: float,
) -> int:
    """One row per configured channel that takes this partner's notifications: the
    channels naming the partner in `partners`, and the operator's (`scope: operator`)."""
    rows = [
        {
            "channel": ch.name,
            "partner_id": partner_id,
            "payload": payload,
            "created_at": now,
            "next_attempt_at": now,
            "attempts": 0,
            "last_error": "",
            "state": "pending",
        }
        for ch in config.notifications
        if ch.takes(partner_name)
    ]
    if rows:
        conn.execute(outbox.insert(), rows)
    return len(rows)


def claim_due(conn: sa.Connection, cfg: OutboxConfig, now: float, limit: int = 50) -> list[Any]:
    """Take due rows under a lease: another delivery loop (or this one after a crash) may
    only retry them once the lease ran out, so each is delivered at least once."""
    due = conn.execute(
        sa.select(outbox)
        .where(outbox.c.state == "pending", outbox.c.next_attempt_at <= now)
        .order_by(outbox.c.id)
        .limit(limit)
    ).all()
    claimed = []
    for row in due:
        res = conn.execute(
            outbox.update()
            .where(outbox.c.id == row.id, outbox.c.next_attempt_at == row.next_attempt_at)
            .values(next_attempt_at=now + cfg.lease_s)
        )
        if res.rowcount == 1:
            claimed.append(row)
    return claimed


def mark_sent(conn: sa.Connection, row_id: int, attempts: int, now: float) -> None:
    conn.execute(
        outbox.update()
        .where(outbox.c.id == row_id)
        .values(state="sent", delivered_at=now, attempts=attempts, last_error="")
    )


def mark_failed(
    conn: sa.Connection, cfg: OutboxConfig, row_id: int, attempts: int, error: str, now: float
) -> str:
    """Schedule a retry with backoff, or give up after `max_attempts`; returns the state."""
    state = "dead" if attempts >= cfg.max_attempts else "pending"
    delay = min(cfg.retry_max_s, cfg.retry_base_s * 2 ** (attempts - 1))
    conn.execute(
        outbox.update()
        .where(outbox.c.id == row_id)
        .values(
            state=state,
            attempts=attempts,
            last_error=error[:2000],
            next_attempt_at=now + delay,
        )
    )
    return state


def pending_count(conn: sa.Connection) -> int:
    q = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.state == "pending")
    return int(conn.execute(q).scalar_one())
