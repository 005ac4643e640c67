"""Small inline SVG line plots for the readiness report (no JavaScript, no external files)."""

from __future__ import annotations

import math
from html import escape

from agent.wire.readiness import Series


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.1f}"


def plot(series: Series, width: int = 520, height: int = 200, markers: bool = False) -> str:
    """An SVG line chart of `series` with axes, 0..max ticks and the limit as a dashed line."""
    left, right, top, bottom = 46, 12, 24, 34
    pw, ph = width - left - right, height - top - bottom
    pts = series.points
    xs = [p[0] for p in pts] or [0.0]
    ys = [p[1] for p in pts] or [0.0]
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x1 = x0 + 1.0
    ymax = _nice_max(max([*ys, series.limit or 0.0]) * 1.1)

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - min(max(y, 0.0), ymax) / ymax * ph

    title = escape(series.title)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{title}">',
        f"<title>{title}</title>",
        f'<text x="{left}" y="15" font-size="13" font-weight="bold">{title}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = top + ph - frac * ph
        parts.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="#999"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{_fmt(frac * ymax)}</text>"
        )
    for x in (x0, (x0 + x1) / 2, x1):
        parts.append(
            f'<text x="{sx(x):.1f}" y="{top + ph + 14}" font-size="11" text-anchor="middle">'
            f"{_fmt(x)}</text>"
        )
    parts.append(
        f'<text x="{left + pw / 2:.0f}" y="{height - 3}" font-size="11" text-anchor="middle">'
        f"{escape(series.x_label)}</text>"
    )
    parts.append(
        f'<text x="12" y="{top + ph / 2:.0f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + ph / 2:.0f})">{escape(series.y_label)}</text>'
    )
    if series.limit is not None and series.limit <= ymax:
        y = sy(series.limit)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#c62828" '
            f'stroke-dasharray="5,4"><title>limit {_fmt(series.limit)}</title></line>'
        )
    if pts:
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#1565c0" stroke-width="1.5"/>')
        if markers or len(pts) <= 20:
            for x, y in pts:
                parts.append(
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#1565c0">'
                    f"<title>{_fmt(x)} {escape(series.x_label)}: {y:.2f} "
                    f"{escape(series.y_label)}</title></circle>"
                )
    else:
        parts.append(
            f'<text x="{left + pw / 2:.0f}" y="{top + ph / 2:.0f}" text-anchor="middle" '
            f'font-size="12">no data</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
