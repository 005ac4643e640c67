"""The contract of the network probes, each on a namespace lab with the impairment its rule
is about: the real measurement goes through the collector's ingest as the agent ships it,
trips exactly one ticket (rule and target) whose evidence is the results that tripped it,
shows in /metrics with its labels and measured value, and in a dashboard panel evaluated by
a real Prometheus.

Site `a` is the agent's side, `b` the far end, `r` the router between them ("out" is a → b).
"""

from __future__ import annotations

import netlab
import pytest

from tests.contract.harness import Contract, measured
from tests.net.conftest import probe_in
from tests.readiness.nethelpers import masquerade, start_responder

pytestmark = pytest.mark.netns


def test_icmp_loss_on_the_path_opens_the_loss_ticket(
    rlab: netlab.NetLab, contract: Contract
) -> None:
    site = contract.site("icmp-lossy")
    target = rlab.addr("b")
    # every 5th echo request towards b is dropped: 20 % loss, the same on every run
    rlab.nft_loss("r", rlab.iface("r", "b"), 20.0, "out", match="meta l4proto icmp", regular=True)
    opts = {"count": 20, "interval_s": 0.02, "timeout_s": 1}
    runs = [probe_in(rlab, "a", "icmp", target, opts, realtime=True) for _ in range(3)]
    assert [r["measurement"]["loss_pct"] for r in runs] == [20.0, 20.0, 20.0]
    sent = site.ship(*runs)
    t = site.ticket("loss", target, evidence=sent)
    assert t["severity"] == "critical"  # above 5 %
    last = runs[-1]
    assert site.series("qos_scout_loss_pct", "icmp", target, direction="rtt") == 20.0
    rtt = site.series("qos_scout_rtt_ms", "icmp", target, stat="avg")
    assert rtt == measured(last, "rtt_ms.avg")
    print(f"icmp: loss {[r['measurement']['loss_pct'] for r in runs]} %, rtt avg {rtt:.3f} ms")
    site.panel("site-detail", "Loss per direction", "icmp", target, [20.0], direction="rtt")


def test_udp_loss_towards_the_far_end_opens_loss_out_and_not_loss_back(
    rlab: netlab.NetLab, contract: Contract
) -> None:
    start_responder(rlab, "b")
    site = contract.site("udp-lossy-out")
    target = f"{rlab.addr('b')}:862"
    # drop 1 in 50 of the stream's packets on r's way to b (site -> far end) only
    loss = rlab.nft_loss("r", rlab.iface("r", "b"), 2.0, "out", match="meta l4proto udp",
                         regular=True)  # fmt: skip
    res = probe_in(rlab, "a", "udp", target, {"duration_s": 3})
    assert res["success"], res["error"]
    m = res["measurement"]
    seen, dropped = loss.counts()
    assert (m["sent"], dropped) == (150, 3) and seen == 150
    assert (m["out"]["lost"], m["out"]["loss_pct"]) == (3, 2.0)
    assert (m["back"]["lost"], m["back"]["loss_pct"]) == (0, 0.0)
    sent = site.ship(res, copies=3)
    t = site.ticket("loss_out", target, evidence=sent)  # and no loss_back ticket
    assert t["severity"] == "warning"  # 2 % is above 1 %, not above 5 %
    assert "loss_back" not in {x["rule_id"] for x in site.tickets()}
    for direction in ("out", "back"):
        for family in ("loss_pct", "jitter_ms", "mos", "r_factor"):
            value = site.series(f"qos_scout_{family}", "udp", target, direction=direction)
            assert value == measured(res, f"{direction}.{family}"), (family, direction)
    assert site.series("qos_scout_loss_pct", "udp", target, direction="rtt") == 2.0
    assert site.series("qos_scout_mos", "udp", target, direction="out") < site.series(
        "qos_scout_mos", "udp", target, direction="back"
    )
    print(
        "udp: "
        + ", ".join(
            f"{d}: loss {m[d]['loss_pct']} % jitter {m[d]['jitter_ms']:.3f} ms "
            f"MOS {m[d]['mos']:.3f} R {m[d]['r_factor']:.1f}"
            for d in ("out", "back")
        )
    )
    site.panel("site-detail", "Loss per direction", "udp", target, [2.0], direction="out")
    site.panel("site-detail", "Loss per direction", "udp", target, [0.0], direction="back")
    mos_out = measured(res, "out.mos")
    site.panel("site-detail", "MOS per direction", "udp", target, [mos_out], direction="out")
    jitter_back = measured(res, "back.jitter_ms")
    site.panel("site-detail", "Jitter per direction", "udp", target, [jitter_back],
               direction="back")  # fmt: skip


def test_bandwidth_below_the_contracted_upload_opens_bandwidth_up(
    lab: netlab.NetLab, contract: Contract
) -> None:
    start_responder(lab, "b")
    site = contract.site("bandwidth-capped", contracted_up_bps=10_000_000,
                         contracted_down_bps=10_000_000)  # fmt: skip
    target = f"{lab.addr('b')}:5201"
    lab.tbf("a", lab.iface("a"), "4mbit")  # the upload leaves a; the download is not shaped
    res = probe_in(lab, "a", "bandwidth", target,
                   {"direction": "both", "streams": 2, "duration_s": 2})  # fmt: skip
    assert res["success"], res["error"]
    up, down = measured(res, "upload.throughput_bps"), measured(res, "download.throughput_bps")
    assert 0.8 * 4e6 <= up <= 1.02 * 4e6 and down > 10e6, (up, down)
    sent = site.ship(res, copies=3)
    t = site.ticket("bandwidth_up", target, evidence=sent)
    assert t["severity"] == "critical"  # below 50 % of the contracted 10 Mbit/s
    assert site.series("qos_scout_throughput_bps", "bandwidth", target, direction="up") == up
    assert site.series("qos_scout_throughput_bps", "bandwidth", target, direction="down") == down
    delay = site.series("qos_scout_buffer_delay_pct", "bandwidth", target, direction="up")
    assert delay == measured(res, "upload.buffer_delay_pct") and delay > 100  # tbf queue
    print(
        f"bandwidth: up {up / 1e6:.2f} Mbit/s, down {down / 1e6:.0f} Mbit/s, "
        f"buffer delay up {delay:.0f} %"
    )
    title = "Throughput vs contracted speed"
    site.panel("site-detail", title, "bandwidth", target, [up], direction="up")
    title = "Buffer delay under load (RFC 6349: loaded RTT over idle RTT)"
    site.panel("site-detail", title, "bandwidth", target, [delay], direction="up")


def test_a_1280_byte_link_opens_path_mtu(rlab: netlab.NetLab, contract: Contract) -> None:
    site = contract.site("mtu-small")
    target = rlab.addr("b")
    for node, peer in (("r", "b"), ("b", "r")):
        rlab.run_in(node, ["ip", "link", "set", rlab.iface(node, peer), "mtu", "1280"])
    res = probe_in(rlab, "a", "mtu", target, {"timeout_s": 0.5}, realtime=True)
    assert res["success"], res["error"]
    assert (measured(res, "path_mtu"), res["measurement"]["frag_needed_mtu"]) == (1280, 1280)
    sent = site.ship(res, copies=3)
    assert site.ticket("path_mtu", target, evidence=sent)["severity"] == "critical"
    assert site.series("qos_scout_path_mtu_bytes", "mtu", target) == 1280
    print(
        f"mtu: path {measured(res, 'path_mtu'):.0f}, from {res['measurement']['frag_needed_from']}"
    )
    title = "Path MTU (below 1300 bytes breaks SIP over UDP)"
    site.panel("site-detail", title, "mtu", target, [1280.0])


def test_loss_from_the_second_hop_on_opens_trace_loss(
    rlab: netlab.NetLab, contract: Contract
) -> None:
    site = contract.site("trace-lossy")
    target = rlab.addr("b")
    rlab.nft_loss("r", rlab.iface("r", "b"), 30.0, "out", match="meta l4proto icmp", regular=True)
    opts = {"rounds": 40, "interval_s": 0.02, "timeout_s": 0.15}
    res = probe_in(rlab, "a", "trace", target, opts, realtime=True)
    assert res["success"], res["error"]
    m = res["measurement"]
    assert (m["hop_count"], m["loss_starts_at_hop"]) == (2, 2)
    assert m["hops"][0]["loss_pct"] == 0.0 and m["destination_loss_pct"] >= 10.0
    sent = site.ship(res, copies=3)
    assert site.ticket("trace_loss", target, evidence=sent)["severity"] == "warning"
    assert site.series("qos_scout_trace_loss_start_hop", "trace", target) == 2
    assert site.series("qos_scout_trace_hops", "trace", target) == 2
    dest = site.series("qos_scout_trace_destination_loss_pct", "trace", target)
    assert dest == m["destination_loss_pct"]
    print(
        f"trace: {m['hop_count']} hops, loss from hop {m['loss_starts_at_hop']}, "
        f"hop loss {[h['loss_pct'] for h in m['hops']]} %, destination {dest} %"
    )
    title = "Trace: hops, and the first hop of persistent loss"
    site.panel("site-detail", title, "trace", target, [2.0, 2.0])  # hops; where loss starts
    site.panel("site-detail", "Trace: loss at the destination", "trace", target, [dest])


def test_a_nat_forgetting_udp_mappings_after_3_s_opens_nat_binding(
    rlab: netlab.NetLab, contract: Contract
) -> None:
    start_responder(rlab, "b")
    site = contract.site("nat-short")
    target = f"{rlab.addr('b')}:8620"
    masquerade(rlab, "r", rlab.iface("r", "b"))
    rlab.run_in("r", ["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=3",
                      "net.netfilter.nf_conntrack_udp_timeout_stream=3"])  # fmt: skip
    res = probe_in(rlab, "a", "nat_binding", target, {"intervals_s": [1, 6]})
    assert res["success"], res["error"]
    m = res["measurement"]
    assert (m["survived_s"], m["lost_s"], m["behind_nat"]) == (1.0, 6.0, True)
    sent = site.ship(res, copies=3)
    assert site.ticket("nat_binding", target, evidence=sent)["severity"] == "critical"
    assert site.series("qos_scout_nat_binding_survived_seconds", "nat_binding", target) == 1.0
    print(
        f"nat_binding: survived {m['survived_s']} s, lost {m['lost_s']} s, "
        f"mapped {m['mapped_address']}"
    )
    title = "NAT: longest idle time a UDP binding survived"
    site.panel("site-detail", title, "nat_binding", target, [1.0])
