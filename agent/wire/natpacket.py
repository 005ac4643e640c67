"""Wire format of the NAT binding test (agent <-> responder), shared by both sides.

Every datagram: `QSNB`, version 1, a type octet, a 16-octet token, then a body:

- BIND (1), agent socket S -> server: the server remembers the token's source address.
- BOUND (2), server -> S: body is the address it saw, "ip port" (UTF-8).
- TRIGGER (3), a *different* agent socket C -> server, after S stayed idle N seconds.
- PROBE (4), server -> the address remembered for the token (S's mapping), 3 copies.
- ACK (5), server -> C: the trigger arrived (so a lost trigger is not a lost binding).
"""

from __future__ import annotations

from dataclasses import dataclass

MAGIC = b"QSNB"
VERSION = 1
BIND, BOUND, TRIGGER, PROBE, ACK = 1, 2, 3, 4, 5
TOKEN_LEN = 16
HEADER_LEN = len(MAGIC) + 2 + TOKEN_LEN
MAX_BODY = 256


class NatWireError(ValueError):
    """A datagram is not a NAT-binding test message."""


@dataclass(frozen=True)
class NatMessage:
    kind: int
    token: bytes
    body: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> NatMessage:
        if len(data) < HEADER_LEN or data[:4] != MAGIC:
            raise NatWireError("not a NAT-binding test message")
        if data[4] != VERSION:
            raise NatWireError(f"NAT-binding test version {data[4]} is not supported")
        kind = data[5]
        if kind not in (BIND, BOUND, TRIGGER, PROBE, ACK):
            raise NatWireError(f"unknown NAT-binding message type {kind}")
        body = data[HEADER_LEN:]
        if len(body) > MAX_BODY:
            raise NatWireError("NAT-binding message body is too long")
        return cls(kind, data[6:HEADER_LEN], body)

    def __bytes__(self) -> bytes:
        if len(self.token) != TOKEN_LEN:
            raise NatWireError(f"token must be {TOKEN_LEN} octets")
        return MAGIC + bytes((VERSION, self.kind)) + self.token + self.body
