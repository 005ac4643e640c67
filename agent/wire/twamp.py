"""TWAMP-light test packets (RFC 5357 §4.1.2 / §4.2.1, unauthenticated) with RFC 7750 DSCP/ECN.

Sender packet::

    0      4              12     14
    | seq  | timestamp    | err  | padding ...

Reflector packet (41 octets + RFC 7750 octet + MBZ, then padding)::

    0    4          12   14   16             24          28          36   38   40  41     42  44
    | seq| timestamp| err| MBZ| receive ts   | sender seq| sender ts | s.err| MBZ| TTL| DSCPE| MBZ |

Reflectors in the field send less: some stop after the sender's error estimate (38 octets,
no MBZ or TTL). `ReflectorPacket.parse` takes what the packet holds from 36 octets on (the
four timestamps and both sequence numbers) and leaves the rest None.

DSCPE (RFC 7750 §4.2.1) carries the DSCP (6 high bits) and ECN (2 low bits) of the IP header
of the sender's packet as the reflector received it. A reflector without RFC 7750 puts padding
there, so the sender only trusts it when told to or when the reflector signs its padding
with `QOS_SCOUT_SIGNATURE` (ours does).

Timestamps are 64-bit NTP (seconds since 1900, 32-bit fraction), converted here from and to
integer nanoseconds since the Unix epoch. Error estimate (RFC 4656 §4.1.2): S bit (clock
synchronised to UTC), Z bit, 6-bit scale, 8-bit multiplier.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

NTP_UNIX_OFFSET_S = 2_208_988_800
SENDER_MIN_LEN = 14
REFLECTOR_MIN_LEN = 36  # up to and including the sender timestamp
REFLECTOR_FULL_LEN = 41  # RFC 5357 §4.2.1: through the sender TTL
REFLECTOR_7750_LEN = 44
QOS_SCOUT_SIGNATURE = b"QSR1"  # padding octets 44..47 of reflections from our responder

_SENDER = struct.Struct("!IQH")
_REFLECTOR = struct.Struct("!IQHHQIQHHB")
_REFLECTOR_SHORT = struct.Struct("!IQHHQIQ")


class TwampParseError(ValueError):
    """A datagram is not a valid TWAMP-light test packet."""


def ns_to_ntp(unix_ns: int) -> int:
    """Unix time in ns -> 64-bit NTP timestamp (wraps in 2036 like NTP era 0)."""
    if unix_ns < 0:
        raise ValueError("time before 1970 cannot be sent as a TWAMP timestamp")
    sec, rem = divmod(unix_ns, 1_000_000_000)
    frac = (rem << 32) // 1_000_000_000
    return (((sec + NTP_UNIX_OFFSET_S) & 0xFFFFFFFF) << 32) | frac


def ntp_to_ns(ntp: int) -> int:
    """64-bit NTP timestamp -> Unix time in ns (era 0, i.e. until 2036, then era 1)."""
    sec = ntp >> 32
    if sec < NTP_UNIX_OFFSET_S:  # NTP era 1 (after 2036-02-07)
        sec += 1 << 32
    frac = ntp & 0xFFFFFFFF
    return (sec - NTP_UNIX_OFFSET_S) * 1_000_000_000 + ((frac * 1_000_000_000 + (1 << 31)) >> 32)


def error_estimate(*, synchronized: bool = False, scale: int = 12, multiplier: int = 1) -> int:
    """Pack an RFC 4656 error estimate: multiplier * 2^(scale-32) s (default ~1 µs), S bit."""
    if not 0 <= scale < 64 or not 0 < multiplier < 256:
        raise ValueError("error estimate: scale is 0..63 and multiplier 1..255")
    return (0x8000 if synchronized else 0) | (scale << 8) | multiplier


@dataclass(frozen=True)
class SenderPacket:
    """A Session-Sender test packet (unauthenticated)."""

    seq: int
    timestamp: int  # NTP 64-bit
    error_estimate: int = 0x0C01  # not synchronised, ~1 µs (see error_estimate())
    padding: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> SenderPacket:
        if len(data) < SENDER_MIN_LEN:
            raise TwampParseError(f"sender packet is {len(data)} octets, needs at least 14")
        seq, ts, err = _SENDER.unpack_from(data)
        return cls(seq, ts, err, bytes(data[SENDER_MIN_LEN:]))

    def __bytes__(self) -> bytes:
        return _SENDER.pack(self.seq, self.timestamp, self.error_estimate) + self.padding


@dataclass(frozen=True)
class ReflectorPacket:
    """A Session-Reflector test packet (unauthenticated), with the RFC 7750 DSCPE octet."""

    seq: int
    timestamp: int  # NTP: when the reflector sent this packet (T3)
    error_estimate: int
    receive_timestamp: int  # NTP: when the reflector received the sender's packet (T2)
    sender_seq: int
    sender_timestamp: int  # NTP: copied from the sender's packet (T1)
    sender_error_estimate: int | None  # None: the reflection stops before it
    sender_ttl: int | None  # None: the reflection stops before it
    sender_dscpe: int | None = None  # RFC 7750: DSCP << 2 | ECN as received; None if absent
    padding: bytes = b""

    @property
    def sender_dscp(self) -> int | None:
        return None if self.sender_dscpe is None else self.sender_dscpe >> 2

    @property
    def sender_ecn(self) -> int | None:
        return None if self.sender_dscpe is None else self.sender_dscpe & 3

    @property
    def signed(self) -> bool:
        """True when the padding carries our responder's signature (it implements RFC 7750)."""
        return self.padding.startswith(QOS_SCOUT_SIGNATURE)

    @classmethod
    def parse(cls, data: bytes) -> ReflectorPacket:
        if len(data) < REFLECTOR_MIN_LEN:
            raise TwampParseError(f"reflector packet is {len(data)} octets, needs at least 36")
        if len(data) < REFLECTOR_FULL_LEN:
            seq, ts, err, _mbz1, rts, sseq, sts = _REFLECTOR_SHORT.unpack_from(data)
            serr = int.from_bytes(data[36:38], "big") if len(data) >= 38 else None
            return cls(seq, ts, err, rts, sseq, sts, serr, None)
        seq, ts, err, _mbz1, rts, sseq, sts, serr, _mbz2, ttl = _REFLECTOR.unpack_from(data)
        dscpe = data[41] if len(data) >= REFLECTOR_7750_LEN else None
        padding = bytes(data[REFLECTOR_7750_LEN:]) if dscpe is not None else b""
        return cls(seq, ts, err, rts, sseq, sts, serr, ttl, dscpe, padding)

    def __bytes__(self) -> bytes:
        if self.sender_ttl is None:  # a short reflection: as long as what it holds
            short = _REFLECTOR_SHORT.pack(
                self.seq, self.timestamp, self.error_estimate, 0, self.receive_timestamp,
                self.sender_seq, self.sender_timestamp,
            )  # fmt: skip
            if self.sender_error_estimate is None:
                return short
            return short + self.sender_error_estimate.to_bytes(2, "big")
        head = _REFLECTOR.pack(
            self.seq,
            self.timestamp,
            self.error_estimate,
            0,
            self.receive_timestamp,
            self.sender_seq,
            self.sender_timestamp,
            self.sender_error_estimate or 0,
            0,
            self.sender_ttl,
        )
        if self.sender_dscpe is None:
            return head + self.padding
        return head + bytes([self.sender_dscpe, 0, 0]) + self.padding
