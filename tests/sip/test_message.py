"""SIP message parsing and serialisation (RFC 3261 §7), including a fuzz test."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sip.headers import NameAddr, SipUri, Via
from agent.sip.message import SipMessage, SipParseError, StreamFramer

INVITE = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport,\r\n"
    b" SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK2\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK3\r\n"
    b'f: "Alice, A." <sip:alice@example.com>;tag=abc\r\n'
    b"t: <sip:bob@example.com>\r\n"
    b"i: call-1@10.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"m: <sip:alice@10.0.0.1:5060>, <sip:alice@10.0.0.9>\r\n"
    b"Subject: a folded\r\n\tsubject line\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"v=0\r\nEXTRA"
)


def test_compact_forms_folding_and_lists_are_understood() -> None:
    msg = SipMessage.parse(INVITE)
    assert msg.method == "INVITE" and msg.uri == "sip:bob@example.com"
    vias = msg.get_all("Via")
    assert [Via.parse(v).branch for v in vias] == ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]
    assert "rport" in Via.parse(vias[0]).params
    assert msg.get("call-id") == "call-1@10.0.0.1"
    assert msg.get("Subject") == "a folded subject line"
    assert len(msg.get_all("Contact")) == 2
    frm = NameAddr.parse(msg.get("From") or "")
    assert frm.display == "Alice, A." and frm.tag == "abc"
    assert msg.body == b"v=0\r"  # UDP: Content-Length truncates extra bytes
    assert msg.cseq == (1, "INVITE")


def test_serialise_then_parse_round_trips() -> None:
    msg = SipMessage.parse(INVITE)
    again = SipMessage.parse(bytes(msg))
    assert again.headers == [*msg.headers[:-1], ("Content-Length", "4")]
    assert again.get_all("Via") == msg.get_all("Via")
    assert again.body == msg.body


def test_response_parses() -> None:
    raw = (
        b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCall-ID: x\r\nCSeq: 7 REGISTER\r\n"
        b'WWW-Authenticate: Digest realm="r", nonce="n", qop="auth,auth-int"\r\n'
        b"Content-Length: 0\r\n\r\n"
    )
    msg = SipMessage.parse(raw, stream=True)
    assert (msg.status, msg.reason) == (401, "Unauthorized")
    # Auth headers are not list headers: one value with its commas.
    assert msg.get_all("WWW-Authenticate") == ['Digest realm="r", nonce="n", qop="auth,auth-int"']


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"INVITE sip:x SIP/2.0\r\n", "no empty line after the headers"),
        (b"SIP/2.0 99 Low\r\n\r\n", "status code is not 100..699"),
        (b"INVITE sip:x SIP/3.0\r\n\r\n", "version is not SIP/2.0"),
        (b"INVITE sip:x SIP/2.0\r\nBad header\r\n\r\n", "has no ':'"),
        (b"INVITE sip:x SIP/2.0\r\nVia: a\r\n\r\n", "CSeq header is missing"),
        (
            b"OPTIONS sip:x SIP/2.0\r\nVia: a\r\nCSeq: 1 OPTIONS\r\nCall-ID: c\r\n"
            b"From: <sip:a@b>\r\n"
            b"To: <sip:a@b>\r\nContent-Length: 10\r\n\r\nabc",
            "Content-Length 10 is larger than the 3 body bytes received",
        ),
        (
            b"OPTIONS sip:x SIP/2.0\r\nVia: a\r\nCSeq: 1 INVITE\r\nCall-ID: c\r\n"
            b"From: <sip:a@b>\r\n"
            b"To: <sip:a@b>\r\n\r\n",
            "CSeq method INVITE does not match request OPTIONS",
        ),
    ],
)
def test_malformed_messages_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(SipParseError, match=message):
        SipMessage.parse(raw)


def test_content_length_is_required_on_streams() -> None:
    raw = INVITE.replace(b"l: 4\r\n", b"")
    with pytest.raises(SipParseError, match="Content-Length is missing"):
        SipMessage.parse(raw, stream=True)


def test_stream_framer_splits_by_content_length() -> None:
    framer = StreamFramer()
    one = bytes(SipMessage.parse(INVITE))
    out = framer.feed(b"\r\n\r\n" + one + one[:10])
    assert out == [one]
    assert framer.feed(one[10:]) == [one]
    assert framer.feed(b"") == []


OPTIONS_HEAD = (
    b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\n"
    b"Call-ID: c\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n"
)


@pytest.mark.parametrize(
    "lengths",
    [
        b"Content-Length: 4\r\nContent-Length: 10\r\n",
        b"Content-Length: 10\r\nl: 4\r\n",
        b"l: 4\r\ncontent-length :10\r\n",
    ],
)
def test_repeated_content_length_that_disagrees_is_refused(lengths: bytes) -> None:
    # The first one used to win: 4 bytes of body kept, the other 6 dropped without a word.
    raw = OPTIONS_HEAD + lengths + b"\r\n" + b"v=0\r\nabcd"
    for stream in (False, True):
        with pytest.raises(SipParseError, match=r"appears 2 times with different values"):
            SipMessage.parse(raw, stream=stream)
    with pytest.raises(SipParseError, match=r"appears 2 times with different values"):
        StreamFramer().feed(raw)


def test_repeated_content_length_that_agrees_is_one_length() -> None:
    raw = OPTIONS_HEAD + b"Content-Length: 4\r\nl: 4\r\n\r\nv=0\rEXTRA"
    assert SipMessage.parse(raw).body == b"v=0\r"
    assert StreamFramer().feed(raw) == [raw[: -len(b"EXTRA")]]


def test_stream_framer_reads_a_folded_content_length_as_the_parser_does() -> None:
    # The framer used to read the first line only ('' -> "not a number", connection closed).
    raw = OPTIONS_HEAD + b"Content-Length:\r\n 4\r\n\r\nv=0\r"
    assert SipMessage.parse(raw, stream=True).body == b"v=0\r"
    framer = StreamFramer()
    assert framer.feed(raw + raw[:5]) == [raw]


def test_udp_body_follows_content_length_rfc3261_18_3() -> None:
    # Longer datagram: the extra bytes are not the body; shorter: the message is refused;
    # no Content-Length on UDP: the body is the rest of the datagram.
    assert SipMessage.parse(OPTIONS_HEAD + b"l: 2\r\n\r\nabcdef").body == b"ab"
    with pytest.raises(SipParseError, match="Content-Length 9 is larger than the 6"):
        SipMessage.parse(OPTIONS_HEAD + b"l: 9\r\n\r\nabcdef")
    assert SipMessage.parse(OPTIONS_HEAD + b"\r\nabcdef").body == b"abcdef"


def test_the_first_empty_line_ends_the_headers_whichever_its_line_ending() -> None:
    # Bare-LF headers and a body holding CRLF CRLF: the body's empty line used to be taken
    # as the end of the headers (its lines parsed as headers, Content-Length read there).
    head = OPTIONS_HEAD.replace(b"\r\n", b"\n")
    body = b"v=0\r\n\r\nX: y\r\n"
    raw = head + b"l: " + str(len(body)).encode() + b"\n\n" + body
    msg = SipMessage.parse(raw, stream=True)
    assert msg.body == body and msg.get("X") is None
    assert StreamFramer().feed(raw + raw) == [raw, raw]


def test_stream_framer_refuses_a_content_length_past_the_message_limit() -> None:
    # It used to buffer up to 999999 bytes of body for a message the parser then refuses.
    raw = OPTIONS_HEAD + b"Content-Length: 999999\r\n\r\nabc"
    with pytest.raises(SipParseError, match="exceeds 65535"):
        StreamFramer().feed(raw)
    ok = OPTIONS_HEAD + b"Content-Length: 3\r\n\r\nabc"
    assert StreamFramer().feed(ok) == [ok]


_CL_NAMES = st.sampled_from([b"Content-Length", b"content-length", b"l", b"L", b"CONTENT-LENGTH "])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_CL_NAMES, st.integers(0, 40)), min_size=1, max_size=4),
    st.binary(max_size=40),
)
def test_framer_and_parser_agree_on_any_set_of_content_lengths(
    headers: list[tuple[bytes, int]], body: bytes
) -> None:
    """One length, or several that agree: both cut the same body; several that disagree:
    both refuse, naming the repetition; never anything but SipParseError."""
    raw = OPTIONS_HEAD + b"".join(n + b": " + str(v).encode() + b"\r\n" for n, v in headers)
    raw += b"\r\n" + body
    values = {v for _, v in headers}
    if len(values) > 1:
        for parse in (
            lambda: SipMessage.parse(raw),
            lambda: SipMessage.parse(raw, stream=True),
            lambda: StreamFramer().feed(raw),
        ):
            with pytest.raises(SipParseError, match="different values"):
                parse()
        return
    (n,) = values
    if n > len(body):
        with pytest.raises(SipParseError, match="larger than"):
            SipMessage.parse(raw)
        assert StreamFramer().feed(raw) == []  # waits for the rest
        return
    frames = StreamFramer().feed(raw)
    assert len(frames) == 1
    assert SipMessage.parse(frames[0], stream=True).body == body[:n]
    assert SipMessage.parse(raw).body == body[:n]


def test_uri_and_via_helpers() -> None:
    u = SipUri.parse("sip:alice:secret@[2001:db8::1]:5070;transport=tcp")
    assert (u.user, u.host, u.port, u.params) == (
        "alice",
        "2001:db8::1",
        5070,
        {"transport": "tcp"},
    )
    assert str(u) == "sip:alice@[2001:db8::1]:5070;transport=tcp"
    with pytest.raises(SipParseError, match="not a sip"):
        SipUri.parse("http://x")
    with pytest.raises(SipParseError, match="port"):
        Via.parse("SIP/2.0/UDP host:99999")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_give_a_message_or_sip_parse_error(data: bytes) -> None:
    try:
        SipMessage.parse(data)
    except SipParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"\r\n",
                b":",
                b" ",
                b"\t",
                b"Via",
                b"l",
                b"CSeq: 1 X",
                b"SIP/2.0",
                b"INVITE sip:a SIP/2.0",
                b"Content-Length: 3",
                b"\xff",
                b"9",
            ]
        ),
        max_size=40,
    )
)
def test_structured_garbage_gives_a_message_or_sip_parse_error(parts: list[bytes]) -> None:
    data = b"".join(parts)
    for stream in (False, True):
        try:
            SipMessage.parse(data, stream=stream)
        except SipParseError:
            pass
    try:
        StreamFramer().feed(data)
    except SipParseError:
        pass
