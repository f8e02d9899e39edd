"""A small static SVG chart: the plain-HTML fallback of the notebook views where the
JupyterLab extension is not there to draw them (papermill's output notebook, nbconvert,
GitHub, nbviewer). Theme-neutral: text and axes are ``currentColor`` (the page's text
colour, light or dark), series colours are mid-tones readable on white and black, and
a legend names each series. In JupyterLab the extension's MIME renderer draws the same
data with ECharts instead.
"""

from __future__ import annotations

import html
import math

#: mid-tone series colours (each at least 3:1 against white and against black)
PALETTE = ("#3b82f6", "#ea7a12", "#16a34a", "#dc2626", "#9333ea", "#0891b2")


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values covering [lo, hi] (1, 2 or 5 × 10^n apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if lo == hi:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), 10 * mag)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9:
        ticks.append(float(f"{v:.12g}"))
        v += step
    if ticks[-1] < hi:
        ticks.append(float(f"{ticks[-1] + step:.12g}"))
    return ticks


def fmt_tick(v: float) -> str:
    a = abs(v)
    if v == 0:
        return "0"
    if a >= 1e5 or a < 1e-3:
        return f"{v:.1e}"
    return f"{v:.4g}"


class Series:
    """One series: ``points`` (x, y); drawn as a ``line`` or ``dots`` (``hollow`` ones);
    ``css`` is the class of each element (tests and styles find them by it)."""

    def __init__(self, label: str, points, colour: str, kind: str = "line", hollow: bool = False, css: str = "",
                 titles=None):  # fmt: skip
        self.label, self.points, self.colour, self.kind, self.hollow = label, list(points), colour, kind, hollow
        self.css, self.titles = css, list(titles) if titles is not None else None


def line_chart_svg(series: list[Series], x_name: str, y_name: str, width: int = 460, height: int = 200,
                   integer_x: bool = False) -> str:  # fmt: skip
    """An SVG of ``series`` with x and y axes, ticks and their labels, the axes' names and a legend."""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    if not xs:
        return ""
    left, right, top, bottom = 52, 12, 22, 36
    xt = nice_ticks(min(xs), max(xs), min(6, max(1, int(max(xs) - min(xs)))) if integer_x else 6)
    if integer_x:
        xt = [t for t in xt if float(t).is_integer()] or xt
    yt = nice_ticks(min(ys), max(ys), 4)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def sx(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / ((y1 - y0) or 1) * (height - top - bottom)

    out = [
        f'<svg class="kf-svgchart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{html.escape(y_name, quote=True)} by {html.escape(x_name, quote=True)}" '
        'style="font:11px sans-serif;color:inherit;max-width:100%">'
    ]
    grid = 'stroke="currentColor" stroke-opacity="0.15"'
    for t in yt:
        y = sy(t)
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" {grid}/>')
        out.append(f'<text class="ytick" x="{left - 5}" y="{y + 3:.1f}" text-anchor="end" fill="currentColor">{fmt_tick(t)}</text>')
    base = height - bottom
    out.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{base}" y2="{base}" stroke="currentColor"/>')
    out.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{base}" stroke="currentColor"/>')
    for t in xt:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" stroke="currentColor"/>')
        out.append(f'<text class="xtick" x="{x:.1f}" y="{base + 15}" text-anchor="middle" fill="currentColor">{fmt_tick(t)}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 4}" text-anchor="middle" fill="currentColor">{html.escape(x_name)}</text>')
    out.append(f'<text x="12" y="{(top + base) / 2:.0f}" text-anchor="middle" fill="currentColor" '
               f'transform="rotate(-90 12 {(top + base) / 2:.0f})">{html.escape(y_name)}</text>')  # fmt: skip
    for s in series:
        css = f' class="{s.css}"' if s.css else ""
        if s.kind == "line" and len(s.points) > 1:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s.points)
            out.append(f'<polyline{css} fill="none" stroke="{s.colour}" stroke-width="2" points="{coords}"/>')
        if s.kind == "dots" or (s.kind == "line" and len(s.points) <= 40):
            r = 3 if s.kind == "dots" else 2
            fill = "none" if s.hollow else s.colour
            for i, (x, y) in enumerate(s.points):
                title = s.titles[i] if s.titles else f"{s.label}: {x:g}, {y:.6g}"
                dot_css = css if s.kind == "dots" else ""
                out.append(f'<circle{dot_css} cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{r}" fill="{fill}" stroke="{s.colour}" '
                           f'stroke-width="1.5"><title>{html.escape(title)}</title></circle>')  # fmt: skip
    x = left
    for s in series:  # the legend, on top
        mark = (f'<line x1="{x}" x2="{x + 14}" y1="10" y2="10" stroke="{s.colour}" stroke-width="2"/>' if s.kind == "line"
                else f'<circle cx="{x + 7}" cy="10" r="3.5" fill="{"none" if s.hollow else s.colour}" stroke="{s.colour}"/>')  # fmt: skip
        out.append(f'<g class="legend">{mark}<text x="{x + 18}" y="14" fill="currentColor">{html.escape(s.label)}</text></g>')
        x += 26 + 6.5 * len(s.label)
    out.append("</svg>")
    return "".join(out)


def json_safe(value):
    """``value`` with NaN and infinities as None (JSON has neither), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
