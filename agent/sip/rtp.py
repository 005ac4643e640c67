"""RTP and RTCP packets as the call path uses them (RFC 3550), and the G.711 test tone.

The RTP header, RTCP sender and receiver reports (with their report blocks) and BYE, built
and parsed byte for byte as aiortc's `RtpPacket` / `RtcpPacket` classes do, and G.711 encoded
as FFmpeg's `pcm_mulaw` / `pcm_alaw` encoders (the ones aiortc uses) do;
tests/sip/test_rtp_packets.py holds both to aiortc. Kept here so a G.711 call loads neither
aiortc nor PyAV, FFmpeg, numpy and cryptography with it (60 MiB and more of resident memory
in the agent and in the RTP sender process). Parsing fails only with ValueError.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from struct import pack, unpack_from

RTP_HEADER = 12
RTCP_SR, RTCP_RR, RTCP_BYE = 200, 201, 203


@dataclass(slots=True)
class RtpHeader:
    """What the receiver needs of an RTP packet."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes


def rtp_packet(payload_type: int, sequence_number: int, timestamp: int, ssrc: int,
               payload: bytes, marker: int = 0) -> bytes:  # fmt: skip
    """An RTP packet without CSRCs, extension or padding."""
    head = pack("!BBHLL", 0x80, (marker << 7) | payload_type, sequence_number, timestamp, ssrc)
    return head + payload


def parse_rtp(data: bytes) -> RtpHeader:
    """The header and payload of an RTP packet (CSRCs and extension skipped, padding
    removed); ValueError for what aiortc's parser refuses."""
    if len(data) < RTP_HEADER:
        raise ValueError(f"RTP packet length is less than {RTP_HEADER} bytes")
    first, m_pt, seq, ts, ssrc = unpack_from("!BBHLL", data)
    if first >> 6 != 2:
        raise ValueError("RTP packet has invalid version")
    pos = RTP_HEADER + 4 * (first & 0x0F)
    if len(data) < pos:
        raise ValueError("RTP packet has truncated CSRC")
    if first & 0x10:
        if len(data) < pos + 4:
            raise ValueError("RTP packet has truncated extension profile / length")
        pos += 4 + 4 * unpack_from("!H", data, pos + 2)[0]
        if len(data) < pos:
            raise ValueError("RTP packet has truncated extension value")
    end = len(data)
    if first & 0x20:
        pad = data[-1]
        if not pad or pad > len(data) - pos:
            raise ValueError("RTP packet padding length is invalid")
        end -= pad
    return RtpHeader(m_pt & 0x7F, seq, ts, ssrc, bytes(data[pos:end]))


@dataclass(slots=True)
class ReportBlock:
    """An RTCP report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int
    packets_lost: int  # cumulative, signed 24 bits
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int

    def __bytes__(self) -> bytes:
        lost = pack("!l", self.packets_lost)[1:]
        tail = pack("!LLLL", self.highest_sequence, self.jitter, self.lsr, self.dlsr)
        return pack("!LB", self.ssrc, self.fraction_lost) + lost + tail

    @classmethod
    def parse(cls, data: bytes, pos: int) -> ReportBlock:
        ssrc, fraction = unpack_from("!LB", data, pos)
        raw = data[pos + 5 : pos + 8]
        lost = unpack_from("!l", (b"\xff" if raw[0] & 0x80 else b"\x00") + raw)[0]
        highest, jitter, lsr, dlsr = unpack_from("!LLLL", data, pos + 8)
        return cls(ssrc, fraction, lost, highest, jitter, lsr, dlsr)


@dataclass(slots=True)
class Report:
    """An RTCP sender report (`sender` set: NTP timestamp, RTP timestamp, packet and octet
    counts) or receiver report (`sender` None), with its report blocks."""

    ssrc: int
    sender: tuple[int, int, int, int] | None = None
    reports: list[ReportBlock] = field(default_factory=list)

    def __bytes__(self) -> bytes:
        body = pack("!L", self.ssrc)
        if self.sender is not None:
            body += pack("!QLLL", *self.sender)
        body += b"".join(bytes(r) for r in self.reports)
        kind = RTCP_SR if self.sender is not None else RTCP_RR
        return _rtcp(kind, len(self.reports), body)


def rtcp_bye(sources: list[int]) -> bytes:
    return _rtcp(RTCP_BYE, len(sources), b"".join(pack("!L", s) for s in sources))


def _rtcp(kind: int, count: int, body: bytes) -> bytes:
    return pack("!BBH", 0x80 | count, kind, len(body) // 4) + body


def parse_rtcp(data: bytes) -> list[Report]:
    """The sender and receiver reports of a compound RTCP packet (other packet types are
    skipped); ValueError for a packet aiortc's parser refuses on its framing or reports."""
    pos, out = 0, []
    while pos < len(data):
        if len(data) < pos + 4:
            raise ValueError("RTCP packet length is less than 4 bytes")
        first, kind, words = unpack_from("!BBH", data, pos)
        if first >> 6 != 2:
            raise ValueError("RTCP packet has invalid version")
        start, end = pos + 4, pos + 4 + 4 * words
        if len(data) < end:
            raise ValueError("RTCP packet is truncated")
        pos = end
        body = data[start:end]
        if first & 0x20:
            if not body or not body[-1] or body[-1] > len(body):
                raise ValueError("RTCP packet padding length is invalid")
            body = body[: -body[-1]]
        count = first & 0x1F
        if kind == RTCP_SR:
            if len(body) != 24 + 24 * count:
                raise ValueError("RTCP sender report length is invalid")
            sender = unpack_from("!QLLL", body, 4)
            blocks = [ReportBlock.parse(body, 24 + 24 * i) for i in range(count)]
            out.append(Report(unpack_from("!L", body)[0], sender, blocks))
        elif kind == RTCP_RR:
            if len(body) != 4 + 24 * count:
                raise ValueError("RTCP receiver report length is invalid")
            blocks = [ReportBlock.parse(body, 4 + 24 * i) for i in range(count)]
            out.append(Report(unpack_from("!L", body)[0], None, blocks))
    return out


# G.711 as FFmpeg encodes it (libavcodec/pcm_tablegen.h): a table from the 14 high bits of
# a linear sample to the code whose value is nearest.


def _ulaw2linear(u: int) -> int:
    u = ~u & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - t) if u & 0x80 else (t - 0x84)


def _alaw2linear(a: int) -> int:
    a ^= 0x55
    t, seg = a & 0x0F, (a & 0x70) >> 4
    t = (t + t + 1 + 32) << (seg + 2) if seg else (t + t + 1) << 3
    return t if a & 0x80 else -t


@functools.cache
def _xlaw_table(f: Callable[[int], int], mask: int) -> bytes:
    table = bytearray(16384)
    table[8192] = mask
    j = 1
    for i in range(127):
        v = (f(i ^ mask) + f((i + 1) ^ mask) + 4) >> 3
        while j < v:
            table[8192 - j] = i ^ (mask ^ 0x80)
            table[8192 + j] = i ^ mask
            j += 1
    while j < 8192:
        table[8192 - j] = 127 ^ (mask ^ 0x80)
        table[8192 + j] = 127 ^ mask
        j += 1
    table[0] = table[1]
    return bytes(table)


def g711_encode(samples: list[int], payload_type: int) -> bytes:
    """16-bit linear samples as G.711 µ-law (payload type 0) or A-law (8)."""
    table = (
        _xlaw_table(_ulaw2linear, 0xFF) if payload_type == 0 else _xlaw_table(_alaw2linear, 0xD5)
    )
    return bytes(table[(s + 32768) >> 2] for s in samples)


def tone(rate: int, seconds: float, hz: float = 440.0, amplitude: int = 3276) -> list[int]:
    """A sine at -20 dBFS (amplitude 3276 of 32767) as 16-bit samples, truncated toward zero
    (numpy's `astype(int16)` of the same expression)."""
    w = 2 * math.pi * hz
    return [int(math.sin(w * (i / rate)) * amplitude) for i in range(int(rate * seconds))]
