"""Self-contained SVG line charts for the soak report (no JavaScript, nothing fetched)."""

from __future__ import annotations

import html
import math

from vmfuzz.soak._config import format_duration

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")


def _nice_step(span: float, ticks: int) -> float:
    if span <= 0:
        return 1.0
    raw = span / max(1, ticks)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _time_step(span: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600):
        if span / step <= 8:
            return float(step)
    return 43200.0


def _fmt_num(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def svg_chart(
    title: str,
    series: list[tuple[str, list[tuple[float, float]]]],
    *,
    y_label: str = "",
    y_max: float | None = None,
    markers: list[tuple[float, str]] | None = None,
    width: int = 760,
    height: int = 240,
    x_max: float | None = None,
) -> str:
    """A line chart over elapsed time as inline SVG (no scripts); ``x_max``, the end of the
    time axis (the report gives every chart the run's, so their axes line up)."""
    left, right, top, bottom = 64, 16, 28, 36
    pw, ph = width - left - right, height - top - bottom
    xs = [x for _, pts in series for x, _ in pts] + [m[0] for m in markers or []]
    ys = [y for _, pts in series for _, y in pts]
    x1 = max(xs) if xs else 1.0
    x1 = max(x1, x_max or 0.0, 1.0)
    top_y = y_max if y_max is not None else (max(ys) if ys else 1.0)
    top_y = top_y if top_y > 0 else 1.0
    ystep = _nice_step(top_y, 4)
    top_y = math.ceil(top_y / ystep) * ystep

    def px(x: float) -> float:
        return left + pw * x / x1

    def py(y: float) -> float:
        return top + ph - ph * y / top_y

    e = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{e(title)}">',
        f'<text x="{left}" y="16" class="t">{e(title)}</text>',
    ]
    y = 0.0
    while y <= top_y + 1e-9:
        yy = py(y)
        parts.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}" class="g"/>')
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" class="yl">{_fmt_num(y)}</text>')
        y += ystep
    xstep = _time_step(x1)
    x = 0.0
    while x <= x1 + 1e-9:
        xx = px(x)
        parts.append(f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{top + ph}" class="g"/>')
        parts.append(
            f'<text x="{xx:.1f}" y="{top + ph + 16}" class="xl">{format_duration(x)}</text>'
        )
        x += xstep
    if y_label:
        parts.append(
            f'<text x="14" y="{top + ph / 2:.1f}" class="al" '
            f'transform="rotate(-90 14 {top + ph / 2:.1f})">{e(y_label)}</text>'
        )
    for t, label in markers or []:
        xx = px(t)
        parts.append(
            f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{top + ph}" class="m">'
            f"<title>{e(label)}</title></line>"
        )
    for i, (name, pts) in enumerate(series):
        color = _COLORS[i % len(_COLORS)]
        if pts:
            path = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in pts)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6">'
                f"<title>{e(name)}</title></polyline>"
            )
        lx = width - right - 160 * (len(series) - i)  # legend: the title row, right side
        parts.append(f'<rect x="{lx}" y="7" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="16" class="lg">{e(name)}</text>')
    if not any(pts for _, pts in series):
        parts.append(
            f'<text x="{left + pw / 2}" y="{top + ph / 2}" class="xl">no data yet</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


# ============================================================================ HTML
