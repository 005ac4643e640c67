"""Bandwidth server: TCP sink/source with parallel streams, and a UDP constant-rate sink.

Several agents may test at once: every test has its own id and streams. The byte layouts
(control messages, UDP datagrams) are value objects in `agent/wire/bwframe.py`; this module
does the socket I/O. Wire protocol on TCP (each message a `ControlMessage`: a 4-octet
big-endian length and a JSON object of at most `MAX_MSG` octets):

- control connection: `{"v":1,"role":"control","test":ID,"dir":"up"|"down","streams":N,
  "seconds":T}` -> `{"ok":true}`; later `{"cmd":"result"}` -> `{"ok":true,"streams":[...]}`
  once every stream has finished (bytes, first/last byte time, retransmits and RTT samples
  from TCP_INFO for streams the server sent).
- data connection: `{"v":1,"role":"data","test":ID,"stream":i}` -> `{"ok":true}`, then raw
  bytes: "up" the client sends until it shuts its side down; "down" the server sends for T
  seconds (sendfile from a memfd: no copy through Python) and shuts its side down.

UDP (same port number): datagrams `QSBU` + type + 8-octet test id; type 1 (`DataPacket`)
carries a 32-bit sequence number and the send time (ns), type 2 (`CountersRequest`) asks for
the test's counters, answered with type 3 + JSON (`CountersReport`). Downstream UDP
(`agent.responder.udpsource`): a control connection with `"dir":"udp-down"` and
`rate_kbps`, `size`, `seconds`; the agent's type 5 `Hello` from the control connection's IP
says where to send; `{"cmd":"result"}` -> `{"sent":N,...}`.
Data is moved by threads (the GIL is released in the socket calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.responder import sockopts
from agent.responder.tcpinfo import tcp_info
from agent.responder.udpsink import UdpSink
from agent.responder.udpsource import DownTest, run_down_test
from agent.wire.bwframe import (
    LENGTH_LEN,
    MAX_MSG,
    BwFrameError,
    ControlMessage,
    CountersReport,
    CountersRequest,
    DataPacket,
    Hello,
    parse_datagram,
)

log = logging.getLogger(__name__)

MAX_SECONDS = 300
MAX_STREAMS = 64
MAX_TESTS = 32
CHUNK = 1 << 20


async def recv_msg(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> dict[str, Any]:
    """Read one control message from a non-blocking socket (BwFrameError if malformed)."""
    n = ControlMessage.read_length(await _recv_exact(loop, sock, LENGTH_LEN), MAX_MSG)
    return ControlMessage.parse_body(await _recv_exact(loop, sock, n))


async def send_msg(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, msg: dict[str, Any]
) -> None:
    await loop.sock_sendall(sock, bytes(ControlMessage(msg)))


async def _recv_exact(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf += chunk
    return bytes(buf)


@dataclass
class StreamResult:
    stream: int
    bytes: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    retrans: int | None = None
    rtt_us_samples: list[int] = field(default_factory=list)
    min_rtt_us: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "bytes": self.bytes,
            "duration_s": ((self.last_ns - self.first_ns) / 1e9)
            if self.first_ns is not None and self.last_ns is not None
            else None,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "retrans": self.retrans,
            "rtt_us_samples": self.rtt_us_samples[-600:],
            "min_rtt_us": self.min_rtt_us,
        }


@dataclass
class TcpTest:
    test_id: str
    direction: str
    streams: int
    seconds: float
    peer: str
    results: dict[int, StreamResult] = field(default_factory=dict)
    finished: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)


MSG_TRUNC = getattr(socket, "MSG_TRUNC", 0x20)


class Discard:
    """Receive and throw away TCP bytes: MSG_TRUNC lets Linux drop them without copying."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(CHUNK))
        self.flags = MSG_TRUNC

    def __call__(self, sock: socket.socket) -> int:
        try:
            return sock.recv_into(self.view, CHUNK, self.flags)
        except OSError as exc:
            if self.flags and exc.errno in (22, 95):  # EINVAL/EOPNOTSUPP: copy instead
                self.flags = 0
                return sock.recv_into(self.view, CHUNK)
            raise


class StreamCounters(Protocol):
    """What a sending or receiving TCP stream records (the responder's and the probe's)."""

    bytes: int
    first_ns: int | None
    last_ns: int | None
    retrans: int | None
    rtt_us_samples: list[int]
    min_rtt_us: int | None


def receive_until_eof(sock: socket.socket, res: StreamCounters) -> None:
    """Upload sink: count bytes until the client shuts down its side (runs in a thread)."""
    recv = Discard()
    while True:
        n = recv(sock)
        if n == 0:
            return
        now = time.monotonic_ns()
        if res.first_ns is None:
            res.first_ns = now
        res.last_ns = now
        res.bytes += n


class ZeroSource:
    """A memfd of zeros that sendfile() can hand to TCP without copying through Python."""

    def __init__(self, size: int = 8 << 20) -> None:
        self.size = size
        self.fd = os.memfd_create("qos-scout-zeros")
        os.ftruncate(self.fd, size)
        os.pwrite(self.fd, bytes(size), 0)  # real pages, not holes

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def send_for(
    sock: socket.socket, seconds: float, res: StreamCounters, src: ZeroSource | None
) -> None:
    """Send as fast as TCP allows for `seconds`, sampling TCP_INFO every 100 ms: the
    responder's download source and the probe's upload. The descriptor is made
    non-blocking for the while (and put back as it was): a blocking send waits until its
    whole chunk fits, and behind a slow link with a large send buffer that wait outlasted
    the test, so the RTT under load went unsampled (no buffer delay in the result) and the
    test ran past its time. When the buffer is full the loop waits for room at most until
    the next sample or the end."""
    start = time.monotonic_ns()
    end = start + int(seconds * 1e9)
    next_sample = start + 100_000_000
    res.first_ns = start
    payload = memoryview(bytes(CHUNK))
    offset = 0
    fd = sock.fileno()
    was = sock.gettimeout()
    sock.setblocking(False)
    room = select.poll()
    room.register(fd, select.POLLOUT)
    try:
        while True:
            now = time.monotonic_ns()
            if now >= end:
                break
            if now >= next_sample:
                info = tcp_info(sock)
                if info is not None:
                    res.rtt_us_samples.append(info.rtt_us)
                next_sample = now + 100_000_000
            try:
                if src is not None:
                    n = os.sendfile(fd, src.fd, offset, CHUNK)
                    offset = (offset + n) % (src.size - CHUNK)
                else:
                    n = sock.send(payload)
            except BlockingIOError:
                room.poll(max(1, -(-(min(next_sample, end) - now) // 1_000_000)))
                continue
            res.bytes += n
    finally:
        sock.settimeout(was)
    res.last_ns = time.monotonic_ns()
    info = tcp_info(sock)
    if info is not None:
        res.retrans = info.total_retrans
        res.min_rtt_us = info.min_rtt_us


class BandwidthServer:
    """TCP sink/source and UDP sink on one port number."""

    def __init__(self, host: str = "0.0.0.0", port: int = 5201) -> None:
        self.host, self.port = host, port
        self.tests: dict[str, TcpTest] = {}
        self.down_tests: dict[bytes, DownTest] = {}
        self.udp = UdpSink()
        self.malformed = 0
        self._lsock: socket.socket | None = None
        self._usock: socket.socket | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pool = ThreadPoolExecutor(max_workers=MAX_TESTS * 4, thread_name_prefix="bw")
        self._zeros: ZeroSource | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self._lsock is not None
        name = self._lsock.getsockname()
        return name[0], name[1]

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((self.host, self.port))
        lsock.listen(256)
        lsock.setblocking(False)
        self._lsock = lsock
        port = lsock.getsockname()[1]
        usock = socket.socket(family, socket.SOCK_DGRAM)
        sockopts.big_rcvbuf(usock)
        sockopts.enable_rx_metadata(usock)
        usock.bind((self.host, port))
        usock.setblocking(False)
        self._usock = usock
        with contextlib.suppress(OSError, AttributeError):
            self._zeros = ZeroSource()
        loop = asyncio.get_running_loop()
        loop.add_reader(usock.fileno(), self._on_udp)
        self._spawn(self._accept_loop())
        log.info("bandwidth server on %s port %d (TCP and UDP)", self.host, port)

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._usock is not None:
            asyncio.get_running_loop().remove_reader(self._usock.fileno())
            self._usock.close()
            self._usock = None
        if self._lsock is not None:
            self._lsock.close()
            self._lsock = None
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._zeros is not None:
            self._zeros.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._lsock is not None
        while True:
            conn, addr = await loop.sock_accept(self._lsock)
            conn.setblocking(False)
            self._spawn(self._handle(conn, addr))

    async def _handle(self, conn: socket.socket, addr: tuple[Any, ...]) -> None:
        loop = asyncio.get_running_loop()
        peer = f"{addr[0]} port {addr[1]}"
        try:
            async with asyncio.timeout(10):
                hello = await recv_msg(loop, conn)
            role = hello.get("role")
            if role == "control" and hello.get("dir") == "udp-down":
                await self._udp_down(conn, hello, str(addr[0]), peer)
            elif role == "control":
                await self._control(conn, hello, peer)
            elif role == "data":
                await self._data(conn, hello)
            else:
                raise ValueError(f"unknown role {role!r}")
        except (ValueError, KeyError, TypeError, TimeoutError) as exc:
            self.malformed += 1
            with contextlib.suppress(OSError):
                await send_msg(loop, conn, {"ok": False, "error": str(exc)})
        except (ConnectionError, OSError):
            pass
        finally:
            conn.close()

    async def _control(self, conn: socket.socket, hello: dict[str, Any], peer: str) -> None:
        loop = asyncio.get_running_loop()
        test_id = str(hello["test"])
        direction = hello.get("dir")
        streams, seconds = int(hello["streams"]), float(hello["seconds"])
        if direction not in ("up", "down"):
            raise ValueError("dir must be 'up' or 'down'")
        if not 1 <= streams <= MAX_STREAMS or not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"streams must be 1..{MAX_STREAMS} and seconds 0..{MAX_SECONDS}")
        if len(self.tests) >= MAX_TESTS or test_id in self.tests:
            raise ValueError("too many tests at once, or a duplicate test id")
        test = TcpTest(test_id, direction, streams, seconds, peer)
        self.tests[test_id] = test
        try:
            await send_msg(loop, conn, {"ok": True})
            async with asyncio.timeout(seconds + 60):
                msg = await recv_msg(loop, conn)
                if msg.get("cmd") != "result":
                    raise ValueError("expected {'cmd': 'result'}")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(15):
                        await test.done.wait()
            results = [r.as_dict() for _, r in sorted(test.results.items())]
            await send_msg(loop, conn, {"ok": True, "streams": results})
            total = sum(r.bytes for r in test.results.values())
            log.info(
                "bandwidth test %s from %s: tcp %s, %d streams, %.1f s, %d bytes",
                test_id[:8], peer, direction, streams, seconds, total,
            )  # fmt: skip
        finally:
            self.tests.pop(test_id, None)

    async def _udp_down(
        self, conn: socket.socket, hello: dict[str, Any], peer_ip: str, peer: str
    ) -> None:
        loop = asyncio.get_running_loop()
        test = DownTest.from_hello(hello, peer_ip)
        if len(self.down_tests) >= MAX_TESTS or test.test_id in self.down_tests:
            raise ValueError("too many tests at once, or a duplicate test id")
        assert self._usock is not None
        self.down_tests[test.test_id] = test
        try:
            await send_msg(loop, conn, {"ok": True})
            await run_down_test(test, self._usock)
            async with asyncio.timeout(30):
                msg = await recv_msg(loop, conn)
            if msg.get("cmd") != "result":
                raise ValueError("expected {'cmd': 'result'}")
            reply = {"ok": True, "sent": test.sent, "seconds": test.elapsed,
                     "hello": test.addr.done()}  # fmt: skip
            await send_msg(loop, conn, reply)
            log.info(
                "bandwidth test %s from %s: udp down %.0f kbit/s, %d packets sent in %.1f s",
                test.test_id.hex()[:8], peer, test.rate_kbps, test.sent, test.elapsed,
            )  # fmt: skip
        finally:
            self.down_tests.pop(test.test_id, None)

    async def _data(self, conn: socket.socket, hello: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        test = self.tests.get(str(hello["test"]))
        stream = int(hello["stream"])
        if test is None or not 0 <= stream < test.streams or stream in test.results:
            raise ValueError("unknown test or stream")
        res = test.results[stream] = StreamResult(stream)
        await send_msg(loop, conn, {"ok": True})
        conn.setblocking(True)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 30, 0))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 30, 0))
        try:
            if test.direction == "up":
                await loop.run_in_executor(self._pool, receive_until_eof, conn, res)
            else:
                await loop.run_in_executor(
                    self._pool, send_for, conn, test.seconds, res, self._zeros
                )
                conn.shutdown(socket.SHUT_WR)
                await loop.run_in_executor(self._pool, _drain, conn)
        finally:
            test.finished += 1
            if test.finished >= test.streams:
                test.done.set()

    def _on_udp(self) -> None:
        sock = self._usock
        if sock is None:
            return
        for _ in range(512):
            try:
                data, anc, _f, addr = sock.recvmsg(65535, sockopts.ANCBUF)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            try:
                msg = parse_datagram(data)
            except BwFrameError:
                self.malformed += 1
                continue
            if isinstance(msg, DataPacket):
                meta = sockopts.parse_ancillary(anc)
                self.udp.add(
                    msg.test_id, msg.seq, msg.send_ns, meta.time_ns, msg.size, time.monotonic()
                )
            elif isinstance(msg, Hello):
                down = self.down_tests.get(msg.test_id)
                if down is not None:
                    down.hello_from(addr)
            elif isinstance(msg, CountersRequest):
                report = self.udp.report(msg.test_id)
                log.info(
                    "bandwidth test %s from %s port %s: udp, %d packets received, "
                    "%d duplicates, jitter %.3f ms",
                    msg.test_id.hex()[:8], addr[0], addr[1], report["received"],
                    report["duplicates"], report["jitter_ms"],
                )  # fmt: skip
                with contextlib.suppress(OSError):
                    sock.sendto(bytes(CountersReport(msg.test_id, report)), addr)
            else:  # a report is sent by the responder, never to it
                self.malformed += 1


def _drain(sock: socket.socket) -> None:
    """Wait for the client to close after a download (bounded by SO_RCVTIMEO)."""
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass
