"""Options of the readiness suite (validated; unknown keys rejected with their name)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.readiness.model import CallInfo

GROUPS = (
    "gateway", "dns", "voice", "dscp", "bandwidth", "capacity", "mtu", "nat", "sip_alg", "sip",
    "trace",
)  # fmt: skip


class ReadinessOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    responder: str = Field(min_length=1, max_length=255, description="responder host")
    twamp_port: int = Field(default=862, ge=1, le=65535)
    bandwidth_port: int = Field(default=5201, ge=1, le=65535)
    natprobe_port: int = Field(default=8620, ge=1, le=65535)
    responder_sip: str | None = Field(
        default=None, max_length=512, description="responder's SIP URI; default sip:HOST:5060"
    )
    sip_server: str | None = Field(default=None, max_length=512, description="SIP URI or host")
    sip_transport: Literal["udp", "tcp", "tls"] = "udp"
    sip_user: str | None = Field(default=None, max_length=128)
    sip_password: str | None = Field(default=None, max_length=256)
    sip_call_uri: str | None = Field(default=None, max_length=512, description="number to call")
    calls: int = Field(default=10, ge=1, le=500, description="simultaneous calls the site needs")
    max_calls: int | None = Field(default=None, ge=1, le=1000, description="ramp ceiling")
    contracted_down_mbps: float | None = Field(default=None, gt=0, le=100_000)
    contracted_up_mbps: float | None = Field(default=None, gt=0, le=100_000)
    codec: str = "G711_PLC"
    voice_s: float = Field(default=10.0, gt=0, le=600)
    ramp_step_s: float = Field(default=5.0, gt=0, le=120)
    bandwidth_s: float = Field(default=5.0, gt=0, le=120)
    bandwidth_streams: int = Field(default=4, ge=1, le=64)
    nat_intervals_s: list[float] = Field(default=[15.0, 30.0, 60.0], min_length=1, max_length=8)
    sample_interval_s: float = Field(default=0.5, ge=0.05, le=10, description="RTT sampling")
    checks: list[str] | None = Field(default=None, description="groups to run; default all")
    call_info: CallInfo = Field(default_factory=CallInfo)

    @field_validator("checks")
    @classmethod
    def _groups(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        bad = [g for g in v if g not in GROUPS]
        if bad:
            raise ValueError(f"unknown check group {bad[0]!r} (known: {', '.join(GROUPS)})")
        return v

    @model_validator(mode="after")
    def _ceiling(self) -> ReadinessOptions:
        if self.max_calls is not None and self.max_calls < self.calls:
            raise ValueError(f"max_calls ({self.max_calls}) is below calls ({self.calls})")
        return self

    def wants(self, group: str) -> bool:
        return self.checks is None or group in self.checks

    def ceiling(self) -> int:
        return self.max_calls if self.max_calls is not None else max(2 * self.calls, 4)
