"""DNS pieces shared by the `dns` probe and the SIP client: a resolver that asks a chosen
name server (or the system's), and the SRV names and order of SIP servers (RFC 3263, 2782)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# SRV name prefix of each SIP transport (RFC 3263 §4.1), in the order a client tries them
SIP_SRV_PREFIXES = {"udp": "_sip._udp.", "tcp": "_sip._tcp.", "tls": "_sips._tcp."}


def resolver(server: str | None, port: int, timeout_s: float) -> Any:
    """A dnspython async resolver asking `server`:`port`, or the system's name servers
    (/etc/resolv.conf) when `server` is None; `timeout_s` bounds each lookup."""
    import dns.asyncresolver

    r = dns.asyncresolver.Resolver(configure=server is None)
    if server is not None:
        r.nameservers = [server]
        r.port = port
    r.lifetime = r.timeout = timeout_s
    return r


def srv_order(records: Iterable[Any]) -> list[Any]:
    """SRV records in the order to try them: lowest priority first, then highest weight
    (deterministic, where RFC 2782 draws by weight at random)."""
    return sorted(records, key=lambda r: (r.priority, -r.weight))
