"""The versioned wire schema for probe results, shared by the agent and the collector."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# 2: one per-direction voice model; the udp stream's `forward`/`backward` became `out`/`back`
SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = frozenset({1, 2})

# A result tagged with this key comes from a deliberate overload (the readiness capacity
# ramp): the collector stores it, but it neither becomes the latest figure nor trips rules.
LOAD_TEST_TAG = "load_test"


class ProbeErrorInfo(BaseModel):
    """Why a probe failed: the error class, its category and a sentence a person can read."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    error_class: str = Field(alias="class")
    category: str
    message: str


class ProbeResult(BaseModel):
    """One probe run against one target.

    `measurement` holds the probe's own model dumped to a dict (units in field names).
    `job_id` ties the result to an on-demand job; `tags` carries free labels.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    probe: str = Field(min_length=1, max_length=64)
    target: str = Field(min_length=1, max_length=512)
    module: str | None = Field(default=None, max_length=128)
    started_at: datetime
    duration_ms: float = Field(ge=0)
    success: bool
    error: ProbeErrorInfo | None = None
    measurement: dict[str, Any] | None = None
    job_id: str | None = Field(default=None, max_length=64)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v not in SUPPORTED_SCHEMA_VERSIONS:
            known = ", ".join(str(x) for x in sorted(SUPPORTED_SCHEMA_VERSIONS))
            raise ValueError(f"schema_version {v} is not supported (known: {known})")
        return v

    @field_validator("started_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("started_at must carry a timezone (UTC)")
        return v.astimezone(UTC)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict (UUID, datetime as strings), `error.class` spelt as on the wire."""
        return self.model_dump(mode="json", by_alias=True)


def upgrade(item: dict[str, Any]) -> dict[str, Any]:
    """A wire item of an older schema version in the current shape (a new dict; the item as
    it is when it is current or not a mapping the upgrade understands).

    1 -> 2: a `udp` measurement's `forward`/`backward` become `out`/`back` (VoiceDirection:
    `packets` is `packets_sent`, `source` is `stream`, `packets_received` follows).
    """
    if item.get("schema_version", 1) != 1:
        return item
    out = {**item, "schema_version": 2}
    m = item.get("measurement")
    if item.get("probe") == "udp" and isinstance(m, dict):
        m = dict(m)
        for old, new in (("forward", "out"), ("backward", "back")):
            d = m.pop(old, None)
            if isinstance(d, dict):
                d = dict(d)
                packets, lost = d.pop("packets", None), d.get("lost")
                d.setdefault("source", "stream")
                d["packets_sent"] = packets
                if isinstance(packets, int) and isinstance(lost, int):
                    d["packets_received"] = packets - lost
                m[new] = d
        out["measurement"] = m
    return out


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


def utcnow() -> datetime:
    return datetime.now(UTC)
