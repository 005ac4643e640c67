"""The stored form of a result's measurement: compact bytes, decoded to the same JSON value.

A voice stream's measurement is mostly per-packet arrays (`rtt_samples_ms`: 1,500 numbers
for 30 s of G.711), which cost ~7 bytes each as JSON text. Stored, every list of at least
`MIN_PACKED` numbers (floats and nulls, no integers or booleans, whose JSON type must
survive) is taken out of the document and packed: as scaled integers, delta and zigzag
varint coded, when every value has at most `MAX_DECIMALS` decimals (the probes round
samples to the microsecond), else as IEEE doubles. The rest of the document stays JSON,
and the whole is deflated. Decoding gives back exactly the value that was encoded (every
float bit for bit, nulls, key order), so every reader sees the measurement the agent sent.

Layout: one format byte (`FORMAT`), then zlib of: varint length of a JSON document
`[measurement without the packed arrays, [[path, kind, scale, count], ...]]`, that
document, then each packed array's bytes in order.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any

import orjson
import sqlalchemy as sa

FORMAT = 1
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
    return bytes([FORMAT]) + zlib.compress(bytes(head) + doc + b"".join(blobs), 6)


def decode(data: bytes) -> Any:
    """Stored bytes -> the measurement, exactly as encoded; CompactError when damaged."""
    if not data or data[0] != FORMAT:
        raise CompactError(f"stored measurement has format {data[:1]!r}, expected {FORMAT}")
    try:
        raw = memoryview(zlib.decompress(data[1:]))
    except zlib.error as exc:
        raise CompactError(f"stored measurement is not valid zlib: {exc}") from None
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
