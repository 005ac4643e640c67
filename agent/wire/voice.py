"""Voice measurements: one per-direction model shared by the `udp` stream, the `sip_call`
probe and the readiness capacity streams, and the two probes' measurements.

Directions are named from the site: `out` is site → far end (upstream), `back` is far end →
site (downstream). Rules, metric labels (`direction="out"|"back"`), dashboards, reports and
docs use these two names and no others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from agent.wire.exposition import Gauge, Labels, Stats
from agent.wire.stats import SummaryStats

DIRECTIONS: tuple[Literal["out"], Literal["back"]] = ("out", "back")
DIRECTION_TEXT = {"out": "upstream (site to far end)", "back": "downstream (far end to site)"}

VoiceSource = Literal["stream", "rtp", "echo", "rtcp", "responder", "report"]
# The E-model scale R and MOS are on: G.107 (R up to 93.2) or G.107.1 (R up to 129).
VoiceScale = Literal["narrowband", "wideband"]


class VoiceDirection(BaseModel):
    """One direction of a voice stream or call. A figure the method cannot tell is None.

    `source` says how it was measured: `stream` (TWAMP-light timestamps and the reflector's
    counter), `rtp` (RTP received here), `echo` (our RTP echoed back), `rtcp` (the far end's
    receiver report), `responder` (our responder's report in its BYE answer), `report` (a
    phone's own RFC 6035 quality report of a real call).

    `r_factor` and `mos` are on the `scale` of the codec they were computed for, by the
    model named in `emodel`; `ceiling_r`/`ceiling_mos` are what that codec scores on a
    perfect network (no loss, no delay) on the same scale, and `assumed` names every
    codec parameter that is not a published value, with the value used. `mos_narrowband` is
    the figure rules compare across codecs (docs/measurements.md): equal to `mos` for a
    narrowband codec, G.107 Annex B of R (4.5 from R 100 up) for a wideband one.
    """

    source: VoiceSource
    packets_sent: int | None = Field(default=None, description="packets that entered it")
    packets_received: int | None = None
    lost: int | None = None
    loss_pct: Annotated[float | None, Gauge("loss_pct")] = None
    late_discards: int | None = Field(
        default=None, description="arrived too late for the fixed jitter buffer"
    )
    late_pct: float | None = None
    jitter_ms: Annotated[float | None, Gauge("jitter_ms")] = None
    burst_ratio: float | None = None
    max_burst: int | None = None
    one_way_delay_ms: float | None = None
    dscp_sent: int | None = Field(
        default=None, description="DSCP this direction's packets were marked with when sent"
    )
    dscp_received: int | None = Field(
        default=None, description="most common DSCP on arrival at this direction's far end"
    )
    dscp_counts: dict[str, int] = Field(default_factory=dict)
    ecn_counts: dict[str, int] = Field(
        default_factory=dict, description="ECN codepoints on arrival (RFC 3168; 3 = CE)"
    )
    r_factor: Annotated[float | None, Gauge("r_factor")] = None
    mos: Annotated[float | None, Gauge("mos")] = None
    mos_narrowband: float | None = Field(
        default=None,
        description="MOS comparable across codecs: G.107 Annex B of R on the extended scale",
    )
    codec: str | None = Field(default=None, description="the codec R and MOS were computed for")
    emodel: str | None = Field(default=None, description="the E-model that gave R and MOS")
    scale: VoiceScale | None = None
    ceiling_r: float | None = Field(default=None, description="the codec's R, perfect network")
    ceiling_mos: float | None = Field(
        default=None, description="the codec's MOS on a perfect network, same scale"
    )
    assumed: list[str] = Field(
        default_factory=list, description="codec parameters assumed, not published (P.564)"
    )


Out = Annotated[VoiceDirection, Labels(direction="out")]
Back = Annotated[VoiceDirection, Labels(direction="back")]


class UdpStreamStats(BaseModel):
    """What the analysis of a TWAMP-light stream gives: round trip and per direction."""

    sent: int
    received: int
    lost: int
    loss_pct: Annotated[float, Gauge("loss_pct", direction="rtt")]
    duplicates: int
    reordered: int
    rtt_ms: Annotated[SummaryStats, Stats("rtt_ms")]
    rtt_samples_ms: list[float | None] = Field(description="per packet sent, None: no reply")
    reflector_dwell_ms_median: float | None
    direction_loss_method: str
    lost_unknown_direction: int
    one_way_delay_method: str
    mouth_to_ear_delay_ms: float | None
    out: Out
    back: Back


class UdpMeasurement(UdpStreamStats):
    """`udp`: a codec-paced TWAMP-light stream (RFC 5357), round trip and per direction."""

    address: str
    port: int
    codec: str
    packet_rate: float
    payload_bytes: int
    dscp_sent: int
    reflector_reports_dscp: bool = Field(
        description="the far-end DSCP comes from RFC 7750 or the STAMP Class-of-Service TLV"
    )
    malformed_replies: int = Field(description="replies that are not reflections of this stream")
    protocol: Literal["twamp-light", "stamp"] = Field(
        default="twamp-light", description="what the reflector answered in"
    )
    ssid: int | None = Field(default=None, description="STAMP session id (RFC 8972 §3)")
    not_reported: list[str] = Field(
        default_factory=list, description="what the reflections could not tell"
    )


class RatiosModel(BaseModel):
    attempts: int
    ser_pct: float | None
    seer_pct: float | None
    isa_pct: float | None
    scr_pct: float | None


class CallSummary(BaseModel):
    setup_ok: bool
    final_code: int | None
    srd_ms: float | None
    mos_out: float | None
    mos_back: float | None
    failure: str | None


class SipCallMeasurement(BaseModel):
    """`sip_call`: a real call with two-way RTP; with `calls` > 1 the top-level figures are
    the worst call's and `calls` lists each one."""

    address: str
    resolved_via: str = Field(description="how the address was found (RFC 3263)")
    transport: str
    setup_ok: bool
    final_code: int | None
    response_codes: list[int]
    srd_ms: Annotated[float | None, Gauge("sip_timing_ms", metric="srd")]
    answer_ms: float | None
    sdd_ms: Annotated[float | None, Gauge("sip_timing_ms", metric="sdd")]
    codec: str | None
    early_media: bool
    echo_detected: bool
    rtcp_received: int
    rtt_ms: float | None
    out: Annotated[VoiceDirection | None, Labels(direction="out")]
    back: Annotated[VoiceDirection | None, Labels(direction="back")]
    sip_alg_detected: bool
    alg_evidence: list[str]
    public_address: str | None
    failure: str | None
    ratios: RatiosModel | None = None
    calls: list[CallSummary] | None = None


class ReportedDirection(BaseModel):
    """What an RFC 6035 report says of one direction beyond `VoiceDirection`; None: the
    phone did not report it."""

    mos_cq: float | None = Field(default=None, description="MOSCQ: conversational MOS")
    r_cq: float | None = Field(default=None, description="RCQ: conversational R factor")
    burst_density_pct: float | None = None
    burst_duration_ms: float | None = None
    gap_density_pct: float | None = None
    gap_duration_ms: float | None = None
    round_trip_delay_ms: float | None = None
    end_system_delay_ms: float | None = None
    mean_abs_jitter_ms: float | None = None
    jitter_buffer_nominal_ms: float | None = None
    jitter_buffer_max_ms: float | None = None


class CallReportMeasurement(BaseModel):
    """`call_report`: a real call's own quality report (RFC 6035 `vq-rtcpxr`, SIP PUBLISH)
    from a phone at the site. `back` is what the phone received (LocalMetrics, per its
    own loss `NLR`, discards `JDR` as `late_pct`, jitter `IAJ`, `RLQ`, `MOSLQ`); `out` is what
    the far end received (RemoteMetrics), None when the phone had nothing from it."""

    report: Literal["session", "interval"]
    call_id: str = Field(max_length=256)
    local_id: str | None = Field(max_length=256, description="the phone's account (LocalID)")
    remote_id: str | None = Field(max_length=256, description="the other party (RemoteID)")
    phone_address: str = Field(max_length=64, description="where the PUBLISH came from")
    phone: str | None = Field(default=None, max_length=128, description="configured name")
    user_agent: str | None = Field(default=None, max_length=128)
    codec: str | None = Field(default=None, max_length=32)
    sample_rate_hz: int | None = None
    start: datetime | None = None
    stop: datetime | None = None
    duration_s: float | None = None
    out: Annotated[VoiceDirection | None, Labels(direction="out")]
    back: Annotated[VoiceDirection, Labels(direction="back")]
    out_report: ReportedDirection | None = None
    back_report: ReportedDirection
    reading: list[str] = Field(
        default_factory=list, description="how a phone's known deviation from RFC 6035 was read"
    )
