"""The versioned wire schema for probe results, shared by the agent and the collector."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.wire.plain import control_char as control_char
from agent.wire.plain import finite_json as finite_json
from agent.wire.plain import new_result_id
from agent.wire.plain import non_finite_path as non_finite_path
from agent.wire.plain import utcnow as utcnow

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


MAX_TARGET_CHARS = 512
MAX_TAGS = 32


class ProbeResult(BaseModel):
    """One probe run against one target.

    `measurement` holds the probe's own model dumped to a dict (units in field names).
    `job_id` ties the result to an on-demand job; `tags` carries free labels.

    Types are strict: `success` is a JSON boolean, `schema_version` an integer,
    `duration_ms` a finite number, `started_at` an ISO 8601 string with its offset; `probe`
    is a lower-case name and `target` holds no control character (both label /metrics
    series).
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(default=SCHEMA_VERSION, strict=True)
    id: uuid.UUID = Field(default_factory=new_result_id)
    probe: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    target: str = Field(min_length=1, max_length=MAX_TARGET_CHARS)
    module: str | None = Field(default=None, max_length=128)
    started_at: datetime
    duration_ms: float = Field(ge=0, strict=True, allow_inf_nan=False)
    success: bool = Field(strict=True)
    error: ProbeErrorInfo | None = None
    measurement: dict[str, Any] | None = None
    job_id: str | None = Field(default=None, max_length=64)
    tags: dict[str, str] = Field(default_factory=dict, max_length=MAX_TAGS)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v not in SUPPORTED_SCHEMA_VERSIONS:
            known = ", ".join(str(x) for x in sorted(SUPPORTED_SCHEMA_VERSIONS))
            raise ValueError(f"schema_version {v} is not supported (known: {known})")
        return v

    @field_validator("target")
    @classmethod
    def _printable(cls, v: str) -> str:
        bad = control_char(v)
        if bad is not None:
            raise ValueError(f"target must not contain control characters (found {bad!r})")
        return v

    @field_validator("tags")
    @classmethod
    def _tag_lengths(cls, v: dict[str, str]) -> dict[str, str]:
        for k, x in v.items():
            if len(k) > 64 or len(x) > 256:
                raise ValueError(f"tag {k[:64]!r}: keys hold at most 64, values 256 characters")
        return v

    @field_validator("started_at", mode="before")
    @classmethod
    def _iso_text(cls, v: Any) -> Any:
        if not isinstance(v, str | datetime):
            raise ValueError("started_at must be an ISO 8601 timestamp string")
        return v

    @field_validator("started_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("started_at must carry a timezone (UTC)")
        try:
            return v.astimezone(UTC)
        except OverflowError:
            raise ValueError("started_at is out of range once converted to UTC") from None

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
