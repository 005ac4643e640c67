"""Readiness report writers: versioned JSON, and one self-contained HTML page (pure: the
report model in, text out; the agent's CLI and the collector's pages both use them).

The HTML has the verdict at the top, one row per check (status, figure, limit, source,
explanation and fix), inline SVG plots and the gathered call info. It loads nothing
from the network: styles are inline, plots are SVG, there is no script.
`render_body()` returns the page's content without <html>/<head> so the collector's web
pages can embed the same report.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from pydantic import ValidationError

from agent.wire import svg
from agent.wire.errors import format_validation_error
from agent.wire.readiness import (
    REPORT_VERSION,
    ReadinessReport,
    ReportVersionError,
    check_report_version,
)

LABELS = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "info": "INFO", "skipped": "SKIPPED"}
VERDICT_TEXT = {
    "pass": "Ready for voice: every graded check passed.",
    "warn": "Usable for voice, with warnings to look at.",
    "fail": "Not ready for voice: at least one check failed.",
    "skipped": "Nothing could be graded.",
}
CALL_INFO_LABELS = {
    "user": "User", "caller_number": "Caller number", "callee_number": "Callee number",
    "call_time": "Time of the bad call", "firewall": "Firewall make/model",
    "circuit_speed": "Circuit speed", "notes": "Notes",
}  # fmt: skip

STYLE = """
.qsr{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;
 max-width:1100px}
.qsr h1{font-size:1.5rem;margin:.2rem 0}.qsr h2{font-size:1.15rem;margin:1.4rem 0 .5rem}
.qsr .verdict{padding:.8rem 1rem;border-radius:6px;border:2px solid;margin:.6rem 0}
.qsr .v-pass{background:#e8f5e9;border-color:#2e7d32}
.qsr .v-warn{background:#fff8e1;border-color:#9a5b00}
.qsr .v-fail{background:#ffebee;border-color:#c62828}
.qsr .v-skipped{background:#eee;border-color:#777}
.qsr table{border-collapse:collapse;width:100%;font-size:.92rem}
.qsr th,.qsr td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;
 vertical-align:top}
.qsr .b{display:inline-block;min-width:4.6em;text-align:center;font-weight:bold;
 border-radius:3px;padding:1px 4px}
.qsr .b-pass{background:#2e7d32;color:#fff}.qsr .b-warn{background:#9a5b00;color:#fff}
.qsr .b-fail{background:#c62828;color:#fff}.qsr .b-info{background:#1565c0;color:#fff}
.qsr .b-skipped{background:#757575;color:#fff}.qsr .fix{color:#333;font-size:.88rem}
.qsr .plots{display:flex;flex-wrap:wrap;gap:1rem}.qsr .muted{color:#555;font-size:.88rem}
"""


ISSUER_KEY = "issued_by"  # who issued a downloaded report: metadata beside its fields


def to_json(report: ReadinessReport, issued_by: dict[str, Any] | None = None) -> str:
    """The report as JSON; `issued_by` (e.g. a partner's name and support contact) goes
    beside its fields under "issued_by", which `load_json` sets aside."""
    if issued_by is None:
        return report.model_dump_json(indent=2)
    return json.dumps({**report.model_dump(mode="json"), ISSUER_KEY: issued_by}, indent=2)


def load_json(data: str | bytes | dict[str, Any]) -> ReadinessReport:
    """Parse a JSON report. The version is checked first (other fields may differ in other
    versions): an unknown `report_version` raises ReportVersionError naming it and the
    known ones; anything else wrong raises ValueError naming the field."""
    try:
        obj = json.loads(data) if isinstance(data, str | bytes) else data
    except json.JSONDecodeError as exc:
        raise ValueError(f"readiness report is not JSON: {exc}") from None
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k != ISSUER_KEY}
        try:
            check_report_version(obj.get("report_version", REPORT_VERSION))
        except ReportVersionError as exc:
            raise ReportVersionError(f"readiness report: {exc}") from None
    try:
        return ReadinessReport.model_validate(obj)
    except ValidationError as exc:
        problem = format_validation_error(exc, first_only=True)
        raise ValueError(f"readiness report is invalid: {problem}") from None


def _badge(status: str) -> str:
    return f'<span class="b b-{status}">{LABELS.get(status, status.upper())}</span>'


def render_body(r: ReadinessReport) -> str:
    """The report as an HTML fragment (wrapped in <div class="qsr">)."""
    counts = r.counts()
    h: list[str] = ['<div class="qsr">']
    h.append("<h1>VoIP readiness report</h1>")
    h.append(
        f'<div class="verdict v-{r.verdict}" role="status"><strong>Verdict: '
        f"{_badge(r.verdict)}</strong> {escape(VERDICT_TEXT[r.verdict])}<br>"
        f'<span class="muted">{counts["fail"]} failed, {counts["warn"]} warnings, '
        f"{counts['pass']} passed, {counts['info']} for information, {counts['skipped']} "
        f"not run</span></div>"
    )
    where = f"responder {escape(r.responder)}"
    if r.sip_server:
        where += f", SIP server {escape(r.sip_server)}"
    h.append(
        f'<p class="muted">Tested from {escape(r.agent_host or "unknown host")} against '
        f"{where}, started {r.started_at:%Y-%m-%d %H:%M:%S} UTC, took "
        f"{r.duration_s:.0f} s.</p>"
    )
    if r.capacity_calls is not None:
        h.append(f"<p><strong>Concurrent G.711 calls carried:</strong> {r.capacity_calls}</p>")
    h.append('<h2 id="checks">Checks</h2><table><thead><tr><th scope="col">Result</th>'
             '<th scope="col">Check</th><th scope="col">Measured</th><th scope="col">Limit</th>'
             '<th scope="col">What it means / what to do</th></tr></thead><tbody>')  # fmt: skip
    order = {"fail": 0, "warn": 1, "pass": 2, "info": 3, "skipped": 4}
    for c in sorted(r.checks, key=lambda c: order[c.status]):
        why = escape(c.explanation)
        if c.fix:
            why += f'<div class="fix"><strong>Usual fix:</strong> {escape(c.fix)}</div>'
        src = f'<div class="muted">{escape(c.source)}</div>' if c.source else ""
        h.append(
            f'<tr id="check-{escape(c.id)}" data-status="{c.status}"><td>{_badge(c.status)}</td>'
            f"<td>{escape(c.name)}</td><td>{escape(c.display)}</td>"
            f"<td>{escape(c.threshold)}{src}</td><td>{why}</td></tr>"
        )
    h.append("</tbody></table>")
    if r.series:
        h.append('<h2 id="plots">Plots</h2><div class="plots">')
        for s in r.series:
            h.append(f"<figure>{svg.plot(s, markers=s.x_label == 'calls')}</figure>")
        h.append("</div>")
    if r.ramp:
        h.append('<h2 id="ramp">Capacity ramp</h2><table><thead><tr><th scope="col">Calls'
                 '</th><th scope="col">Result</th><th scope="col">Worst loss</th>'
                 '<th scope="col">Worst jitter</th><th scope="col">Median MOS (worst dir.)</th>'
                 '<th scope="col">RTT p95</th><th scope="col">Why</th></tr>'
                 "</thead><tbody>")  # fmt: skip
        for st in r.ramp:

            def f(v: float | None, unit: str, d: int = 1) -> str:
                return "–" if v is None else f"{v:.{d}f}{unit}"

            h.append(
                f"<tr><td>{st.calls}</td><td>{_badge('pass' if st.ok else 'fail')}</td>"
                f"<td>{f(st.worst_loss_pct, ' %', 2)}</td><td>{f(st.worst_jitter_ms, ' ms')}</td>"
                f"<td>{f(st.worst_mos, '', 2)}</td><td>{f(st.rtt_p95_ms, ' ms')}</td>"
                f"<td>{escape(st.reason)}</td></tr>"
            )
        h.append("</tbody></table>")
    info = r.call_info.filled()
    h.append('<h2 id="call-info">Call information</h2>')
    if info:
        h.append("<table><tbody>")
        for k, v in info.items():
            h.append(f'<tr><th scope="row">{escape(CALL_INFO_LABELS.get(k, k))}</th>'
                     f"<td>{escape(v)}</td></tr>")  # fmt: skip
        h.append("</tbody></table>")
    else:
        h.append('<p class="muted">No call information was gathered.</p>')
    h.append(f'<p class="muted">Report format version {r.report_version}.</p></div>')
    return "\n".join(h)


def to_html(r: ReadinessReport, issuer: str | None = None) -> str:
    """A complete, self-contained HTML page; `issuer` (e.g. a partner's name and support
    contact) is shown at its top."""
    by = f'<p class="issuer">{escape(issuer)}</p>\n' if issuer else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>VoIP readiness: {LABELS[r.verdict]} ({escape(r.responder)})</title>"
        f"<style>{STYLE}</style></head><body>\n{by}{render_body(r)}\n</body></html>\n"
    )
