"""Interop with baresip auto-answering: RTP both ways and baresip's RTCP read."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import peers

from agent import quality
from agent.probes import ProbeContext, run_probe

pytestmark = pytest.mark.skipif(peers.missing("baresip") is not None, reason="baresip missing")


async def test_call_to_baresip_has_rtp_both_ways_and_its_rtcp() -> None:
    with peers.baresip() as (port, log):
        r = await run_probe(
            "sip_call",
            f"sip:bob@127.0.0.1:{port}",
            {"duration_s": 7.0},
            ctx=ProbeContext(timeout_s=60),
        )
        text = log.read_text(errors="replace")
    assert r.success, (r.error, text[-2000:])
    m = r.measurement or {}
    assert m["setup_ok"] and m["codec"] == "PCMU" and not m["echo_detected"]
    back = m["back"]
    assert back["source"] == "rtp" and back["packets_received"] >= 300  # 7 s at 50 pps
    assert back["loss_pct"] == 0 and back["mos"] >= 4.3
    # baresip reports on our stream in RTCP (every 5 s): the out direction comes from it.
    assert m["rtcp_received"] >= 1
    out = m["out"]
    assert out is not None and out["source"] == "rtcp", m
    assert out["loss_pct"] == 0
    assert "Call established" in text


@pytest.mark.parametrize(("codec", "baresip_name"), [("OPUS", "opus"), ("G722", "G722")])
async def test_wideband_call_to_baresip_is_scored_on_the_wideband_scale(
    codec: str, baresip_name: str
) -> None:
    with peers.baresip() as (port, log):
        r = await run_probe(
            "sip_call",
            f"sip:bob@127.0.0.1:{port}",
            {"duration_s": 7.0, "codecs": [codec]},
            ctx=ProbeContext(timeout_s=60),
        )
        text = log.read_text(errors="replace")
    assert r.success, (r.error, text[-2000:])
    m = r.measurement or {}
    assert m["setup_ok"] and m["codec"] == codec and not m["echo_detected"]
    assert m["rtcp_received"] >= 1
    ceiling = quality.codec_ceiling(codec)
    for name, source in (("back", "rtp"), ("out", "rtcp")):
        d = m[name]
        assert d is not None and d["source"] == source, (name, d)
        assert d["codec"] == codec and d["scale"] == "wideband", d
        assert d["emodel"] == "ITU-T G.107.1 (wideband)"
        assert d["ceiling_r"] == pytest.approx(ceiling[0]) and d["ceiling_r"] > 100
        assert d["ceiling_mos"] == pytest.approx(ceiling[1])
        assert d["loss_pct"] == 0 and d["r_factor"] > 93.2  # above the narrowband top
        assert 4.0 <= d["mos"] <= d["ceiling_mos"]
        assert d["assumed"] == list(quality.get_codec(codec).assumed)
    assert m["back"]["packets_received"] >= 300  # 7 s at 50 pps
    # baresip decoded our stream and encoded its own in the negotiated codec
    assert f"Set audio decoder: {baresip_name}" in text
    assert f"Set audio encoder: {baresip_name}" in text
    assert "Call established" in text
