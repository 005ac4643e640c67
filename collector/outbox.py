"""The notification outbox: rows written in the same transaction as the ticket change,
claimed with a lease by the delivery loops (one per collector), retried with exponential
backoff. A row's id is its delivery id: receivers see it (X-QoS-Scout-Delivery) and drop a
delivery they already have, the one case being a collector that died holding the row."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from collector import channels
from collector.config import CollectorConfig, OutboxConfig
from collector.schema import outbox

# The events the operator's channels (config file) receive; partners' channels receive
# every ticket event (comments and acknowledgements become PSA notes).
OPERATOR_EVENTS = frozenset({"opened", "reopened", "escalated", "resolved"})


def enqueue(
    conn: sa.Connection,
    config: CollectorConfig | None,
    partner_id: str,
    partner_name: str,
    payload: dict[str, Any],
    now: float,
) -> int:
    """THE place where a ticket event becomes deliveries: one row per channel that takes
    it. The operator's channels (config file) naming the partner in `partners` or with
    `scope: operator`, for the events in OPERATOR_EVENTS; and the partner's own channels
    whose routing takes the ticket (severity, customer, rule)."""
    keys = [
        ch.name
        for ch in (config.notifications if config is not None else ())
        if ch.takes(partner_name) and payload.get("event") in OPERATOR_EVENTS
    ]
    ticket = payload.get("ticket")
    if isinstance(ticket, dict):
        keys += channels.routed(conn, partner_id, ticket)
    rows = [
        {
            "channel": key,
            "partner_id": partner_id,
            "payload": payload,
            "created_at": now,
            "next_attempt_at": now,
            "attempts": 0,
            "last_error": "",
            "state": "pending",
        }
        for key in keys
    ]
    if rows:
        conn.execute(outbox.insert(), rows)
    return len(rows)


def claim_due(conn: sa.Connection, cfg: OutboxConfig, now: float, limit: int = 50) -> list[Any]:
    """Take due rows under a lease (until `now + cfg.lease_s`): no other delivery loop takes
    them before it runs out, so each row is delivered once while its loop lives, and again
    by another loop if this one dies holding it (at least once across a crash).

    On PostgreSQL the rows are locked as they are read (`FOR UPDATE SKIP LOCKED`): loops of
    several collectors claiming at once each get other rows and none waits for another. On
    SQLite (one process, one writer at a time) a row is claimed when its `next_attempt_at`
    is still the one read."""
    due_q = (
        sa.select(outbox)
        .where(outbox.c.state == "pending", outbox.c.next_attempt_at <= now)
        .order_by(outbox.c.id)
        .limit(limit)
    )
    lease_until = now + cfg.lease_s
    if conn.dialect.name == "postgresql":
        due = list(conn.execute(due_q.with_for_update(skip_locked=True)))
        if due:
            conn.execute(
                outbox.update()
                .where(outbox.c.id.in_([r.id for r in due]))
                .values(next_attempt_at=lease_until)
            )
        return due
    claimed = []
    for row in conn.execute(due_q).all():
        res = conn.execute(
            outbox.update()
            .where(outbox.c.id == row.id, outbox.c.next_attempt_at == row.next_attempt_at)
            .values(next_attempt_at=lease_until)
        )
        if res.rowcount == 1:
            claimed.append(row)
    return claimed


def release(conn: sa.Connection, row_ids: list[int], lease_until: float, now: float) -> int:
    """Hand back claimed rows not attempted (their lease would run out before an attempt
    could finish): due again at once for any loop. A row whose lease already ran out and
    was claimed again by another loop is left to it. Returns how many were handed back."""
    if not row_ids:
        return 0
    res = conn.execute(
        outbox.update()
        .where(
            outbox.c.id.in_(row_ids),
            outbox.c.state == "pending",
            outbox.c.next_attempt_at == lease_until,
        )
        .values(next_attempt_at=now)
    )
    return int(res.rowcount)


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
