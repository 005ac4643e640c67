"""Plain-Python helpers of the wire contract (no model library): control characters, JSON's
finite numbers, the current time in UTC. Both the pydantic models and the agent's msgspec
Structs (agent/wire/lite.py) use them."""

from __future__ import annotations

import math
import os
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def finite_json(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None: JSON has no such numbers,
    and a figure that could not be computed travels as null (as pydantic writes it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_json(v) for v in value]
    return value


def non_finite_path(value: Any, path: str) -> str | None:
    """The path (`measurement.rtt_ms.max`) of the first NaN or infinite float in `value`."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = non_finite_path(v, f"{path}.{k}")
        if found:
            return found
    return None


def control_char(text: str) -> str | None:
    """The first control character (C0, DEL, C1) in `text`, or None."""
    m = _CONTROL.search(text)
    return m.group() if m else None


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_result_id(at_ms: int | None = None) -> uuid.UUID:
    """A result's id: a UUID version 7 (RFC 9562), its first 48 bits the Unix time in ms.

    Ids made later sort later, so the collector's key index grows at its right edge (pages
    filled, not split half-empty by random ids) and stays warm in cache; 74 random bits keep
    ids of one millisecond apart. The time in the id is the time the result was made, which
    the result says anyway (`started_at`). `at_ms` makes the id of another time (benches
    that store a simulated day).
    """
    ms = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a, rand_b = rand >> 68, rand & ((1 << 62) - 1)  # 12 and 62 random bits
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)
