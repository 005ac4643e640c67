"""SDP offer/answer: what we offer, what we read back from real peers' answers."""

from __future__ import annotations

import pytest

from agent.sip.message import SipParseError
from agent.sip.sdp import answer, build_sdp, default_offer, parse_sdp

SIPP_ANSWER = (
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n"
    b"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
BARESIP_ANSWER = (
    b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    b"m=audio 10004 RTP/AVP 8 101\r\nc=IN IP4 127.0.0.2\r\nb=AS:64\r\n"
    b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
    b"a=ptime:30\r\na=sendrecv\r\nm=video 0 RTP/AVP 96\r\nc=IN IP4 9.9.9.9\r\n"
)


def test_offer_round_trips() -> None:
    offer = default_offer("192.0.2.7", 40000)
    media = parse_sdp(build_sdp(offer))
    assert (media.address, media.port, media.payload_types) == ("192.0.2.7", 40000, [0, 8, 101])
    assert media.codecs == ["PCMU", "PCMA", "TELEPHONE-EVENT"]
    assert media.ptime_ms == 20


def test_peer_answers_parse() -> None:
    sipp = parse_sdp(SIPP_ANSWER)
    assert (sipp.address, sipp.port, sipp.first_audio_codec()) == ("127.0.0.1", 6000, (0, "PCMU"))
    bs = parse_sdp(BARESIP_ANSWER)
    assert (bs.address, bs.port, bs.ptime_ms) == ("127.0.0.2", 10004, 30)
    assert bs.first_audio_codec() == (8, "PCMA")


def test_answer_picks_the_first_g711_and_keeps_events() -> None:
    offer = parse_sdp(BARESIP_ANSWER)
    ans = answer(offer, "127.0.0.1", 5004)
    assert ans.payload_types == [8, 101] and ans.ptime_ms == 30


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"v=0\r\nc=IN IP4 1.2.3.4\r\n", "no audio m= line"),
        (b"v=0\r\nm=audio 5000 RTP/AVP 0\r\n", "no c= connection address"),
        (b"v=0\r\nm=audio 99999 RTP/AVP 0\r\n", "is not a port number"),
    ],
)
def test_bad_sdp_is_named(body: bytes, message: str) -> None:
    with pytest.raises(SipParseError, match=message):
        parse_sdp(body)


def test_answer_without_g711_is_refused() -> None:
    with pytest.raises(SipParseError, match="no PCMU or PCMA"):
        answer(parse_sdp(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 18\r\n"), "1.1.1.1", 2)


BARESIP_OPUS_ANSWER = (
    b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 10010 RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\n"
    b"a=fmtp:111 stereo=1;sprop-stereo=1\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=ptime:20\r\na=sendrecv\r\n"
)


def test_wideband_offer_names_g722_and_opus_with_their_clocks() -> None:
    text = build_sdp(default_offer("192.0.2.7", 40000, ["OPUS", "G722", "PCMU"])).decode()
    assert "m=audio 40000 RTP/AVP 111 9 0 101" in text
    assert "a=rtpmap:111 opus/48000/2" in text and "a=rtpmap:9 G722/8000" in text
    assert "a=fmtp:111 " in text
    media = parse_sdp(text.encode())
    assert media.codecs == ["OPUS", "G722", "PCMU", "TELEPHONE-EVENT"]


def test_the_answer_codec_is_the_first_one_we_offered() -> None:
    ans = parse_sdp(BARESIP_OPUS_ANSWER)
    assert ans.first_audio_codec(("G722", "OPUS")) == (111, "OPUS")
    assert ans.first_audio_codec(("PCMU", "PCMA")) is None
    # our responder answers G.711 even when wideband codecs come first in the offer
    offer = default_offer("192.0.2.7", 40000, ["OPUS", "G722", "PCMA"])
    assert answer(offer, "127.0.0.1", 5004).payload_types == [8, 101]


def test_unknown_codec_is_refused_by_name() -> None:
    with pytest.raises(SipParseError, match=r"codec 'ILBC' is not offered .*G722, OPUS"):
        default_offer("192.0.2.7", 40000, ["ILBC"])


# linphone's offer: RTCP XR at session level (RFC 3611 §5.1)
LINPHONE_OFFER = (
    b"v=0\r\no=phone 1 1 IN IP4 10.77.1.1\r\ns=Talk\r\nc=IN IP4 10.77.1.1\r\nt=0 0\r\n"
    b"a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n"
    b"m=audio 7078 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def test_an_offer_of_rtcp_xr_voip_metrics_is_accepted_and_no_other() -> None:
    offer = parse_sdp(LINPHONE_OFFER)
    assert offer.rtcp_xr == "rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics"
    ans = answer(offer, "10.77.1.2", 5004)
    assert b"a=rtcp-xr:voip-metrics\r\n" in build_sdp(ans)
    plain = answer(parse_sdp(LINPHONE_OFFER.replace(b" voip-metrics", b"")), "10.77.1.2", 5004)
    assert plain.rtcp_xr is None and b"rtcp-xr" not in build_sdp(plain)
    assert parse_sdp(BARESIP_ANSWER).rtcp_xr is None
