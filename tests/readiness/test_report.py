"""The readiness report: versioned JSON round trip, and a self-contained HTML page."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from agent.readiness import checks
from agent.wire import report
from agent.wire.readiness import CallInfo, RampStep, ReadinessReport, Series, verdict


def _report() -> ReadinessReport:
    cs = checks.voice_checks({
        "rtt_ms": {"median": 35.0}, "direction_loss_method": "reflector sequence counter",
        "out": {"source": "stream", "packets_sent": 500, "lost": 10,
                 "loss_pct": 2.0, "jitter_ms": 4.0, "mos": 3.9, "r_factor": 78.0},
        "back": {"source": "stream", "packets_sent": 490, "lost": 0,
                 "loss_pct": 0.0, "jitter_ms": 2.0, "mos": 4.4, "r_factor": 92.0},
    })  # fmt: skip
    cs.append(checks.capacity_check(4, 10, 20, "upstream loss 3.10 % > 1 %"))
    ramp = [
        RampStep(calls=n, ok=n <= 4, worst_loss_pct=0.0 if n <= 4 else 3.1,
                 worst_jitter_ms=1.0, worst_mos=4.3, rtt_p95_ms=40.0)
        for n in (1, 2, 4, 8, 6, 5)
    ]  # fmt: skip
    return ReadinessReport(
        verdict=verdict(cs), started_at=datetime(2026, 11, 22, 2, 0, tzinfo=UTC), duration_s=61.0,
        responder="r.example.net", agent_host="<script>alert(1)</script>", checks=cs, ramp=ramp,
        capacity_calls=4,
        series=[Series(title="RTT over the test (ICMP)", x_label="s", y_label="ms",
                       points=[(0.0, 30.0), (0.5, 33.0), (1.0, 180.0)], limit=150.0)],
        call_info=CallInfo(user="Alice & Bob", caller_number="+4930123"),
    )  # fmt: skip


def test_json_round_trips_and_carries_its_version() -> None:
    rep = _report()
    text = report.to_json(rep)
    assert json.loads(text)["report_version"] == 1
    assert report.load_json(text) == rep


def test_an_unknown_report_version_is_refused_by_name() -> None:
    data = json.loads(report.to_json(_report()))
    data["report_version"] = 7
    with pytest.raises(ValueError, match="report_version 7 is not supported"):
        report.load_json(data)
    with pytest.raises(ValueError, match="not JSON"):
        report.load_json("{")


def test_html_puts_the_verdict_first_and_needs_nothing_from_the_network() -> None:
    html = report.to_html(_report())
    assert html.index("Verdict:") < html.index('id="checks"')
    assert "Not ready for voice" in html
    # no script, no external URL (the SVG namespace is an identifier, not a fetch)
    assert "<script>" not in html and "<script " not in html
    urls = set(re.findall(r"https?://[^\"' )]+", html)) - {"http://www.w3.org/2000/svg"}
    assert urls == set()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # escaped, not injected
    assert "Alice &amp; Bob" in html
    # the failing check shows its figure, limit and fix; the plots are inline SVG
    row = re.search(r'<tr id="check-voice.loss.out".*?</tr>', html, re.S)
    assert row is not None and "2.00 % (10 of 500)" in row.group(0)
    assert "fail &gt; 1 %" in row.group(0) and "Usual fix" in row.group(0)
    assert html.count("<svg") == 1 and "limit 150" in html
    assert "Concurrent G.711 calls carried:</strong> 4" in html
