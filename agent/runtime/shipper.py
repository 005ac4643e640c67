"""The shipper: sends spooled results to the collector in gzip batches, with backoff and
jitter on failure, and deletes from the spool only what the collector acknowledged."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.runtime.client import AuthError, CollectorClient, CollectorError
from agent.runtime.spool import Spool

log = logging.getLogger(__name__)


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before retry `attempt` (0-based): "full jitter" exponential backoff, i.e.
    uniform in [cap/2, cap] with cap = min(max_s, initial_s * 2**attempt), so a fleet that
    lost the collector at the same moment does not come back in step."""
    cap = min(max_s, initial_s * 2.0 ** min(attempt, 60))
    return rng.uniform(cap / 2.0, cap)


@dataclass
class ShipStats:
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    failures: int = 0
    last_success_unix: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


class Shipper:
    def __init__(
        self,
        spool: Spool,
        client: CollectorClient,
        *,
        batch_size: int = 200,
        interval_s: float = 5.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 300.0,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.spool = spool
        self.client = client
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.rng = rng or random.Random()
        self.wall = wall
        self.stats = ShipStats()
        self.wake = asyncio.Event()

    def notify(self) -> None:
        """A new result is in the spool: ship it without waiting for the interval."""
        self.wake.set()

    async def ship_once(self) -> int:
        """Send one batch; returns how many results left the spool. Raises CollectorError."""
        items = self.spool.batch(self.batch_size)
        if not items:
            return 0
        try:
            answer = await self.client.post_results([i.body for i in items])
        except CollectorError as exc:
            if exc.status == 413 and self.batch_size > 1:
                self.batch_size = max(1, self.batch_size // 2)
                log.warning("collector says batch too large; batch size now %d", self.batch_size)
            raise
        sent = {i.id for i in items}
        acked: list[str] = []
        rejected: dict[str, str] = {}
        for item in answer["items"]:
            if not isinstance(item, dict) or str(item.get("id")) not in sent:
                continue
            status = item.get("status")
            if status in ("stored", "duplicate"):
                acked.append(str(item["id"]))
            elif status == "rejected":
                rejected[str(item["id"])] = str(item.get("error") or "rejected")
            self.stats.by_status[str(status)] = self.stats.by_status.get(str(status), 0) + 1
        gone = self.spool.ack(acked)
        if rejected:
            log.error(
                "collector rejected %d results: %s", len(rejected), next(iter(rejected.values()))
            )
            self.spool.reject(rejected)
        self.stats.batches += 1
        self.stats.stored += int(answer.get("stored", 0) or 0)
        self.stats.duplicates += int(answer.get("duplicates", 0) or 0)
        self.stats.rejected += len(rejected)
        self.stats.last_success_unix = self.wall()
        self.stats.consecutive_failures = 0
        return gone + len(rejected)

    async def run(self) -> None:
        """Ship until cancelled: drain the spool, then wait for new results or the interval."""
        while True:
            self.wake.clear()
            try:
                n = await self.ship_once()
            except CollectorError as exc:
                self._failed(exc)
                delay = backoff_delay(
                    self.stats.consecutive_failures - 1,
                    self.backoff_initial_s,
                    self.backoff_max_s,
                    self.rng,
                )
                if isinstance(exc, AuthError):
                    delay = self.backoff_max_s
                await asyncio.sleep(delay)
                continue
            if n >= self.batch_size:
                continue  # more is waiting
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=self.interval_s)
                await asyncio.sleep(0.2)  # let a burst of results collect into one batch
            except TimeoutError:
                pass

    async def flush(self, timeout_s: float) -> bool:
        """Try to empty the spool within `timeout_s`; True if it is empty at the end."""
        deadline = time.monotonic() + timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                while time.monotonic() < deadline:
                    if await self.ship_once() == 0:
                        break  # empty, or the collector acknowledged nothing more
        except (CollectorError, TimeoutError) as exc:
            if isinstance(exc, CollectorError):
                self._failed(exc)
        return not self.spool.batch(1)

    def _failed(self, exc: CollectorError) -> None:
        self.stats.failures += 1
        self.stats.consecutive_failures += 1
        self.stats.last_error = str(exc)
        level = logging.ERROR if isinstance(exc, AuthError) else logging.WARNING
        if (
            self.stats.consecutive_failures in (1, 2, 5)
            or self.stats.consecutive_failures % 20 == 0
        ):
            log.log(
                level, "shipping failed (%d in a row): %s", self.stats.consecutive_failures, exc
            )
