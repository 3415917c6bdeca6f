"""Server-side inline SVG charts: sparklines, bar charts, histograms, line charts, tile maps.

Charts are drawn on the server so pages need no JavaScript and no external assets, and so
that every chart carries a text alternative (``role="img"`` with ``<title>`` and a
``<desc>``) that screen readers announce. Colours come from one palette whose contrast
against the white page background is at least 3:1 (WCAG 1.4.11, non-text contrast).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

# Blue / orange / grey / green with >= 3:1 contrast on white; orange marks flagged values.
PALETTE = ("#1f5fa8", "#b3541e", "#5a5a5a", "#2e7d32", "#6a3d9a")
FLAG = "#b3541e"
AXIS = "#4a4a4a"


def _f(x: float) -> str:
    return f"{x:.1f}"


def _svg(width: int, height: int, title: str, desc: str, body: str, css_class: str) -> Markup:
    return Markup(
        f'<svg class="{css_class}" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>{body}</svg>"
    )


def sparkline(values: Sequence[float], *, title: str, width: int = 96, height: int = 24) -> Markup:
    """A small line of ``values`` (0-1 probabilities or any series), last point marked."""
    clean = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not clean:
        return Markup('<span class="muted">no history</span>')
    lo, hi = min(clean), max(clean)
    span = hi - lo or 1.0
    n = len(clean)
    step = (width - 6) / max(n - 1, 1)
    pts = [(3 + i * step, height - 3 - (v - lo) / span * (height - 6)) for i, v in enumerate(clean)]
    path = " ".join(f"{_f(x)},{_f(y)}" for x, y in pts)
    last_x, last_y = pts[-1]
    desc = f"{n} points from {clean[0]:.2f} to {clean[-1]:.2f} (min {lo:.2f}, max {hi:.2f})"
    body = (
        f'<polyline fill="none" stroke="{PALETTE[0]}" stroke-width="1.5" points="{path}"/>'
        f'<circle cx="{_f(last_x)}" cy="{_f(last_y)}" r="2.5" fill="{FLAG}"/>'
    )
    return _svg(width, height, title, desc, body, "chart sparkline")


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    unit: str = "",
    width: int = 420,
    bar_height: int = 18,
    max_value: float | None = None,
) -> Markup:
    """Horizontal bars with their value printed; ``None`` values show as "suppressed"."""
    label_w = 150
    numbers = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    top = max_value if max_value is not None else (max(numbers) if numbers else 1.0)
    top = top or 1.0
    plot_w = width - label_w - 70
    rows = []
    parts = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 4 + i * (bar_height + 6)
        rows.append(
            f'<text x="{label_w - 6}" y="{y + bar_height - 5}" text-anchor="end" '
            f'fill="{AXIS}" font-size="12">{escape(str(label)[:24])}</text>'
        )
        if value is None or math.isnan(float(value)):
            rows.append(f'<text x="{label_w + 4}" y="{y + bar_height - 5}" font-size="12">suppressed</text>')
            parts.append(f"{label}: suppressed")
            continue
        w = max(float(value) / top * plot_w, 1.0)
        rows.append(
            f'<rect x="{label_w}" y="{y}" width="{_f(w)}" height="{bar_height}" fill="{PALETTE[i % 2]}"/>'
            f'<text x="{_f(label_w + w + 4)}" y="{y + bar_height - 5}" font-size="12">'
            f"{_fmt(float(value))}{escape(unit)}</text>"
        )
        parts.append(f"{label}: {_fmt(float(value))}{unit}")
    height = 8 + len(labels) * (bar_height + 6)
    return _svg(width, height, title, "; ".join(parts), "".join(rows), "chart bars")


def histogram(
    counts: Sequence[int | None], edges: Sequence[float], *, title: str, width: int = 420, height: int = 160
) -> Markup:
    """Vertical bars of ``counts`` between ``edges`` (len(edges) == len(counts) + 1)."""
    known = [c for c in counts if c is not None]
    top = max(known) if known else 1
    top = top or 1
    n = len(counts)
    plot_h = height - 30
    bw = (width - 20) / max(n, 1)
    body = []
    parts = []
    for i, c in enumerate(counts):
        x = 10 + i * bw
        label = f"{edges[i]:.1f}-{edges[i + 1]:.1f}"
        if c is None:
            parts.append(f"{label}: suppressed")
            body.append(
                f'<text x="{_f(x + bw / 2)}" y="{plot_h}" text-anchor="middle" font-size="10">*</text>'
            )
            continue
        h = c / top * (plot_h - 10)
        colour = FLAG if edges[i] >= 0.5 else PALETTE[0]
        body.append(
            f'<rect x="{_f(x + 1)}" y="{_f(plot_h - h)}" width="{_f(bw - 2)}" '
            f'height="{_f(h)}" fill="{colour}"/>'
        )
        parts.append(f"{label}: {c}")
    body.append(f'<line x1="10" y1="{plot_h}" x2="{width - 10}" y2="{plot_h}" stroke="{AXIS}"/>')
    for i in (0, n // 2, n):
        x = 10 + i * bw
        body.append(
            f'<text x="{_f(x)}" y="{plot_h + 14}" text-anchor="middle" font-size="11" fill="{AXIS}">'
            f"{edges[i]:.1f}</text>"
        )
    return _svg(width, height, title, "; ".join(parts), "".join(body), "chart histogram")


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
    width: int = 420,
    height: int = 180,
) -> Markup:
    """One line per series of ``(x, y)`` points, with a legend and min/max axis labels."""
    pts = [(float(x), float(y)) for s in series.values() for x, y in s if not math.isnan(float(y))]
    if not pts:
        return Markup('<p class="muted">No data to plot.</p>')
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    xs, ys = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    left, right, top, bottom = 50, 10, 10, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / xs * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / ys * ph

    body = [
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="{AXIS}"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="{AXIS}"/>',
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" font-size="11">{_fmt(y1)}</text>',
        f'<text x="{left - 4}" y="{top + ph}" text-anchor="end" font-size="11">{_fmt(y0)}</text>',
        f'<text x="{left}" y="{top + ph + 14}" font-size="11">{_fmt(x0)}</text>',
        f'<text x="{left + pw}" y="{top + ph + 14}" text-anchor="end" font-size="11">{_fmt(x1)}</text>',
    ]
    parts = []
    for i, (name, s) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        clean = sorted((float(x), float(y)) for x, y in s if not math.isnan(float(y)))
        if not clean:
            continue
        path = " ".join(f"{_f(sx(x))},{_f(sy(y))}" for x, y in clean)
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        body.extend(f'<circle cx="{_f(sx(x))}" cy="{_f(sy(y))}" r="2.5" fill="{colour}"/>' for x, y in clean)
        ly = top + ph + 28
        lx = left + i * 110
        body.append(
            f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="{ly}" font-size="11">{escape(str(name)[:14])}</text>'
        )
        parts.append(f"{name}: " + ", ".join(f"{_fmt(x)} {_fmt(y)}" for x, y in clean))
    desc = f"{y_label} by {x_label}. " + "; ".join(parts)
    return _svg(width, height, title, desc, "".join(body), "chart line")


def tile_map(
    tiles: Sequence[tuple[str, str, float | None]], *, title: str, columns: int = 6, size: int = 64
) -> Markup:
    """A tile map: one square per school (``(id, label, value 0-1)``), shaded by value.

    The warehouse holds no coordinates, so the map places schools on a grid in the order
    given (by level, then name); the shade encodes the value, and suppressed values are hatched.
    """
    if not tiles:
        return Markup('<p class="muted">No schools in scope.</p>')
    rows = math.ceil(len(tiles) / columns)
    width, height = columns * (size + 4) + 4, rows * (size + 4) + 4
    body = [
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse">'
        f'<path d="M0,6 L6,0" stroke="{AXIS}" stroke-width="1"/></pattern></defs>'
    ]
    parts = []
    for i, (org_id, label, value) in enumerate(tiles):
        x, y = 4 + (i % columns) * (size + 4), 4 + (i // columns) * (size + 4)
        if value is None or math.isnan(float(value)):
            fill, text, shown = "url(#hatch)", "#1a1a1a", "suppressed"
        else:
            v = min(max(float(value), 0.0), 1.0)
            # Light-to-dark blue; text switches to white where the tile is dark enough.
            light = int(235 - v * 180)
            fill = f"rgb({light - 40},{light},{255 if v < 0.5 else 200})"
            text = "#ffffff" if v > 0.45 else "#1a1a1a"
            shown = f"{v:.0%}"
        body.append(
            f'<g><rect x="{x}" y="{y}" width="{size}" height="{size}" fill="{fill}" stroke="{AXIS}"/>'
            f'<text x="{x + size / 2}" y="{y + size / 2 - 4}" text-anchor="middle" font-size="10" '
            f'fill="{text}">{escape(label[:10])}</text>'
            f'<text x="{x + size / 2}" y="{y + size / 2 + 12}" text-anchor="middle" font-size="12" '
            f'fill="{text}">{shown}</text></g>'
        )
        parts.append(f"{label} ({org_id}): {shown}")
    return _svg(width, height, title, "; ".join(parts), "".join(body), "chart tilemap")


def _fmt(v: float) -> str:
    if abs(v) >= 10_000:
        return f"{v:,.0f}"
    if abs(v) >= 100 or v == int(v):
        return f"{v:.0f}"
    return f"{v:.2f}"


__all__ = ["bar_chart", "histogram", "line_chart", "sparkline", "tile_map"]
