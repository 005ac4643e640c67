"""Socket options shared by the reflector and the probes: kernel timestamps, TOS/TCLASS, TTL.

Linux values are used when the socket module lacks a constant (they are stable ABI).
"""

from __future__ import annotations

import socket
import struct
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
IP_RECVTOS = getattr(socket, "IP_RECVTOS", 13)
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IPV6_RECVTCLASS = getattr(socket, "IPV6_RECVTCLASS", 66)
IPV6_TCLASS = getattr(socket, "IPV6_TCLASS", 67)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
ANCBUF = socket.CMSG_SPACE(16) + 2 * socket.CMSG_SPACE(4) + 64


SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def big_rcvbuf(sock: socket.socket, size: int = 8 << 20) -> None:
    """A large receive buffer so a busy moment does not drop datagrams in the kernel.

    SO_RCVBUFFORCE (root / CAP_NET_ADMIN) passes net.core.rmem_max; otherwise SO_RCVBUF,
    which the kernel caps at rmem_max.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def enable_rx_metadata(sock: socket.socket) -> None:
    """Ask the kernel for receive timestamps, the TOS/traffic class and the TTL/hop limit."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVTCLASS, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        # v4-mapped peers on a dual-stack socket report through the IPv4 options
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        except OSError:
            pass
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)


def set_tos(sock: socket.socket, tos: int) -> None:
    """Mark every packet the socket sends with this TOS / traffic class (DSCP << 2 | ECN)."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TCLASS, tos)
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
        except OSError:
            pass
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)


def tos_cmsg(family: int, tos: int, dest: str = "") -> list[tuple[int, int, bytes]]:
    """Ancillary data that marks one sendmsg() datagram to `dest` with `tos`.

    A dual-stack IPv6 socket sends to IPv4-mapped addresses through the IPv4 path, which
    reads IP_TOS, not IPV6_TCLASS.
    """
    if family == socket.AF_INET6 and not dest.startswith("::ffff:"):
        return [(socket.IPPROTO_IPV6, IPV6_TCLASS, struct.pack("i", tos))]
    return [(socket.IPPROTO_IP, socket.IP_TOS, struct.pack("B", tos))]


class RxMeta:
    """What recvmsg() told us about one datagram."""

    __slots__ = ("kernel_ts", "time_ns", "tos", "ttl")

    def __init__(self, time_ns: int, tos: int | None, ttl: int | None, kernel_ts: bool) -> None:
        self.time_ns = time_ns
        self.tos = tos
        self.ttl = ttl
        self.kernel_ts = kernel_ts


def parse_ancillary(ancdata: list[tuple[int, int, bytes]]) -> RxMeta:
    """Kernel receive time (Unix ns; falls back to now), TOS and TTL from ancillary data."""
    t: int | None = None
    tos: int | None = None
    ttl: int | None = None
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            t = sec * 1_000_000_000 + nsec
        elif level == socket.IPPROTO_IP and kind == socket.IP_TOS and data:
            tos = data[0]
        elif level == socket.IPPROTO_IP and kind == socket.IP_TTL and len(data) >= 1:
            ttl = struct.unpack("i", data[:4])[0] if len(data) >= 4 else data[0]
        elif level == socket.IPPROTO_IPV6 and kind == IPV6_TCLASS and len(data) >= 4:
            tos = struct.unpack("i", data[:4])[0]
        elif level == socket.IPPROTO_IPV6 and kind == IPV6_HOPLIMIT and len(data) >= 4:
            ttl = struct.unpack("i", data[:4])[0]
    return RxMeta(t if t is not None else time.time_ns(), tos, ttl, t is not None)
