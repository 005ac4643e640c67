"""`host` probe: the agent host itself (CPU, memory, load, NIC errors/drops and link speed),
its default gateway with the vendor from the MAC's OUI, and optionally its public address.

A busy or starved agent spoils every other measurement, and the gateway's vendor says what
the customer's router is; both belong in a ticket's evidence. The /proc parsers are pure.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import ipaddress
import os
import re
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO

import msgspec
from msgspec import Meta

from agent.errors import NetworkUnreachableError, PeerError, ResolveError
from agent.probes import ProbeContext, Target, register
from agent.wire.lite import Gateway, HostMeasurement, Nic

PROC_ROUTE = Path("/proc/net/route")
PROC_ROUTE6 = Path("/proc/net/ipv6_route")
PROC_ARP = Path("/proc/net/arp")


@dataclass(frozen=True)
class DefaultRoute:
    interface: str
    gateway: str
    metric: int


def parse_proc_route(text: str) -> DefaultRoute | None:
    """The IPv4 default route with the lowest metric from /proc/net/route text."""
    best: DefaultRoute | None = None
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 8 or f[1] != "00000000" or f[7] != "00000000":
            continue
        flags = int(f[3], 16)
        if not flags & 0x1 or not flags & 0x2:  # RTF_UP, RTF_GATEWAY
            continue
        gw = socket.inet_ntoa(struct.pack("<I", int(f[2], 16)))
        route = DefaultRoute(f[0], gw, int(f[6]))
        if best is None or route.metric < best.metric:
            best = route
    return best


def parse_proc_arp(text: str, address: str) -> str | None:
    """The MAC address of `address` from /proc/net/arp text (complete entries only)."""
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) >= 4 and f[0] == address and int(f[2], 16) & 0x2 and f[3] != "00:00:00:00:00:00":
            return f[3].lower()
    return None


def gateway_mac(address: str) -> str | None:
    try:
        return parse_proc_arp(PROC_ARP.read_text(), address)
    except OSError:
        return None


def parse_proc_ipv6_route(text: str) -> DefaultRoute | None:
    """The IPv6 default route (::/0 via a next hop) with the lowest metric from
    /proc/net/ipv6_route text."""
    best: DefaultRoute | None = None
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10 or f[0] != "0" * 32 or f[1] != "00" or f[4] == "0" * 32:
            continue
        if not int(f[8], 16) & 0x1:  # RTF_UP
            continue
        gw = str(ipaddress.IPv6Address(bytes.fromhex(f[4])))
        route = DefaultRoute(f[9], gw, int(f[5], 16))
        if best is None or route.metric < best.metric:
            best = route
    return best


def default_route() -> DefaultRoute | None:
    """The IPv4 default route, else the IPv6 one, else None."""
    for path, parse in ((PROC_ROUTE, parse_proc_route), (PROC_ROUTE6, parse_proc_ipv6_route)):
        try:
            route = parse(path.read_text())
        except (OSError, ValueError):
            continue
        if route is not None:
            return route
    return None


def default_gateway() -> str | None:
    """The default gateway of this host (IPv4 first), or None (for `$gateway` targets)."""
    route = default_route()
    return route.gateway if route else None


_MAC = re.compile(r"^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})(?:[:-][0-9a-f]{2}){3}$", re.I)


def _registry_files() -> tuple[Path, Path] | None:
    """netaddr's copy of the IEEE OUI registry (found without importing netaddr)."""
    spec = importlib.util.find_spec("netaddr")
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(next(iter(spec.submodule_search_locations))) / "eui"
    return base / "oui.idx", base / "oui.txt"


def oui_org(oui: int, index_lines: Iterable[str], registry: BinaryIO) -> str | None:
    """The organisation of `oui` from netaddr's index (`oui,offset,size` lines) and registry
    text. Streams the index instead of loading it: a lookup is rare, memory is not."""
    key = f"{oui},"
    for line in index_lines:
        if line.startswith(key):
            _, offset, size = line.strip().split(",")
            registry.seek(int(offset))
            first = registry.read(int(size)).decode("utf-8", "replace").split("\n", 1)[0]
            org = first.split("(hex)", 1)[-1].strip()
            return org or None
    return None


@functools.lru_cache(maxsize=64)
def mac_vendor(mac: str) -> str | None:
    """The organisation registered for the MAC's OUI in the IEEE registry shipped by netaddr;
    None for a locally administered (random, virtual) address or an unregistered OUI."""
    m = _MAC.match(mac.strip())
    if m is None:
        return None
    octets = [int(g, 16) for g in m.groups()]
    if octets[0] & 0x02:  # locally administered: no vendor behind it
        return None
    files = _registry_files()
    if files is None:
        return None
    try:
        with files[0].open() as idx, files[1].open("rb") as txt:
            return oui_org((octets[0] << 16) | (octets[1] << 8) | octets[2], idx, txt)
    except OSError:
        return None


class HostOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sample_s: Annotated[float, Meta(gt=0, le=60)] = 1.0  # CPU sampling window
    # NICs to report; None: the default route's, else all but lo
    interfaces: list[str] | None = None
    # host:port of a responder's NAT-binding service (UDP); None: not asked
    public_address_from: str | None = None


async def public_address(target: str, timeout_s: float) -> str:
    """Our address as the responder sees it: one BIND to its NAT-binding service, which
    answers BOUND with the source address it saw ("ip port")."""
    import secrets

    from agent.wire.natpacket import BIND, BOUND, NatMessage, NatWireError

    tgt = Target.parse(target)
    if tgt.port is None:
        raise PeerError(f"public_address_from {target!r} needs a port")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(tgt.host, tgt.port, type=socket.SOCK_DGRAM)
    except socket.gaierror:
        raise ResolveError(f"host name {tgt.host!r} does not resolve") from None
    family, _, _, _, addr = infos[0]
    token = secrets.token_bytes(16)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, addr)
        for _ in range(3):
            await loop.sock_sendall(sock, bytes(NatMessage(BIND, token)))
            try:
                async with asyncio.timeout(timeout_s / 3):
                    while True:
                        try:
                            msg = NatMessage.parse(await loop.sock_recv(sock, 2048))
                        except NatWireError:
                            continue
                        if msg.kind == BOUND and msg.token == token:
                            break
            except TimeoutError:
                continue
            seen = msg.body.decode("utf-8", "replace").split()
            try:
                return str(ipaddress.ip_address(seen[0]))
            except (ValueError, IndexError):
                raise PeerError(
                    f"{target} answered an unreadable address {msg.body[:60]!r}"
                ) from None
        raise PeerError(f"no answer from the NAT-binding service at {target}")
    except ConnectionRefusedError:
        raise PeerError(f"nothing listens at {target} (connection refused)") from None
    finally:
        sock.close()


@register("host", HostOptions, estimate_timeout=lambda o: o.sample_s + 10.0)
async def probe_host(target: Target, opts: HostOptions, ctx: ProbeContext) -> HostMeasurement:
    import psutil

    before = psutil.cpu_times()
    await asyncio.sleep(opts.sample_s)
    cpu_pct = _busy_pct(before, psutil.cpu_times())
    route = default_route()
    gateway = None
    if route is not None:
        mac = gateway_mac(route.gateway)
        gateway = Gateway(
            address=route.gateway,
            interface=route.interface,
            mac=mac,
            vendor=mac_vendor(mac) if mac else None,
        )
    stats = psutil.net_if_stats()
    if opts.interfaces is not None:
        missing = [n for n in opts.interfaces if n not in stats]
        if missing:
            raise NetworkUnreachableError(f"no such interface: {', '.join(missing)}")
        names = opts.interfaces
    elif route is not None and route.interface in stats:
        names = [route.interface]
    else:
        names = sorted(n for n in stats if n != "lo")
    counters = psutil.net_io_counters(pernic=True)
    nics = []
    for n in names:
        c, s = counters.get(n), stats[n]
        nics.append(
            Nic(
                name=n,
                is_up=s.isup,
                speed_mbps=s.speed or None,
                mtu=s.mtu,
                rx_bytes=c.bytes_recv if c else 0,
                tx_bytes=c.bytes_sent if c else 0,
                rx_errors=c.errin if c else 0,
                tx_errors=c.errout if c else 0,
                rx_drops=c.dropin if c else 0,
                tx_drops=c.dropout if c else 0,
            )
        )
    public = None
    if opts.public_address_from:
        wait = max(1.0, ctx.timeout_s - opts.sample_s - 1.0)
        public = await public_address(opts.public_address_from, wait)
    mem, swap = psutil.virtual_memory(), psutil.swap_memory()
    load = os.getloadavg()
    return HostMeasurement(
        hostname=socket.gethostname(),
        cpu_count=psutil.cpu_count() or 1,
        cpu_pct=cpu_pct,
        load_1=load[0],
        load_5=load[1],
        load_15=load[2],
        memory_total_bytes=mem.total,
        memory_available_bytes=mem.available,
        memory_used_pct=mem.percent,
        swap_used_pct=swap.percent,
        uptime_s=time.time() - psutil.boot_time(),
        interfaces=nics,
        gateway=gateway,
        public_address=public,
    )


def _busy_pct(a: object, b: object) -> float:
    """Share of CPU time not idle (idle + iowait) between two psutil cpu_times snapshots."""
    fields = [f for f in a._fields]  # type: ignore[attr-defined]
    total = sum(getattr(b, f) - getattr(a, f) for f in fields if f not in ("guest", "guest_nice"))
    idle = sum(getattr(b, f) - getattr(a, f) for f in ("idle", "iowait") if f in fields)
    return round(100.0 * (total - idle) / total, 2) if total > 0 else 0.0
