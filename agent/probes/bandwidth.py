"""`bandwidth` probe: TCP throughput up/down with N streams, and UDP at a constant rate.

Against `qos-scout responder` (protocol in `agent.responder.bandwidth`, byte layouts in
`agent.wire.bwframe`). TCP: throughput is counted where the bytes arrive (the responder for
upload, here for download) from first to last byte; retransmits and the RTT under load come
from TCP_INFO of the sending side; the idle RTT is the kernel's RTT of TCP handshakes before
the test; the buffer delay is RFC 6349 §3.3: (RTT under load - idle RTT) / idle RTT. UDP
(`agent.probes.bandwidth_udp`): datagrams at a constant rate, up and/or down; the receiving
end counts loss, duplicates, reordering and RFC 3550 jitter.

Data moves in threads with large buffers (`recv_into` with MSG_TRUNC, which discards
without copying; `sendfile` from a memfd upstream), so Python is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from agent.addresses import resolve
from agent.errors import NetworkUnreachableError, PeerError
from agent.probes import ProbeContext, Target, register
from agent.probes.bandwidth_udp import udp_down, udp_up
from agent.responder.bandwidth import ZeroSource, receive_until_eof, send_for
from agent.responder.tcpinfo import tcp_info
from agent.wire.bwframe import DATA_HEADER_LEN, LENGTH_LEN, MAX_REPLY, ControlMessage
from agent.wire.lite import BandwidthMeasurement, TcpResult


class BandwidthOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    port: Annotated[int, Meta(ge=1, le=65535)] = 5201
    mode: Literal["tcp", "udp"] = "tcp"
    direction: Literal["up", "down", "both"] = "both"  # up: agent -> responder; both: then down
    streams: Annotated[int, Meta(ge=1, le=64)] = 4
    duration_s: Annotated[float, Meta(gt=0, le=300)] = 10.0
    udp_rate_kbps: Annotated[float, Meta(gt=0, le=1_000_000)] = 1000.0  # UDP payload, kbit/s
    udp_packet_bytes: Annotated[int, Meta(ge=DATA_HEADER_LEN, le=9000)] = 1200
    idle_rtt_samples: Annotated[int, Meta(ge=1, le=50)] = 5


def _estimate_timeout(o: BandwidthOptions) -> float:
    runs = 2 if (o.mode == "tcp" and o.direction == "both") else 1
    return runs * (o.duration_s + 20.0) + 10.0


# --------------------------------------------------------------------------- pure maths


@dataclass(frozen=True)
class Span:
    bytes: int
    first_ns: int | None
    last_ns: int | None


def throughput(spans: list[Span]) -> tuple[int, float, float, list[float]]:
    """(bytes, seconds, bits/s, per-stream bits/s): bytes over first-to-last byte of all streams."""
    total = sum(s.bytes for s in spans)
    firsts = [s.first_ns for s in spans if s.first_ns is not None]
    lasts = [s.last_ns for s in spans if s.last_ns is not None]
    if not firsts or not lasts:
        return total, 0.0, 0.0, [0.0] * len(spans)
    seconds = (max(lasts) - min(firsts)) / 1e9
    bps = total * 8 / seconds if seconds > 0 else 0.0
    per = [s.bytes * 8 / seconds if seconds > 0 else 0.0 for s in spans]
    return total, seconds, bps, per


def buffer_delay_pct(rtt_loaded_ms: float | None, idle_rtt_ms: float | None) -> float | None:
    """RFC 6349 §3.3 buffer delay: increase of the average RTT under load over the idle RTT."""
    if rtt_loaded_ms is None or not idle_rtt_ms:
        return None
    return (rtt_loaded_ms - idle_rtt_ms) / idle_rtt_ms * 100.0


# --------------------------------------------------------------------------- TCP


@dataclass
class StreamStats:
    bytes: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    retrans: int | None = None
    rtt_us_samples: list[int] = field(default_factory=list)
    min_rtt_us: int | None = None
    error: str | None = None


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the responder closed the connection")
        buf += chunk
    return bytes(buf)


def _recv_msg(sock: socket.socket) -> dict[str, Any]:
    """One control message from the responder (BwFrameError, a ValueError, if malformed)."""
    n = ControlMessage.read_length(_recv_exact(sock, LENGTH_LEN), MAX_REPLY)
    return ControlMessage.parse_body(_recv_exact(sock, n))


def _stream(
    family: int, addr: tuple, test: str, idx: int, direction: str, seconds: float,
    src: ZeroSource | None, out: StreamStats,
) -> None:  # fmt: skip
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(15)
            sock.connect(addr)
            sock.sendall(
                bytes(ControlMessage({"v": 1, "role": "data", "test": test, "stream": idx}))
            )
            reply = _recv_msg(sock)
            if not reply.get("ok"):
                raise PeerError(f"responder refused the stream: {reply.get('error')}")
            sock.settimeout(seconds + 15)
            if direction == "up":
                _send(sock, seconds, src, out)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
            else:
                receive_until_eof(sock, out)
    except (OSError, ValueError, PeerError) as exc:
        out.error = str(exc) or type(exc).__name__


def _send(sock: socket.socket, seconds: float, src: ZeroSource | None, out: StreamStats) -> None:
    send_for(sock, seconds, out, src)
    sock.settimeout(15)


def _run_streams(
    family: int, addr: tuple, test: str, direction: str, n: int, seconds: float
) -> list[StreamStats]:
    src = None
    if direction == "up":
        with contextlib.suppress(OSError, AttributeError):
            src = ZeroSource()
    stats = [StreamStats() for _ in range(n)]
    threads = [
        threading.Thread(
            target=_stream, args=(family, addr, test, i, direction, seconds, src, stats[i]),
            daemon=True,
        )
        for i in range(n)
    ]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    if src is not None:
        src.close()
    return stats


def _idle_rtt_ms(family: int, addr: tuple, samples: int) -> float | None:
    """Median RTT of TCP handshakes on the idle path.

    Read from the kernel's own RTT estimate right after connect (TCP_INFO, set from the
    SYN/SYN-ACK exchange): the same instrument as the RTT under load, free of the
    process's scheduling delays. Timed connect() where TCP_INFO is not available.
    """
    rtts = []
    for _ in range(samples):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            t0 = time.perf_counter()
            try:
                s.connect(addr)
            except OSError:
                continue
            elapsed_ms = (time.perf_counter() - t0) * 1000.0
            info = tcp_info(s)
            rtts.append(info.rtt_us / 1000.0 if info is not None and info.rtt_us else elapsed_ms)
    return statistics.median(rtts) if rtts else None


async def _tcp_test(
    family: int, addr: tuple, direction: str, opts: BandwidthOptions, idle_ms: float | None
) -> TcpResult:
    test = secrets.token_hex(8)
    hello = {"v": 1, "role": "control", "test": test, "dir": direction,
             "streams": opts.streams, "seconds": opts.duration_s}  # fmt: skip

    def control_open() -> socket.socket:
        ctl = socket.socket(family, socket.SOCK_STREAM)
        ctl.settimeout(10)
        ctl.connect(addr)
        ctl.sendall(bytes(ControlMessage(hello)))
        reply = _recv_msg(ctl)
        if not reply.get("ok"):
            ctl.close()
            raise PeerError(f"responder refused the test: {reply.get('error')}")
        return ctl

    try:
        ctl = await asyncio.to_thread(control_open)
    except ConnectionRefusedError:
        raise NetworkUnreachableError(
            f"nothing listens on {addr[0]} TCP port {addr[1]} (is qos-scout responder running?)"
        ) from None
    except (OSError, ValueError) as exc:
        raise NetworkUnreachableError(f"cannot reach the responder at {addr[0]}: {exc}") from None
    try:
        stats = await asyncio.to_thread(
            _run_streams, family, addr, test, direction, opts.streams, opts.duration_s
        )

        def result() -> dict[str, Any]:
            ctl.settimeout(30)
            ctl.sendall(bytes(ControlMessage({"cmd": "result"})))
            return _recv_msg(ctl)

        server = await asyncio.to_thread(result)
    finally:
        ctl.close()
    errors = [s.error for s in stats if s.error]
    if len(errors) == len(stats):
        raise PeerError(f"every {direction} stream failed: {errors[0]}")
    far = server.get("streams") or []
    if direction == "up":
        spans = [Span(int(s["bytes"]), s["first_ns"], s["last_ns"]) for s in far]
        rtts = [us for s in stats for us in s.rtt_us_samples]
        retrans = [s.retrans for s in stats if s.retrans is not None]
    else:
        spans = [Span(s.bytes, s.first_ns, s.last_ns) for s in stats]
        rtts = [us for s in far for us in (s.get("rtt_us_samples") or [])]
        retrans = [s["retrans"] for s in far if s.get("retrans") is not None]
    total, seconds, bps, per = throughput(spans)
    loaded = statistics.fmean(rtts) / 1000.0 if rtts else None
    return TcpResult(
        direction=direction,
        streams=opts.streams,
        bytes=total,
        duration_s=seconds,
        throughput_bps=bps,
        per_stream_bps=per,
        retransmits=sum(retrans) if retrans else None,
        rtt_loaded_ms=loaded,
        buffer_delay_pct=buffer_delay_pct(loaded, idle_ms),
    )


@register("bandwidth", BandwidthOptions, estimate_timeout=_estimate_timeout)
async def probe_bandwidth(
    target: Target, opts: BandwidthOptions, ctx: ProbeContext
) -> BandwidthMeasurement:
    port = target.port or opts.port
    family, addr = await resolve(target.host, port, socket.SOCK_STREAM)
    if opts.mode == "udp":
        m = BandwidthMeasurement(address=addr[0], port=port, mode="udp", idle_rtt_ms=None)
        args = (family, addr, opts.udp_rate_kbps, opts.udp_packet_bytes, opts.duration_s)
        if opts.direction in ("up", "both"):
            m.udp_up = await asyncio.to_thread(udp_up, *args)
        if opts.direction in ("down", "both"):
            m.udp_down = await asyncio.to_thread(udp_down, *args)
        return m
    idle = await asyncio.to_thread(_idle_rtt_ms, family, addr, opts.idle_rtt_samples)
    if idle is None:
        raise NetworkUnreachableError(f"cannot open a TCP connection to {addr[0]} port {port}")
    m = BandwidthMeasurement(address=addr[0], port=port, mode="tcp", idle_rtt_ms=idle)
    if opts.direction in ("up", "both"):
        m.upload = await _tcp_test(family, addr, "up", opts, idle)
    if opts.direction in ("down", "both"):
        m.download = await _tcp_test(family, addr, "down", opts, idle)
    return m
