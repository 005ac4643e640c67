"""Background loops of a running collector: outbox delivery, the silent-agent check, the
periodic re-send of open tickets to Alertmanager, roll-ups and retention, the monthly
reports, and housekeeping (last contact, WAL checkpoint, garbage-collector pauses)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import time
from typing import Any

import sqlalchemy as sa
from fastapi.concurrency import run_in_threadpool

from collector import jobs, outbox, reports, retention, rollups
from collector.api.state import SEEN_FLUSH_S, AppState
from collector.config import AlertmanagerChannel
from collector.evaluation import check_silent_agents
from collector.notifiers import DeliveryError, deliver, send_alertmanager_batch
from collector.partner_delivery import deliver_partner
from collector.schema import customers, partners, sites, tickets
from collector.secretbox import SecretBox
from collector.tickets import OPEN_STATES
from collector.timefmt import iso

log = logging.getLogger(__name__)


def deliver_due(st: AppState) -> int:
    """Deliver what is due now; returns how many rows were attempted."""
    cfg = st.store.config
    channels = {ch.name: ch for ch in cfg.notifications}
    box = SecretBox.from_config(cfg.channels)
    claimed_at = st.clock()
    with st.store.write() as conn:
        rows = outbox.claim_due(conn, cfg.outbox, claimed_at)
    lease_until = claimed_at + cfg.outbox.lease_s
    for i, row in enumerate(rows):
        attempts = row.attempts + 1
        ch = channels.get(row.channel)
        partner_ch = row.channel.removeprefix("partner:") if row.channel.startswith(
            "partner:") else None  # fmt: skip
        timeout = cfg.channels.timeout_s if partner_ch else ch.timeout_s if ch else 0.0
        if st.clock() + timeout >= lease_until:
            # An attempt might outlast the lease, and another collector would then send it
            # too: hand the rest back instead.
            with st.store.write() as conn:
                outbox.release(conn, [r.id for r in rows[i:]], lease_until, st.clock())
            return i
        try:
            if partner_ch is not None:
                deliver_partner(st.store, cfg, box, partner_ch, row.payload, st.clock, str(row.id))
            elif ch is None:
                raise DeliveryError(f"channel {row.channel!r} is no longer configured")
            else:
                deliver(ch, row.payload, row.id, st.clock())
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
    for ch in st.store.config.notifications:
        if ch.scope == "operator":
            log.info("notification channel %s receives every partner's ticket events "
                     "(scope: operator)", ch.name)  # fmt: skip
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
    st.flush_seen()
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


def open_ticket_payloads(st: AppState) -> list[dict[str, Any]]:
    q = (
        sa.select(tickets, partners.c.name.label("pn"), customers.c.name.label("cn"),
                  sites.c.name.label("sn"))
        .join(partners, partners.c.id == tickets.c.partner_id)
        .join(customers, customers.c.id == tickets.c.customer_id)
        .join(sites, sites.c.id == tickets.c.site_id)
        .where(tickets.c.state.in_(OPEN_STATES))
    )  # fmt: skip
    with st.store.read() as conn:
        rows = conn.execute(q).all()
    return [
        {
            "event": "refresh",
            "ticket": {
                "id": r.id,
                "partner": r.pn,
                "customer": r.cn,
                "site": r.sn,
                "rule": r.rule_id,
                "target": r.target,
                "severity": r.severity,
                "state": r.state,
                "title": r.title,
                "opened_at": iso(r.opened_at),
            },
        }
        for r in rows
    ]


def refresh_alertmanager(st: AppState) -> int:
    """Re-send every open ticket as a firing alert, so Alertmanager keeps it active past
    its resolve_timeout. Idempotent; returns the number of alerts sent."""
    chans = [c for c in st.store.config.notifications if isinstance(c, AlertmanagerChannel)]
    if not chans:
        return 0
    payloads = open_ticket_payloads(st)
    sent = 0
    for ch in chans:
        mine = [p for p in payloads if ch.takes(p["ticket"]["partner"])]
        if not mine:
            continue
        try:
            send_alertmanager_batch(ch, mine)
            sent += len(mine)
        except DeliveryError as exc:
            log.warning("alertmanager refresh via %s failed: %s", ch.name, exc)
    return sent


async def alertmanager_loop(st: AppState) -> None:
    interval = st.store.config.alertmanager_refresh_s
    while True:
        await asyncio.sleep(interval * random.uniform(0.9, 1.1))
        try:
            await run_in_threadpool(refresh_alertmanager, st)
        except Exception:
            log.exception("alertmanager refresh failed; retrying")


def housekeep(st: AppState, expire: bool) -> None:
    """One pass of the retention loop: partitions ahead, due roll-ups, and (when `expire`)
    expiry. Roll-ups come before expiry, so an hour is rolled before its rows can go."""
    now = st.clock()
    retention.ensure_partitions(st.store, now)
    rollups.roll_due(st.store, now)
    if expire:
        retention.expire(st.store, now)


async def retention_loop(st: AppState) -> None:
    """Every `retention.interval_s`: partitions, roll-ups; every `expire_interval_s`:
    expiry. The first pass runs at once (partitions must exist before results arrive)."""
    cfg = st.store.config.retention
    last_expiry = float("-inf")
    while True:
        expire = time.monotonic() - last_expiry >= cfg.expire_interval_s
        try:
            await run_in_threadpool(housekeep, st, expire)
            if expire:
                last_expiry = time.monotonic()
        except Exception:
            log.exception("roll-up/retention pass failed; retrying")
        await asyncio.sleep(cfg.interval_s * random.uniform(0.9, 1.1))


REPORT_CHECK_S = 600.0


async def report_loop(st: AppState, interval: float = REPORT_CHECK_S) -> None:
    """Every `interval` s (randomised): make and e-mail the monthly reports that are due
    (`reports.send_monthly`: each once, whichever collector makes it)."""
    await asyncio.sleep(random.uniform(0, interval))
    while True:
        try:
            await run_in_threadpool(reports.send_monthly, st.store, st.clock())
        except Exception:
            log.exception("monthly reports failed; retrying")
        await asyncio.sleep(interval * random.uniform(0.9, 1.1))


async def seen_loop(st: AppState, interval: float = SEEN_FLUSH_S) -> None:
    """Write the agents' last contact in one statement every `interval` seconds."""
    try:
        while True:
            await asyncio.sleep(interval)
            try:
                await run_in_threadpool(st.flush_seen)
            except Exception:
                log.exception("writing agents' last contact failed; retrying")
    finally:
        st.flush_seen()  # on shutdown, keep what was seen


async def checkpoint_loop(st: AppState, interval: float = 1.0) -> None:
    """Checkpoint the SQLite WAL off the request path (PASSIVE: never blocks writers)."""
    st.store.checkpoint_in_background()
    try:
        while True:
            await asyncio.sleep(interval)
            try:
                await run_in_threadpool(st.store.checkpoint)
            except Exception:
                log.exception("WAL checkpoint failed; retrying")
    finally:
        with contextlib.suppress(Exception):
            st.store.checkpoint()


JOBS_SWEEP_S = 5.0  # how often each process reads which sites have a dispatchable job


def _dispatchable_sites(st: AppState) -> set[str]:
    with st.store.read() as conn:
        return jobs.dispatchable_sites(conn, st.clock())


async def jobs_sweep_loop(st: AppState, interval: float = JOBS_SWEEP_S) -> None:
    """Every `interval` s, one query for the whole fleet: the sites with a dispatchable job.
    Their waiting polls look at once (a job that reached the table without a notification
    waits at most `interval`), and every other site's polls may skip their first look
    (collector/jobwake.py)."""
    waker = st.waker
    while True:
        generation, listening = waker.generation, waker.listening
        try:
            sites = await run_in_threadpool(_dispatchable_sites, st)
            waker.swept(sites, generation, listening)
        except Exception:
            log.exception("jobs sweep failed; retrying")
        await asyncio.sleep(interval * random.uniform(0.9, 1.1))


async def gc_loop(interval: float = 1.0, refresh: float = 3600.0) -> None:
    """Keep the cyclic garbage collector's pauses short. A full collection walks every live
    container object not frozen, and a busy collector holds many: at 10,000 agents the
    caches (sites, agents, rules) and the held polls are one to two million objects, and a
    full collection of them stalled the event loop 0.4-0.9 s (bench/fleet.py). Every
    `interval` s the young generations are collected and what survives is frozen (moved out
    of the collector's view; reference counting still frees it when dropped), so the old
    generation Python collects by itself as it grows stays small; once a minute (the
    earlier interval) left a minute of held polls there, and the p99 of ingest at 10,000
    agents was 225-325 ms against 50 ms now. Every `refresh / interval` passes (about every
    `refresh` s) everything is unfrozen and collected once, so that cycles which died while
    frozen are reclaimed too."""
    # Counted in passes, not read off the clock: a full pass that takes longer than the
    # refresh period (a loaded machine, a huge heap) must not make every later pass full.
    every = max(1, round(refresh / interval))
    passes = 0
    try:
        while True:
            await asyncio.sleep(interval)
            passes += 1
            if passes % every == 0:
                gc.unfreeze()
                gc.collect()
            else:
                gc.collect(1)
            gc.freeze()
    finally:
        gc.unfreeze()
