"""`mtu` probe: path MTU to a host with ICMP echo requests that routers may not fragment.

Binary search on the IP packet size between 576 (or `min_size`; 1280 on IPv6, the minimum
every IPv6 link carries, RFC 8200 §5) and the local interface's MTU: an echo reply means the
size fits; an ICMP "fragmentation needed" (type 3 code 4) or ICMPv6 "packet too big"
(type 2, RFC 4443) names the next hop's MTU and moves the upper bound at once; silence
(after `attempts` tries) counts as too big. When large packets vanish with no ICMP error,
the path is a PMTU black hole (RFC 2923 §2.1): reported, because TCP sessions then stall.

The kernel sets DF on IPv4 and does not fragment on IPv6 (IP(V6)_MTU_DISCOVER =
PMTUDISC_PROBE, which also ignores a cached path MTU; IPV6_DONTFRAG); raw ICMP sockets need
root or CAP_NET_RAW.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import struct
import time
from typing import Annotated

import msgspec
from msgspec import Meta

from agent.addresses import resolve_ip
from agent.errors import NetworkUnreachableError, PermissionDeniedError
from agent.probes import ProbeContext, Target, register
from agent.wire.lite import MtuMeasurement

IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_PROBE = getattr(socket, "IP_PMTUDISC_PROBE", 3)
IP_MTU = getattr(socket, "IP_MTU", 14)
IPV6_MTU_DISCOVER = getattr(socket, "IPV6_MTU_DISCOVER", 23)
IPV6_PMTUDISC_PROBE = getattr(socket, "IPV6_PMTUDISC_PROBE", 3)
IPV6_MTU = getattr(socket, "IPV6_MTU", 24)
IPV6_DONTFRAG = getattr(socket, "IPV6_DONTFRAG", 62)
IPV6_MIN_MTU = 1280
HEADER_V4, HEADER_V6 = 20 + 8, 40 + 8  # IP + ICMP echo header


class MtuOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    min_size: Annotated[int, Meta(ge=68, le=65535)] = 576  # smallest size tried (bytes)
    max_size: Annotated[int, Meta(ge=68, le=65535)] | None = None  # default: local MTU
    timeout_s: Annotated[float, Meta(gt=0, le=10)] = 1.0  # wait per echo request
    attempts: Annotated[int, Meta(ge=1, le=5)] = 2  # tries before a size counts as lost


def _estimate_timeout(o: MtuOptions) -> float:
    return 16 * o.attempts * o.timeout_s + 5.0


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(ident: int, seq: int, payload_len: int) -> bytes:
    payload = bytes((i & 0xFF) for i in range(payload_len))
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(head + payload), ident, seq) + payload


def echo_request6(ident: int, seq: int, payload_len: int) -> bytes:
    """ICMPv6 echo request; the kernel fills in the checksum (it covers a pseudo-header)."""
    payload = bytes((i & 0xFF) for i in range(payload_len))
    return struct.pack("!BBHHH", 128, 0, 0, ident, seq) + payload


def classify6(packet: bytes, ident: int) -> tuple[str, int, int | None] | None:
    """As `classify`, for what a raw ICMPv6 socket returns (ICMPv6 only, no IPv6 header):
    echo reply (129), or packet too big (2) quoting our echo request after its IPv6 header."""
    if len(packet) < 8:
        return None
    typ = packet[0]
    if typ == 129:
        rid, seq = struct.unpack("!HH", packet[4:8])
        return ("reply", seq, None) if rid == ident else None
    if typ == 2 and len(packet) >= 8 + 40 + 8:
        mtu = struct.unpack("!I", packet[4:8])[0]
        inner = packet[8:]
        orig = inner[40:48]
        if inner[6] == socket.IPPROTO_ICMPV6 and orig[0] == 128:
            rid, seq = struct.unpack("!HH", orig[4:8])
            if rid == ident:
                return ("frag", seq, mtu or None)
    return None


def classify(packet: bytes, ident: int) -> tuple[str, int, int | None] | None:
    """('reply', seq, None) or ('frag', seq, next_hop_mtu) for our probes, else None.

    `packet` is what a raw ICMP socket returns: the IPv4 header, then ICMP.
    """
    if len(packet) < 20:
        return None
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if len(icmp) < 8:
        return None
    typ, code = icmp[0], icmp[1]
    if typ == 0:
        rid, seq = struct.unpack("!HH", icmp[4:8])
        return ("reply", seq, None) if rid == ident else None
    if typ == 3 and code == 4 and len(icmp) >= 8 + 20 + 8:
        mtu = struct.unpack("!H", icmp[6:8])[0]
        inner = icmp[8:]
        iihl = (inner[0] & 0x0F) * 4
        orig = inner[iihl : iihl + 8]
        if len(orig) == 8 and orig[0] == 8:
            rid, seq = struct.unpack("!HH", orig[4:8])
            if rid == ident:
                return ("frag", seq, mtu or None)
    return None


def _local_mtu(address: str, family: int) -> int:
    """MTU of the interface the route to `address` leaves by (nothing is sent)."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((address, 9))
        except OSError as exc:
            raise NetworkUnreachableError(f"no route to {address}: {exc.strerror}") from None
        src = s.getsockname()[0]
        if family == socket.AF_INET6:
            cached = int(s.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU))
        else:
            cached = int(s.getsockopt(socket.IPPROTO_IP, IP_MTU))  # may hold a learned PMTU
    import psutil

    stats = psutil.net_if_stats()
    for name, addrs in psutil.net_if_addrs().items():
        mine = any(a.address.split("%")[0] == src.split("%")[0] for a in addrs)
        if mine and name in stats and stats[name].mtu:
            return int(stats[name].mtu)
    return cached


def _search(address: str, opts: MtuOptions, family: int = socket.AF_INET) -> MtuMeasurement:
    # Not connected: a connected raw socket would also report the ICMP error as a socket
    # error on the next recv; unconnected, the ICMP packet itself is read and parsed.
    v6 = family == socket.AF_INET6
    try:
        sock = socket.socket(
            family, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
        )
    except PermissionError:
        raise PermissionDeniedError(
            "the mtu probe needs a raw ICMP socket (root or CAP_NET_RAW)"
        ) from None
    request, parse = (echo_request6, classify6) if v6 else (echo_request, classify)
    header = HEADER_V6 if v6 else HEADER_V4
    with sock:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_DONTFRAG, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
        local = _local_mtu(address, family)
        ident = os.getpid() & 0xFFFF ^ 0x5153
        seq = 0
        sizes: dict[str, str] = {}
        frag_mtu: int | None = None
        frag_from: str | None = None
        silent_too_big = False

        def try_size(size: int) -> str:
            nonlocal seq, frag_mtu, frag_from, silent_too_big
            for _ in range(opts.attempts):
                seq = (seq + 1) & 0xFFFF
                try:
                    sock.sendto(request(ident, seq, size - header), (address, 0))
                except OSError as exc:
                    if exc.errno == 90:  # EMSGSIZE: above what the kernel will send
                        return "too big (local)"
                    raise NetworkUnreachableError(
                        f"cannot send to {address}: {exc.strerror}"
                    ) from None
                deadline = time.monotonic() + opts.timeout_s
                while (left := deadline - time.monotonic()) > 0:
                    if not select.select([sock], [], [], left)[0]:
                        break
                    data, src = sock.recvfrom(65535)
                    got = parse(data, ident)
                    if got is None or got[1] != seq:
                        continue
                    if got[0] == "reply":
                        return "fits"
                    frag_mtu, frag_from = got[2], src[0]
                    return "frag-needed"
            return "no reply"

        # IPv4 total length and IPv6 payload length are 16 bits
        hi = min(opts.max_size or local, local, 65535 + (40 if v6 else 0))
        lo_ok: int | None = None
        lo = min(max(opts.min_size, IPV6_MIN_MTU) if v6 else opts.min_size, hi)
        first = try_size(lo)
        sizes[str(lo)] = first
        if first == "fits":
            lo_ok = lo
            top = try_size(hi)
            sizes[str(hi)] = top
            if top == "fits":
                lo_ok = hi
            else:
                bad = hi
                if top == "frag-needed" and frag_mtu and lo < frag_mtu < hi:
                    r = try_size(frag_mtu)
                    sizes[str(frag_mtu)] = r
                    if r == "fits":
                        lo_ok = frag_mtu
                    else:
                        bad = frag_mtu
                while lo_ok is not None and bad - lo_ok > 1 and lo_ok < hi:
                    mid = (lo_ok + bad) // 2
                    r = try_size(mid)
                    sizes[str(mid)] = r
                    if r == "fits":
                        lo_ok = mid
                    else:
                        bad = mid
                        silent_too_big = silent_too_big or r == "no reply"
        return MtuMeasurement(
            address=address,
            path_mtu=lo_ok,
            local_mtu=local,
            frag_needed_mtu=frag_mtu,
            frag_needed_from=frag_from,
            pmtu_blackhole=lo_ok is not None and frag_mtu is None and silent_too_big,
            probes_sent=seq,
            sizes=sizes,
        )


@register("mtu", MtuOptions, estimate_timeout=_estimate_timeout)
async def probe_mtu(target: Target, opts: MtuOptions, ctx: ProbeContext) -> MtuMeasurement:
    family, host = await resolve_ip(target.host)
    m = await asyncio.to_thread(_search, host, opts, family)
    if m.path_mtu is None:
        smallest = min((int(k) for k in m.sizes), default=opts.min_size)
        raise NetworkUnreachableError(
            f"no echo reply from {host} even at {smallest} bytes", measurement=m
        )
    return m
