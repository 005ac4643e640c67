"""The bandwidth probe on a veth shaped by tc tbf: never more than the shaped rate, and close to
it even on a busy host (the accuracy itself is measured in bench/accuracy.py)."""

from __future__ import annotations

import netlab
import pytest
from conftest import probe_in, start_responder

pytestmark = pytest.mark.netns

RATE = 100e6


def test_tcp_throughput_matches_a_100_mbit_tbf_both_ways(lab: netlab.NetLab) -> None:
    start_responder(lab, "b")
    lab.tbf("a", lab.iface("a"), "100mbit")  # upload leaves a
    lab.tbf("b", lab.iface("b"), "100mbit")  # download leaves b
    res = probe_in(lab, "a", "bandwidth", f"{lab.addr('b')}:5201",
                   {"direction": "both", "streams": 4, "duration_s": 4})  # fmt: skip
    assert res["success"], res["error"]
    m = res["measurement"]
    for d in ("upload", "download"):
        bps = m[d]["throughput_bps"]
        # Above the shaper is a wrong figure; below it by more than 15 % is a probe that
        # cannot fill the link (a loaded CPU costs a few percent, measured: 94.7 Mbit/s).
        assert 0.85 * RATE <= bps <= 1.05 * RATE, (d, bps)
        # a 50 ms tbf queue fills under load: RTT grows well above the idle RTT
        assert m[d]["rtt_loaded_ms"] > m["idle_rtt_ms"]
        assert m[d]["buffer_delay_pct"] > 100


def test_udp_constant_rate_through_the_shaper_reports_the_excess_as_loss(
    lab: netlab.NetLab,
) -> None:
    start_responder(lab, "b")
    lab.tbf("a", lab.iface("a"), "10mbit")
    target = f"{lab.addr('b')}:5201"
    under = probe_in(
        lab,
        "a",
        "bandwidth",
        target,
        {"mode": "udp", "udp_rate_kbps": 5000, "duration_s": 2, "direction": "up"},
    )["measurement"]
    assert under["udp_up"]["lost"] == 0
    over = probe_in(
        lab,
        "a",
        "bandwidth",
        target,
        {"mode": "udp", "udp_rate_kbps": 20000, "duration_s": 3, "direction": "up"},
    )["measurement"]
    u = over["udp_up"]
    # tbf passes ~10 Mbit/s of frames (payload + 42 octets of headers); the rest is lost
    wire = 10e6 * 1200 / (1200 + 42) / 1000
    assert abs(u["receive_kbps"] - wire) <= 0.05 * wire, u
    assert 40 <= u["loss_pct"] <= 60


def test_udp_downstream_through_the_shaper_reports_the_excess_as_loss(
    lab: netlab.NetLab,
) -> None:
    start_responder(lab, "b")
    lab.tbf("b", lab.iface("b"), "10mbit")  # the responder's way back to the agent
    opts = {"mode": "udp", "udp_rate_kbps": 20000, "duration_s": 3, "direction": "down"}
    m = probe_in(lab, "a", "bandwidth", f"{lab.addr('b')}:5201", opts)["measurement"]
    d = m["udp_down"]
    assert m["udp_up"] is None
    wire = 10e6 * 1200 / (1200 + 42) / 1000
    assert abs(d["receive_kbps"] - wire) <= 0.05 * wire, d
    assert 40 <= d["loss_pct"] <= 60
    assert d["sent"] == round(20000 * 1000 / 8 / 1200 * 3)
