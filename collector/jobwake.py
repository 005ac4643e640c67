"""Wake-ups for job long polls: a per-site notifier in the event loop, fed by job creation,
by lease expiry (one timer per process) and, on PostgreSQL, by LISTEN/NOTIFY so that a job
queued through one collector process wakes the poll held by another.

A waiting poll costs nothing between its first look and its wake-up: it awaits a future.
A poll may skip the query at its deadline only while the notifications are `reliable` for
it: always in process; on PostgreSQL only if the listening connection was up when the poll
subscribed and has not dropped since. When the listener comes back after a drop every
waiting poll is woken once (it queries once), so a job queued during the gap is not missed.

A poll may skip even its first look: the waker keeps the sites that may have a
dispatchable job (`dirty`: every wake-up adds its site; a look that found nothing removes
it, unless a wake-up came in meanwhile), primed by a sweep of the jobs table (`sweep`,
every few seconds: one query per process for the whole fleet, which also finds a job that
reached the table without a notification). A site not dirty since a sweep made while
notifications were reliable has no job to look for.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

JOBS_CHANNEL = "qs_jobs"  # the PostgreSQL NOTIFY channel; the payload is the site id


def notify_job(conn: sa.Connection, site_id: str) -> None:
    """Announce a dispatchable job for `site_id` to every collector process listening on
    the database, when `conn`'s transaction commits (PostgreSQL; nothing on SQLite, where
    the collector is one process and wakes its polls in memory)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_notify(JOBS_CHANNEL, site_id)))


class Subscription:
    """One waiting poll's interest in its site."""

    def __init__(self, waker: JobWaker, site_id: str) -> None:
        self.waker = waker
        self.site_id = site_id
        self.generation = waker.generation
        self.reliable_at_start = waker.listening
        self.future: asyncio.Future[bool] = waker._add(site_id)

    @property
    def reliable(self) -> bool:
        """True if no notification meant for this poll can have been lost."""
        return self.reliable_at_start and self.generation == self.waker.generation

    async def wait(self, within_s: float) -> bool:
        """True if woken within `within_s` s (or since the last wait). The future is the
        deadline's too (a timer sets it False): no cancellation, no exception and no
        shielding task per poll (each was garbage for the cyclic collector to find). Woken,
        it re-arms at once (a job queued while the poll looks wakes it again); lapsed, only
        if it waits again (at its deadline a poll ends)."""
        if self.future.done():  # woken since the last wait, or lapsed then
            woken = self.future.result()
            self._rearm()
            if woken:
                return True
        fut = self.future
        timer = fut.get_loop().call_later(within_s, _lapse, fut)
        try:
            await fut
        finally:
            timer.cancel()
        woken = fut.result()
        if woken:
            self._rearm()
        return woken

    def _rearm(self) -> None:
        self.waker._remove(self.site_id, self.future)
        self.future = self.waker._add(self.site_id)

    def close(self) -> None:
        self.waker._remove(self.site_id, self.future)


def _lapse(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


class JobWaker:
    """Per-site wake-ups for the polls of one process. `signal()` may be called from any
    thread; everything else runs in the event loop given to `start()`."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiting: dict[str, set[asyncio.Future[bool]]] = {}
        # In process every notification arrives; a cross-process channel sets this False
        # until it is connected, and moves `generation` on every drop.
        self.listening = True
        self.generation = 0
        self.wakeups = 0
        self._leases: list[tuple[float, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        # site -> stamp of its last wake-up, for sites that may have a dispatchable job;
        # trusted only while `primed` equals `generation` (a sweep since the last drop).
        self.dirty: dict[str, int] = {}
        self._stamp = 0
        self.primed: int | None = None
        self.looks_skipped = 0
        self.stopping = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def subscribe(self, site_id: str) -> Subscription:
        return Subscription(self, site_id)

    def _add(self, site_id: str) -> asyncio.Future[bool]:
        assert self.loop is not None, "JobWaker.start() was not called"
        fut: asyncio.Future[bool] = self.loop.create_future()
        self.waiting.setdefault(site_id, set()).add(fut)
        return fut

    def _remove(self, site_id: str, fut: asyncio.Future[bool]) -> None:
        futs = self.waiting.get(site_id)
        if futs is not None:
            futs.discard(fut)
            if not futs:
                del self.waiting[site_id]

    def signal(self, site_id: str) -> None:
        """Wake the site's waiting polls (thread-safe)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.wake, site_id)

    def wake(self, site_id: str) -> None:
        self._stamp += 1
        self.dirty[site_id] = self._stamp
        for fut in self.waiting.pop(site_id, ()):
            if not fut.done():
                fut.set_result(True)
                self.wakeups += 1

    def wake_all(self) -> None:
        for site_id in list(self.waiting):
            self.wake(site_id)

    def stop(self) -> None:
        """The server is shutting down: every waiting poll answers now (its agent polls
        again, another replica or this one restarted) instead of being cut at the end of
        the graceful shutdown."""
        self.stopping = True
        for futs in self.waiting.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(True)

    # -- which sites may have a job: the first look of a poll -------------------------

    def must_look(self, site_id: str) -> tuple[bool, int | None]:
        """(whether a poll starting now must query the table for `site_id`, the stamp to
        hand to `settle` after a look that found nothing)."""
        stamp = self.dirty.get(site_id)
        if self.primed is not None and self.primed == self.generation and self.listening:
            if stamp is None:
                self.looks_skipped += 1
                return False, None
        return True, stamp

    def settle(self, site_id: str, stamp: int | None) -> None:
        """A look that began with `stamp` found no job: forget the site unless it was woken
        again since (a job queued during the look keeps it dirty)."""
        if stamp is not None and self.dirty.get(site_id) == stamp:
            del self.dirty[site_id]

    def swept(self, sites: set[str], generation: int, listening: bool) -> None:
        """The sites with a dispatchable job, read from the table by a query that started
        at `generation` while `listening`: they become dirty and their polls look; every
        other site is known clean from then on, if nothing was lost meanwhile."""
        for site_id in sites:
            self.wake(site_id)
        if listening and generation == self.generation:
            self.primed = generation

    # -- lease expiry: one timer for the whole process --------------------------------

    def arm_lease(self, expires_at: float, site_id: str) -> None:
        """A job handed out at this process becomes dispatchable again at `expires_at`
        (wall clock) unless its agent starts it; wake the site's polls then (thread-safe)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._push_lease, expires_at, site_id)

    def _push_lease(self, expires_at: float, site_id: str) -> None:
        heapq.heappush(self._leases, (expires_at, site_id))
        self._rearm()

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._leases and self.loop is not None:
            delay = max(0.0, self._leases[0][0] - self.clock())
            self._timer = self.loop.call_later(delay, self._leases_due)

    def _leases_due(self) -> None:
        self._timer = None
        now = self.clock()
        due: set[str] = set()
        while self._leases and self._leases[0][0] <= now:
            due.add(heapq.heappop(self._leases)[1])
        for site_id in due:
            self.on_lease_expired(site_id)
        self._rearm()

    def on_lease_expired(self, site_id: str) -> None:
        """Where a lapsed lease goes: this process's polls (the PostgreSQL waker also
        tells the other processes)."""
        self.wake(site_id)

    def pending_leases(self) -> int:
        return len(self._leases)

    async def run(self) -> None:
        """The background part (nothing in process); cancelled at shutdown."""
        await asyncio.Event().wait()


class PgJobWaker(JobWaker):
    """JobWaker fed by LISTEN on one dedicated psycopg connection per process, reconnecting
    with capped, jittered backoff when it drops."""

    def __init__(
        self,
        clock: Callable[[], float],
        dsn: str,
        notify: Callable[[str], None],
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        super().__init__(clock)
        self.dsn = dsn
        self.notify = notify  # runs pg_notify for a lapsed lease (called in a thread)
        self.backoff = backoff
        self.listening = False
        self.connects = 0
        self.conn: Any = None

    def on_lease_expired(self, site_id: str) -> None:
        self.wake(site_id)
        assert self.loop is not None
        task = self.loop.run_in_executor(None, self.notify, site_id)
        task.add_done_callback(_log_failure)

    async def run(self) -> None:
        import psycopg

        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    self.conn = conn
                    await conn.execute(f"LISTEN {JOBS_CHANNEL}")
                    failures = 0
                    self.connects += 1
                    self.listening = True
                    if self.connects > 1:
                        self.wake_all()  # what was queued while deaf: every poll looks once
                    async for note in conn.notifies():
                        self.wake(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job notifications: listening connection lost: %s", exc)
            finally:
                self.conn = None
                if self.listening:
                    self.listening = False
                    self.generation += 1
            failures += 1
            lo, hi = self.backoff
            await asyncio.sleep(min(hi, lo * 2 ** min(failures - 1, 16)) * random.uniform(0.5, 1))


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("job notifications: NOTIFY of a lapsed lease failed: %s", fut.exception())
