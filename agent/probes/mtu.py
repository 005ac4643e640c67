"""`mtu` probe: path MTU to a host with ICMP echo requests sent with DF set (IPv4).

Binary search on the IP packet size between 576 (or `min_size`) and the local interface's
MTU: an echo reply means the size fits; an ICMP "fragmentation needed" (type 3 code 4)
names the next hop's MTU and moves the upper bound at once; silence (after `attempts`
tries) counts as too big. When large packets vanish with no ICMP error, the path is a PMTU
black hole (RFC 2923 §2.1): reported, because TCP sessions then stall.

The kernel sets DF (IP_MTU_DISCOVER = IP_PMTUDISC_PROBE, which also ignores a cached path
MTU); raw ICMP sockets need root or CAP_NET_RAW.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import select
import socket
import struct
import time

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import NetworkUnreachableError, PermissionDeniedError
from agent.probes import ProbeContext, Target, register
from agent.probes.udp import resolve

IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_PROBE = getattr(socket, "IP_PMTUDISC_PROBE", 3)
IP_MTU = getattr(socket, "IP_MTU", 14)


class MtuOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_size: int = Field(default=576, ge=68, le=65535, description="smallest size tried (bytes)")
    max_size: int | None = Field(default=None, ge=68, le=65535, description="default: local MTU")
    timeout_s: float = Field(default=1.0, gt=0, le=10, description="wait per echo request")
    attempts: int = Field(default=2, ge=1, le=5, description="tries before a size counts as lost")


class MtuMeasurement(BaseModel):
    address: str
    path_mtu: int | None = Field(description="largest IP packet with DF that got an echo reply")
    local_mtu: int
    frag_needed_mtu: int | None = Field(description="next-hop MTU named by an ICMP error")
    frag_needed_from: str | None
    pmtu_blackhole: bool = Field(description="too-big packets dropped with no ICMP error")
    probes_sent: int
    sizes: dict[str, str] = Field(description="size -> fits / too big / frag-needed")


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


def _local_mtu(address: str) -> int:
    """MTU of the interface the route to `address` leaves by (nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((address, 9))
        except OSError as exc:
            raise NetworkUnreachableError(f"no route to {address}: {exc.strerror}") from None
        src = s.getsockname()[0]
        cached = int(s.getsockopt(socket.IPPROTO_IP, IP_MTU))  # may hold a learned PMTU
    import psutil

    stats = psutil.net_if_stats()
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.address == src for a in addrs) and name in stats and stats[name].mtu:
            return int(stats[name].mtu)
    return cached


def _search(address: str, opts: MtuOptions) -> MtuMeasurement:
    # Not connected: a connected raw socket would also report the ICMP error as a socket
    # error on the next recv; unconnected, the ICMP packet itself is read and parsed.
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except PermissionError:
        raise PermissionDeniedError(
            "the mtu probe needs a raw ICMP socket (root or CAP_NET_RAW)"
        ) from None
    with sock:
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
        local = _local_mtu(address)
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
                    sock.sendto(echo_request(ident, seq, size - 28), (address, 0))
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
                    got = classify(data, ident)
                    if got is None or got[1] != seq:
                        continue
                    if got[0] == "reply":
                        return "fits"
                    frag_mtu, frag_from = got[2], src[0]
                    return "frag-needed"
            return "no reply"

        hi = min(opts.max_size or local, local, 65535)  # IPv4 total length is 16 bits
        lo_ok: int | None = None
        lo = min(opts.min_size, hi)
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
    family, addr = await resolve(target.host, 0)
    if family != socket.AF_INET or ipaddress.ip_address(addr[0]).version != 4:
        raise NetworkUnreachableError("the mtu probe measures IPv4 paths only")
    m = await asyncio.to_thread(_search, addr[0], opts)
    if m.path_mtu is None:
        raise NetworkUnreachableError(
            f"no echo reply from {addr[0]} even at {opts.min_size} bytes", measurement=m
        )
    return m
