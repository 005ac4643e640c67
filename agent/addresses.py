"""Address resolution shared by the probes and the responder: literal addresses as they are,
names through the event loop's getaddrinfo, and the normal form raw-socket probes match on."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from agent.errors import ResolveError


async def resolve(host: str, port: int, kind: int = socket.SOCK_DGRAM) -> tuple[int, tuple]:
    """(family, sockaddr) for host: literal addresses as they are, names via getaddrinfo."""
    try:
        ip = ipaddress.ip_address(host)
        fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return fam, ((host, port, 0, 0) if ip.version == 6 else (host, port))
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=kind)
    except socket.gaierror:
        raise ResolveError(f"host name {host!r} does not resolve") from None
    fam, _, _, _, sockaddr = infos[0]
    return fam, sockaddr


async def resolve_ip(host: str) -> tuple[int, str]:
    """(family, address) for the raw-socket probes: an IPv4-mapped IPv6 address as the IPv4
    one, and the text in the form the kernel reports answers from (so a reply from the
    destination is recognised); a scoped link-local address keeps its scope."""
    _, sockaddr = await resolve(host, 0)
    text = sockaddr[0]
    ip = ipaddress.ip_address(text.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return family, (text if "%" in text else str(ip))


def hostport(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
