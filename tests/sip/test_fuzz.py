"""Fuzz the parsers of bytes from the network: any input gives a value or SipParseError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sip.auth import parse_challenge
from agent.sip.headers import NameAddr, SipUri, Via
from agent.sip.message import SipParseError
from agent.sip.sdp import parse_sdp

SDP_LINES = st.sampled_from([
    "v=0", "c=IN IP4 1.2.3.4", "c=IN", "c=", "m=audio 4000 RTP/AVP 0 8 101", "m=audio",
    "m=audio x RTP/AVP", "m=video 0 RTP/AVP 96", "a=rtpmap:0 PCMU/8000", "a=rtpmap:",
    "a=rtpmap:x", "a=ptime:", "a=ptime:20", "a=rtcp:", "a=rtcp:4001 IN IP4 1.2.3.4",
    "a=sendonly", "a=", "=", "", "m=audio 99999999999999999999 RTP/AVP 0",
])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(SDP_LINES | st.text(max_size=30), max_size=20))
def test_sdp_parser_never_raises_anything_else(lines: list[str]) -> None:
    try:
        parse_sdp("\r\n".join(lines).encode())
    except SipParseError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_sdp_parser_on_raw_bytes(data: bytes) -> None:
    try:
        parse_sdp(data)
    except SipParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_header_value_parsers_never_raise_anything_else(text: str) -> None:
    for parse in (parse_challenge, Via.parse, NameAddr.parse, SipUri.parse):
        try:
            parse(text)
        except SipParseError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["Digest", " ", "realm=", '"r"', ",", "nonce=", '"', "qop=",
                                 "x", "=", "\\", "algorithm=SHA-256"]), max_size=20))  # fmt: skip
def test_challenge_parser_on_structured_garbage(parts: list[str]) -> None:
    try:
        parse_challenge("".join(parts))
    except SipParseError:
        pass
