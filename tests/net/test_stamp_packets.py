"""STAMP packets (RFC 8762/8972): captured bytes round-trip, the CoS TLV bits, telling STAMP
from TWAMP-light on a shared port, short reflections, and parser fuzz."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.wire.stamp import (
    FLAG_M,
    FLAG_U,
    TLV_CLASS_OF_SERVICE,
    TLV_EXTRA_PADDING,
    ClassOfService,
    StampParseError,
    StampReflectorPacket,
    StampSenderPacket,
    Tlv,
    is_stamp_sender,
    parse_tlvs,
    reflect_tlvs,
)
from agent.wire.twamp import QOS_SCOUT_SIGNATURE, ReflectorPacket, SenderPacket, TwampParseError

DATA = Path(__file__).parent / "data"


def test_captured_stamp_sender_packet_round_trips() -> None:
    raw = (DATA / "stamp_sender.bin").read_bytes()
    pkt = StampSenderPacket.parse(raw)
    assert (pkt.seq, pkt.ssid, pkt.error_estimate) == (7, 0x1234, 0x0C01)
    assert [t.type for t in pkt.tlvs] == [TLV_CLASS_OF_SERVICE, TLV_EXTRA_PADDING]
    assert pkt.cos == ClassOfService(dscp1=46)
    assert bytes(pkt) == raw
    assert is_stamp_sender(raw)


def test_captured_reflection_is_symmetric_and_carries_the_cos_as_received() -> None:
    sender = StampSenderPacket.parse((DATA / "stamp_sender.bin").read_bytes())
    raw = (DATA / "stamp_reflector.bin").read_bytes()
    pkt = StampReflectorPacket.parse(raw)
    assert len(raw) == 172  # RFC 8762 §4.3.1: as long as the sender's packet
    assert (pkt.seq, pkt.ssid, pkt.sender_seq) == (0, 0x1234, 7)
    assert pkt.sender_timestamp == sender.timestamp
    assert pkt.sender_ttl == 64
    assert pkt.cos() == ClassOfService(dscp1=46, dscp2=46, ecn=0, rp=0)
    pad = next(t for t in pkt.tlvs if t.type == TLV_EXTRA_PADDING)
    assert pad.value.startswith(QOS_SCOUT_SIGNATURE)
    assert bytes(pkt) == raw
    # the TWAMP-light layout reads the same timestamps and sequence numbers (RFC 8762 §4.6)
    light = ReflectorPacket.parse(raw)
    assert (light.seq, light.sender_seq, light.receive_timestamp) == (
        pkt.seq, pkt.sender_seq, pkt.receive_timestamp)  # fmt: skip


def test_class_of_service_bits_follow_rfc8972() -> None:
    # DSCP1 46 | DSCP2 10 | ECN 1 | RP 0 = 101110 001010 01 00 = 0xB8A4
    tlv = ClassOfService(dscp1=46, dscp2=10, ecn=1).tlv()
    assert bytes(tlv) == bytes.fromhex("00040004b8a40000")
    assert ClassOfService.parse(tlv.value) == ClassOfService(46, 10, 1, 0)
    with pytest.raises(ValueError, match=r"DSCP1 is 0\.\.63, not 64"):
        ClassOfService(dscp1=64).tlv()
    with pytest.raises(StampParseError, match="3 octets, needs 4"):
        ClassOfService.parse(b"\0\0\0")


def test_stamp_and_twamp_light_are_told_apart_by_the_packet() -> None:
    stamp = StampSenderPacket(1, 2, ssid=9, tlvs=(ClassOfService(46).tlv(),))
    assert is_stamp_sender(bytes(stamp))
    assert is_stamp_sender(bytes(StampSenderPacket(1, 2, ssid=9)))  # no TLV
    # SSID 0 and no TLV: the same bytes as a TWAMP-light packet with 30 octets of zeros
    assert not is_stamp_sender(bytes(StampSenderPacket(1, 2)))
    # TWAMP-light: short, zero padding past 44 (type 0 is reserved), random padding
    assert not is_stamp_sender(bytes(SenderPacket(1, 2)))
    assert not is_stamp_sender(bytes(SenderPacket(1, 2, padding=bytes(158))))
    assert not is_stamp_sender(bytes(SenderPacket(1, 2, padding=b"\x5a" * 40)))
    # a TLV that claims more than the packet holds
    cut = bytes(stamp)[:-1]
    assert not is_stamp_sender(cut)
    with pytest.raises(StampParseError, match="claims 4 octets, 3 left"):
        parse_tlvs(cut)


def test_reflector_fills_cos_flags_unknown_and_malformed_tlvs_and_signs_padding() -> None:
    tlvs = (
        ClassOfService(dscp1=34).tlv(),
        Tlv(TLV_EXTRA_PADDING, bytes(8)),
        Tlv(200, b"abc"),
    )
    out, dscp1 = reflect_tlvs(tlvs, received_tos=(10 << 2) | 2, signature=QOS_SCOUT_SIGNATURE)
    assert dscp1 == 34
    assert ClassOfService.parse(out[0].value) == ClassOfService(34, 10, 2, 0)
    assert out[1].value == QOS_SCOUT_SIGNATURE + bytes(4)
    assert out[2] == Tlv(200, b"abc", FLAG_U)
    bad, none = reflect_tlvs((Tlv(TLV_CLASS_OF_SERVICE, b"\x01"),), 0)
    assert bad[0].flags & FLAG_M and none is None
    # a CoS TLV flagged by the reflector is not read as figures
    refl = StampReflectorPacket(0, 0, 0, 1, 0, 0, 0, 0, 64, (ClassOfService(46).tlv(FLAG_U),))
    assert refl.cos() is None


def test_short_reflections_give_what_they_hold() -> None:
    raw = bytes(ReflectorPacket(3, 11, 1, 10, 3, 9, 0x3FFF, 64))[:38]  # twampy's length
    pkt = ReflectorPacket.parse(raw)
    assert (pkt.seq, pkt.timestamp, pkt.receive_timestamp, pkt.sender_seq) == (3, 11, 10, 3)
    assert pkt.sender_error_estimate == 0x3FFF
    assert pkt.sender_ttl is None and pkt.sender_dscpe is None
    assert bytes(pkt) == raw
    assert ReflectorPacket.parse(raw[:36]).sender_error_estimate is None
    with pytest.raises(TwampParseError, match="35 octets, needs at least 36"):
        ReflectorPacket.parse(raw[:35])
    with pytest.raises(StampParseError, match="needs at least 44"):
        StampReflectorPacket.parse(raw)


@given(st.binary(max_size=2000))
def test_any_bytes_parse_or_raise_only_the_parse_error(data: bytes) -> None:
    assert isinstance(is_stamp_sender(data), bool)
    for cls in (StampSenderPacket, StampReflectorPacket):
        try:
            pkt = cls.parse(data)
        except StampParseError:
            continue
        assert bytes(pkt) == data[: len(bytes(pkt))] or cls is StampReflectorPacket


tlv_bytes = st.lists(
    st.tuples(st.integers(0, 255), st.integers(1, 255), st.binary(max_size=40)), max_size=6
).map(lambda ts: b"".join(bytes(Tlv(k, v, f)) for f, k, v in ts))


@given(st.binary(min_size=16, max_size=16), tlv_bytes, st.integers(0, 255))
def test_any_well_formed_stamp_packet_is_reflected_without_error(
    head: bytes, tlvs: bytes, tos: int
) -> None:
    data = head + bytes(28) + tlvs
    assert is_stamp_sender(data) == (bool(tlvs) or any(head[14:16]))
    pkt = StampSenderPacket.parse(data)
    out, _ = reflect_tlvs(pkt.tlvs, tos, QOS_SCOUT_SIGNATURE)
    assert sum(len(bytes(t)) for t in out) == len(tlvs)  # symmetric size
