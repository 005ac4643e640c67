"""STAMP test packets (RFC 8762, unauthenticated) with RFC 8972 SSID and TLVs (Class of Service).

Session-Sender packet (RFC 8762 §4.2.1; octets 14-15 are the SSID of RFC 8972 §3)::

    0    4           12   14   16                         44
    | seq| timestamp | err| SSID| MBZ (28 octets)         | TLVs ...

Session-Reflector packet (RFC 8762 §4.3.1, RFC 8972 §3)::

    0    4           12   14   16           24    28          36    38   40   41    44
    | seq| timestamp | err| SSID| receive ts | s.seq| s.timestamp| s.err| MBZ| TTL| MBZ | TLVs

The reflector copies the sender's TLVs (RFC 8972 §4), so both packets have the same size
(the symmetric sizes of RFC 8762 §4.2.1 and §4.3.1). A TLV is a flags octet (U: type
unrecognised by the reflector, M: malformed, I: integrity failed), a type octet, a 16-bit
length of the value, then the value. Types (IANA "STAMP TLV Types" registry, RFC 8972 §5):
1 Extra Padding (§4.1), 4 Class of Service (§4.4).

Class of Service value (RFC 8972 §4.4), 4 octets::

    | DSCP1 (6) | DSCP2 (6) | ECN (2) | RP (2) | reserved (16) |

DSCP1: the DSCP the sender asks the reflector to mark the reflected packet with. DSCP2 and
ECN: what the sender's packet carried when it reached the reflector (filled in by the
reflector). RP (reverse path): 0 when the reflector used DSCP1 for its reply.

The first 41 octets of a STAMP reflection have the TWAMP-light layout (RFC 8762 §4.6), so a
reply that is not a well-formed STAMP reflection is read with `agent.wire.twamp`.
Authenticated mode (RFC 8762 §4.2.2 / §4.3.2, HMAC TLV) is not implemented.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from agent.wire.twamp import TwampParseError

BASE_LEN = 44
TLV_HEADER_LEN = 4
TLV_EXTRA_PADDING = 1
TLV_CLASS_OF_SERVICE = 4
COS_VALUE_LEN = 4
FLAG_U = 0x80  # unrecognised type (set by the reflector)
FLAG_M = 0x40  # malformed TLV (set by the reflector)
FLAG_I = 0x20  # integrity check failed
MIN_WITH_COS = BASE_LEN + TLV_HEADER_LEN + COS_VALUE_LEN

_SENDER = struct.Struct("!IQHH")
_REFLECTOR = struct.Struct("!IQHHQIQHHB3x")
_TLV = struct.Struct("!BBH")


class StampParseError(TwampParseError):
    """A datagram is not a valid STAMP test packet."""


@dataclass(frozen=True)
class Tlv:
    """One RFC 8972 TLV: flags, type, value."""

    type: int
    value: bytes
    flags: int = 0

    def __bytes__(self) -> bytes:
        return _TLV.pack(self.flags, self.type, len(self.value)) + self.value


@dataclass(frozen=True)
class ClassOfService:
    """The Class-of-Service TLV's value (RFC 8972 §4.4)."""

    dscp1: int  # requested for the reflected packet
    dscp2: int = 0  # received at the reflector
    ecn: int = 0  # received at the reflector
    rp: int = 0

    @classmethod
    def parse(cls, value: bytes) -> ClassOfService:
        if len(value) != COS_VALUE_LEN:
            raise StampParseError(f"Class of Service TLV is {len(value)} octets, needs 4")
        word = int.from_bytes(value[:2], "big")
        return cls(word >> 10, (word >> 4) & 0x3F, (word >> 2) & 3, word & 3)

    def tlv(self, flags: int = 0) -> Tlv:
        for name, v, top in (("DSCP1", self.dscp1, 63), ("DSCP2", self.dscp2, 63),
                             ("ECN", self.ecn, 3), ("RP", self.rp, 3)):  # fmt: skip
            if not 0 <= v <= top:
                raise ValueError(f"Class of Service {name} is 0..{top}, not {v}")
        word = self.dscp1 << 10 | self.dscp2 << 4 | self.ecn << 2 | self.rp
        return Tlv(TLV_CLASS_OF_SERVICE, word.to_bytes(2, "big") + b"\0\0", flags)


def parse_tlvs(data: bytes, offset: int = BASE_LEN) -> tuple[Tlv, ...]:
    """The TLVs from `offset` to the end; each must fit and have a non-zero type."""
    out: list[Tlv] = []
    pos = offset
    while pos < len(data):
        if len(data) - pos < TLV_HEADER_LEN:
            raise StampParseError(f"TLV header at octet {pos} is cut short")
        flags, kind, length = _TLV.unpack_from(data, pos)
        if kind == 0:
            raise StampParseError(f"TLV at octet {pos} has type 0 (reserved)")
        end = pos + TLV_HEADER_LEN + length
        if end > len(data):
            raise StampParseError(
                f"TLV type {kind} at octet {pos} claims {length} octets, "
                f"{len(data) - pos - TLV_HEADER_LEN} left"
            )
        out.append(Tlv(kind, bytes(data[pos + TLV_HEADER_LEN : end]), flags))
        pos = end
    return tuple(out)


def is_stamp_sender(data: bytes) -> bool:
    """Whether a datagram sent to a reflector is a STAMP Session-Sender packet (RFC 8972).

    TWAMP-light (RFC 5357) and STAMP share a port and their first 14 octets; a STAMP packet
    is told apart by its body: at least 44 octets, octets 16-43 zero (the MBZ field), a
    non-zero SSID or at least one TLV, and everything after octet 44 a well-formed TLV
    sequence with non-zero types. TWAMP-light padding is zeros or random bytes: zeros give
    SSID 0 and, after octet 44, a TLV of reserved type 0; random bytes fail the MBZ check.
    A base RFC 8762 packet (SSID 0, no TLV) is byte for byte a zero-padded TWAMP-light
    packet and is answered as one; the first 41 octets of that answer have the STAMP layout.
    """
    if len(data) < BASE_LEN or any(data[16:BASE_LEN]):
        return False
    if len(data) == BASE_LEN and not any(data[14:16]):
        return False
    try:
        parse_tlvs(data)
    except StampParseError:
        return False
    return True


def find_tlv(tlvs: tuple[Tlv, ...], kind: int) -> Tlv | None:
    return next((t for t in tlvs if t.type == kind), None)


@dataclass(frozen=True)
class StampSenderPacket:
    """A STAMP Session-Sender test packet (unauthenticated)."""

    seq: int
    timestamp: int  # NTP 64-bit
    error_estimate: int = 0x0C01
    ssid: int = 0  # RFC 8972 §3; 0: not used
    tlvs: tuple[Tlv, ...] = ()

    @classmethod
    def parse(cls, data: bytes) -> StampSenderPacket:
        if len(data) < BASE_LEN:
            raise StampParseError(f"STAMP sender packet is {len(data)} octets, needs at least 44")
        seq, ts, err, ssid = _SENDER.unpack_from(data)
        return cls(seq, ts, err, ssid, parse_tlvs(data))

    def __bytes__(self) -> bytes:
        head = _SENDER.pack(self.seq, self.timestamp, self.error_estimate, self.ssid)
        return head + bytes(BASE_LEN - _SENDER.size) + b"".join(bytes(t) for t in self.tlvs)

    @property
    def cos(self) -> ClassOfService | None:
        t = find_tlv(self.tlvs, TLV_CLASS_OF_SERVICE)
        return ClassOfService.parse(t.value) if t is not None else None


@dataclass(frozen=True)
class StampReflectorPacket:
    """A STAMP Session-Reflector test packet (unauthenticated)."""

    seq: int
    timestamp: int  # NTP: when the reflector sent it (T3)
    error_estimate: int
    ssid: int
    receive_timestamp: int  # NTP: T2
    sender_seq: int
    sender_timestamp: int  # NTP: T1, copied
    sender_error_estimate: int
    sender_ttl: int
    tlvs: tuple[Tlv, ...] = ()

    @classmethod
    def parse(cls, data: bytes) -> StampReflectorPacket:
        if len(data) < BASE_LEN:
            raise StampParseError(
                f"STAMP reflector packet is {len(data)} octets, needs at least 44"
            )
        seq, ts, err, ssid, rts, sseq, sts, serr, _mbz, ttl = _REFLECTOR.unpack_from(data)
        return cls(seq, ts, err, ssid, rts, sseq, sts, serr, ttl, parse_tlvs(data))

    def __bytes__(self) -> bytes:
        head = _REFLECTOR.pack(
            self.seq, self.timestamp, self.error_estimate, self.ssid, self.receive_timestamp,
            self.sender_seq, self.sender_timestamp, self.sender_error_estimate, 0,
            self.sender_ttl,
        )  # fmt: skip
        return head + b"".join(bytes(t) for t in self.tlvs)

    def cos(self) -> ClassOfService | None:
        """The Class-of-Service TLV as the reflector filled it; None if absent or flagged."""
        t = find_tlv(self.tlvs, TLV_CLASS_OF_SERVICE)
        if t is None or t.flags & (FLAG_U | FLAG_M):
            return None
        try:
            return ClassOfService.parse(t.value)
        except StampParseError:
            return None


def reflect_tlvs(
    tlvs: tuple[Tlv, ...], received_tos: int, signature: bytes = b""
) -> tuple[tuple[Tlv, ...], int | None]:
    """The TLVs a reflector sends back, and the DSCP1 asked for (None: no CoS TLV).

    Class of Service: DSCP2/ECN filled from the TOS the sender's packet arrived with, RP 0.
    Extra Padding: copied, its first octets replaced by `signature`. Any other type:
    copied with the U flag set (RFC 8972 §4: the reflector does not know it).
    """
    out: list[Tlv] = []
    dscp1: int | None = None
    for t in tlvs:
        if t.type == TLV_CLASS_OF_SERVICE:
            try:
                cos = ClassOfService.parse(t.value)
            except StampParseError:
                out.append(replace(t, flags=t.flags | FLAG_M))
                continue
            dscp1 = cos.dscp1
            filled = ClassOfService(cos.dscp1, received_tos >> 2, received_tos & 3, 0)
            out.append(filled.tlv(t.flags & ~(FLAG_U | FLAG_M)))
        elif t.type == TLV_EXTRA_PADDING:
            sig = signature[: len(t.value)]
            out.append(replace(t, value=sig + t.value[len(sig) :]))
        else:
            out.append(replace(t, flags=t.flags | FLAG_U))
    return tuple(out), dscp1
