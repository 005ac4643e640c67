"""Pure statistics: RTCP report blocks, direction stats against the E-model, RFC 6076 ratios,
ALG comparison."""

from __future__ import annotations

import pytest

from agent import quality
from agent.sip import alg
from agent.sip.message import SipMessage
from agent.sip.ratios import ratios
from agent.sip.rtpstats import StreamRecord, ntp_timestamp, received_direction, rtt_from_report


def _stream(lost: set[int], n: int = 500, delays: list[float] | None = None) -> StreamRecord:
    rec = StreamRecord(ssrc=1)
    for i in range(n):
        if i in lost:
            continue
        d = delays[i] if delays else 0.010
        rec.on_rtp((65500 + i) & 0xFFFF, (1000 + 160 * i) & 0xFFFFFFFF, 0, 100.0 + i * 0.02 + d)
    return rec


def test_loss_and_mos_follow_the_emodel() -> None:
    lost = set(range(0, 500, 20))  # 5 %, isolated losses
    rec = _stream(lost)
    d = received_direction(
        rec,
        sent=500,
        first_seq=65500,
        send_times=None,
        one_way_ms=10.0,
        codec="PCMU",
        ptime_ms=20,
        jitter_buffer_ms=60,
    )
    assert d.loss_pct == pytest.approx(5.0) and d.packets_received == 475
    expected = quality.emodel("PCMU", 10 + 60 + 20, 5.0, d.burst_ratio or 1.0)
    assert d.mos == pytest.approx(expected.mos) and d.late_discards == 0


def test_late_packets_count_as_discards_and_as_loss_for_mos() -> None:
    delays = [0.010] * 500
    delays[100] = 0.200  # 190 ms later than its neighbours: beyond a 60 ms buffer
    rec = _stream(set(), delays=delays)
    d = received_direction(
        rec,
        sent=500,
        first_seq=65500,
        send_times=None,
        one_way_ms=10.0,
        codec="PCMU",
        ptime_ms=20,
        jitter_buffer_ms=60,
    )
    assert d.late_discards == 1 and d.loss_pct == 0
    assert d.mos == pytest.approx(quality.emodel("PCMU", 90, 0.2).mos)


def test_report_block_and_rtt() -> None:
    rec = _stream({3, 4})
    rec.on_sr(ntp_timestamp(1000.0), 500, arrival=50.0)
    b = rec.report_block(now=50.25, previous=(0, 0))
    assert b["packets_lost"] == 2 and b["expected"] == 500
    assert b["dlsr"] == int(0.25 * 65536)
    assert b["highest_sequence"] == 65500 + 499
    # The far end echoes LSR; we get the report 0.3 s after our SR with DLSR 0.25 s.
    rtt = rtt_from_report(b["lsr"], b["dlsr"], ntp_timestamp(1000.3))
    assert rtt == pytest.approx(50.0, abs=0.1)


def test_rfc6076_ratios() -> None:
    r = ratios([200, 200, 486, 302, 503, None], [True, False, False, False, False, False])
    assert r.attempts == 6
    assert r.ser_pct == pytest.approx(40.0)  # 2 of 5 (the 302 is left out)
    assert r.seer_pct == pytest.approx(60.0)  # 200, 200, 486
    assert r.isa_pct == pytest.approx(100 * 2 / 6)  # 503 and the timeout
    assert r.scr_pct == pytest.approx(100 / 6)


def _invite(body: bytes) -> SipMessage:
    m = SipMessage.request("INVITE", "sip:b@10.0.0.2")
    m.add("Via", "SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bKx;rport")
    m.add("From", "<sip:a@x>;tag=1")
    m.add("To", "<sip:b@x>")
    m.add("Call-ID", "c")
    m.add("CSeq", "1 INVITE")
    m.add("Contact", "<sip:a@192.168.1.10:5062>")
    m.body = body
    return m


SDP = b"v=0\r\nc=IN IP4 192.168.1.10\r\nm=audio 4000 RTP/AVP 0\r\n"


def test_alg_names_the_rewritten_fields() -> None:
    sent = _invite(SDP)
    resp = SipMessage.response(200, "OK")
    resp.add("Via", "SIP/2.0/UDP 192.168.1.10:5062;branch=z9hG4bKx;rport=5062;received=1.2.3.4")
    for h in ("From", "Call-ID", "CSeq"):
        resp.add(h, sent.get(h) or "")
    assert alg.detect(sent, resp) == (False, [])
    seen = {
        "via": "SIP/2.0/UDP 203.0.113.5:5062;branch=z9hG4bKx;rport",
        "contact": "<sip:a@203.0.113.5:5062>",
        "sdp_c": "203.0.113.5",
        "sdp_port": 4000,
        "content_length": str(len(SDP)),
        "body_length": len(SDP) + 2,
    }
    resp.add(alg.SEEN_HEADER, alg.encode_seen(seen))
    detected, evidence = alg.detect(sent, resp)
    text = "\n".join(evidence)
    assert detected
    assert "Via rewritten on the way" in text and "Contact rewritten" in text
    assert "SDP c= address rewritten: sent 192.168.1.10, far end saw 203.0.113.5" in text
    assert "Content-Length broken" in text and "m= port" not in text
