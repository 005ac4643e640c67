"""The collector's own counters (ingest, notifications), kept in process, thread-safe.

Exposed by the metrics collector at scrape time; nothing here touches a global registry.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ingest_results: Counter[str] = Counter()
        self.ingest_errors: Counter[str] = Counter()  # whole requests refused, by status
        self.notifications: Counter[tuple[str, str]] = Counter()
        self.auth_failures = 0  # 401 answers (a wrong key, a wrong web login)
        self.throttled: Counter[str] = Counter()  # 429 answers, by reason
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def ingest(self, stored: int, duplicates: int, rejected: int) -> None:
        with self._lock:
            self.ingest_results["stored"] += stored
            self.ingest_results["duplicate"] += duplicates
            self.ingest_results["rejected"] += rejected

    def ingest_error(self, status: int) -> None:
        with self._lock:
            self.ingest_errors[str(status)] += 1

    def observe_latency(self, seconds: float) -> None:
        with self._lock:
            self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self.latency_sum += seconds

    def notification(self, channel: str, status: str) -> None:
        with self._lock:
            self.notifications[(channel, status)] += 1

    def auth_failure(self) -> None:
        with self._lock:
            self.auth_failures += 1

    def throttle(self, reason: str) -> None:
        """A request answered 429: `auth_failures` (its address failed too often) or
        `partner_rate` (its partner's request rate)."""
        with self._lock:
            self.throttled[reason] += 1

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "ingest_results": dict(self.ingest_results),
                "ingest_errors": dict(self.ingest_errors),
                "notifications": dict(self.notifications),
                "auth_failures": self.auth_failures,
                "throttled": dict(self.throttled),
                "latency_counts": list(self.latency_counts),
                "latency_sum": self.latency_sum,
            }
