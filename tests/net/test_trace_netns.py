"""The trace probe through a router namespace: hops, per-hop loss, and where loss starts.

The lab's namespaces never rate-limit ICMP (netlab.ICMP_UNLIMITED): a hop's loss is the lab's.
"""

from __future__ import annotations

import struct

import netlab
import pytest
from conftest import probe_in

from agent.probes.trace import loss_origin, match_icmp, match_icmp6

pytestmark = pytest.mark.netns


def test_loss_on_the_second_link_is_located_at_hop_two(rlab: netlab.NetLab) -> None:
    rlab.nft_loss("r", rlab.iface("r", "b"), 30.0, "out", match="meta l4proto icmp", regular=True)
    opts = {"rounds": 40, "interval_s": 0.02, "timeout_s": 0.15}
    res = probe_in(rlab, "a", "trace", rlab.addr("b"), opts, realtime=True)
    assert res["success"], res["error"]
    m = res["measurement"]
    assert m["reached"] is True
    assert [h["address"] for h in m["hops"]] == ["10.77.1.254", "10.77.2.1"]
    assert m["hops"][0]["loss_pct"] == 0.0
    assert 10.0 <= m["hops"][1]["loss_pct"] <= 55.0
    assert m["loss_starts_at_hop"] == 2
    assert m["hops"][1]["is_destination"] and m["hops"][0]["rtt_ms"]["median"] > 0


@pytest.mark.parametrize("mode", ["udp", "tcp"])
def test_udp_and_tcp_modes_find_the_same_hops(rlab: netlab.NetLab, mode: str) -> None:
    opts = {"mode": mode, "rounds": 3, "interval_s": 0.05, "timeout_s": 0.5}
    res = probe_in(rlab, "a", "trace", rlab.addr("b"), opts, realtime=True)
    assert res["success"], res["error"]
    m = res["measurement"]
    assert m["reached"] is True
    assert [h["address"] for h in m["hops"]] == ["10.77.1.254", "10.77.2.1"]
    assert all(h["loss_pct"] == 0.0 for h in m["hops"])
    assert m["loss_starts_at_hop"] is None


@pytest.mark.parametrize("mode", ["icmp", "udp", "tcp"])
def test_ipv6_paths_are_traced_in_every_mode(rlab: netlab.NetLab, mode: str) -> None:
    v6 = rlab.add_ipv6()
    if mode == "icmp":  # and loss on the second link is located there, as on IPv4
        match = "meta l4proto ipv6-icmp"
        rlab.nft_loss("r", rlab.iface("r", "b"), 30.0, "out", match=match, regular=True)
    rounds = 40 if mode == "icmp" else 3
    opts = {"mode": mode, "rounds": rounds, "interval_s": 0.02, "timeout_s": 0.3}
    res = probe_in(rlab, "a", "trace", v6["b"], opts, realtime=True)
    assert res["success"], res["error"]
    m = res["measurement"]
    assert m["reached"] is True and m["address"] == v6["b"]
    assert [h["address"] for h in m["hops"]] == [v6["r"], v6["b"]]
    assert m["hops"][1]["is_destination"] and m["hops"][0]["loss_pct"] == 0.0
    if mode == "icmp":
        assert 10.0 <= m["hops"][1]["loss_pct"] <= 55.0 and m["loss_starts_at_hop"] == 2
    else:
        assert m["hops"][1]["loss_pct"] == 0.0 and m["loss_starts_at_hop"] is None


def test_loss_origin_ignores_hops_that_only_rate_limit_icmp() -> None:
    assert loss_origin([0, 0, 0]) is None
    assert loss_origin([0, 60, 0, 0]) is None  # hop 2 rate-limits, the path is clean
    assert loss_origin([0, 0, 10, 12, 11]) == 3
    assert loss_origin([0, 50, 0, 10, 10]) == 4
    assert loss_origin([0, 0, 0.5], threshold_pct=1.0) is None
    assert loss_origin([]) is None


def test_icmp_answers_are_matched_by_the_quoted_probe_header() -> None:
    def ip(src: str, proto: int) -> bytes:
        return bytes([0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0]) + bytes(
            map(int, src.split("."))) + bytes(4)  # fmt: skip

    udp_probe = ip("10.0.0.1", 17) + struct.pack("!HHHH", 40000, 33435, 8, 0)
    exceeded = ip("192.0.2.1", 1) + bytes([11, 0, 0, 0, 0, 0, 0, 0]) + udp_probe
    assert match_icmp(exceeded) == ("exceeded", 17, 40000, 33435, "192.0.2.1")
    echo_probe = ip("10.0.0.1", 1) + bytes([8, 0, 0, 0]) + struct.pack("!HH", 7, 9)
    unreach = ip("192.0.2.9", 1) + bytes([3, 1, 0, 0, 0, 0, 0, 0]) + echo_probe
    assert match_icmp(unreach) == ("unreach", 1, 7, 9, "192.0.2.9")
    reply = ip("192.0.2.9", 1) + bytes([0, 0, 0, 0]) + struct.pack("!HH", 7, 10)
    assert match_icmp(reply) == ("reply", 1, 7, 10, "192.0.2.9")
    assert match_icmp(b"\x45" * 10) is None


def test_icmpv6_answers_are_matched_by_the_quoted_probe_header() -> None:
    def ip6(proto: int) -> bytes:
        return bytes([0x60, 0, 0, 0, 0, 16, proto, 1]) + bytes(32)

    udp_probe = ip6(17) + struct.pack("!HHHH", 40000, 33435, 8, 0)
    exceeded = bytes([3, 0, 0, 0, 0, 0, 0, 0]) + udp_probe
    assert match_icmp6(exceeded, "2001:db8::1") == ("exceeded", 17, 40000, 33435, "2001:db8::1")
    echo_probe = ip6(58) + bytes([128, 0, 0, 0]) + struct.pack("!HH", 7, 9)
    unreach = bytes([1, 4, 0, 0, 0, 0, 0, 0]) + echo_probe
    assert match_icmp6(unreach, "2001:db8::9") == ("unreach", 58, 7, 9, "2001:db8::9")
    reply = bytes([129, 0, 0, 0]) + struct.pack("!HH", 7, 10)
    assert match_icmp6(reply, "2001:db8::9") == ("reply", 58, 7, 10, "2001:db8::9")
    not_echo = ip6(58) + bytes([135, 0, 0, 0]) + bytes(4)  # a quoted neighbour solicitation
    assert match_icmp6(bytes([3, 0, 0, 0, 0, 0, 0, 0]) + not_echo, "2001:db8::1") is None
    assert match_icmp6(bytes([135, 0, 0, 0, 0, 0, 0, 0]), "fe80::1") is None
    assert match_icmp6(b"\x81", "fe80::1") is None
