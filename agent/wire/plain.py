"""Plain-Python helpers of the wire contract (no model library): control characters, JSON's
finite numbers, the current time in UTC. Both the pydantic models and the agent's msgspec
Structs (agent/wire/lite.py) use them."""

from __future__ import annotations

import math
import re
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
