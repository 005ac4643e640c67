"""Counters of the UDP constant-rate sink, per test: loss, duplicates, reordering, RFC 3550 jitter.

Pure: times are passed in (send time from the packet, kernel receive time, a monotonic
`now` for expiry). The datagrams are `agent.wire.bwframe.DataPacket`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXPIRE_S = 120.0
MAX_TESTS = 256
MAX_TRACKED = 2_000_000  # sequence numbers remembered per test for duplicate detection


@dataclass
class UdpTestCounters:
    received: int = 0
    bytes: int = 0
    duplicates: int = 0
    reordered: int = 0
    max_seq: int = -1
    jitter_ms: float = 0.0
    first_rx_ns: int | None = None
    last_rx_ns: int | None = None
    last_mono: float = 0.0
    _prev: tuple[int, int] | None = None
    _seen: set[int] = field(default_factory=set)

    def add(self, seq: int, send_ns: int, recv_ns: int, nbytes: int) -> None:
        if seq in self._seen:
            self.duplicates += 1
            return
        if len(self._seen) < MAX_TRACKED:  # bounded memory; later duplicates go uncounted
            self._seen.add(seq)
        self.received += 1
        self.bytes += nbytes
        if seq < self.max_seq:
            self.reordered += 1
        self.max_seq = max(self.max_seq, seq)
        if self._prev is not None:  # RFC 3550 §6.4.1 in arrival order
            d = abs((recv_ns - self._prev[1]) - (send_ns - self._prev[0])) / 1e6
            self.jitter_ms += (d - self.jitter_ms) / 16.0
        self._prev = (send_ns, recv_ns)
        if self.first_rx_ns is None:
            self.first_rx_ns = recv_ns
        self.last_rx_ns = recv_ns

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "bytes": self.bytes,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "max_seq": self.max_seq,
            "jitter_ms": self.jitter_ms,
            "first_rx_ns": self.first_rx_ns,
            "last_rx_ns": self.last_rx_ns,
        }


class UdpSink:
    """Per-test counters, expired after EXPIRE_S without packets; bounded in number."""

    def __init__(self) -> None:
        self.tests: dict[bytes, UdpTestCounters] = {}

    def add(
        self, test_id: bytes, seq: int, send_ns: int, recv_ns: int, nbytes: int, now: float
    ) -> None:
        c = self.tests.get(test_id)
        if c is None:
            self.expire(now)
            if len(self.tests) >= MAX_TESTS:
                return
            c = self.tests[test_id] = UdpTestCounters()
        c.last_mono = now
        c.add(seq, send_ns, recv_ns, nbytes)

    def report(self, test_id: bytes) -> dict[str, Any]:
        c = self.tests.get(test_id)
        return c.as_dict() if c is not None else UdpTestCounters().as_dict()

    def expire(self, now: float) -> None:
        for k in [k for k, c in self.tests.items() if now - c.last_mono > EXPIRE_S]:
            del self.tests[k]
