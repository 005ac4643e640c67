"""The dns probe against a real DNS server on loopback: answers, timing, RFC 3263 SIP discovery."""

from __future__ import annotations

import pytest
from dnsserver import ZoneServer

from agent.probes import run_probe

ZONE = """
$TTL 300
@        IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 60
@        IN NS  ns.example.test.
ns       IN A   127.0.0.1
pbx      IN A   192.0.2.10
pbx      IN AAAA 2001:db8::10
pbx2     IN A   192.0.2.11
@        IN NAPTR 10 50 "s" "SIPS+D2T" "" _sips._tcp.example.test.
@        IN NAPTR 20 50 "s" "SIP+D2U" "" _sip._udp.example.test.
_sips._tcp IN SRV 10 60 5061 pbx.example.test.
_sip._udp  IN SRV 10 60 5060 pbx.example.test.
_sip._udp  IN SRV 20 10 5060 pbx2.example.test.
srvonly    IN A 192.0.2.20
_sip._tcp.srvonly IN SRV 5 0 5070 pbx2.example.test.
"""


def opts(server: ZoneServer, **kw: object) -> dict:
    return {"server": "127.0.0.1", "server_port": server.port, "timeout_s": 2, **kw}


async def test_resolution_reports_answers_ttl_and_the_time_each_query_took() -> None:
    with ZoneServer("example.test.", ZONE, delay_s=0.05) as srv:
        res = await run_probe("dns", "pbx.example.test", opts(srv))
    assert res.success, res.error
    m = res.measurement or {}
    by_type = {q["type"]: q for q in m["queries"]}
    assert by_type["A"]["answers"] == ["192.0.2.10"]
    assert by_type["AAAA"]["answers"] == ["2001:db8::10"]
    assert by_type["A"]["ttl"] == 300
    assert all(50 <= q["time_ms"] < 1000 for q in m["queries"])  # the server waits 50 ms
    assert m["resolution_ms"] == pytest.approx(sum(q["time_ms"] for q in m["queries"]))


async def test_sip_discovery_follows_naptr_order_then_srv_priority() -> None:
    with ZoneServer("example.test.", ZONE) as srv:
        res = await run_probe("dns", "example.test", opts(srv, mode="sip"))
    assert res.success, res.error
    servers = (res.measurement or {})["sip_servers"]
    assert [(s["transport"], s["host"], s["port"], s["via"]) for s in servers] == [
        ("tls", "pbx.example.test", 5061, "naptr"),
        ("udp", "pbx.example.test", 5060, "naptr"),
        ("udp", "pbx2.example.test", 5060, "naptr"),
    ]
    assert servers[0]["addresses"] == ["192.0.2.10", "2001:db8::10"]


async def test_sip_discovery_without_naptr_tries_the_well_known_srv_names() -> None:
    with ZoneServer("example.test.", ZONE) as srv:
        res = await run_probe("dns", "srvonly.example.test", opts(srv, mode="sip"))
    servers = (res.measurement or {})["sip_servers"]
    assert [(s["transport"], s["port"], s["via"]) for s in servers] == [("tcp", 5070, "srv")]


async def test_a_name_that_does_not_exist_fails_as_a_dns_error_with_the_rcode() -> None:
    with ZoneServer("example.test.", ZONE) as srv:
        res = await run_probe("dns", "nope.example.test", opts(srv))
    assert not res.success and res.error is not None
    assert res.error.category == "dns"
    assert "NXDOMAIN" in res.error.message


async def test_a_silent_server_is_a_timeout_naming_the_server() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        res = await run_probe(
            "dns",
            "pbx.example.test",
            {"server": "127.0.0.1", "server_port": port, "timeout_s": 0.5},
        )
    assert not res.success and res.error is not None
    assert "no answer from name server 127.0.0.1" in res.error.message


async def test_unknown_record_types_are_a_config_error() -> None:
    res = await run_probe("dns", "example.test", {"record_types": ["BOGUS"]})
    assert res.error is not None and "unknown record type 'BOGUS'" in res.error.message
