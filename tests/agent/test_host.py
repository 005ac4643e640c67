"""`host` probe: /proc parsers, the OUI vendor lookup, and a real run on this host."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from agent.probes import run_probe
from agent.probes.host import (
    default_route,
    mac_vendor,
    parse_proc_arp,
    parse_proc_ipv6_route,
    parse_proc_route,
)

ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""

ARP = """IP address       HW type     Flags       HW address            Mask     Device
192.0.2.1        0x1         0x2         00:00:0C:07:AC:01     *        eth0
192.0.2.7        0x1         0x0         00:00:00:00:00:00     *        eth0
"""


def test_default_route_with_lowest_metric() -> None:
    r = parse_proc_route(ROUTE)
    assert r is not None and (r.interface, r.gateway, r.metric) == ("eth0", "192.0.2.1", 100)
    assert parse_proc_route(ROUTE.splitlines()[0] + "\n") is None


ROUTE6 = (
    "fd000000000000000000000000000000 40 " + "0" * 32 + " 00 " + "0" * 32
    + " 00000100 00000001 00000000 00000001     eth0\n"
    + "0" * 32 + " 00 " + "0" * 32 + " 00 fd000000000000000000000000000001"
    + " 00000400 00000003 00000000 00000003     eth0\n"
    + "0" * 32 + " 00 " + "0" * 32 + " 00 fe800000000000000000000000000001"
    + " 00000064 00000003 00000000 00000003     wlan0\n"
)  # fmt: skip


def test_ipv6_default_route_with_lowest_metric() -> None:
    r = parse_proc_ipv6_route(ROUTE6)
    assert r is not None and (r.interface, r.gateway, r.metric) == ("wlan0", "fe80::1", 100)
    assert parse_proc_ipv6_route(ROUTE6.splitlines()[0]) is None


def test_arp_entry_and_incomplete_entry() -> None:
    assert parse_proc_arp(ARP, "192.0.2.1") == "00:00:0c:07:ac:01"
    assert parse_proc_arp(ARP, "192.0.2.7") is None
    assert parse_proc_arp(ARP, "192.0.2.99") is None


def test_vendor_from_the_ieee_registry() -> None:
    assert mac_vendor("00:00:0c:07:ac:01") == "Cisco Systems, Inc"
    assert mac_vendor("b8:27:eb:12:34:56") == "Raspberry Pi Foundation"
    assert mac_vendor("02:fc:00:00:00:05") is None  # locally administered
    assert mac_vendor("not a mac") is None


async def test_host_probe_reports_this_host() -> None:
    r = await run_probe("host", "local", {"sample_s": 0.2})
    assert r.success, r.error
    m = r.measurement
    assert m is not None
    assert m["cpu_count"] == os.cpu_count()
    assert 0.0 <= m["cpu_pct"] <= 100.0
    assert m["memory_total_bytes"] > m["memory_available_bytes"] > 0
    assert m["interfaces"], "no NIC reported"
    assert all(n["rx_errors"] >= 0 and n["mtu"] > 0 for n in m["interfaces"])
    gw = default_route()
    assert (m["gateway"] or {}).get("address") == (gw.gateway if gw else None)


async def test_unknown_interface_is_a_clear_failure() -> None:
    r = await run_probe("host", "local", {"sample_s": 0.1, "interfaces": ["nosuch0"]})
    assert not r.success and r.error is not None
    assert r.error.message == "no such interface: nosuch0"


def test_public_address_as_the_responder_sees_it(tmp_path: Path) -> None:
    from agent.cli.stack import Stack, free_port

    stack = Stack(tmp_path)
    port = free_port(socket.SOCK_DGRAM)
    args = ["--bind", "127.0.0.1", "--natprobe-port", str(port)]
    args += [
        a
        for f in ("--twamp-port", "--bandwidth-port", "--sip-port", "--sip-tls-port")
        for a in (f, "off")
    ]
    try:
        stack.start_responder(args, lambda: "responder ready" in stack.log_tail("responder"))
        ok = asyncio.run(
            run_probe(
                "host", "local", {"sample_s": 0.1, "public_address_from": f"127.0.0.1:{port}"}
            )
        )
        assert ok.success, ok.error
        assert ok.measurement is not None and ok.measurement["public_address"] == "127.0.0.1"
    finally:
        stack.close()
    gone = asyncio.run(
        run_probe("host", "local", {"sample_s": 0.1, "public_address_from": f"127.0.0.1:{port}"})
    )
    assert not gone.success and gone.error is not None
    assert gone.error.message in (
        f"nothing listens at 127.0.0.1:{port} (connection refused)",
        f"no answer from the NAT-binding service at 127.0.0.1:{port}",
    )
