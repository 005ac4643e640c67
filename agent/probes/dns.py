"""`dns` probe: resolution time and answers, and SIP server discovery (RFC 3263) via NAPTR/SRV.

`mode: resolve` asks for each record type (A and AAAA by default) and reports the time of
each query. `mode: sip` follows RFC 3263 §4: NAPTR records of the domain pick transports
(SIP+D2U, SIP+D2T, SIPS+D2T) and SRV names; without NAPTR the well-known SRV names
(_sip._udp, _sip._tcp, _sips._tcp) are tried; SRV targets are ordered by priority and
weight and resolved to addresses; without SRV the domain's own A/AAAA on 5060 is the server.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.dnsutil import SIP_SRV_PREFIXES, resolver, srv_order
from agent.errors import ConfigError, ProbeError, ResolveError
from agent.probes import ProbeContext, Target, register
from agent.wire.net import DnsMeasurement, DnsQuery, SipServer

NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls", "SIP+D2S": "sctp"}
SRV_NAMES = [(prefix, transport) for transport, prefix in SIP_SRV_PREFIXES.items()]


class DnsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["resolve", "sip"] = "resolve"
    record_types: list[str] = Field(default_factory=lambda: ["A", "AAAA"], min_length=1)
    server: str | None = Field(default=None, description="name server address; None: system")
    server_port: int = Field(default=53, ge=1, le=65535)
    timeout_s: float = Field(default=3.0, gt=0, le=30, description="per query")
    tcp: bool = False


def _estimate_timeout(o: DnsOptions) -> float:
    return o.timeout_s * (12 if o.mode == "sip" else len(o.record_types)) + 5.0


class _Asker:
    def __init__(self, opts: DnsOptions) -> None:
        self.resolver = resolver(opts.server, opts.server_port, opts.timeout_s)
        self.tcp = opts.tcp
        self.queries: list[DnsQuery] = []

    @property
    def server(self) -> str:
        return str(self.resolver.nameservers[0]) if self.resolver.nameservers else "?"

    async def ask(self, name: str, rdtype: str) -> list:
        import dns.exception
        import dns.resolver

        t0 = time.perf_counter()
        rcode, answers, ttl, records = "NOERROR", [], None, []
        try:
            ans = await self.resolver.resolve(name, rdtype, tcp=self.tcp, search=False)
            records = list(ans)
            answers = [r.to_text() for r in records]
            ttl = ans.rrset.ttl if ans.rrset is not None else None
        except dns.resolver.NXDOMAIN:
            rcode = "NXDOMAIN"
        except dns.resolver.NoAnswer:
            rcode = "NOERROR (no answer)"
        except dns.resolver.NoNameservers as exc:
            rcode = "SERVFAIL"
            if not self.queries and "REFUSED" in str(exc):
                rcode = "REFUSED"
        except dns.exception.Timeout:
            raise ResolveError(
                f"no answer from name server {self.server} for {name} {rdtype} "
                f"within {self.resolver.lifetime:g} s"
            ) from None
        except dns.exception.DNSException as exc:
            raise ResolveError(f"{name} {rdtype}: {exc}") from None
        self.queries.append(
            DnsQuery(name=name, type=rdtype, rcode=rcode, answers=answers, ttl=ttl,
                     time_ms=(time.perf_counter() - t0) * 1000.0)
        )  # fmt: skip
        return records

    async def addresses(self, host: str) -> list[str]:
        out: list[str] = []
        for t in ("A", "AAAA"):
            out += [r.address for r in await self.ask(host, t)]
        return out


async def discover_sip(asker: _Asker, domain: str) -> list[SipServer]:
    """RFC 3263 §4.1-4.2: NAPTR -> SRV -> A/AAAA, in the order a SIP client would try."""
    servers: list[SipServer] = []
    srv_names: list[tuple[str, str, Literal["naptr", "srv"]]] = []
    naptrs = await asker.ask(domain, "NAPTR")
    for r in sorted(naptrs, key=lambda r: (r.order, r.preference)):
        service = r.service.decode().upper() if isinstance(r.service, bytes) else str(r.service)
        transport = NAPTR_SERVICES.get(service.upper())
        if transport and r.flags.lower() in (b"s", "s"):
            srv_names.append((str(r.replacement).rstrip(".") + ".", transport, "naptr"))
    if not srv_names:
        srv_names = [(prefix + domain.rstrip(".") + ".", t, "srv") for prefix, t in SRV_NAMES]
    for name, transport, via in srv_names:
        srvs = await asker.ask(name, "SRV")
        for s in srv_order(srvs):
            host = str(s.target).rstrip(".")
            servers.append(
                SipServer(transport=transport, host=host, port=s.port, priority=s.priority,
                          weight=s.weight, addresses=await asker.addresses(host), via=via)
            )  # fmt: skip
    if not servers:
        addrs = await asker.addresses(domain)
        if addrs:
            servers.append(SipServer(transport="udp", host=domain, port=5060, priority=None,
                                     weight=None, addresses=addrs, via="a"))  # fmt: skip
    return servers


@register("dns", DnsOptions, estimate_timeout=_estimate_timeout)
async def probe_dns(target: Target, opts: DnsOptions, ctx: ProbeContext) -> DnsMeasurement:
    import dns.rdatatype

    for t in opts.record_types:
        try:
            dns.rdatatype.from_text(t)
        except dns.rdatatype.UnknownRdatatype:
            raise ConfigError(f"dns options: unknown record type {t!r}") from None
    asker = _Asker(opts)
    name = target.host
    sip_servers = None
    if opts.mode == "sip":
        sip_servers = await discover_sip(asker, name)
    else:
        for t in opts.record_types:
            await asker.ask(name, t.upper())
    m = DnsMeasurement(
        server=asker.server,
        name=name,
        queries=asker.queries,
        resolution_ms=sum(q.time_ms for q in asker.queries),
        sip_servers=sip_servers,
    )
    if opts.mode == "resolve" and not any(q.answers for q in asker.queries):
        rcodes = ", ".join(f"{q.type} {q.rcode}" for q in asker.queries)
        raise ResolveError(f"{name} did not resolve ({rcodes})", measurement=m)
    if opts.mode == "sip" and not sip_servers:
        raise ProbeError(
            f"no SIP server found for {name} (no NAPTR, SRV or address)", measurement=m
        )
    return m
