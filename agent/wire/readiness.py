"""The readiness test on the wire: its options (as a job carries them), the call info tier-1
gathers, and the report as data (one `Check` per figure, the verdict, the series to plot).

The JSON form of `ReadinessReport` is versioned (`report_version`); readers accept the
versions in SUPPORTED_REPORT_VERSIONS and reject others with a clear reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# How a check (and the whole report) came out.
Status = Literal["pass", "warn", "fail", "info", "skipped"]

REPORT_VERSION = 1
SUPPORTED_REPORT_VERSIONS = frozenset({1})
STATUS_ORDER: dict[str, int] = {"skipped": 0, "info": 1, "pass": 2, "warn": 3, "fail": 4}


class ReportVersionError(ValueError):
    """A readiness report of a `report_version` this reader does not know: an error to show
    (naming the version and the known ones), never a report that is merely missing."""


def check_report_version(version: Any) -> int:
    """`version` if this reader knows it; else ReportVersionError naming it and the known."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise ReportVersionError(f"report_version {version!r} is not a version number")
    if version not in SUPPORTED_REPORT_VERSIONS:
        known = ", ".join(str(x) for x in sorted(SUPPORTED_REPORT_VERSIONS))
        raise ReportVersionError(f"report_version {version} is not supported (known: {known})")
    return version


class Check(BaseModel):
    """One graded figure: what was measured, against which limit, and what to do about it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    group: str
    name: str
    status: Status
    value: float | None = None
    unit: str = ""
    display: str = Field(default="", description="the measured value as shown to people")
    threshold: str = ""
    source: str = ""
    explanation: str = ""
    fix: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class RampStep(BaseModel):
    """One step of the concurrent-call ramp: N simultaneous G.711 streams."""

    calls: int
    ok: bool
    worst_loss_pct: float | None
    worst_jitter_ms: float | None
    worst_mos: float | None
    rtt_p95_ms: float | None
    reason: str = ""
    rtt_median_ms: float | None = None


class Series(BaseModel):
    """Points for a plot (x, y) with axis labels; drawn as inline SVG in the HTML report."""

    title: str
    x_label: str
    y_label: str
    points: list[tuple[float, float]]
    limit: float | None = None


class CallInfo(BaseModel):
    """The "gather call info" fields tier-1 collects about a bad call."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, max_length=200)
    caller_number: str | None = Field(default=None, max_length=64)
    callee_number: str | None = Field(default=None, max_length=64)
    call_time: str | None = Field(default=None, max_length=64)
    firewall: str | None = Field(default=None, max_length=200)
    circuit_speed: str | None = Field(default=None, max_length=64)
    notes: str | None = Field(default=None, max_length=4000)

    def filled(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v}


class ReadinessReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    report_version: int = REPORT_VERSION
    verdict: Status
    started_at: datetime
    duration_s: float
    responder: str
    sip_server: str | None = None
    agent_host: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    checks: list[Check]
    ramp: list[RampStep] = Field(default_factory=list)
    capacity_calls: int | None = None
    series: list[Series] = Field(default_factory=list)
    call_info: CallInfo = Field(default_factory=CallInfo)

    @field_validator("report_version")
    @classmethod
    def _known(cls, v: int) -> int:
        return check_report_version(v)

    def check(self, check_id: str) -> Check:
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(f"the report has no check {check_id!r}")

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUS_ORDER}
        for c in self.checks:
            out[c.status] += 1
        return out


def verdict(checks: list[Check]) -> Status:
    """The worst status among graded checks: fail > warn > pass; info/skipped do not count."""
    graded = [c.status for c in checks if c.status in ("pass", "warn", "fail")]
    if not graded:
        return "skipped"
    return max(graded, key=lambda s: STATUS_ORDER[s])


GROUPS = (
    "gateway", "dns", "voice", "dscp", "bandwidth", "capacity", "mtu", "nat", "sip_alg", "sip",
    "trace",
)  # fmt: skip


class ReadinessOptions(BaseModel):
    """Options of the readiness suite (validated; unknown keys rejected with their name)."""

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
