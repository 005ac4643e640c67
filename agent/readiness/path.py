"""What the path to the responder is, so figures that cannot describe a customer's line
(a responder on this host, on the same link, beyond the interface's speed) are labelled
rather than reported as findings."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from dataclasses import dataclass

import psutil

from agent.addresses import resolve
from agent.errors import ProbeError

# The largest MTU any WAN service carries (jumbo frames on carrier Ethernet); a path MTU
# above it was measured inside this host or a data-centre fabric, not on a customer's line.
LARGEST_WAN_MTU = 9216


@dataclass(frozen=True)
class PathFacts:
    """The responder's address, the interface the path leaves by and why (if so) throughput
    and MTU measured on this path say nothing about the customer's line."""

    responder_ip: str | None = None
    interface: str | None = None
    interface_mbps: float | None = None
    not_meaningful: str | None = None

    def above_interface(self, bps: float) -> bool:
        """More than the interface can carry (5 % allowance for rounding of the link speed)."""
        return self.interface_mbps is not None and bps > self.interface_mbps * 1e6 * 1.05


def classify(responder_ip: str, local_ip: str | None) -> str | None:
    """Why a path to `responder_ip` is not a customer's line, or None when it may be."""
    ip = ipaddress.ip_address(responder_ip.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "the responder is on this host (loopback)"
    if local_ip is not None and ip == ipaddress.ip_address(local_ip.split("%")[0]):
        return "the responder is on this host"
    if ip.is_link_local:
        return "the responder is link-local (same network segment)"
    return None


def _egress(family: int, sockaddr: tuple) -> str | None:
    """The local address the kernel picks toward `sockaddr` (no packet is sent)."""
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect(sockaddr)
        return str(s.getsockname()[0])
    return None


def _interface(local_ip: str) -> tuple[str | None, float | None]:
    """The interface holding `local_ip` and its link speed in Mbit/s (None when unknown or
    nominal: a virtual interface such as a veth reports a speed it does not limit to)."""
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.address.split("%")[0] == local_ip.split("%")[0] for a in addrs):
            stats = psutil.net_if_stats().get(name)
            physical = os.path.exists(f"/sys/class/net/{name}/device")
            ok = stats is not None and stats.speed > 0 and physical
            return name, float(stats.speed) if ok and stats is not None else None
    return None, None


async def path_facts(responder: str) -> PathFacts:
    """Facts about the path to `responder` (a host name or address); empty when it does not
    resolve (the probes report that themselves)."""
    try:
        family, sockaddr = await resolve(responder, 9)
    except ProbeError:
        return PathFacts()
    responder_ip = str(sockaddr[0])
    local_ip = _egress(family, sockaddr)
    interface, mbps = _interface(local_ip) if local_ip is not None else (None, None)
    return PathFacts(
        responder_ip=responder_ip, interface=interface, interface_mbps=mbps,
        not_meaningful=classify(responder_ip, local_ip),
    )  # fmt: skip
