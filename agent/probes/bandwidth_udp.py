"""UDP constant-rate tests of the bandwidth probe: upstream and downstream, loss and jitter.

Upstream: the agent paces datagrams to the responder's UDP port and then asks it for its
counters. Downstream: the agent asks on a TCP control connection, opens the path with
"hello" datagrams from its UDP socket (through NAT), and counts what arrives with kernel
receive timestamps; the responder says how many it sent. Jitter is RFC 3550 (receive time vs
the send time carried in each datagram; a constant clock offset cancels). The datagrams and
control messages are the value objects of `agent.wire.bwframe`.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import time

from agent.errors import NetworkUnreachableError, PeerError
from agent.responder import sockopts
from agent.responder.udpsink import UdpTestCounters
from agent.responder.udpsource import pace
from agent.wire.bwframe import (
    LENGTH_LEN,
    MAX_REPLY,
    BwFrameError,
    ControlMessage,
    CountersReport,
    CountersRequest,
    DataPacket,
    Hello,
)
from agent.wire.lite import UdpRateResult


def _result(
    direction: str, rate: float, size: int, sent: int, seconds: float, r: dict
) -> UdpRateResult:
    received = int(r["received"])
    span = None
    if r.get("first_rx_ns") is not None and r["last_rx_ns"] > r["first_rx_ns"]:
        span = (r["last_rx_ns"] - r["first_rx_ns"]) / 1e9
    return UdpRateResult(
        direction=direction,
        target_kbps=rate,
        packet_bytes=size,
        sent=sent,
        send_kbps=sent * size * 8 / 1000.0 / seconds if seconds > 0 else 0.0,
        received=received,
        lost=max(0, sent - received),
        loss_pct=100.0 * max(0, sent - received) / sent if sent else 0.0,
        duplicates=int(r["duplicates"]),
        reordered=int(r["reordered"]),
        jitter_ms=float(r["jitter_ms"]),
        receive_kbps=(int(r["bytes"]) * 8 / 1000.0 / span) if span else None,
    )


def udp_up(family: int, addr: tuple, rate: float, size: int, seconds: float) -> UdpRateResult:
    test_id = secrets.token_bytes(8)
    pps = rate * 1000.0 / 8.0 / size
    total = max(1, round(pps * seconds))
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        sock.connect(addr)

        def one(i: int) -> None:
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                sock.send(bytes(DataPacket(test_id, i, time.time_ns(), size)))

        elapsed = pace(total, pps, one)
        time.sleep(0.5)
        sock.settimeout(1.0)
        report = None
        request = bytes(CountersRequest(test_id))
        for _ in range(5):
            with contextlib.suppress(ConnectionRefusedError):
                sock.send(request)
            try:
                answer = CountersReport.parse(sock.recv(65535))
            except (TimeoutError, ConnectionRefusedError, BwFrameError):
                continue
            if answer.test_id == test_id:
                report = answer.counters
                break
    if report is None:
        raise PeerError(f"the responder at {addr[0]} port {addr[1]} did not report UDP counters")
    return _result("up", rate, size, total, elapsed, report)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise PeerError("the responder closed the control connection")
        buf += chunk
    return buf


def _recv_msg(sock: socket.socket) -> dict:
    try:
        n = ControlMessage.read_length(_recv_exact(sock, LENGTH_LEN), MAX_REPLY)
        return ControlMessage.parse_body(_recv_exact(sock, n))
    except BwFrameError as exc:
        raise PeerError(f"the responder's reply is malformed: {exc}") from None


def udp_down(family: int, addr: tuple, rate: float, size: int, seconds: float) -> UdpRateResult:
    test_id = secrets.token_bytes(8)
    hello = {"v": 1, "role": "control", "dir": "udp-down", "test": test_id.hex(),
             "rate_kbps": rate, "size": size, "seconds": seconds}  # fmt: skip
    try:
        ctl = socket.create_connection(addr[:2], timeout=10)
    except OSError as exc:
        raise NetworkUnreachableError(
            f"cannot open the control connection to {addr[0]} port {addr[1]}: {exc}"
        ) from None
    counters = UdpTestCounters()
    with ctl, socket.socket(family, socket.SOCK_DGRAM) as us:
        ctl.sendall(bytes(ControlMessage(hello)))
        reply = _recv_msg(ctl)
        if not reply.get("ok"):
            raise PeerError(f"responder refused the UDP test: {reply.get('error')}")
        sockopts.big_rcvbuf(us)
        sockopts.enable_rx_metadata(us)
        us.connect(addr)
        us.settimeout(0.1)
        hello_dgram = bytes(Hello(test_id))
        start = time.monotonic()
        last_rx = None
        next_hello = start
        while True:
            now = time.monotonic()
            if counters.received == 0 and now >= next_hello and now - start < 5:
                with contextlib.suppress(OSError):
                    us.send(hello_dgram)
                next_hello = now + 0.1
            if counters.received == 0 and now - start > 5 + 0.5:
                break
            if last_rx is not None and now - last_rx > 1.0:
                break  # the stream is over (or stalled for a second)
            if now - start > seconds + 10:
                break
            try:
                data, anc, _f, _a = us.recvmsg(65535, sockopts.ANCBUF)
            except (TimeoutError, ConnectionRefusedError):
                continue
            try:
                pkt = DataPacket.parse(data)
            except BwFrameError:
                continue
            if pkt.test_id != test_id:
                continue
            counters.add(pkt.seq, pkt.send_ns, sockopts.parse_ancillary(anc).time_ns, pkt.size)
            last_rx = time.monotonic()
        ctl.settimeout(30)
        ctl.sendall(bytes(ControlMessage({"cmd": "result"})))
        far = _recv_msg(ctl)
    if not far.get("hello"):
        raise PeerError("the responder never received our UDP hello (UDP blocked on the way up?)")
    return _result("down", rate, size, int(far["sent"]), float(far["seconds"]), counters.as_dict())
