"""TWAMP-light packets: captured bytes round-trip, NTP timestamps, and a parser fuzz."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.wire.twamp import (
    ReflectorPacket,
    SenderPacket,
    TwampParseError,
    error_estimate,
    ns_to_ntp,
    ntp_to_ns,
)

DATA = Path(__file__).parent / "data"


def test_captured_sender_packet_round_trips() -> None:
    raw = (DATA / "twamp_sender.bin").read_bytes()
    pkt = SenderPacket.parse(raw)
    assert pkt.seq == 7
    assert pkt.error_estimate == 0x0C01
    assert len(pkt.padding) == 172 - 14
    assert bytes(pkt) == raw


def test_captured_reflection_carries_the_sender_fields_and_rfc7750_octet() -> None:
    sender = SenderPacket.parse((DATA / "twamp_sender.bin").read_bytes())
    raw = (DATA / "twamp_reflector.bin").read_bytes()
    pkt = ReflectorPacket.parse(raw)
    assert (pkt.seq, pkt.sender_seq, pkt.sender_timestamp) == (0, 7, sender.timestamp)
    assert pkt.sender_ttl == 64
    assert (pkt.sender_dscp, pkt.sender_ecn) == (0, 0)
    assert pkt.signed
    assert len(raw) == 172  # symmetrical size
    assert ntp_to_ns(pkt.timestamp) >= ntp_to_ns(pkt.receive_timestamp)
    assert bytes(pkt) == raw


def test_ntp_timestamps_convert_to_unix_nanoseconds_and_back() -> None:
    t = 1_790_000_000_123_456_789
    assert abs(ntp_to_ns(ns_to_ntp(t)) - t) <= 1  # 2^-32 s resolution
    assert ns_to_ntp(0) >> 32 == 2_208_988_800
    assert ns_to_ntp(500_000_000) & 0xFFFFFFFF == 1 << 31


def test_short_packets_fail_with_a_parse_error() -> None:
    with pytest.raises(TwampParseError, match="needs at least 14"):
        SenderPacket.parse(b"\x00" * 13)
    with pytest.raises(TwampParseError, match="needs at least 36"):
        ReflectorPacket.parse(b"\x00" * 35)
    # a plain RFC 5357 reflection (41 octets) has no DSCP octet
    assert ReflectorPacket.parse(b"\x00" * 41).sender_dscpe is None


def test_error_estimate_packs_s_bit_scale_and_multiplier() -> None:
    assert error_estimate(synchronized=True, scale=1, multiplier=2) == 0x8102
    with pytest.raises(ValueError):
        error_estimate(multiplier=0)


@given(st.binary(max_size=2000))
def test_any_bytes_parse_or_raise_only_the_parse_error(data: bytes) -> None:
    for cls in (SenderPacket, ReflectorPacket):
        try:
            pkt = cls.parse(data)
        except TwampParseError:
            continue
        assert bytes(pkt)[: len(data)] == data[: len(bytes(pkt))] or cls is ReflectorPacket
