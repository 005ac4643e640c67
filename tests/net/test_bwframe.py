"""The bandwidth test's wire format: the exact octets of each message, the length limit, and
any bytes either parse or raise BwFrameError (an older agent must keep talking to a newer
responder, so these layouts are the protocol)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.wire.bwframe import (
    DATA_HEADER_LEN,
    MAX_MSG,
    MAX_REPLY,
    BwFrameError,
    ControlMessage,
    CountersReport,
    CountersRequest,
    DataPacket,
    Hello,
    parse_datagram,
)

TEST_ID = bytes.fromhex("0123456789abcdef")


def test_control_message_is_a_4_octet_length_and_json_as_json_dumps_writes_it() -> None:
    msg = {"v": 1, "role": "data", "test": "ab", "stream": 0}
    body = b'{"v": 1, "role": "data", "test": "ab", "stream": 0}'
    wire = b"\x00\x00\x00\x33" + body
    assert len(body) == 0x33
    assert bytes(ControlMessage(msg)) == wire
    assert ControlMessage.parse(wire) == ControlMessage(msg)
    assert ControlMessage.read_length(wire[:4]) == 0x33
    assert ControlMessage.parse_body(body) == msg


def test_control_message_length_is_refused_over_the_limit() -> None:
    assert ControlMessage.read_length(MAX_MSG.to_bytes(4, "big")) == MAX_MSG
    with pytest.raises(BwFrameError, match="65537 octets is too long"):
        ControlMessage.read_length((MAX_MSG + 1).to_bytes(4, "big"))
    # a reply (per-stream RTT samples) may be longer than a request
    assert ControlMessage.read_length((MAX_MSG + 1).to_bytes(4, "big"), MAX_REPLY) == MAX_MSG + 1
    with pytest.raises(BwFrameError, match="4 octets, not 3"):
        ControlMessage.read_length(b"\x00\x00\x01")
    with pytest.raises(BwFrameError, match="says 5 octets but carries 2"):
        ControlMessage.parse(b"\x00\x00\x00\x05{}")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]", "not a JSON object"),
        (b"null", "not a JSON object"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe\xfd", "not valid JSON"),
        (b"[" * 50_000, "not valid JSON"),  # nesting too deep for the decoder
    ],
)
def test_control_message_body_must_be_a_json_object(body: bytes, message: str) -> None:
    with pytest.raises(BwFrameError, match=message):
        ControlMessage.parse_body(body)


def test_data_packet_is_magic_type_id_seq_send_ns_and_zero_padding() -> None:
    seq, ns = 0x01020304, 0x1122334455667788
    wire = b"QSBU\x01" + TEST_ID + b"\x01\x02\x03\x04" + b"\x11\x22\x33\x44\x55\x66\x77\x88"
    assert len(wire) == DATA_HEADER_LEN == 25
    assert bytes(DataPacket(TEST_ID, seq, ns)) == wire
    assert bytes(DataPacket(TEST_ID, seq, ns, 1200)) == wire + bytes(1175)
    assert DataPacket.parse(wire + bytes(1175)) == DataPacket(TEST_ID, seq, ns, 1200)
    assert parse_datagram(wire) == DataPacket(TEST_ID, seq, ns, 25)


def test_data_packet_refuses_short_or_foreign_datagrams_and_bad_fields() -> None:
    wire = bytes(DataPacket(TEST_ID, 1, 2))
    with pytest.raises(BwFrameError, match="24 octets, needs 25"):
        DataPacket.parse(wire[:24])
    with pytest.raises(BwFrameError, match="type 2 is not a data packet"):
        DataPacket.parse(b"QSBU\x02" + wire[5:])
    with pytest.raises(BwFrameError, match="not a bandwidth-test datagram"):
        DataPacket.parse(b"QSBX" + wire[4:])
    with pytest.raises(BwFrameError, match="test id is 8 octets"):
        bytes(DataPacket(b"short", 1, 2))
    with pytest.raises(BwFrameError, match="out of range"):
        bytes(DataPacket(TEST_ID, 1 << 32, 2))
    with pytest.raises(BwFrameError, match="at least 25"):
        bytes(DataPacket(TEST_ID, 1, 2, 24))


def test_counters_request_and_hello_are_magic_type_and_test_id() -> None:
    assert bytes(CountersRequest(TEST_ID)) == b"QSBU\x02" + TEST_ID
    assert bytes(Hello(TEST_ID)) == b"QSBU\x05" + TEST_ID
    assert CountersRequest.parse(b"QSBU\x02" + TEST_ID) == CountersRequest(TEST_ID)
    assert Hello.parse(b"QSBU\x05" + TEST_ID) == Hello(TEST_ID)
    assert parse_datagram(b"QSBU\x05" + TEST_ID) == Hello(TEST_ID)
    with pytest.raises(BwFrameError, match="hello is 14 octets, not 13"):
        Hello.parse(b"QSBU\x05" + TEST_ID + b"x")
    with pytest.raises(BwFrameError, match="type 5 is not a counters request"):
        CountersRequest.parse(b"QSBU\x05" + TEST_ID)


def test_counters_report_is_type_3_test_id_and_json() -> None:
    counters = {"received": 10, "bytes": 12000, "duplicates": 0, "jitter_ms": 0.25}
    wire = b"QSBU\x03" + TEST_ID + json.dumps(counters).encode()
    assert wire.endswith(b'{"received": 10, "bytes": 12000, "duplicates": 0, "jitter_ms": 0.25}')
    assert bytes(CountersReport(TEST_ID, counters)) == wire
    assert CountersReport.parse(wire) == CountersReport(TEST_ID, counters)
    assert parse_datagram(wire) == CountersReport(TEST_ID, counters)
    with pytest.raises(BwFrameError, match="counters report is not a JSON object"):
        CountersReport.parse(b"QSBU\x03" + TEST_ID + b"[]")


def test_unknown_datagram_types_are_refused() -> None:
    with pytest.raises(BwFrameError, match="unknown bandwidth-test datagram type 4"):
        parse_datagram(b"QSBU\x04" + TEST_ID)


PARSERS: list[Callable[[bytes], object]] = [
    ControlMessage.parse,
    ControlMessage.read_length,
    ControlMessage.parse_body,
    DataPacket.parse,
    CountersRequest.parse,
    CountersReport.parse,
    Hello.parse,
    parse_datagram,
]

# random bytes, and bytes behind a valid prefix so the parsers get past the first checks
ANY_BYTES = st.binary(max_size=2000) | st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from([b"QSBU\x01" + TEST_ID, b"QSBU\x02", b"QSBU\x03" + TEST_ID, b"QSBU\x05",
                     b"\x00\x00\x00\x10", b"\x00\x00\x00\x02{}"]),
    st.binary(max_size=200),
)  # fmt: skip


@given(ANY_BYTES)
def test_any_bytes_parse_or_raise_only_bwframeerror(data: bytes) -> None:
    for parse in PARSERS:
        try:
            parse(data)
        except BwFrameError:
            pass


@given(st.dictionaries(st.text(max_size=10), st.integers() | st.floats() | st.text(max_size=10)))
def test_any_json_object_round_trips_through_a_control_message(body: dict) -> None:
    wire = bytes(ControlMessage(body))
    assert ControlMessage.read_length(wire[:4]) == len(wire) - 4
    assert bytes(ControlMessage.parse(wire)) == wire
