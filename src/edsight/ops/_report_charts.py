"""Report charts: matplotlib figures built from published (suppressed) values only.

Figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot state), so the same
figure goes into the HTML as inline SVG and onto a PDF page. Hidden values arrive as NaN and
are left out of the drawing (their label reads "suppressed").
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Colours with at least 3:1 contrast on white (as the web app's palette).
PALETTE = ("#1f5fa8", "#b3541e", "#5a5a5a", "#2e7d32", "#6a3d9a", "#8c6d1f")
BAND_COLOURS = {"high": "#b3541e", "elevated": "#d9a441", "low": "#1f5fa8"}
RC: dict[str, Any] = {
    "svg.fonttype": "none",  # text stays text in the SVG: searchable and read by screen readers
    "svg.hashsalt": "edsight-report",  # stable element ids, so equal reports are equal files
    "pdf.fonttype": 42,  # TrueType in the PDF: its text can be extracted
    "font.size": 9,
}


def _figure(width: float = 7.0, height: float = 3.6) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def _width(labels: Sequence[str]) -> float:
    """Wide enough for the longest tick label next to a readable plot area."""
    longest = max((len(str(label)) for label in labels), default=0)
    return float(min(10.0, max(7.0, 4.5 + 0.075 * longest)))


def _height(rows: int) -> float:
    return float(min(9.0, max(2.4, 0.32 * rows + 1.2)))


def band_bars(categories: Sequence[str], counts: Mapping[str, ArrayLike], title: str) -> Figure:
    """Horizontal stacked bars of students per probability band (hidden counts drawn as 0)."""
    fig = _figure(width=_width(categories), height=_height(len(categories)))
    ax = fig.add_subplot()
    y = np.arange(len(categories))
    left = np.zeros(len(categories))
    for band, values in counts.items():
        v = np.nan_to_num(np.asarray(values, dtype=float))
        ax.barh(y, v, left=left, color=BAND_COLOURS.get(band, PALETTE[2]), label=band)
        left += v
    ax.set_yticks(y, list(categories))
    ax.invert_yaxis()
    ax.set_xlabel("students")
    ax.set_title(title)
    ax.legend(loc="lower right", frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return fig


def share_bars(
    labels: Sequence[str], shares: ArrayLike, title: str, xlabel: str = "share of students"
) -> Figure:
    """Horizontal bars of shares (0-1); NaN bars are labelled as suppressed."""
    fig = _figure(width=_width(labels), height=_height(len(labels)))
    ax = fig.add_subplot()
    v = np.asarray(shares, dtype=float)
    y = np.arange(len(labels))
    ax.barh(y, np.nan_to_num(v), color=PALETTE[0])
    for yi, vi in zip(y, v, strict=True):
        ax.text(
            0.005, float(yi), "suppressed" if np.isnan(vi) else f" {100 * vi:.0f}%", va="center", fontsize=8
        )
    ax.set_yticks(y, list(labels))
    ax.invert_yaxis()
    ax.set_xlim(0, max(0.1, float(np.nanmax(v)) * 1.15) if np.isfinite(v).any() else 1.0)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def value_bars(
    labels: Sequence[str], values: ArrayLike, title: str, xlabel: str, reference: float | None = None
) -> Figure:
    """Horizontal bars of values with an optional reference line (e.g. median SGP 50)."""
    fig = _figure(width=_width(labels), height=_height(len(labels)))
    ax = fig.add_subplot()
    v = np.asarray(values, dtype=float)
    y = np.arange(len(labels))
    ax.barh(y, np.nan_to_num(v), color=PALETTE[0])
    for yi, vi in zip(y, v, strict=True):
        if np.isnan(vi):
            ax.text(0.5, float(yi), "suppressed", va="center", fontsize=8)
    if reference is not None:
        ax.axvline(reference, color=PALETTE[1], linestyle="--", linewidth=1)
    ax.set_yticks(y, list(labels))
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def estimate_intervals(
    labels: Sequence[str],
    estimate: ArrayLike,
    lower: ArrayLike,
    upper: ArrayLike,
    title: str,
    xlabel: str,
) -> Figure:
    """Point estimates with intervals (gaps, value-added); a line at zero."""
    fig = _figure(width=_width(labels), height=_height(len(labels)))
    ax = fig.add_subplot()
    est = np.asarray(estimate, dtype=float)
    lo = np.asarray(lower, dtype=float)
    hi = np.asarray(upper, dtype=float)
    y = np.arange(len(labels))
    ok = np.isfinite(est)
    err = np.vstack([np.nan_to_num(est - lo), np.nan_to_num(hi - est)])
    ax.errorbar(est[ok], y[ok], xerr=err[:, ok], fmt="o", color=PALETTE[0], ecolor=PALETTE[2], capsize=3)
    ax.axvline(0.0, color=PALETTE[1], linewidth=1)
    ax.set_yticks(y, list(labels))
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def trend_lines(
    series: Mapping[str, Mapping[str, np.ndarray]], title: str, ylabel: str, percent: bool = False
) -> Figure:
    """Observed yearly values (points and line), the fitted line and the forecast's prediction band.

    Each series maps ``year, observed, fitted, pi_low, pi_high, forecast`` to arrays.
    """
    from matplotlib.ticker import MaxNLocator

    fig = _figure()
    ax = fig.add_subplot()
    scale = 100.0 if percent else 1.0
    for i, (label, s) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        years = np.asarray(s["year"], dtype=float)
        observed = np.asarray(s["observed"], dtype=float) * scale
        fitted = np.asarray(s["fitted"], dtype=float) * scale
        forecast = np.asarray(s["forecast"], dtype=bool)
        ax.plot(years[~forecast], observed[~forecast], "o-", color=colour, label=label)
        if np.isfinite(fitted).any():
            ax.plot(years, fitted, ":", color=colour, linewidth=1)
        lo = np.asarray(s["pi_low"], dtype=float) * scale
        hi = np.asarray(s["pi_high"], dtype=float) * scale
        band = forecast & np.isfinite(lo) & np.isfinite(hi)
        if band.any():
            ax.errorbar(
                years[band],
                fitted[band],
                yerr=[fitted[band] - lo[band], hi[band] - fitted[band]],
                fmt="s",
                color=colour,
                mfc="white",
                capsize=4,
            )
    ax.set_title(title)
    ax.set_xlabel("school year (fall)")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if series:
        ax.legend(frameon=False, fontsize=8)
    return fig


def to_svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog, no creation date)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(RC):  # type: ignore[arg-type]
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]
