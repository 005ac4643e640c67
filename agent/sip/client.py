"""The agent's SIP client: open an endpoint towards a server, OPTIONS and REGISTER with auth.

Times are RFC 6076 style: from the first transmission of a request to its final response.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

from agent.dnsutil import SIP_SRV_PREFIXES, resolver, srv_order
from agent.sip.auth import DigestClient
from agent.sip.dialog import Leg
from agent.sip.endpoint import SipEndpoint
from agent.sip.headers import NameAddr, SipUri
from agent.sip.message import SipMessage, SipParseError, is_number
from agent.sip.transport import Addr, StreamTransport, UdpTransport
from agent.tls import client_context

DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


@dataclass
class SipTarget:
    """Where requests go: the URI as given, the resolved address and the transport."""

    uri: str
    addr: Addr
    transport: str
    host: str
    via: str = "address"  # how addr was found: "address", "A/AAAA" or "SRV <name> -> ..."

    @property
    def domain_uri(self) -> str:
        u = SipUri.parse(self.uri)
        return f"{u.scheme}:{u.host}" + (f":{u.port}" if u.port else "")


DNS_TIMEOUT_S = 3.0


async def resolve(
    uri: str, transport: str, port: int | None = None, dns_server: Addr | None = None
) -> SipTarget:
    """Find the server of a sip:/sips: URI as RFC 3263 §4.2 says for a known transport:
    an IP address or an explicit port is used as it is (A/AAAA for a name); otherwise the
    SRV records of the transport (`_sip._udp.`, `_sip._tcp.`, `_sips._tcp.` + domain) are
    tried in priority order, highest weight first, and without any the domain's own address
    on the default port. `dns_server` (host, port) asks that name server instead of the
    system's (its answers then serve the address lookups too)."""
    if not uri.lower().startswith(("sip:", "sips:")):
        uri = f"sip:{uri}"
    parsed = SipUri.parse(uri)
    t = (parsed.params.get("transport") or transport).lower()
    if parsed.scheme == "sips":
        t = "tls"
    if t not in DEFAULT_PORTS:
        raise SipParseError(f"transport {t!r} is not udp, tcp or tls")
    explicit = port or parsed.port
    if _is_ip(parsed.host):
        return SipTarget(uri, (parsed.host, explicit or DEFAULT_PORTS[t]), t, parsed.host)
    note = ""
    if explicit is None:
        name = SIP_SRV_PREFIXES[t] + parsed.host.rstrip(".") + "."
        try:
            records = await _srv(name, dns_server)
        except LookupError as exc:  # broken DNS: the plain address may still resolve
            records, note = [], f" (SRV lookup failed: {exc})"
        for prio, weight, srv_port, srv_host in records:
            try:
                addr = await _address(srv_host, srv_port, dns_server)
            except LookupError:
                continue
            via = f"SRV {name} -> {srv_host}:{srv_port} (priority {prio}, weight {weight})"
            return SipTarget(uri, (addr, srv_port), t, parsed.host, via)
        if records:
            raise LookupError(f"no SRV target of {name} resolves to an address")
    p = explicit or DEFAULT_PORTS[t]
    addr = await _address(parsed.host, p, dns_server)
    return SipTarget(uri, (addr, p), t, parsed.host, "A/AAAA" + note)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def _resolver(dns_server: Addr | None) -> Any:
    host, port = dns_server if dns_server is not None else (None, 53)
    return resolver(host, port, DNS_TIMEOUT_S)


async def _srv(name: str, dns_server: Addr | None) -> list[tuple[int, int, int, str]]:
    """(priority, weight, port, target) of `name`, in the order to try; [] when none."""
    import dns.exception
    import dns.resolver

    try:
        ans = await _resolver(dns_server).resolve(name, "SRV", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.Timeout:
        raise LookupError(f"no answer for {name} within {DNS_TIMEOUT_S:g} s") from None
    except dns.exception.DNSException as exc:
        raise LookupError(str(exc) or type(exc).__name__) from None
    return [
        (r.priority, r.weight, r.port, str(r.target).rstrip("."))
        for r in srv_order(ans)
        if str(r.target) != "."  # "." means: no such service here (RFC 2782)
    ]


async def _address(host: str, port: int, dns_server: Addr | None) -> str:
    if dns_server is None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise LookupError(f"{host} does not resolve: {exc.strerror}") from None
        return str(infos[0][4][0])
    import dns.exception

    resolver = _resolver(dns_server)
    for rdtype in ("A", "AAAA"):
        try:
            ans = await resolver.resolve(host, rdtype, search=False)
        except dns.exception.DNSException:
            continue
        for r in ans:
            return str(r.address)
    raise LookupError(f"{host} does not resolve at name server {dns_server[0]}:{dns_server[1]}")


async def open_endpoint(
    target: SipTarget, *, tls_verify: bool = True, bind_host: str | None = None
) -> SipEndpoint:
    """A client endpoint on an ephemeral port, connected for TCP/TLS."""
    family_any = "::" if ":" in target.addr[0] else "0.0.0.0"
    host = bind_host or family_any
    endpoint: SipEndpoint
    if target.transport == "udp":
        endpoint = SipEndpoint(await UdpTransport.bind(lambda *a: None, host, 0))
        return endpoint
    # OpenSSL loads with the first SIP over TLS; the context is made once and kept
    ctx = client_context(tls_verify) if target.transport == "tls" else None
    st = StreamTransport(lambda *a: None, client_ssl=ctx, tls=target.transport == "tls")
    endpoint = SipEndpoint(st)
    await st.connect(target.addr, server_hostname=target.host)
    return endpoint


def contact_uri(endpoint: SipEndpoint, target: SipTarget, user: str) -> str:
    hp = endpoint.contact_hostport(target.addr)
    scheme = "sips" if target.transport == "tls" else "sip"
    tparam = "" if target.transport == "udp" else f";transport={target.transport}"
    return f"{scheme}:{user}@{hp}{tparam}"


@dataclass
class OptionsResult:
    status_code: int
    reason: str
    rtt_ms: float
    public_address: str | None
    server: str | None
    response: SipMessage = field(repr=False)
    request: SipMessage = field(repr=False)


async def send_options(
    endpoint: SipEndpoint, target: SipTarget, user: str = "qos-scout"
) -> OptionsResult:
    local = f"sip:{user}@{target.host}"
    leg = Leg(local, target.uri, contact_uri(endpoint, target, user))
    msg = leg.request("OPTIONS", endpoint.via_for(target.addr))
    msg.add("Accept", "application/sdp")
    sent = asyncio.get_running_loop().time()
    resp, arrived = await endpoint.request(msg, target.addr)
    return OptionsResult(
        resp.status or 0,
        resp.reason,
        (arrived - sent) * 1000.0,
        _fmt_addr(endpoint.public_address),
        resp.get("Server") or resp.get("User-Agent"),
        resp,
        msg,
    )


@dataclass
class RegisterResult:
    status_code: int
    reason: str
    rrd_ms: float
    auth_used: bool
    auth_ok: bool | None
    expires_s: int | None
    public_address: str | None
    challenges: int
    leg: Leg = field(repr=False)
    digest: DigestClient = field(repr=False)


async def register(
    endpoint: SipEndpoint,
    target: SipTarget,
    *,
    user: str,
    password: str | None,
    expires: int = 300,
    previous: RegisterResult | None = None,
) -> RegisterResult:
    """REGISTER (answering up to two challenges); RRD from the first REGISTER to the final
    response of the last one (RFC 6076 RRD).

    With `previous` (an earlier registration of the same binding) the Call-ID and CSeq
    sequence go on, and its nonce is reused at once with the next `nc` (RFC 7616 §3.4);
    a server that no longer accepts the nonce challenges again.
    """
    aor = f"sip:{user}@{target.host}"
    contact = contact_uri(endpoint, target, user)
    leg = previous.leg if previous is not None else Leg(aor, aor, contact)
    auth = previous.digest if previous is not None else DigestClient(user, password or "")
    preemptive = bool(auth.challenge)
    start = asyncio.get_running_loop().time()
    challenges = 0
    while True:
        msg = leg.request("REGISTER", endpoint.via_for(target.addr), uri=target.domain_uri)
        msg.set("To", f"<{aor}>")
        msg.add("Expires", str(expires))
        if auth.challenge:
            msg.add(auth.header_name, auth.authorization("REGISTER", target.domain_uri))
        resp, arrived = await endpoint.request(msg, target.addr)
        status = resp.status or 0
        retry = challenges == 0 or (challenges == 1 and _stale(resp))
        if status in (401, 407) and password is not None and retry:
            header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            auth.on_challenge(status, resp.get_all(header))
            challenges += 1
            continue
        break
    granted = _granted_expiry(resp, contact) if 200 <= status < 300 else None
    auth_ok: bool | None
    if challenges or preemptive:
        auth_ok = 200 <= status < 300
    else:
        auth_ok = None if status not in (401, 407) else False
    return RegisterResult(
        status,
        resp.reason,
        (arrived - start) * 1000.0,
        challenges > 0 or preemptive,
        auth_ok,
        granted,
        _fmt_addr(endpoint.public_address),
        challenges,
        leg,
        auth,
    )


def _stale(resp: SipMessage) -> bool:
    return any(
        "stale=true" in v.lower().replace('"', "")
        for v in resp.get_all("WWW-Authenticate") + resp.get_all("Proxy-Authenticate")
    )


def _granted_expiry(resp: SipMessage, contact: str) -> int | None:
    for c in resp.get_all("Contact"):
        na = NameAddr.parse(c)
        exp = na.params.get("expires")
        if exp and is_number(exp) and _same_contact(na.uri, contact):
            return int(exp)
    value = resp.get("Expires")
    return int(value) if value and is_number(value.strip()) else None


def _same_contact(a: str, b: str) -> bool:
    try:
        ua, ub = SipUri.parse(a), SipUri.parse(b)
    except SipParseError:
        return False
    return (ua.user, ua.port) == (ub.user, ub.port)


def _fmt_addr(addr: Addr | None) -> str | None:
    if addr is None:
        return None
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
