"""RFC 6035 voice quality reports (`application/vq-rtcpxr`, sent by phones in SIP PUBLISH):
the value object (`VqReport.parse()` / `__bytes__`) and its reading as a `call_report`
measurement (`measurement()`).

The body is untrusted input: `parse()` is strict and bounded and raises only `VqReportError`,
whose message names the line or the parameter that is wrong. Session (`VQSessionReport`) and
interval (`VQIntervalReport`) reports are read; alert reports are refused by name.

Directions, named from the site where the phone is: `LocalMetrics` (what the phone received)
is `back`, `RemoteMetrics` (what the far end received, when the phone has it from RTCP XR)
is `out`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError

from agent.wire.errors import format_validation_error
from agent.wire.voice import CallReportMeasurement, ReportedDirection, VoiceDirection

MAX_REPORT_BYTES = 16_384
MAX_LINES = 200
MAX_LINE_CHARS = 1024
MAX_PARAMS = 32

REQUIRED_FIELDS = ("CallID", "LocalAddr")
BLOCKS = ("LocalMetrics", "RemoteMetrics")
# Session information lines (RFC 6035 §4.7.1, and FromID/ToID of earlier drafts that some
# phones still send); they may appear anywhere, `x-` vendor lines too.
SESSION_FIELDS = frozenset({
    "CallID", "LocalID", "RemoteID", "OrigID", "LocalGroup", "RemoteGroup", "LocalAddr",
    "RemoteAddr", "LocalMAC", "RemoteMAC", "DialogID", "FromID", "ToID",
})  # fmt: skip
_KINDS = {"VQSessionReport": "session", "VQIntervalReport": "interval"}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]{0,31})=("[^"]*"|[^\s"]*)(?=\s|$)')
_NUMBER = re.compile(r"-?\d{1,9}(\.\d{1,6})?")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")

Params = tuple[tuple[str, str], ...]


class VqReportError(ValueError):
    """A vq-rtcpxr body that is not a readable RFC 6035 session or interval report."""


@dataclass(frozen=True)
class VqMetrics:
    """One `LocalMetrics` or `RemoteMetrics` block: its lines, each a name and parameters."""

    lines: tuple[tuple[str, Params], ...]

    def get(self, line: str, key: str) -> str | None:
        for name, params in self.lines:
            if name.lower() == line.lower():
                for k, v in params:
                    if k.lower() == key.lower():
                        return v
        return None

    def number(self, line: str, key: str, low: float, high: float) -> float | None:
        """The parameter as a number in [low, high]; None when absent."""
        text = self.get(line, key)
        if text is None:
            return None
        if not _NUMBER.fullmatch(text):
            raise VqReportError(f"{line}: {key}={text[:40]!r} is not a number")
        value = float(text)
        if not low <= value <= high:
            raise VqReportError(f"{line}: {key}={text} is outside {low:g}..{high:g}")
        return value


@dataclass(frozen=True)
class VqLine:
    """One line: a session field (`CallID: ...`), a block header (`LocalMetrics:`) or a
    metric line of the block above it (`PacketLoss: NLR=5.0 JDR=2.0`)."""

    kind: Literal["field", "block", "metric"]
    block: str
    name: str
    value: str = ""
    params: Params = ()

    def __str__(self) -> str:
        if self.kind == "block":
            return f"{self.name}:"
        if self.kind == "field":
            return f"{self.name}: {self.value}"
        return f"{self.name}: " + " ".join(f"{k}={v}" for k, v in self.params)


@dataclass(frozen=True)
class VqReport:
    """A session or interval report: its kind and its lines in order. Session fields may
    come before, between or after the metric blocks (phones differ); `local` and `remote`
    gather each block's metric lines (`remote` is None without a RemoteMetrics block)."""

    kind: Literal["session", "interval"]
    event: str | None
    lines: tuple[VqLine, ...]

    def field(self, name: str) -> str | None:
        for ln in self.lines:
            if ln.kind == "field" and ln.name.lower() == name.lower():
                return ln.value
        return None

    def _block(self, name: str) -> VqMetrics | None:
        if not any(ln.kind == "block" and ln.name == name for ln in self.lines):
            return None
        return VqMetrics(
            tuple(
                (ln.name, ln.params)
                for ln in self.lines
                if ln.kind == "metric" and ln.block == name
            )
        )

    @property
    def local(self) -> VqMetrics:
        return self._block("LocalMetrics") or VqMetrics(())

    @property
    def remote(self) -> VqMetrics | None:
        return self._block("RemoteMetrics")

    @classmethod
    def parse(cls, data: bytes) -> VqReport:
        if len(data) > MAX_REPORT_BYTES:
            raise VqReportError(f"report is {len(data)} bytes (at most {MAX_REPORT_BYTES})")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VqReportError(f"report is not UTF-8 (byte {exc.start})") from None
        bad = _CONTROL.search(text)
        if bad is not None:
            raise VqReportError(f"report holds a control character ({bad.group()!r})")
        raw: list[str] = []
        for ln in text.replace("\r\n", "\n").split("\n"):
            if ln[:1] in (" ", "\t") and raw and ln.strip():
                raw[-1] += " " + ln.strip()  # a folded continuation line (RFC 3261 LWS)
            elif ln.strip():
                raw.append(ln.strip())
        if not raw:
            raise VqReportError("report is empty")
        if len(raw) > MAX_LINES:
            raise VqReportError(f"report has {len(raw)} lines (at most {MAX_LINES})")
        head, _, event = raw[0].partition(":")
        if head.strip() == "VQAlertReport":
            raise VqReportError("VQAlertReport is not read (only session and interval reports)")
        kind = _KINDS.get(head.strip())
        if kind is None:
            raise VqReportError(
                f"first line {raw[0][:40]!r} is not VQSessionReport or VQIntervalReport"
            )
        lines: list[VqLine] = []
        block = ""
        for n, line in enumerate(raw[1:], start=2):
            if len(line) > MAX_LINE_CHARS:
                raise VqReportError(f"line {n} is longer than {MAX_LINE_CHARS} characters")
            name, colon, value = line.partition(":")
            name, value = name.strip(), value.strip()
            if not colon or not _NAME.fullmatch(name):
                raise VqReportError(f"line {n} {line[:40]!r} is not 'Name: value'")
            if name in BLOCKS:
                if any(ln.kind == "block" and ln.name == name for ln in lines):
                    raise VqReportError(f"line {n}: {name} appears twice")
                if value:
                    raise VqReportError(f"line {n}: {name}: is followed by {value[:40]!r}")
                block = name
                lines.append(VqLine("block", name, name))
            elif not block or name in SESSION_FIELDS or name.lower().startswith("x-"):
                lines.append(VqLine("field", "", name, value))
            else:
                lines.append(VqLine("metric", block, name, params=_params(value, n, name)))
        report = cls(kind, event.strip() or None, tuple(lines))  # type: ignore[arg-type]
        for required in REQUIRED_FIELDS:
            if report.field(required) is None:
                raise VqReportError(f"report has no {required} line")
        if report._block("LocalMetrics") is None:
            raise VqReportError("report has no LocalMetrics block")
        return report

    def __bytes__(self) -> bytes:
        head = "VQSessionReport" if self.kind == "session" else "VQIntervalReport"
        out = [f"{head}: {self.event}" if self.event else head]
        out += [str(ln) for ln in self.lines]
        return ("\r\n".join(out) + "\r\n").encode("utf-8")


def _params(value: str, n: int, name: str) -> Params:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(value):
        m = _PARAM.match(value, pos)
        if m is None:
            bad = value[pos : pos + 40].strip()
            raise VqReportError(f"line {n} ({name}): {bad!r} is not KEY=value")
        out.append((m.group(1), m.group(2)))
        if len(out) > MAX_PARAMS:
            raise VqReportError(f"line {n} ({name}) has more than {MAX_PARAMS} parameters")
        pos = m.end()
        while pos < len(value) and value[pos].isspace():
            pos += 1
    return tuple(out)


def _timestamp(block: VqMetrics, key: str) -> datetime | None:
    text = block.get("Timestamps", key)
    if text is None:
        return None
    if not _TIMESTAMP.fullmatch(text):
        raise VqReportError(f"Timestamps: {key}={text[:40]!r} is not an ISO 8601 UTC time")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise VqReportError(f"Timestamps: {key}={text[:40]!r} is not a valid time") from None


# liblinphone writes NLR and JDR as the RFC 3611 8-bit rate divided by 256 (a fraction of
# 1, one decimal: 10 % steps) where RFC 6035 asks for percent; its reports carry a
# `LinphoneExt` metrics line, by which they are known and read x100.
LINPHONE_FRACTION = (
    "liblinphone sends NLR and JDR as fractions of 1 with one decimal (10 % steps), not "
    "percent: read x100"
)


def _is_liblinphone(report: VqReport) -> bool:
    return any(ln.kind == "metric" and ln.name == "LinphoneExt" for ln in report.lines)


def _direction(block: VqMetrics, rate_scale: float) -> tuple[VoiceDirection, ReportedDirection]:
    """One metrics block as the voice direction it describes, and the report's own extras."""
    top = 100.0 / rate_scale
    nlr = block.number("PacketLoss", "NLR", 0, top)
    jdr = block.number("PacketLoss", "JDR", 0, top)
    voice = VoiceDirection(
        source="report",
        loss_pct=None if nlr is None else round(nlr * rate_scale, 6),
        late_pct=None if jdr is None else round(jdr * rate_scale, 6),
        jitter_ms=block.number("Delay", "IAJ", 0, 65535),
        one_way_delay_ms=block.number("Delay", "SOWD", 0, 65535),
        r_factor=block.number("QualityEst", "RLQ", 0, 129),
        mos=block.number("QualityEst", "MOSLQ", 1, 5),
    )
    extra = ReportedDirection(
        mos_cq=block.number("QualityEst", "MOSCQ", 1, 5),
        r_cq=block.number("QualityEst", "RCQ", 0, 129),
        burst_density_pct=block.number("BurstGapLoss", "BLD", 0, 100),
        burst_duration_ms=block.number("BurstGapLoss", "BD", 0, 10**9),
        gap_density_pct=block.number("BurstGapLoss", "GLD", 0, 100),
        gap_duration_ms=block.number("BurstGapLoss", "GD", 0, 10**9),
        round_trip_delay_ms=block.number("Delay", "RTD", 0, 65535),
        end_system_delay_ms=block.number("Delay", "ESD", 0, 65535),
        mean_abs_jitter_ms=block.number("Delay", "MAJ", 0, 65535),
        jitter_buffer_nominal_ms=block.number("JitterBuffer", "JBN", 0, 65535),
        jitter_buffer_max_ms=block.number("JitterBuffer", "JBX", 0, 65535),
    )
    return voice, extra


def _uri(value: str | None) -> str | None:
    """The SIP URI of a `LocalID`/`RemoteID` value (`"Alice" <sip:a@b>` or a bare URI)."""
    if value is None:
        return None
    m = re.search(r"<([^>]*)>", value)
    return (m.group(1) if m else value).strip()[:256] or None


def measurement(
    report: VqReport,
    *,
    phone_address: str,
    phone: str | None,
    user_agent: str | None,
    account: str | None = None,
) -> CallReportMeasurement:
    """The report as a `call_report` measurement. Raises VqReportError for a figure out of
    its range or a time that does not parse."""
    scale = 100.0 if _is_liblinphone(report) else 1.0
    back, back_extra = _direction(report.local, scale)
    out, out_extra = (None, None) if report.remote is None else _direction(report.remote, scale)
    if out is not None and all(
        getattr(out, f) is None for f in ("loss_pct", "jitter_ms", "mos", "r_factor")
    ):
        out, out_extra = None, None  # the phone had nothing from the far end (no RTCP XR)
    start = _timestamp(report.local, "START")
    stop = _timestamp(report.local, "STOP")
    duration = (stop - start).total_seconds() if start and stop else None
    if duration is not None and duration < 0:
        duration = None  # STOP before START (RFC 6035's own example has it): no duration
    rate = report.local.number("SessionDesc", "SR", 1, 10**6)
    try:
        return CallReportMeasurement(
            report=report.kind,
            call_id=(report.field("CallID") or "")[:256],
            local_id=_uri(report.field("LocalID")) or _uri(account),
            remote_id=_uri(report.field("RemoteID")),
            phone_address=phone_address,
            phone=phone,
            user_agent=user_agent[:128] if user_agent else None,
            codec=(report.local.get("SessionDesc", "PD") or "")[:32] or None,
            sample_rate_hz=int(rate) if rate is not None else None,
            start=start,
            stop=stop,
            duration_s=duration,
            out=out,
            back=back,
            out_report=out_extra,
            back_report=back_extra,
            reading=[LINPHONE_FRACTION] if scale != 1.0 else [],
        )
    except ValidationError as exc:
        raise VqReportError(format_validation_error(exc)) from None
