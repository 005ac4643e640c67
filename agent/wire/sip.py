"""Measurements of the SIP signalling probes: sip_options and sip_register."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from agent.wire.exposition import Gauge


class SipOptionsMeasurement(BaseModel):
    address: str
    resolved_via: str = Field(description="how the address was found (RFC 3263)")
    transport: str
    status_code: int
    reason: str
    rtt_ms: Annotated[float, Gauge("sip_timing_ms", metric="options_rtt")]
    server: str | None
    public_address: str | None
    sip_alg_detected: bool
    alg_evidence: list[str]


class SipRegisterMeasurement(BaseModel):
    address: str
    resolved_via: str = Field(description="how the address was found (RFC 3263)")
    transport: str
    status_code: int
    reason: str
    rrd_ms: Annotated[float, Gauge("sip_timing_ms", metric="rrd")]
    auth_used: bool
    auth_ok: bool | None
    expires_s: int | None
    public_address: str | None
