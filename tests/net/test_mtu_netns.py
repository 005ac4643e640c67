"""The mtu probe on namespace links: a 1400-byte hop behind a router, with and without ICMP."""

from __future__ import annotations

import struct

import netlab
import pytest
from conftest import probe_in

from agent.probes.mtu import checksum, classify, classify6, echo_request, echo_request6

pytestmark = pytest.mark.netns


def _narrow_r_to_b(lab: netlab.NetLab, mtu: int) -> None:
    lab.run_in("r", ["ip", "link", "set", lab.iface("r", "b"), "mtu", str(mtu)])
    lab.run_in("b", ["ip", "link", "set", lab.iface("b", "r"), "mtu", str(mtu)])


def test_path_mtu_is_found_from_the_routers_frag_needed(rlab: netlab.NetLab) -> None:
    _narrow_r_to_b(rlab, 1400)
    for _ in range(2):  # the second run must not be fooled by the kernel's learned PMTU
        res = probe_in(rlab, "a", "mtu", rlab.addr("b"), {"timeout_s": 0.5}, realtime=True)
        assert res["success"], res["error"]
        m = res["measurement"]
        assert (m["path_mtu"], m["local_mtu"]) == (1400, 1500)
        assert m["frag_needed_mtu"] == 1400 and m["frag_needed_from"] == "10.77.1.254"
        assert m["pmtu_blackhole"] is False


def test_a_path_that_drops_frag_needed_is_reported_as_a_black_hole(rlab: netlab.NetLab) -> None:
    _narrow_r_to_b(rlab, 1280)
    rlab.nft_loss(
        "r", rlab.iface("r", "a"), 100.0, "out", match="icmp type destination-unreachable"
    )
    res = probe_in(
        rlab, "a", "mtu", rlab.addr("b"), {"timeout_s": 0.3, "attempts": 1}, realtime=True
    )
    m = res["measurement"]
    assert m["path_mtu"] == 1280
    assert m["frag_needed_mtu"] is None
    assert m["pmtu_blackhole"] is True


def test_ipv6_path_mtu_is_found_from_the_routers_packet_too_big(rlab: netlab.NetLab) -> None:
    b6 = rlab.add_ipv6()["b"]
    _narrow_r_to_b(rlab, 1400)
    for _ in range(2):  # the second run must not be fooled by the kernel's learned PMTU
        res = probe_in(rlab, "a", "mtu", b6, {"timeout_s": 0.5}, realtime=True)
        assert res["success"], res["error"]
        m = res["measurement"]
        assert (m["address"], m["path_mtu"], m["local_mtu"]) == (b6, 1400, 1500)
        assert m["frag_needed_mtu"] == 1400 and m["frag_needed_from"] == "fd77:1::fe"
        assert m["pmtu_blackhole"] is False
        assert min(int(k) for k in m["sizes"]) == 1280  # IPv6 links carry 1280 at least


def test_ipv6_path_that_drops_packet_too_big_is_a_black_hole(rlab: netlab.NetLab) -> None:
    b6 = rlab.add_ipv6()["b"]
    _narrow_r_to_b(rlab, 1300)
    rlab.nft_loss("r", rlab.iface("r", "a"), 100.0, "out", match="icmpv6 type packet-too-big")
    res = probe_in(rlab, "a", "mtu", b6, {"timeout_s": 0.3, "attempts": 1}, realtime=True)
    m = res["measurement"]
    assert res["success"], res["error"]
    assert (m["path_mtu"], m["frag_needed_mtu"], m["pmtu_blackhole"]) == (1300, None, True)


def test_echo_requests_carry_a_valid_checksum_and_replies_are_matched() -> None:
    pkt = echo_request(0x1234, 7, 100)
    assert checksum(pkt) == 0 and len(pkt) == 108
    ip = bytes([0x45]) + bytes(19)
    assert classify(ip + b"\x00\x00\x00\x00" + struct.pack("!HH", 0x1234, 7), 0x1234) == (
        "reply", 7, None)  # fmt: skip
    frag = b"\x03\x04\x00\x00\x00\x00" + struct.pack("!H", 1400) + ip + pkt[:8]
    assert classify(ip + frag, 0x1234) == ("frag", 7, 1400)
    assert classify(ip + frag, 0x9999) is None
    assert classify(b"\x45", 1) is None


def test_icmpv6_replies_and_packet_too_big_are_matched() -> None:
    req = echo_request6(0x1234, 9, 100)
    assert len(req) == 108 and req[0] == 128
    assert classify6(b"\x81\x00\x00\x00" + struct.pack("!HH", 0x1234, 9), 0x1234) == (
        "reply", 9, None)  # fmt: skip
    ip6 = bytes([0x60, 0, 0, 0, 0, 108, 58, 64]) + bytes(32)  # next header 58: ICMPv6
    ptb = b"\x02\x00\x00\x00" + struct.pack("!I", 1400) + ip6 + req[:8]
    assert classify6(ptb, 0x1234) == ("frag", 9, 1400)
    assert classify6(ptb, 0x9999) is None
    udp6 = bytes([0x60, 0, 0, 0, 0, 108, 17, 64]) + bytes(32)  # a quoted UDP packet: not ours
    assert classify6(b"\x02\x00\x00\x00" + struct.pack("!I", 1400) + udp6 + req[:8], 0x1234) is None
    assert classify6(b"\x87\x00\x00\x00\x00\x00\x00\x00", 0x1234) is None  # neighbour solicitation
    assert classify6(b"\x81", 1) is None
