"""The readiness suite on the namespace test network: a clean link passes, and loss,
jitter and a rate cap each fail the right check with the figure the network imposed."""

from __future__ import annotations

import itertools
import math

import netlab
import pytest

from agent.readiness.thresholds import G711_ETHERNET_BPS
from tests.readiness.nethelpers import check, masquerade, readiness_in, start_responder

pytestmark = pytest.mark.netns


def test_clean_link_passes_every_graded_check(rlab: netlab.NetLab) -> None:
    start_responder(rlab, "b")
    rep = readiness_in(
        rlab, "a", "--responder", rlab.addr("b"), "--voice-s", "3", "--ramp-step-s", "2",
        "--calls", "2", "--max-calls", "4", "--nat-intervals", "2,30", "--bandwidth-s", "1",
        "--down-mbps", "100", "--up-mbps", "100",
    )  # fmt: skip
    bad = [(c["id"], c["display"]) for c in rep["checks"] if c["status"] in ("warn", "fail")]
    assert rep["verdict"] == "pass", bad
    assert check(rep, "voice.loss.out")["value"] == 0.0
    assert check(rep, "voice.mos.back")["value"] > 4.3
    assert check(rep, "dscp.out")["display"] == "sent 46, received 46"
    assert rep["capacity_calls"] == 4  # the ceiling: nothing limits a veth link
    nat = check(rep, "nat.binding")
    assert nat["status"] == "pass" and nat["value"] == 30.0
    assert nat["details"]["behind_nat"] is False
    assert any(s["title"].startswith("RTT over the test") for s in rep["series"])
    assert check(rep, "sip.alg")["status"] == "pass"
    assert check(rep, "mtu.path")["value"] == 1500.0
    assert check(rep, "bandwidth.up")["status"] == "pass"
    assert check(rep, "trace.path")["display"].startswith("2 hops, reached")


def test_upstream_loss_fails_the_upstream_loss_check_with_the_dropped_share(
    rlab: netlab.NetLab,
) -> None:
    start_responder(rlab, "b")
    rule = rlab.nft_loss("r", rlab.iface("r", "b"), 5.0, "out", match="udp dport 862")
    rep = readiness_in(rlab, "a", "--responder", rlab.addr("b"), "--checks", "voice",
                       "--voice-s", "4")  # fmt: skip
    seen, dropped = rule.counts()
    up, down = check(rep, "voice.loss.out"), check(rep, "voice.loss.back")
    assert up["status"] == "fail" and down["status"] == "pass"
    assert seen == 200 and dropped > 2  # 5 % of 200: P(dropped <= 2) is about 0.2 %
    # nftables' own count is the truth, up to losses after the last reply (direction unknown)
    assert abs(up["value"] - 100.0 * dropped / seen) <= 100.0 * 3 / seen
    assert "lost" in up["explanation"] and up["fix"]
    assert rep["verdict"] == "fail"


def _arrival_order_jitter_ms(delays_ms: list[float], interval_ms: float) -> float:
    """RFC 3550 jitter of packets sent every interval_ms and delayed by delays_ms,
    taken in the order they arrive (the relay may reorder when delays spread widely)."""
    arrivals = sorted((i * interval_ms + d, i * interval_ms) for i, d in enumerate(delays_ms))
    j = 0.0
    for (r0, s0), (r1, s1) in itertools.pairwise(arrivals):
        j += (abs((r1 - r0) - (s1 - s0)) - j) / 16.0
    return j


def test_upstream_jitter_fails_the_upstream_jitter_check_with_the_relay_figure(
    rlab: netlab.NetLab,
) -> None:
    start_responder(rlab, "b")
    fwd = netlab.DelaySchedule(10.0, 120.0, seed=5)
    relay = rlab.start_relay("r", 9000, (rlab.addr("b"), 862), fwd=fwd)
    rep = readiness_in(rlab, "a", "--responder", rlab.addr("r"), "--twamp-port", "9000",
                       "--checks", "voice", "--voice-s", "4")  # fmt: skip
    stats = relay.stop()
    n = stats["fwd_packets"]
    assert n == 200
    expected = _arrival_order_jitter_ms(fwd.delays_ms(n), 20.0)
    up, down = check(rep, "voice.jitter.out"), check(rep, "voice.jitter.back")
    assert expected > 30.0
    assert up["status"] == "fail" and down["status"] == "pass"
    assert abs(up["value"] - expected) <= 0.1 * expected, (up["value"], expected)
    assert check(rep, "voice.loss.out")["status"] == "pass"


def test_capacity_ramp_on_a_tbf_cap_is_within_one_call_of_the_g711_wire_rate(
    rlab: netlab.NetLab,
) -> None:
    start_responder(rlab, "b")
    cap_bps = 470_000
    # a small bucket and queue, so an over-full link shows loss within a short step
    rlab.tbf("a", rlab.iface("a", "r"), "470kbit", burst="4000", latency_ms=50)
    rep = readiness_in(rlab, "a", "--responder", rlab.addr("b"), "--checks", "capacity",
                       "--calls", "8", "--max-calls", "16", "--ramp-step-s", "3")  # fmt: skip
    allowed = math.floor(cap_bps / G711_ETHERNET_BPS)  # 470 / 87.2 -> 5 calls
    cap = check(rep, "capacity.calls")
    assert abs(rep["capacity_calls"] - allowed) <= 1, rep["ramp"]
    assert cap["status"] == "fail" and cap["value"] == rep["capacity_calls"]
    first_bad = min(s["calls"] for s in rep["ramp"] if not s["ok"])
    bad = next(s for s in rep["ramp"] if s["calls"] == first_bad)
    assert "upstream loss" in bad["reason"] and bad["worst_loss_pct"] > 1.0
    assert "capacity" in rep["series"][-1]["title"].lower()


def test_a_nat_that_forgets_udp_mappings_after_5_s_fails_the_binding_check(
    rlab: netlab.NetLab,
) -> None:
    start_responder(rlab, "b")
    # r masquerades a behind its own address and keeps idle UDP mappings for 5 s
    rlab.run_in("r", ["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=5",
                      "net.netfilter.nf_conntrack_udp_timeout_stream=5"], check=False)  # fmt: skip
    masquerade(rlab, "r", rlab.iface("r", "b"))
    timeout = rlab.run_in("r", ["sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout"])
    assert timeout.stdout.strip() == "5"
    rep = readiness_in(rlab, "a", "--responder", rlab.addr("b"), "--checks", "nat",
                       "--nat-intervals", "1,8")  # fmt: skip
    c = check(rep, "nat.binding")
    assert c["status"] == "fail", c
    assert c["value"] == 8.0 and c["details"]["survived_s"] == 1.0
    assert c["details"]["behind_nat"] is True
    assert c["details"]["mapped_address"].split()[0] == "10.77.2.254"  # r, toward b


def test_a_rate_cap_fails_the_bandwidth_check_in_its_direction_with_the_capped_figure(
    rlab: netlab.NetLab,
) -> None:
    start_responder(rlab, "b")
    rlab.tbf("a", rlab.iface("a", "r"), "4mbit")  # upload capped; download left alone
    rep = readiness_in(rlab, "a", "--responder", rlab.addr("b"), "--checks", "bandwidth",
                       "--up-mbps", "10", "--down-mbps", "10", "--bandwidth-s", "3")  # fmt: skip
    up, down = check(rep, "bandwidth.up"), check(rep, "bandwidth.down")
    assert up["status"] == "fail" and down["status"] == "pass", (up, down)
    # TCP goodput under a 4 Mbit/s tbf: headers and the token bucket leave 85-100 %
    assert 0.85 * 4e6 <= up["details"]["throughput_bps"] <= 1.02 * 4e6, up["display"]
    assert up["value"] == pytest.approx(100 * up["details"]["throughput_bps"] / 10e6)
    assert "contracted" in up["explanation"]


def test_a_sip_alg_that_rewrites_contact_fails_the_sip_alg_check_naming_it(
    rlab: netlab.NetLab,
) -> None:
    start_responder(rlab, "b")
    inside, outside = rlab.addr("a").encode(), b"10.77.2.254"
    relay = rlab.start_relay("r", 5060, (rlab.addr("b"), 5060), replace_fwd=[(inside, outside)],
                             replace_back=[(outside, inside)])  # fmt: skip
    rep = readiness_in(rlab, "a", "--responder", rlab.addr("b"), "--checks", "sip_alg",
                       "--responder-sip", "sip:10.77.1.254")  # fmt: skip
    relay.stop()
    alg = check(rep, "sip.alg")
    assert alg["status"] == "fail", alg
    assert "Contact rewritten" in alg["explanation"]
    assert alg["fix"] == "Disable SIP ALG (SIP helper, SIP transformations) on this firewall."
    clean = readiness_in(rlab, "a", "--responder", rlab.addr("b"), "--checks", "sip_alg")
    assert check(clean, "sip.alg")["status"] == "pass", check(clean, "sip.alg")
