"""Background loops of a running collector: outbox delivery and the silent-agent check."""

from __future__ import annotations

import asyncio
import logging
import random

from fastapi.concurrency import run_in_threadpool

from collector import outbox
from collector.api.state import AppState
from collector.evaluation import check_silent_agents
from collector.notifiers import DeliveryError, deliver

log = logging.getLogger(__name__)


def deliver_due(st: AppState) -> int:
    """Deliver what is due now; returns how many rows were attempted."""
    cfg = st.store.config
    channels = {ch.name: ch for ch in cfg.notifications}
    with st.store.write() as conn:
        rows = outbox.claim_due(conn, cfg.outbox, st.clock())
    for row in rows:
        attempts = row.attempts + 1
        ch = channels.get(row.channel)
        try:
            if ch is None:
                raise DeliveryError(f"channel {row.channel!r} is no longer configured")
            deliver(ch, row.payload, row.id)
        except DeliveryError as exc:
            with st.store.write() as conn:
                state = outbox.mark_failed(conn, cfg.outbox, row.id, attempts, str(exc), st.clock())
            st.stats.notification(row.channel, "failed")
            log.warning(
                "notification %s via %s failed (attempt %d, now %s): %s",
                row.id, row.channel, attempts, state, exc,
            )  # fmt: skip
            continue
        with st.store.write() as conn:
            outbox.mark_sent(conn, row.id, attempts, st.clock())
        st.stats.notification(row.channel, "sent")
        log.info("notification %s delivered via %s", row.id, row.channel)
    return len(rows)


async def outbox_loop(st: AppState) -> None:
    interval = st.store.config.outbox.poll_interval_s
    await asyncio.sleep(random.uniform(0, interval))
    while True:
        try:
            n = await run_in_threadpool(deliver_due, st)
        except Exception:
            log.exception("outbox delivery loop failed; retrying")
            n = 0
        if n == 0:
            await asyncio.sleep(interval)


def check_silent(st: AppState) -> int:
    with st.store.write() as conn:
        return check_silent_agents(conn, st.store.insert, st.book, st.clock())


async def silent_loop(st: AppState) -> None:
    interval = st.store.config.silent_check_interval_s
    await asyncio.sleep(random.uniform(0, interval))
    while True:
        try:
            await run_in_threadpool(check_silent, st)
        except Exception:
            log.exception("silent-agent check failed; retrying")
        await asyncio.sleep(interval)
