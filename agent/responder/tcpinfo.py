"""Linux `struct tcp_info` (TCP_INFO getsockopt): the fields the bandwidth test reports."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

TCP_INFO = getattr(socket, "TCP_INFO", 11)
_LEN = 232  # up to tcpi_bytes_retrans (Linux >= 4.19); older kernels return less


@dataclass(frozen=True)
class TcpInfo:
    rtt_us: int  # smoothed RTT
    rttvar_us: int
    snd_cwnd: int
    total_retrans: int  # segments retransmitted over the connection's life
    min_rtt_us: int | None
    bytes_acked: int | None
    bytes_received: int | None
    bytes_retrans: int | None

    @classmethod
    def parse(cls, data: bytes) -> TcpInfo:
        """Parse the kernel's struct; fields a short (older) struct lacks are None."""
        if len(data) < 104:
            raise ValueError(f"tcp_info is {len(data)} bytes, needs at least 104")
        rtt, rttvar = struct.unpack_from("=II", data, 68)
        cwnd = struct.unpack_from("=I", data, 80)[0]
        total_retrans = struct.unpack_from("=I", data, 100)[0]

        def u64(off: int) -> int | None:
            return struct.unpack_from("=Q", data, off)[0] if len(data) >= off + 8 else None

        min_rtt = struct.unpack_from("=I", data, 148)[0] if len(data) >= 152 else None
        return cls(rtt, rttvar, cwnd, total_retrans, min_rtt, u64(120), u64(128), u64(208))


def tcp_info(sock: socket.socket) -> TcpInfo | None:
    """The socket's tcp_info, or None when the platform has none."""
    try:
        return TcpInfo.parse(sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, _LEN))
    except (OSError, ValueError):
        return None
