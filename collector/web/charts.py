"""Server-side SVG time charts for the portal (no script, no build step): one figure, a line
per direction, the rule's limit dashed, in the readiness report's style (agent/wire/svg.py).

The SVG scales to its container (a viewBox and width 100%, no fixed size), so it fits a
phone; it carries a <title> and <desc>, and `summary()` gives the figures a table shows as
its text alternative. Pure: data in, text out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from agent.wire.svg import _fmt, _nice_max

COLOURS = {"out": "#1565c0", "back": "#ef6c00"}
DEFAULT_COLOUR = "#2e7d32"
W, H = 420, 210
LEFT, RIGHT, TOP, BOTTOM = 46, 12, 36, 34


def _ts(t: str | float) -> float:
    return t if isinstance(t, float | int) else datetime.fromisoformat(t).timestamp()


def _label(ts: float, span: float) -> str:
    d = datetime.fromtimestamp(ts, UTC)
    return d.strftime("%H:%M") if span <= 2 * 86400 else d.strftime("%d %b")


def title(chart: dict[str, Any]) -> str:
    unit = f" ({chart['unit']})" if chart["unit"] else ""
    return f"{chart['figure']}{unit}, {chart['probe']} to {chart['target']}"


def summary(chart: dict[str, Any]) -> list[dict[str, Any]]:
    """Per series: its name, points, min, median, max and the last value (None: no data)."""
    out = []
    for s in chart["series"]:
        vs = sorted(v for _, v in s["points"])
        n = len(vs)
        out.append({
            "name": s["name"], "points": n, "min": vs[0] if n else None,
            "median": vs[(n - 1) // 2] if n else None, "max": vs[-1] if n else None,
            "last": s["points"][-1][1] if n else None, "limit": s.get("limit"),
        })  # fmt: skip
    return out


def svg(chart: dict[str, Any], chart_id: str) -> str:
    """The chart as an inline SVG element with ids `<chart_id>-t` / `-d` for its title and
    description."""
    x0, x1 = float(chart["since"]), float(chart["until"])
    if x1 <= x0:
        x1 = x0 + 1.0
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    values = [v for s in chart["series"] for _, v in s["points"]]
    limits = [s["limit"] for s in chart["series"] if s.get("limit") is not None]
    ymax = _nice_max(max([*values, *limits, 0.0]) * 1.1)

    def sx(x: float) -> float:
        return LEFT + (min(max(x, x0), x1) - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return TOP + ph - min(max(y, 0.0), ymax) / ymax * ph

    t = escape(title(chart))
    parts_desc = []
    for s in summary(chart):
        if s["points"]:
            parts_desc.append(f"{s['name']}: {s['points']} points, min {_fmt(s['min'])}, "
                              f"median {_fmt(s['median'])}, max {_fmt(s['max'])}")  # fmt: skip
        else:
            parts_desc.append(f"{s['name']}: no data")
    when = (f"from {datetime.fromtimestamp(x0, UTC):%Y-%m-%d %H:%M} to "
            f"{datetime.fromtimestamp(x1, UTC):%Y-%m-%d %H:%M} UTC")  # fmt: skip
    desc = escape(f"{when}. " + "; ".join(parts_desc))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" '
        f'class="chart" role="img" aria-labelledby="{chart_id}-t {chart_id}-d">',
        f'<title id="{chart_id}-t">{t}</title><desc id="{chart_id}-d">{desc}</desc>',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{t}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = TOP + ph - frac * ph
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
                     f"{_fmt(frac * ymax)}</text>")  # fmt: skip
    for frac in (0.0, 0.5, 1.0):
        x = x0 + frac * (x1 - x0)
        anchor = ("start", "middle", "end")[int(frac * 2)]
        parts.append(f'<text x="{sx(x):.1f}" y="{TOP + ph + 14}" font-size="11" '
                     f'text-anchor="{anchor}">{_label(x, x1 - x0)}</text>')  # fmt: skip
    parts.append(f'<text x="{LEFT + pw / 2:.0f}" y="{H - 3}" font-size="11" '
                 f'text-anchor="middle">time (UTC)</text>')  # fmt: skip
    drawn_limits = set()
    for s in chart["series"]:
        lim = s.get("limit")
        if lim is not None and lim <= ymax and lim not in drawn_limits:
            drawn_limits.add(lim)
            y = sy(lim)
            parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" '
                         f'stroke="#c62828" stroke-dasharray="5,4"/>')  # fmt: skip
    legend_x = LEFT + pw
    for s in reversed(chart["series"]):
        colour = COLOURS.get(s["direction"], DEFAULT_COLOUR)
        pts = [(sx(_ts(t)), sy(v)) for t, v in s["points"]]
        if len(pts) == 1:
            parts.append(f'<circle cx="{pts[0][0]:.1f}" cy="{pts[0][1]:.1f}" r="3" '
                         f'fill="{colour}"/>')  # fmt: skip
        elif pts:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                         f'stroke-width="1.5"/>')  # fmt: skip
        if len(chart["series"]) > 1:
            parts.append(f'<text x="{legend_x:.0f}" y="{TOP - 5}" font-size="12" text-anchor="end" '
                         f'fill="{colour}">{escape(s["name"])}</text>')  # fmt: skip
            legend_x -= 8 * len(s["name"]) + 16
    if not values:
        parts.append(f'<text x="{LEFT + pw / 2:.0f}" y="{TOP + ph / 2:.0f}" '
                     f'text-anchor="middle" font-size="12">no data</text>')  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)
