"""Wire format of the bandwidth test (agent <-> responder), shared by both sides.

TCP control and data connections open with JSON control messages, each a 4-octet
big-endian length and a UTF-8 JSON object (`ControlMessage`)::

    0        4
    | length | JSON object (length octets)

A responder reads requests of at most `MAX_MSG` octets; its replies carry per-stream
samples and an agent reads them up to `MAX_REPLY`.

UDP datagrams (on the same port number): `QSBU`, a type octet, the 8-octet test id, then::

    type 1 DataPacket:      | seq (32 bits) | send time, ns (64 bits) | zero padding to the size
    type 2 CountersRequest: (nothing: the agent asks for the sink's counters of the test)
    type 3 CountersReport:  | JSON object (received, bytes, duplicates, jitter_ms, ...)
    type 5 Hello:           (nothing: opens the path for a downstream test through NAT)
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

MAGIC = b"QSBU"
DATA, COUNTERS_REQUEST, COUNTERS_REPORT, HELLO = 1, 2, 3, 5
TEST_ID_LEN = 8
HEADER_LEN = len(MAGIC) + 1 + TEST_ID_LEN  # 13: magic, type, test id
LENGTH_LEN = 4
MAX_MSG = 65536  # a request to the responder
MAX_REPLY = 16 << 20  # a reply from it (64 streams x 600 RTT samples fit easily)

_LENGTH = struct.Struct("!I")
_DATA = struct.Struct("!4sB8sIQ")  # magic, type 1, test id, seq, send time ns
DATA_HEADER_LEN = _DATA.size  # 25: the smallest data packet


class BwFrameError(ValueError):
    """Bytes are not a valid bandwidth-test message."""


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, too deep, huge ints
        raise BwFrameError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BwFrameError(f"{what} is not a JSON object")
    return obj


def _header(data: bytes, kind: int, name: str) -> bytes:
    """Check magic and type; return the test id."""
    if len(data) < HEADER_LEN or data[:4] != MAGIC:
        raise BwFrameError("not a bandwidth-test datagram")
    if data[4] != kind:
        raise BwFrameError(f"datagram of type {data[4]} is not a {name} (type {kind})")
    return data[5:HEADER_LEN]


def _check_id(test_id: bytes) -> None:
    if len(test_id) != TEST_ID_LEN:
        raise BwFrameError(f"a test id is {TEST_ID_LEN} octets, not {len(test_id)}")


@dataclass(frozen=True)
class ControlMessage:
    """One JSON control message on a TCP connection."""

    body: dict[str, Any]

    @staticmethod
    def read_length(head: bytes, limit: int = MAX_MSG) -> int:
        """The length of the JSON body from the 4-octet prefix, refused over `limit`."""
        if len(head) != LENGTH_LEN:
            raise BwFrameError(f"a length prefix is {LENGTH_LEN} octets, not {len(head)}")
        (n,) = _LENGTH.unpack(head)
        if n > limit:
            raise BwFrameError(f"message of {n} octets is too long (at most {limit})")
        return n

    @staticmethod
    def parse_body(data: bytes) -> dict[str, Any]:
        return _json_object(data, "message")

    @classmethod
    def parse(cls, data: bytes, limit: int = MAX_MSG) -> ControlMessage:
        """A whole message: length prefix and exactly that many octets of JSON."""
        n = cls.read_length(data[:LENGTH_LEN], limit)
        if len(data) != LENGTH_LEN + n:
            raise BwFrameError(f"message says {n} octets but carries {len(data) - LENGTH_LEN}")
        return cls(cls.parse_body(data[LENGTH_LEN:]))

    def __bytes__(self) -> bytes:
        body = json.dumps(self.body).encode()
        return _LENGTH.pack(len(body)) + body


class DataPacket(NamedTuple):
    """A type 1 datagram of the constant-rate stream; `size` is the whole datagram.

    A NamedTuple, not a frozen dataclass: it is built once per datagram (~100,000 a
    second at 1 Gbit/s) and a frozen dataclass costs three times as much to construct.
    """

    test_id: bytes
    seq: int
    send_ns: int
    size: int = DATA_HEADER_LEN

    @classmethod
    def parse(cls, data: bytes) -> DataPacket:
        if len(data) < DATA_HEADER_LEN:  # the hot path: one unpack, then the checks
            _header(data, DATA, "data packet")
            raise BwFrameError(f"data packet is {len(data)} octets, needs {DATA_HEADER_LEN}")
        magic, kind, test_id, seq, send_ns = _DATA.unpack_from(data)
        if magic != MAGIC or kind != DATA:
            _header(data, DATA, "data packet")  # raises, naming what is wrong
        return cls(test_id, seq, send_ns, len(data))

    def __bytes__(self) -> bytes:
        _check_id(self.test_id)
        if self.size < DATA_HEADER_LEN:
            raise BwFrameError(f"a data packet is at least {DATA_HEADER_LEN} octets")
        try:
            head = _DATA.pack(MAGIC, DATA, self.test_id, self.seq, self.send_ns)
        except struct.error as exc:
            raise BwFrameError(f"data packet field out of range: {exc}") from None
        return head + bytes(self.size - DATA_HEADER_LEN)


@dataclass(frozen=True)
class _IdOnly:
    test_id: bytes

    KIND: ClassVar[int] = 0
    NAME: ClassVar[str] = ""

    @classmethod
    def _parse_id(cls, data: bytes) -> bytes:
        test_id = _header(data, cls.KIND, cls.NAME)
        if len(data) != HEADER_LEN:
            raise BwFrameError(f"{cls.NAME} is {len(data)} octets, not {HEADER_LEN}")
        return test_id

    def __bytes__(self) -> bytes:
        _check_id(self.test_id)
        return MAGIC + bytes((self.KIND,)) + self.test_id


@dataclass(frozen=True)
class CountersRequest(_IdOnly):
    """Type 2: the agent asks the responder's UDP sink for the test's counters."""

    KIND = COUNTERS_REQUEST
    NAME = "counters request"

    @classmethod
    def parse(cls, data: bytes) -> CountersRequest:
        return cls(cls._parse_id(data))


@dataclass(frozen=True)
class Hello(_IdOnly):
    """Type 5: the agent's UDP socket says where a downstream test is to be sent."""

    KIND = HELLO
    NAME = "hello"

    @classmethod
    def parse(cls, data: bytes) -> Hello:
        return cls(cls._parse_id(data))


@dataclass(frozen=True)
class CountersReport:
    """Type 3: the sink's counters of a test, a JSON object (`UdpTestCounters.as_dict()`)."""

    test_id: bytes
    counters: dict[str, Any]

    @classmethod
    def parse(cls, data: bytes) -> CountersReport:
        test_id = _header(data, COUNTERS_REPORT, "counters report")
        return cls(test_id, _json_object(data[HEADER_LEN:], "counters report"))

    def __bytes__(self) -> bytes:
        _check_id(self.test_id)
        return MAGIC + bytes((COUNTERS_REPORT,)) + self.test_id + json.dumps(self.counters).encode()


Datagram = DataPacket | CountersRequest | CountersReport | Hello
_BY_KIND: dict[int, Any] = {
    DATA: DataPacket, COUNTERS_REQUEST: CountersRequest,
    COUNTERS_REPORT: CountersReport, HELLO: Hello,
}  # fmt: skip


def parse_datagram(data: bytes) -> Datagram:
    """Any bandwidth-test datagram, by its type octet."""
    if len(data) < HEADER_LEN or data[:4] != MAGIC:
        raise BwFrameError("not a bandwidth-test datagram")
    kind = _BY_KIND.get(data[4])
    if kind is None:
        raise BwFrameError(f"unknown bandwidth-test datagram type {data[4]}")
    result: Datagram = kind.parse(data)
    return result
