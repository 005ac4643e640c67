"""UDP constant-rate source for downstream tests, and the pacing loop both ends share.

A downstream test is asked for on a TCP control connection (so the source address is
proven: the responder never sends a UDP stream to an address that did not open a TCP
connection, and cannot be used as a traffic reflector). The agent then sends `Hello`
datagrams (`agent.wire.bwframe`, `QSBU` type 5) from its UDP socket; the first one from the
control connection's IP tells the responder where to send (through NAT, since the hello
opened the mapping).
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.wire.bwframe import DATA_HEADER_LEN, TEST_ID_LEN, DataPacket

MAX_RATE_KBPS = 1_000_000


def pace(total: int, pps: float, send_one: Callable[[int], None]) -> float:
    """Call send_one(i) for i in 0..total-1 at `pps`, catching up in bursts after a stall.

    Returns the seconds it took. Sleeps between packets (no spinning).
    """
    start = time.monotonic()
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - start) * pps) + 1)
        while sent < due:
            send_one(sent)
            sent += 1
        wait = start + sent / pps - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    return time.monotonic() - start


def same_host(a: str, b: str) -> bool:
    """Compare addresses, treating ::ffff:1.2.3.4 and 1.2.3.4 as the same host."""
    return a.removeprefix("::ffff:") == b.removeprefix("::ffff:")


@dataclass
class DownTest:
    test_id: bytes
    peer_ip: str
    rate_kbps: float
    size: int
    seconds: float
    addr: asyncio.Future[tuple] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    sent: int = 0
    elapsed: float = 0.0

    @classmethod
    def from_hello(cls, hello: dict, peer_ip: str) -> DownTest:
        rate, size, seconds = float(hello["rate_kbps"]), int(hello["size"]), float(hello["seconds"])
        if not 0 < rate <= MAX_RATE_KBPS:
            raise ValueError(f"rate_kbps must be in 0..{MAX_RATE_KBPS}")
        if not DATA_HEADER_LEN <= size <= 9000 or not 0 < seconds <= 300:
            raise ValueError(f"size must be {DATA_HEADER_LEN}..9000 and seconds 0..300")
        test_id = bytes.fromhex(str(hello["test"]))
        if len(test_id) != TEST_ID_LEN:
            raise ValueError("a UDP test id is 8 octets (16 hex digits)")
        return cls(test_id, peer_ip, rate, size, seconds)

    def hello_from(self, addr: tuple) -> None:
        if not self.addr.done() and same_host(str(addr[0]), self.peer_ip):
            self.addr.set_result(addr)

    def send(self, sock: socket.socket, addr: tuple) -> None:
        """Send the stream from `sock` (non-blocking: wait for room when the buffer is full)."""
        pps = self.rate_kbps * 1000.0 / 8.0 / self.size
        total = max(1, round(pps * self.seconds))

        def one(i: int) -> None:
            pkt = bytes(DataPacket(self.test_id, i, time.time_ns(), self.size))
            for _ in range(100):
                try:
                    sock.sendto(pkt, addr)
                    self.sent += 1
                    return
                except BlockingIOError:
                    select.select([], [sock], [], 0.01)
                except OSError:
                    return

        self.elapsed = pace(total, pps, one)


async def run_down_test(test: DownTest, sock: socket.socket, timeout_s: float = 5.0) -> None:
    """Wait for the agent's hello, then send the stream from a worker thread."""
    try:
        async with asyncio.timeout(timeout_s):
            addr = await test.addr
    except TimeoutError:
        return
    await asyncio.to_thread(test.send, sock, addr)
