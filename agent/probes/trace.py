"""`trace` probe: mtr-style path report (per hop address, RTT, loss over rounds), IPv4/IPv6.

Each round sends one probe per TTL / hop limit (1..max_hops, stopping at the destination's
hop) as ICMP echo, UDP to port 33434+ or TCP SYN (a non-blocking connect with the TTL set);
a raw ICMP (ICMPv6) socket reads the Time Exceeded / Destination Unreachable answers and
matches them to probes by the quoted header. Where loss starts is a pure function of the
hop table (`loss_origin`): intermediate hops that drop probes while later hops do not are routers
rate-limiting ICMP, not lossy links. Needs root or CAP_NET_RAW.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from agent import quality
from agent.addresses import resolve_ip
from agent.errors import NetworkUnreachableError, PermissionDeniedError
from agent.probes import ProbeContext, Target, register
from agent.probes.mtu import echo_request, echo_request6
from agent.wire.lite import Hop, TraceMeasurement

BASE_PORT = 33434


class TraceOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    mode: Literal["icmp", "udp", "tcp"] = "icmp"
    port: Annotated[int, Meta(ge=1, le=65535)] = 443  # TCP mode destination port
    rounds: Annotated[int, Meta(ge=1, le=1000)] = 10
    max_hops: Annotated[int, Meta(ge=1, le=64)] = 30
    interval_s: Annotated[float, Meta(ge=0.01, le=10)] = 0.5  # between rounds
    timeout_s: Annotated[float, Meta(gt=0, le=10)] = 1.0  # wait for answers per round
    loss_threshold_pct: Annotated[float, Meta(ge=0, le=100)] = 1.0


def _estimate_timeout(o: TraceOptions) -> float:
    return o.rounds * (o.interval_s + o.timeout_s) + 10.0


# --------------------------------------------------------------------------- pure parts


def loss_origin(losses_pct: list[float], threshold_pct: float = 1.0) -> int | None:
    """1-based hop where loss that reaches the destination starts, or None.

    Loss counts only if the last hop (the destination) shows it; the origin is the first
    hop from which every later hop loses at least half the destination's loss (lower
    loss further on means the earlier hop was only rate-limiting its ICMP answers).
    """
    if not losses_pct or losses_pct[-1] <= threshold_pct:
        return None
    floor = max(threshold_pct, losses_pct[-1] / 2.0)
    origin = len(losses_pct)
    for i in range(len(losses_pct) - 1, -1, -1):
        if losses_pct[i] >= floor:
            origin = i + 1
        else:
            break
    return origin


def match_icmp(packet: bytes) -> tuple[str, int, int, int, str] | None:
    """Parse an ICMP packet from a raw socket (IPv4 header first).

    Returns (kind, protocol of the probe, key1, key2, responder) where kind is "reply"
    (echo reply: keys id/seq), "exceeded" (TTL expired) or "unreach" (destination
    unreachable), keys from the quoted probe: ICMP id/seq, or UDP/TCP source/destination ports.
    """
    if len(packet) < 28:
        return None
    ihl = (packet[0] & 0x0F) * 4
    src = socket.inet_ntoa(packet[12:16])
    icmp = packet[ihl:]
    if len(icmp) < 8:
        return None
    typ = icmp[0]
    if typ == 0:
        ident, seq = struct.unpack("!HH", icmp[4:8])
        return "reply", socket.IPPROTO_ICMP, ident, seq, src
    if typ not in (3, 11) or len(icmp) < 8 + 20 + 8:
        return None
    inner = icmp[8:]
    iihl = (inner[0] & 0x0F) * 4
    proto = inner[9]
    quoted = inner[iihl : iihl + 8]
    if len(quoted) < 8:
        return None
    return _quoted("exceeded" if typ == 11 else "unreach", proto, quoted, src)


def _quoted(kind: str, proto: int, quoted: bytes, src: str) -> tuple[str, int, int, int, str]:
    """The keys of the probe an ICMP error quotes: echo id/seq, or source/destination port."""
    if proto in (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6):
        ident, seq = struct.unpack("!HH", quoted[4:8])
        return kind, proto, ident, seq, src
    sport, dport = struct.unpack("!HH", quoted[:4])
    return kind, proto, sport, dport, src


def match_icmp6(packet: bytes, src: str) -> tuple[str, int, int, int, str] | None:
    """As `match_icmp`, for what a raw ICMPv6 socket returns (no IPv6 header: the
    responder is `src`, from recvfrom): echo reply (129), time exceeded (3) or destination
    unreachable (1) quoting our probe after its 40-byte IPv6 header (RFC 4443)."""
    if len(packet) < 8:
        return None
    typ = packet[0]
    if typ == 129:
        ident, seq = struct.unpack("!HH", packet[4:8])
        return "reply", socket.IPPROTO_ICMPV6, ident, seq, src
    if typ not in (1, 3) or len(packet) < 8 + 40 + 8:
        return None
    inner = packet[8:]
    proto = inner[6]
    quoted = inner[40:48]
    if proto == socket.IPPROTO_ICMPV6 and quoted[0] != 128:
        return None  # an error about some other ICMPv6 message, not our echo request
    return _quoted("exceeded" if typ == 3 else "unreach", proto, quoted, src)


# --------------------------------------------------------------------------- measuring


@dataclass
class _HopData:
    sent: int = 0
    rtts: list[float] = field(default_factory=list)
    addrs: Counter[str] = field(default_factory=Counter)
    dest: bool = False


class _Tracer:
    def __init__(self, address: str, opts: TraceOptions, family: int = socket.AF_INET) -> None:
        self.address, self.opts, self.family = address, opts, family
        self.v6 = family == socket.AF_INET6
        # the TTL option of each socket kind (IPv6 calls it the unicast hop limit)
        self.ttl_opt = (
            (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS)
            if self.v6
            else (socket.IPPROTO_IP, socket.IP_TTL)
        )
        proto = socket.IPPROTO_ICMPV6 if self.v6 else socket.IPPROTO_ICMP
        try:
            self.rx = socket.socket(family, socket.SOCK_RAW, proto)
        except PermissionError:
            raise PermissionDeniedError(
                "the trace probe needs a raw ICMP socket (root or CAP_NET_RAW)"
            ) from None
        self.ident = (os.getpid() ^ 0x7172) & 0xFFFF
        self.hops: dict[int, _HopData] = {}
        self.dest_ttl: int | None = None
        self.pending: dict[tuple[int, int], tuple[int, float]] = {}  # key -> (ttl, sent)
        self.tcp: dict[int, tuple[socket.socket, int, float]] = {}  # sport -> sock, ttl, t
        self.udp = socket.socket(family, socket.SOCK_DGRAM) if opts.mode == "udp" else None
        self.seq = 0

    def close(self) -> None:
        self.rx.close()
        if self.udp is not None:
            self.udp.close()
        for s, _, _ in self.tcp.values():
            s.close()

    def _send(self, ttl: int) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        hop = self.hops.setdefault(ttl, _HopData())
        now = time.monotonic()
        try:
            if self.opts.mode == "icmp":
                self.rx.setsockopt(*self.ttl_opt, ttl)
                request = echo_request6 if self.v6 else echo_request
                self.rx.sendto(request(self.ident, self.seq, 32), (self.address, 0))
                self.pending[(self.ident, self.seq)] = (ttl, now)
            elif self.opts.mode == "udp":
                assert self.udp is not None
                self.udp.setsockopt(*self.ttl_opt, ttl)
                dport = BASE_PORT + (self.seq % 1000)
                self.udp.sendto(b"qos-scout trace", (self.address, dport))
                self.pending[(self.udp.getsockname()[1], dport)] = (ttl, now)
            else:
                s = socket.socket(self.family, socket.SOCK_STREAM)
                s.setblocking(False)
                s.setsockopt(*self.ttl_opt, ttl)
                s.bind(("::" if self.v6 else "0.0.0.0", 0))
                sport = s.getsockname()[1]
                self.tcp[sport] = (s, ttl, now)
                self.pending[(sport, self.opts.port)] = (ttl, now)
                with contextlib.suppress(BlockingIOError):
                    s.connect((self.address, self.opts.port))
        except OSError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                raise NetworkUnreachableError(f"no route to {self.address}") from None
            return
        hop.sent += 1

    def _answer(self, key: tuple[int, int], src: str, dest: bool, now: float) -> None:
        entry = self.pending.pop(key, None)
        if entry is None:
            return
        ttl, sent = entry
        hop = self.hops[ttl]
        hop.rtts.append((now - sent) * 1000.0)
        hop.addrs[src] += 1
        if dest:
            hop.dest = True
            if self.dest_ttl is None or ttl < self.dest_ttl:
                self.dest_ttl = ttl

    def _poll(self, until: float) -> None:
        while (left := until - time.monotonic()) > 0:
            socks = [self.rx] + [s for s, _, _ in self.tcp.values()]
            readable, writable, _ = select.select([self.rx], socks[1:], [], left)
            now = time.monotonic()
            if self.rx in readable:
                data, peer = self.rx.recvfrom(65535)
                got = match_icmp6(data, peer[0]) if self.v6 else match_icmp(data)
                if got is not None:
                    kind, _proto, k1, k2, src = got
                    dest = kind == "reply" or (kind == "unreach" and src == self.address)
                    self._answer((k1, k2), src, dest, now)
            for s in writable:  # TCP: SYN-ACK or RST from the destination
                sport = s.getsockname()[1]
                self.tcp.pop(sport, None)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err in (0, errno.ECONNREFUSED):
                    self._answer((sport, self.opts.port), self.address, True, now)
                s.close()

    def run(self) -> None:
        for rnd in range(self.opts.rounds):
            start = time.monotonic()
            top = self.dest_ttl or self.opts.max_hops
            for ttl in range(1, top + 1):
                self._send(ttl)
            self._poll(start + self.opts.timeout_s)
            self.pending.clear()
            for s, _, _ in self.tcp.values():
                s.close()
            self.tcp.clear()
            if rnd + 1 < self.opts.rounds:
                time.sleep(max(0.0, self.opts.interval_s - (time.monotonic() - start)))


def _trace(address: str, opts: TraceOptions, family: int = socket.AF_INET) -> TraceMeasurement:
    tracer = _Tracer(address, opts, family)
    try:
        tracer.run()
    finally:
        tracer.close()
    last = tracer.dest_ttl or max(tracer.hops, default=0)
    hops: list[Hop] = []
    for ttl in range(1, last + 1):
        h = tracer.hops.get(ttl, _HopData())
        received = len(h.rtts)
        s = quality.summarize(h.rtts)
        common = h.addrs.most_common()
        hops.append(
            Hop(
                ttl=ttl,
                address=common[0][0] if common else None,
                other_addresses=[a for a, _ in common[1:]],
                sent=h.sent,
                received=received,
                loss_pct=100.0 * (h.sent - received) / h.sent if h.sent else 100.0,
                rtt_ms={"min": s.min, "avg": s.avg, "median": s.median, "max": s.max,
                        "stdev": s.stdev},
                is_destination=h.dest,
            )
        )  # fmt: skip
    reached = tracer.dest_ttl is not None
    losses = [h.loss_pct for h in hops]
    return TraceMeasurement(
        address=address,
        mode=opts.mode,
        rounds=opts.rounds,
        reached=reached,
        hops=hops,
        hop_count=len(hops),
        loss_starts_at_hop=loss_origin(losses, opts.loss_threshold_pct) if reached else None,
        destination_loss_pct=losses[-1] if reached and losses else None,
    )


@register("trace", TraceOptions, estimate_timeout=_estimate_timeout)
async def probe_trace(target: Target, opts: TraceOptions, ctx: ProbeContext) -> TraceMeasurement:
    family, host = await resolve_ip(target.host)
    return await asyncio.to_thread(_trace, host, opts, family)
