"""The shipper: sends spooled results to the collector in gzip batches, deletes from the
spool only what the collector acknowledged, and cannot be stalled by what it answers.

- Items the collector answers `rejected` leave the spool for its `rejected` table, counted
  and logged with the reason.
- A batch the collector refuses as a whole (a 4xx but 401/403/408/429, a 413, or a 5xx, a
  malformed answer or no answer for the same batch `bisect_after` times in a row) is
  halved, and halved again while it fails, until the failing item is alone. That item is
  then held back ("suspect") while the others go on, retried alone with backoff, and given
  up (`quarantined`) once it has failed alone `quarantine_after` times with a 5xx (a 4xx:
  once) AND the collector accepted other batches since its first failure. So an outage,
  where everything fails, quarantines nothing; an item that only seems to break the
  connection or the answer is held back, never dropped; the batch size grows back by
  doubling with each success.
- Results are batched by time as well as count: a result waits up to `max_delay_s` for
  others to share its request, unless the waiting results reach `batch_size` or one is
  urgent (`is_urgent`: a failed probe, a job's result), which ships at once (after a
  short debounce). Waiting results are in the spool: a restart ships them at start, a
  stop flushes them.
- 429/503 wait for Retry-After; 401/403 (key revoked or replaced) keep the spool, log what
  to do and retry slowly; an answer that is not the ingest model is an error like no
  answer. Waits are exponential with jitter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.runtime.client import AnswerError, AuthError, CollectorClient, CollectorError
from agent.runtime.contract import ids_in
from agent.runtime.contract import reason as item_reason
from agent.runtime.spool import Spool, SpooledItem
from agent.wire.lite import IngestAnswer, ProbeResult

log = logging.getLogger(__name__)
EMPTY_RECHECK_S = 300.0  # an empty spool's safety net; new results wake the shipper

ENROLL_HINT = (
    "enroll this agent again with a new token: qos-scout agent enroll --collector URL "
    "--token TOKEN --config CONFIG --force (the running agent picks up the new key)"
)
LOG_REJECTS_PER_BATCH = 5
DEBOUNCE_S = 0.2  # after an urgent result or a full batch: let a burst join the request


def is_urgent(result: ProbeResult) -> bool:
    """A result the collector must see now rather than in the next time batch: a failed
    probe (the collector's rules and tickets react to it) or a result of an on-demand job
    (someone is waiting for it)."""
    return not result.success or result.job_id is not None


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before retry `attempt` (0-based): "full jitter" exponential backoff, i.e.
    uniform in [cap/2, cap] with cap = min(max_s, initial_s * 2**attempt), so a fleet that
    lost the collector at the same moment does not come back in step."""
    cap = min(max_s, initial_s * 2.0 ** min(attempt, 60))
    return rng.uniform(cap / 2.0, cap)


def failure_kind(exc: CollectorError) -> str:
    """A bounded name for what went wrong (a metric label)."""
    if isinstance(exc, AuthError):
        return "auth"
    if isinstance(exc, AnswerError):
        return "answer"
    if exc.status is None:
        return "network"
    if exc.status in (429, 503):
        return "busy"
    return "http_4xx" if exc.status < 500 else "http_5xx"


def blames_content(exc: CollectorError) -> bool:
    """A 4xx that says the request itself is wrong (not the key, not "slow down")."""
    s = exc.status
    return s is not None and 400 <= s < 500 and s not in (401, 403, 408, 429)


@dataclass
class Suspect:
    """An item that failed alone: held back from batches, retried alone at `next_try`."""

    strikes: int
    accepted_at_first: int  # Shipper.stats.accepted when it first failed alone
    next_try: float  # monotonic
    last_error: str


@dataclass
class ShipStats:
    batches: int = 0
    accepted: int = 0  # answers that were the ingest model (batches the collector took)
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    quarantined: int = 0
    failures: int = 0
    last_success_unix: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_failure: dict[str, int] = field(default_factory=dict)
    auth_refused: bool = False
    batch_limit: int = 0
    suspects: int = 0


class Shipper:
    def __init__(
        self,
        spool: Spool,
        client: CollectorClient,
        *,
        batch_size: int = 200,
        interval_s: float = 5.0,
        max_delay_s: float = 0.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 300.0,
        bisect_after: int = 3,
        quarantine_after: int = 3,
        max_suspects: int = 4,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        reload_key: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.spool = spool
        self.client = client
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.max_delay_s = max_delay_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.bisect_after = bisect_after
        self.quarantine_after = quarantine_after
        self.max_suspects = max_suspects
        self.rng = rng or random.Random()
        self.wall = wall
        self.clock = clock
        self.reload_key = reload_key
        self.stats = ShipStats(batch_limit=batch_size)
        self.wake = asyncio.Event()
        self.limit = batch_size  # the batch size now: smaller while isolating a bad item
        self.ceiling = batch_size  # the size limit grows back to (lower after a 413)
        self.suspects: dict[str, Suspect] = {}
        self._failing: set[str] = set()  # the batch being halved: no growth until it is sent
        self._head: str | None = None  # first id of the batch that keeps failing
        self._head_failures = 0
        self._next_delay = 0.0
        self._pending = 0  # results notified since the last batch was taken from the spool
        self._first_pending: float | None = None  # when the first of them came (clock)
        self._urgent = False
        self.idle = False  # the loop waits for results to become due (nothing to send)

    def notify(self, urgent: bool = False) -> None:
        """A new result is in the spool: ship it within `max_delay_s`, at once if `urgent`
        or if the waiting results fill a batch."""
        self._pending += 1
        if self._first_pending is None:
            self._first_pending = self.clock()
        self._urgent = self._urgent or urgent
        self.wake.set()

    def due_in(self) -> float | None:
        """Seconds until the waiting results are due to ship (0: now), None if none wait."""
        if self._first_pending is None:
            return None
        if self._urgent or self._pending >= self.limit:
            return 0.0
        return max(0.0, self._first_pending + self.max_delay_s - self.clock())

    def _taken(self) -> None:
        """A batch is about to be read from the spool: what was notified so far is in it
        or queued behind it, so the time batch starts afresh."""
        self._pending, self._first_pending, self._urgent = 0, None, False

    # ------------------------------------------------------------------ one exchange

    async def ship_once(self) -> int:
        """Send one batch; returns how many results left the spool. Raises CollectorError
        after recording what the failure teaches (see the module docstring)."""
        now = self.clock()
        items: list[SpooledItem] = []
        due = self._due_suspect(now)
        if due is not None:
            items = self.spool.get([due])
            if not items:  # the spool bounds dropped it meanwhile
                del self.suspects[due]
        if not items:
            self._taken()
            items = self.spool.batch(self.limit, exclude=self.suspects)
        if not items:
            return 0
        try:
            answer = await self.client.post_results([i.id for i in items], [i.body for i in items])
        except CollectorError as exc:
            self._failed_batch(items, exc, now)
            raise
        return self._answered(items, answer)

    def _answered(self, items: list[SpooledItem], answer: IngestAnswer) -> int:
        acked: list[str] = []
        rejected: dict[str, str] = {}
        for rid, item in ids_in(answer, [i.id for i in items]):
            self.suspects.pop(rid, None)
            self._failing.discard(rid)
            if item.status == "rejected":
                rejected[rid] = item_reason(item)
            else:
                acked.append(rid)
            self.stats.by_status[item.status] = self.stats.by_status.get(item.status, 0) + 1
        gone = self.spool.ack(acked)
        if rejected:
            gone += self.spool.reject(rejected, self.wall(), "rejected")
            for rid, reason in list(rejected.items())[:LOG_REJECTS_PER_BATCH]:
                log.error("collector rejected result %s, dropped from the spool: %s", rid, reason)
            if len(rejected) > LOG_REJECTS_PER_BATCH:
                log.error(
                    "collector rejected %d more results of the batch",
                    len(rejected) - LOG_REJECTS_PER_BATCH,
                )
        if self.stats.auth_refused:
            log.warning("the collector accepts this agent's key again")
        st = self.stats
        for s in self.suspects.values():
            if s.accepted_at_first == st.accepted:  # held back with no evidence: try it now
                s.next_try = min(s.next_try, self.clock())
        st.auth_refused = False
        st.batches += 1
        st.accepted += 1
        st.stored += answer.stored
        st.duplicates += answer.duplicates
        st.rejected += len(rejected)
        st.last_success_unix = self.wall()
        st.consecutive_failures = 0
        self._head, self._head_failures = None, 0
        if self.limit < self.ceiling and not self._failing:
            self.limit = min(self.ceiling, self.limit * 2)
        self._sync_gauges()
        return gone

    def _failed_batch(self, items: list[SpooledItem], exc: CollectorError, now: float) -> None:
        """Record a failure and decide what is sent next and when (`_next_delay`)."""
        st = self.stats
        st.failures += 1
        st.consecutive_failures += 1
        st.last_error = str(exc)
        kind = failure_kind(exc)
        st.by_failure[kind] = st.by_failure.get(kind, 0) + 1
        self._next_delay = backoff_delay(
            st.consecutive_failures - 1, self.backoff_initial_s, self.backoff_max_s, self.rng
        )
        if isinstance(exc, AuthError):
            self._auth_refused(exc)
            return
        self._log_failure(exc)
        if exc.status in (429, 503):
            if exc.retry_after_s is not None:  # honoured, though never a busy loop
                self._next_delay = max(exc.retry_after_s, self.backoff_initial_s)
            return
        if exc.status == 413 or blames_content(exc):
            self._split(items, exc, now, strikes_needed=1)
            return
        if items[0].id == self._head:
            self._head_failures += 1
        else:
            self._head, self._head_failures = items[0].id, 1
        if len(items) == 1 or self.limit < self.ceiling or self._head_failures >= self.bisect_after:
            # Only the collector's own failure (5xx) can give an item up; an item that seems
            # to break the connection or the answer is held back, never dropped.
            server = exc.status is not None and exc.status >= 500
            self._split(items, exc, now, strikes_needed=self.quarantine_after if server else None)

    def _split(self, items: list[SpooledItem], exc: CollectorError, now: float, *,
               strikes_needed: int | None) -> None:  # fmt: skip
        if len(items) > 1:
            if exc.status == 413:
                self.ceiling = max(1, len(items) // 2)
            if self.limit >= self.ceiling or self.limit >= len(items):
                log.warning(
                    "the collector fails a batch of %d results (%s); halving it to find the "
                    "result that fails",
                    len(items),
                    exc,
                )
            self.limit = max(1, len(items) // 2)
            self._failing = {i.id for i in items}
            if blames_content(exc) or exc.status == 413:
                self._next_delay = 0.0  # a different, smaller request: at once
            else:  # the next half is another request: the first step of the backoff
                self._next_delay = backoff_delay(
                    0, self.backoff_initial_s, self.backoff_max_s, self.rng
                )
            self._sync_gauges()
            return
        self._strike(items[0], exc, now, strikes_needed)

    def _strike(
        self, item: SpooledItem, exc: CollectorError, now: float, needed: int | None
    ) -> None:
        """The item failed alone: hold it back, or give it up when the collector has taken
        other batches since it first failed and it has failed alone `needed` times (None:
        never)."""
        self._failing.clear()  # isolated: the rest may grow back
        s = self.suspects.get(item.id)
        if s is None:
            if len(self.suspects) >= self.max_suspects:
                return  # everything fails: an outage, not one bad item
            s = self.suspects[item.id] = Suspect(0, self.stats.accepted, now, "")
            log.warning("result %s fails alone (%s); holding it back and shipping the rest",
                        item.id, exc)  # fmt: skip
        s.strikes += 1
        s.last_error = str(exc)
        if needed is not None and s.strikes >= needed and self.stats.accepted > s.accepted_at_first:
            reason = (
                f"quarantined after failing alone {s.strikes} times while the collector "
                f"accepted other results; last: {exc}"
            )
            del self.suspects[item.id]
            self.spool.reject({item.id: reason}, self.wall(), "quarantined")
            self.stats.quarantined += 1
            if exc.status == 413:
                self.ceiling = self.batch_size
            log.error("result %s dropped from the spool: %s", item.id, reason)
        else:
            s.next_try = now + backoff_delay(
                s.strikes - 1, self.backoff_initial_s, self.backoff_max_s, self.rng
            )
        self._next_delay = 0.0 if self.spool.batch(1, exclude=self.suspects) else self._next_delay
        self._sync_gauges()

    def _due_suspect(self, now: float) -> str | None:
        due = [(s.next_try, rid) for rid, s in self.suspects.items() if s.next_try <= now]
        return min(due)[1] if due else None

    def _sync_gauges(self) -> None:
        self.stats.batch_limit = self.limit
        self.stats.suspects = len(self.suspects)

    def _auth_refused(self, exc: AuthError) -> None:
        st = self.stats
        self._next_delay = self.backoff_max_s
        first = not st.auth_refused
        st.auth_refused = True
        if first or st.consecutive_failures % 12 == 0:
            waiting = self.spool.stats(self.wall()).depth
            log.error(
                "the collector refuses this agent's key (%d: %s): it was revoked or replaced. "
                "%d results wait in the spool; retrying every %g s. To resume, %s",
                exc.status or 0,
                exc.detail or exc,
                waiting,
                self.backoff_max_s,
                ENROLL_HINT,
            )
        key = self.reload_key()
        if key is not None:
            log.warning("the credentials file has a new agent key; using it")
            self.client.set_key(key)
            self._next_delay = self.backoff_initial_s

    def _log_failure(self, exc: CollectorError) -> None:
        n = self.stats.consecutive_failures
        if n in (1, 2, 5) or n % 20 == 0:
            log.warning("shipping failed (%d in a row): %s", n, exc)

    # ------------------------------------------------------------------ loops

    async def run(self) -> None:
        """Ship until cancelled: drain the spool, then wait for new results or the interval.
        No answer of the collector ends this loop; a bug is logged and retried later."""
        failures = 0
        while True:
            self.wake.clear()
            try:
                n = await self.ship_once()
            except CollectorError:
                await asyncio.sleep(self._next_delay)
                continue
            except Exception:
                failures += 1
                log.exception("shipping crashed (%d in a row); retrying", failures)
                await asyncio.sleep(
                    backoff_delay(failures - 1, self.backoff_initial_s, self.backoff_max_s,
                                  self.rng)
                )  # fmt: skip
                continue
            failures = 0
            if n > 0 and self.spool.batch(1, exclude=self.suspects):
                continue  # more is waiting
            await self._idle()

    async def _idle(self) -> None:
        """Wait until the waiting results are due (`due_in`), the next suspect's retry, or
        (when no result waits) the interval's look at the spool; new results re-evaluate
        what is due. With the spool empty only `notify()` brings work (this process is the
        spool's only writer), so an idle agent does not wake every interval to find nothing:
        it looks again after EMPTY_RECHECK_S at the latest."""
        while True:
            self.wake.clear()
            due = self.due_in()
            if due == 0.0:
                if self._urgent or self._pending >= self.limit:
                    await asyncio.sleep(DEBOUNCE_S)  # let a burst join the request
                return
            wait = self.interval_s if due is None else due
            if due is None and not self.suspects and not self.spool.batch(1):
                wait = max(wait, EMPTY_RECHECK_S)
            if self.suspects:
                soonest = min(s.next_try for s in self.suspects.values())
                wait = max(0.0, min(wait, soonest - self.clock()))
            self.idle = True
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel
                # that comes as the event is set, and a stopping agent would wait on.
                async with asyncio.timeout(wait):
                    await self.wake.wait()
            except TimeoutError:
                if self.due_in() in (None, 0.0) or self._due_suspect(self.clock()):
                    return
            finally:
                self.idle = False

    async def flush(self, timeout_s: float) -> bool:
        """Try to empty the spool within `timeout_s`; True if it is empty at the end."""
        deadline = time.monotonic() + timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                while time.monotonic() < deadline:
                    if await self.ship_once() == 0:
                        break  # empty, or only held-back results are left
        except (CollectorError, TimeoutError):
            pass
        except Exception:
            log.exception("shipping crashed while flushing the spool")
        return not self.spool.batch(1)
