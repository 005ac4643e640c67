"""RFC 3263 server location for the SIP probes, against a real DNS server and our SIP
responder on loopback: SRV per transport in priority order, a target without an address
skipped, explicit ports and IP literals used as they are, the way found reported."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent.errors import ConfigError
from agent.probes import run_probe
from agent.probes.sip_common import name_server
from agent.sip import client
from agent.sip.uas import SipUas
from tests.net.dnsserver import ZoneServer

ZONE = """
$TTL 300
@        IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 60
@        IN NS  ns.example.test.
pbx      IN A   127.0.0.1
nosrv    IN A   127.0.0.2
_sip._udp  IN SRV 5 0 5060 gone.example.test.
_sip._udp  IN SRV 10 10 {port} pbx.example.test.
_sip._udp  IN SRV 10 90 {port} pbx.example.test.
_sip._tcp  IN SRV 10 0 {port} pbx.example.test.
"""


@pytest.fixture
async def uas() -> AsyncIterator[SipUas]:
    u = SipUas("127.0.0.1", 0)
    await u.start()
    yield u
    await u.stop()


def _opts(srv: ZoneServer, **kw: object) -> dict[str, object]:
    return {"dns_server": f"127.0.0.1:{srv.port}", **kw}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_options_to_a_bare_domain_follows_its_srv_records(
    uas: SipUas, transport: str
) -> None:
    with ZoneServer("example.test.", ZONE.format(port=uas.port)) as srv:
        r = await run_probe("sip_options", "sip:example.test", _opts(srv, transport=transport))
    assert r.success, r.error
    m = r.measurement or {}
    assert m["status_code"] == 200 and m["address"] == f"127.0.0.1:{uas.port}"
    name = "_sip._udp.example.test." if transport == "udp" else "_sip._tcp.example.test."
    weight = 90 if transport == "udp" else 0  # udp: priority 5 has no address; weight 90 first
    assert m["resolved_via"] == (
        f"SRV {name} -> pbx.example.test:{uas.port} (priority 10, weight {weight})"
    )


async def test_explicit_port_and_literal_address_skip_srv() -> None:
    with ZoneServer("example.test.", ZONE.format(port=5999)) as srv:
        dns = ("127.0.0.1", srv.port)
        t = await client.resolve("sip:alice@pbx.example.test:5070", "udp", dns_server=dns)
        assert (t.addr, t.via, srv.queries) == (("127.0.0.1", 5070), "A/AAAA", 1)
        t = await client.resolve("sip:nosrv.example.test;transport=tcp", "udp", dns_server=dns)
        assert (t.addr, t.transport, t.via) == (("127.0.0.2", 5060), "tcp", "A/AAAA")
        before = srv.queries
        t = await client.resolve("sips:[::1]", "udp", dns_server=dns)
        assert (t.addr, t.transport, t.via) == (("::1", 5061), "tls", "address")
        assert srv.queries == before  # an address asks nobody
        with pytest.raises(LookupError, match=r"nothere\.example\.test does not resolve"):
            await client.resolve("sip:nothere.example.test", "udp", dns_server=dns)


def test_name_server_option_is_checked() -> None:
    assert name_server("192.0.2.53") == ("192.0.2.53", 53)
    assert name_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert name_server("[2001:db8::53]:5353") == ("2001:db8::53", 5353)
    assert name_server("2001:db8::53") == ("2001:db8::53", 53)
    for bad in ("127.0.0.1:dns", "[::1", ":53", "127.0.0.1:70000"):
        with pytest.raises(ValueError, match="must be HOST, HOST:PORT or"):
            name_server(bad)


async def test_bad_name_server_option_names_the_key() -> None:
    with pytest.raises(ConfigError, match="dns_server"):
        await run_probe("sip_options", "sip:example.test", {"dns_server": "ns:none"})
