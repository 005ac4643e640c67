"""The stored form of a result's measurement: compact bytes, decoded to the same JSON value.

A voice stream's measurement is mostly per-packet arrays (`rtt_samples_ms`: 1,500 numbers
for 30 s of G.711), which cost ~7 bytes each as JSON text. Stored, every list of at least
`MIN_PACKED` numbers (floats and nulls, no integers or booleans, whose JSON type must
survive) is taken out of the document and packed: as scaled integers, delta and zigzag
varint coded, when every value has at most `MAX_DECIMALS` decimals (the probes round
samples to the microsecond), else as IEEE doubles. The rest of the document stays JSON,
and the whole is deflated. Decoding gives back exactly the value that was encoded (every
float bit for bit, nulls, key order), so every reader sees the measurement the agent sent.

Layout: one format byte (`FORMAT`), then raw deflate (preset dictionary `ZDICT`) of: varint
length of a JSON document
`[measurement without the packed arrays, [[path, kind, scale, count], ...]]`, that
document, then each packed array's bytes in order.
"""

from __future__ import annotations

import math
import struct
import uuid
import zlib
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

FORMAT = 1
# The preset dictionary of the deflate stream: the measurement models' field names as JSON
# keys, so a small document does not pay for spelling its keys. FROZEN: stored bytes need
# the very dictionary they were written with; a new one needs a new FORMAT.
# fmt: off
_DICT_KEYS = (
    "address", "alg_evidence", "answer_ms", "attempts", "auth_ok", "auth_used", "avg", "back",
    "behind_nat", "buffer_delay_pct", "burst_ratio", "bytes", "calls", "codec", "cpu_count",
    "cpu_pct", "destination_loss_pct", "direction", "direction_loss_method", "download", "dscp",
    "dscp_counts", "dscp_received", "dscp_sent", "duplicates", "duration_s", "early_media",
    "echo_detected", "expires_s", "failure", "final_code", "frag_needed_from", "frag_needed_mtu",
    "gateway", "hop_count", "hops", "hostname", "idle_rtt_ms", "interface", "interfaces",
    "intervals_s", "isa_pct", "jitter_ms", "jitter_rfc3550_ms", "late_discards", "late_pct",
    "load_1", "load_15", "load_5", "local_address", "local_mtu", "loss_pct", "loss_starts_at_hop",
    "lost", "lost_s", "lost_unknown_direction", "mac", "malformed_replies", "mapped_address",
    "max", "max_burst", "median", "memory_available_bytes", "memory_total_bytes",
    "memory_used_pct", "min", "mode", "mos", "mouth_to_ear_delay_ms", "name",
    "one_way_delay_method", "one_way_delay_ms", "out", "p95", "packet_bytes", "packet_rate",
    "packets_received", "packets_sent", "path_mtu", "payload_bytes", "per_stream_bps",
    "pmtu_blackhole", "port", "privileged", "probes_sent", "public_address", "queries",
    "r_factor", "ratios", "reached", "reason", "receive_kbps", "received",
    "reflector_dwell_ms_median", "reflector_reports_dscp", "reordered", "resolution_ms",
    "resolved_via", "response_codes", "results", "retransmits", "rounds", "rrd_ms",
    "rtcp_received", "rtt_loaded_ms", "rtt_ms", "rtt_samples_ms", "rtts_ms", "scr_pct", "sdd_ms",
    "seer_pct", "send_errors", "send_kbps", "sent", "ser_pct", "server", "setup_ok",
    "sip_alg_detected", "sip_servers", "sizes", "source", "srd_ms", "status_code", "stdev",
    "streams", "survived_s", "swap_used_pct", "target_kbps", "throughput_bps", "transport",
    "udp_down", "udp_up", "unreachable", "upload", "uptime_s", "vendor",
)
# fmt: on
ZDICT = b"".join(b'"%s":' % k.encode() for k in _DICT_KEYS) + b"null,true,false,0.0,"
MIN_PACKED = 8  # shorter lists stay JSON: packing them saves nothing
MAX_DECIMALS = 6
_SCALES = [10**s for s in range(MAX_DECIMALS + 1)]
_EXACT = 2**53


class CompactError(ValueError):
    """Stored bytes that are not a compact measurement (damaged, or an unknown format)."""


def _packable(value: list[Any]) -> bool:
    if len(value) < MIN_PACKED:
        return False
    seen = False
    for x in value:
        if type(x) is float:
            seen = True
        elif x is not None:
            return False
    return seen


def _scale(values: list[Any]) -> int | None:
    """The fewest decimals that write every value exactly, or None."""
    for s, mul in enumerate(_SCALES):
        for v in values:
            if v is None:
                continue
            if not abs(v) * mul < _EXACT:
                break
            n = round(v * mul)
            if n / mul != v or (n == 0 and math.copysign(1.0, v) < 0):
                break  # -0.0 is kept as a double: an integer has no sign for zero
        else:
            return s
    return None


def _varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _pack(values: list[Any]) -> tuple[str, int, bytes]:
    s = _scale(values)
    if s is None:
        nan = math.nan
        data = struct.pack(f"<{len(values)}d", *(nan if v is None else v for v in values))
        return "f", 0, data
    mul = _SCALES[s]
    out = bytearray()
    prev = 0
    for v in values:
        if v is None:
            out.append(0)  # code 0: null; else zigzag(delta) + 1
            continue
        n = round(v * mul)
        d = n - prev
        prev = n
        _varint(out, (-2 * d - 1 if d < 0 else 2 * d) + 1)
    return "d", s, bytes(out)


def _unpack(kind: str, scale: int, count: int, data: memoryview, pos: int) -> tuple[list[Any], int]:
    if kind == "f":
        end = pos + 8 * count
        if end > len(data):
            raise CompactError("packed array is truncated")
        vals = struct.unpack_from(f"<{count}d", data, pos)
        return [None if v != v else v for v in vals], end
    if kind != "d" or not 0 <= scale <= MAX_DECIMALS:
        raise CompactError(f"unknown packed array kind {kind!r}/{scale}")
    mul = _SCALES[scale]
    out: list[Any] = []
    prev = 0
    n = len(data)
    for _ in range(count):
        code = shift = 0
        while True:
            if pos >= n:
                raise CompactError("packed array is truncated")
            b = data[pos]
            pos += 1
            code |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        if code == 0:
            out.append(None)
            continue
        z = code - 1
        prev += (z >> 1) ^ -(z & 1)
        out.append(prev / mul)
    return out, pos


def _strip(value: Any, path: list[Any], specs: list[Any], blobs: list[bytes]) -> Any:
    t = type(value)
    if t is dict:
        return {k: _strip(v, [*path, k], specs, blobs) for k, v in value.items()}
    if t is list:
        if _packable(value):
            kind, scale, data = _pack(value)
            specs.append([path, kind, scale, len(value)])
            blobs.append(data)
            return None
        return [_strip(v, [*path, i], specs, blobs) for i, v in enumerate(value)]
    return value


def encode(measurement: Any) -> bytes:
    """A measurement (JSON value) -> its stored bytes."""
    specs: list[Any] = []
    blobs: list[bytes] = []
    doc = orjson.dumps([_strip(measurement, [], specs, blobs), specs])
    head = bytearray()
    _varint(head, len(doc))
    z = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=ZDICT)  # raw deflate: no header
    return bytes([FORMAT]) + z.compress(bytes(head) + doc + b"".join(blobs)) + z.flush()


def decode(data: bytes) -> Any:
    """Stored bytes -> the measurement, exactly as encoded; CompactError when damaged."""
    if not data or data[0] != FORMAT:
        raise CompactError(f"stored measurement has format {data[:1]!r}, expected {FORMAT}")
    try:
        z = zlib.decompressobj(-15, zdict=ZDICT)
        raw = memoryview(z.decompress(data[1:]) + z.flush())
    except zlib.error as exc:
        raise CompactError(f"stored measurement is not valid deflate: {exc}") from None
    if not z.eof:
        raise CompactError("stored measurement is truncated")
    length = shift = pos = 0
    while True:
        if pos >= len(raw):
            raise CompactError("stored measurement is truncated")
        b = raw[pos]
        pos += 1
        length |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            break
    try:
        value, specs = orjson.loads(raw[pos : pos + length])
    except (orjson.JSONDecodeError, ValueError, TypeError):
        raise CompactError("stored measurement's document is not valid") from None
    pos += length
    for path, kind, scale, count in specs:
        arr, pos = _unpack(kind, scale, count, raw, pos)
        if not path:
            value = arr
            continue
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = arr
    return value


class CompactJSON(sa.types.TypeDecorator[Any]):
    """A JSON value stored as `encode()` bytes (BLOB / bytea); reads give the value back."""

    impl = sa.LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> bytes | None:
        return None if value is None else encode(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        return None if value is None else decode(bytes(value))


class UuidKey(sa.types.TypeDecorator[str]):
    """A UUID kept in 16 bytes (PostgreSQL `uuid`, SQLite BLOB) and read as its canonical
    text (`str(uuid.UUID)`): a result id costs 16 bytes instead of 36 in the row and in
    the key's index."""

    impl = sa.LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID(as_uuid=False))
        return dialect.type_descriptor(sa.LargeBinary(16))

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return uuid_bytes(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, bytes | memoryview):
            return str(uuid.UUID(bytes=bytes(value)))
        return str(value)


def uuid_bytes(text: str) -> bytes:
    """The 16 bytes of a UUID's text (ValueError when it is not one)."""
    return uuid.UUID(text).bytes


class EmptyAsNull(sa.types.TypeDecorator[Any]):
    """A JSON mapping stored as SQL NULL when empty and read back as `{}` (a result's tags
    are nearly always empty: 5 bytes a row on PostgreSQL)."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB(none_as_null=True))
        return dialect.type_descriptor(sa.JSON(none_as_null=True))

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        return value or None

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        return {} if value is None else value
