"""STAMP and TWAMP-light on namespace links against ground truth: DSCP re-marked on one
direction is reported on that direction only (RFC 8972 CoS TLV), and loss per direction
agrees with the nftables counters, with our sender against Nokia's twampy responder and
twampy's sender against our responder."""

from __future__ import annotations

import math

import netlab
import pytest
import twampy_peer
from conftest import probe_in, start_responder

pytestmark = pytest.mark.netns
TWAMPY = twampy_peer.command()
need_twampy = pytest.mark.skipif(TWAMPY is None, reason=twampy_peer.SKIP_REASON)
OUT_PCT, BACK_PCT = 3.0, 2.0


def within_3_sigma(measured_pct: float, seen: int, dropped: int) -> bool:
    """Whether a loss figure is within 3 binomial sigma of the nftables counter's."""
    p = dropped / seen
    return abs(measured_pct - 100 * p) <= 3 * 100 * math.sqrt(max(p * (1 - p), 1 / seen) / seen)


@pytest.mark.parametrize("remarked", ["out", "back"])
def test_cos_tlv_reports_a_remark_on_its_direction_only(rlab: netlab.NetLab, remarked: str) -> None:
    start_responder(rlab, "b")
    # out: r re-marks on its way to b; back: on its way back to a
    iface = rlab.iface("r", "b") if remarked == "out" else rlab.iface("r", "a")
    rule = rlab.nft_remark_dscp("r", iface, dscp=0, direction="out")
    opts = {"duration_s": 1.0, "dscp": 46, "protocol": "stamp"}
    m = probe_in(rlab, "a", "udp", f"{rlab.addr('b')}:862", opts)["measurement"]
    assert rule.counts()[1] >= 50
    assert m["protocol"] == "stamp" and m["reflector_reports_dscp"] is True
    hit, clean = (m["out"], m["back"]) if remarked == "out" else (m["back"], m["out"])
    assert hit["dscp_sent"] == 46 and hit["dscp_received"] == 0
    assert hit["dscp_counts"] == {"0": m["received"]}
    assert clean["dscp_sent"] == 46 and clean["dscp_received"] == 46


def _loss_rules(lab: netlab.NetLab) -> tuple[netlab.NftRule, netlab.NftRule]:
    out = lab.nft_loss("r", lab.iface("r", "b"), OUT_PCT, "out", match="meta l4proto udp")
    back = lab.nft_loss("r", lab.iface("r", "a"), BACK_PCT, "out", match="meta l4proto udp")
    return out, back


@need_twampy
@pytest.mark.parametrize("protocol", ["twamp-light", "stamp"])
def test_our_sender_against_twampy_responder_splits_loss_by_direction(
    rlab: netlab.NetLab, protocol: str
) -> None:
    assert TWAMPY is not None
    port = 20001
    p = rlab.popen_in("b", [*TWAMPY, "responder", f"{rlab.addr('b')}:{port}"])
    twampy_peer.wait_udp_bound(port, lambda argv: rlab.run_in("b", argv).stdout, p)
    out_rule, back_rule = _loss_rules(rlab)
    n, rate = 4000, 1000
    opts = {"packet_rate": rate, "duration_s": n / rate, "wait_s": 2, "protocol": protocol}
    res = probe_in(rlab, "a", "udp", f"{rlab.addr('b')}:{port}", opts)
    assert res["success"], res["error"]
    m = res["measurement"]
    assert m["direction_loss_method"].startswith("reflector sequence counter")
    for d, rule in (("out", out_rule), ("back", back_rule)):
        seen, dropped = rule.counts()
        assert dropped > 0
        assert within_3_sigma(m[d]["loss_pct"], seen, dropped), (d, m[d], seen, dropped)


@need_twampy
def test_twampy_sender_against_our_responder_agrees_with_the_counters(
    rlab: netlab.NetLab,
) -> None:
    assert TWAMPY is not None
    start_responder(rlab, "b")
    out_rule, back_rule = _loss_rules(rlab)
    n = 3000
    text = rlab.run_in(
        "a", [*TWAMPY, "sender", f"{rlab.addr('b')}:862", f"{rlab.addr('a')}:20000",
              "--count", str(n), "--interval", "1"], timeout=120,
    ).stdout  # fmt: skip
    table = twampy_peer.parse_table(text)
    for name, rule in (("Outbound", out_rule), ("Inbound", back_rule)):
        seen, dropped = rule.counts()
        assert dropped > 0
        assert within_3_sigma(table[name].loss_pct, seen, dropped), (name, table, seen, dropped)
