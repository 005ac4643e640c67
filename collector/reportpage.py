"""An SLA and quality report written out: one self-contained HTML page (inline style, SVG
charts drawn here, the partner's brand) and its PDF (WeasyPrint). Pure: figures in, text
or bytes out."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

DIRECTIONS = ("out", "back")
DIRECTION_TEXT = {"out": "out (site to far end)", "back": "back (far end to site)",
                  "rtt": "round trip"}  # fmt: skip
FIGURE_TEXT = {"loss_pct": ("Loss", "%"), "jitter_ms": ("Jitter", "ms"), "mos": ("MOS", ""),
               "rtt_ms.avg": ("Round-trip time", "ms")}  # fmt: skip
BAND_COLOURS = ("#2e7d32", "#66bb6a", "#fbc02d", "#f57c00", "#d84315", "#b71c1c")
STYLE = """
@page{size:A4;margin:14mm}
body{font-family:"DejaVu Sans",system-ui,sans-serif;color:#1a1a1a;font-size:10.5pt;margin:0}
.rep{max-width:1000px;margin:auto}
header{border-bottom:4px solid var(--primary);padding:.4rem 0;margin-bottom:.8rem;
 display:flex;justify-content:space-between;align-items:center}
header .brand{font-weight:bold;font-size:1.2rem;color:var(--primary)}
h1{font-size:1.35rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.2rem 0 .4rem;
 color:var(--primary);page-break-after:avoid}
table{border-collapse:collapse;width:100%;font-size:.9rem;page-break-inside:auto}
th,td{border-bottom:1px solid #ddd;padding:.25rem .4rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right}
.big{font-size:2rem;font-weight:bold;color:var(--accent)}
.muted{color:#555;font-size:.85rem}.bad{color:#c62828;font-weight:bold}
.charts{display:flex;flex-wrap:wrap;gap:.8rem}
.kpi{display:flex;gap:2rem;align-items:baseline;flex-wrap:wrap}
"""


def _num(v: float | None, digits: int = 2, unit: str = "") -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}{(' ' + unit) if unit else ''}"


def _dur(s: float | None) -> str:
    if s is None:
        return "–"
    m = round(s / 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def _when(ts: float, tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime(fmt)


def bar_chart(
    title: str, bars: Sequence[tuple[str, float | None, str]], ymax: float, unit: str = "",
    width: int = 460, height: int = 190,
) -> str:  # fmt: skip
    """An SVG bar chart: (label, value or None for no bar, colour) per bar."""
    left, right, top, bottom = 40, 8, 22, 34
    pw, ph = width - left - right, height - top - bottom
    n = max(1, len(bars))
    step = pw / n
    t = escape(title)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{t}">',
        f"<title>{t}</title>",
        f'<text x="{left}" y="14" font-size="12" font-weight="bold">{t}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = top + ph - frac * ph
        out.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
            f"{frac * ymax:g}{unit}</text>"
        )
    every = max(1, n // 10)
    for i, (label, value, colour) in enumerate(bars):
        x = left + i * step
        if value is not None:
            h = min(max(value, 0.0), ymax) / ymax * ph if ymax > 0 else 0.0
            out.append(
                f'<rect x="{x + step * 0.1:.1f}" y="{top + ph - h:.1f}" '
                f'width="{step * 0.8:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{escape(label)}: {value:g}{unit}</title></rect>"
            )
        else:
            out.append(
                f'<rect x="{x + step * 0.1:.1f}" y="{top}" width="{step * 0.8:.1f}" '
                f'height="{ph}" fill="#e0e0e0"><title>{escape(label)}: not measured</title>'
                "</rect>"
            )
        if i % every == 0:
            out.append(
                f'<text x="{x + step / 2:.1f}" y="{top + ph + 13}" font-size="9" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _mos_chart(direction: str, bands: Sequence[Mapping[str, Any]]) -> str:
    """Bands from the worst (left) to the best, as shares of the direction's tests."""
    total = sum(b["count"] for b in bands) or 1
    bars = [
        (f"{b['from']:.2f}", 100.0 * b["count"] / total, BAND_COLOURS[i])
        for i, b in enumerate(bands)
    ][::-1]
    return bar_chart(f"MOS {direction}: share of tests per band", bars, 100, "%", width=330)


def _daily_chart(d: Mapping[str, Any]) -> str:
    bars = [(x["day"][8:10], x["pct"], "#2e7d32" if (x["pct"] or 0) >= 99 else "#f57c00")
            for x in d["daily"]]  # fmt: skip
    return bar_chart("Availability of voice quality per day", bars, 100, "%", width=640)


def render_body(d: Mapping[str, Any], brand: Mapping[str, Any]) -> str:
    tz = d["timezone"]
    a = d["availability"]
    scope = escape(d["customer"]["name"]) + (
        f" – site {escape(d['site']['name'])}" if d.get("site") else ""
    )
    logo = (f'<img src="{escape(brand["logo"])}" alt="" height="40">'
            if brand.get("logo") else "")  # fmt: skip
    h = [
        '<div class="rep">',
        f'<header><span class="brand">{escape(brand["name"])}</span>{logo}</header>',
        f"<h1>SLA and quality report: {scope}</h1>",
        f'<p class="muted">{_when(d["since"], tz)} to {_when(d["until"], tz)} ({escape(tz)});'
        f" made {_when(d['generated_at'], tz)}</p>",
        "<h2>Availability of voice quality</h2>",
        '<div class="kpi">',
        f'<span class="big" id="availability">{_num(a["pct"], 3, "%")}</span>',
        f"<span>measured {a['measured_h']:.0f} h, good {a['good_h']:.2f} h, "
        f"outside thresholds {a['bad_h']:.2f} h, "
        f'<strong id="not-measured">not measured {a["not_measured_h"]:.0f} h</strong>'
        f" of {a['total_h']:.0f} h</span></div>",
        f'<p class="muted">{escape(d["definition"])}</p>',
    ]
    if len(d["sites"]) > 1 or not d.get("site"):
        h.append("<table><tr><th>Site</th><th class=n>Availability</th>"
                 "<th class=n>Measured</th><th class=n>Not measured</th></tr>")  # fmt: skip
        for s in d["sites"]:
            sa_ = s["availability"]
            h.append(f"<tr><td>{escape(s['name'])}</td><td class=n>{_num(sa_['pct'], 3, '%')}"
                     f"</td><td class=n>{sa_['measured_h']:.0f} h</td>"
                     f"<td class=n>{sa_['not_measured_h']:.0f} h</td></tr>")  # fmt: skip
        h.append("</table>")
    h.append(f'<div class="charts">{_daily_chart(d)}</div>')
    h.append('<h2>MOS distribution</h2><div class="charts">')
    h += [_mos_chart(x, d["mos"][x]) for x in DIRECTIONS]
    h.append("</div><table><tr><th>MOS band</th>"
             + "".join(f"<th class=n>{DIRECTION_TEXT[x]}</th>" for x in DIRECTIONS)
             + "</tr>")  # fmt: skip
    for i, band in enumerate(d["mos"]["out"]):
        cells = "".join(f"<td class=n>{d['mos'][x][i]['count']}</td>" for x in DIRECTIONS)
        h.append(f"<tr><td>{band['from']:.2f}–{band['to']:.2f} {escape(band['label'])}</td>"
                 f"{cells}</tr>")  # fmt: skip
    h.append("</table><h2>Percentiles</h2><table id=\"percentiles\"><tr><th>Figure</th>"
             "<th>Direction</th><th class=n>p50</th><th class=n>p95</th><th class=n>p99</th>"
             "<th class=n>tests</th></tr>")  # fmt: skip
    for direction, figs in d["percentiles"].items():
        for f, q in figs.items():
            name, unit = FIGURE_TEXT[f]
            cells = "".join(
                f"<td class=n>{_num(q[k], 2, unit)}</td>" for k in ("p50", "p95", "p99")
            )
            h.append(f"<tr><td>{name}</td><td>{DIRECTION_TEXT[direction]}</td>{cells}"
                     f"<td class=n>{q['n']}</td></tr>")  # fmt: skip
    h.append("</table><h2>Worst hours</h2>")
    if d["worst_hours"]:
        h.append("<table><tr><th>Hour</th><th>Site</th><th class=n>Inside thresholds</th>"
                 "<th class=n>Tests</th><th class=n>Lowest MOS</th></tr>")  # fmt: skip
        for w in d["worst_hours"]:
            h.append(f"<tr><td>{_when(w['hour'], tz)}</td><td>{escape(w['site'])}</td>"
                     f"<td class=n>{w['good_pct']:.1f} %</td><td class=n>{w['results']}</td>"
                     f"<td class=n>{_num(w['min_mos'])}</td></tr>")  # fmt: skip
        h.append("</table>")
    else:
        h.append("<p>Every measured hour was inside the thresholds.</p>")
    h.append("<h2>Readiness tests</h2>")
    if d["readiness"]:
        h.append("<table><tr><th>When</th><th>Site</th><th>Verdict</th></tr>")
        for r in d["readiness"]:
            h.append(f"<tr><td>{_when(r['at'], tz)}</td><td>{escape(r['site'])}</td>"
                     f"<td>{escape(str(r['verdict']))}</td></tr>")  # fmt: skip
        h.append("</table>")
    else:
        h.append("<p>No readiness test was run in this period.</p>")
    h.append("<h2>Tickets</h2>")
    targets = "; ".join(
        f"{escape(k)}: acknowledge in {_dur(v.get('ack_s'))}, resolve in {_dur(v.get('resolve_s'))}"
        for k, v in d["sla_targets"].items()
    )
    out_of_sla = sum(t["out_of_sla"] for t in d["tickets"])
    n = len(d["tickets"])
    h.append(
        f'<p>{n} ticket{"" if n == 1 else "s"} opened, <span id="out-of-sla">{out_of_sla} out '
        f'of SLA</span>. <span class="muted">Targets: {targets}.</span></p>'
    )
    if d["tickets"]:
        h.append(
            "<table><tr><th>Opened</th><th>Site</th><th>Severity</th><th>Ticket</th>"
            "<th class=n>To acknowledge</th><th class=n>To resolve</th><th>SLA</th></tr>"
        )
        for t in d["tickets"]:
            sla = f'<span class="bad">{escape(t["why"])}</span>' if t["out_of_sla"] else "met"
            h.append(f"<tr><td>{_when(t['opened_at'], tz)}</td><td>{escape(t['site'])}</td>"
                     f"<td>{escape(t['severity'])}</td><td>{escape(t['title'])}</td>"
                     f"<td class=n>{_dur(t['ack_s'])}</td><td class=n>{_dur(t['resolve_s'])}"
                     f"</td><td>{sla}</td></tr>")  # fmt: skip
        h.append("</table>")
    h.append("</div>")
    return "\n".join(h)


_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
DEFAULT_COLOURS = {"primary": "#1f4e79", "accent": "#2e7d32"}


def _colour(brand: Mapping[str, Any], key: str) -> str:
    v = str(brand.get(key) or "")
    return v if _COLOUR.fullmatch(v) else DEFAULT_COLOURS[key]


def to_html(d: Mapping[str, Any], brand: Mapping[str, Any]) -> str:
    """The self-contained page. A brand colour that is not `#rrggbb` is replaced by the
    default, and a logo other than a `data:image/` URI is left out."""
    brand = {
        **brand,
        "logo": brand.get("logo")
        if str(brand.get("logo") or "").startswith("data:image/")
        else None,
    }
    primary, accent = _colour(brand, "primary"), _colour(brand, "accent")
    colours = f":root{{--primary:{primary};--accent:{accent}}}"
    title = escape(f"SLA and quality report: {d['customer']['name']}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{colours}{STYLE}</style></head><body>\n{render_body(d, brand)}\n"
        "</body></html>\n"
    )


def to_pdf(html: str) -> bytes:
    """The page as PDF (WeasyPrint; no resource is fetched: the page holds everything)."""
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    only_data = URLFetcher(allowed_protocols={"data"}, allow_redirects=False)
    pdf = HTML(string=html, url_fetcher=only_data).write_pdf()
    assert pdf is not None
    return bytes(pdf)
