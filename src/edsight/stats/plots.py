"""Figures for the statistics: a thin layer over the DataFrames the analyses return.

Every function takes a result table and a path ending in ``.png`` or ``.svg`` and
writes one figure there (matplotlib with the non-interactive Agg backend; no
display needed). Figures show aggregates only: callers pass tables that already
passed small-cell suppression when the audience has no student-level access.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = (".png", ".svg")


def _figure(width: float = 7.0, height: float = 4.2) -> tuple[Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig: Figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    if path.suffix.lower() not in FORMATS:
        plt.close(fig)
        raise InvalidInput(f"{path.name}: figures are written as {' or '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInput(f"{what} lacks column(s) {', '.join(missing)}")
    if frame.empty:
        raise InvalidInput(f"{what} is empty: nothing to plot")


def plot_growth_curves(
    curves: pd.DataFrame, path: Path, *, time: str, group: str, max_groups: int = 12, title: str = ""
) -> Path:
    """Predicted trajectories with their intervals (from ``LmmResult.growth_curves``)."""
    _require(curves, [time, group, "fit", "lower", "upper"], "growth curves")
    fig, ax = _figure()
    for key in list(dict.fromkeys(curves[group]))[:max_groups]:
        one = curves[curves[group] == key].sort_values(time)
        line = ax.plot(one[time], one["fit"], lw=1.4, label=str(key))[0]
        ax.fill_between(one[time], one["lower"], one["upper"], color=line.get_color(), alpha=0.12)
    ax.set_xlabel(time)
    ax.set_ylabel("predicted")
    ax.set_title(title or f"Growth by {group} (first {max_groups})")
    ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def plot_estimates(
    table: pd.DataFrame,
    path: Path,
    *,
    label: str,
    estimate: str = "effect",
    lower: str = "lower",
    upper: str = "upper",
    title: str = "",
    max_rows: int = 60,
) -> Path:
    """Ranked estimates with intervals (a caterpillar plot): value-added, gaps."""
    _require(table, [label, estimate, lower, upper], "estimate table")
    data = table.dropna(subset=[estimate]).sort_values(estimate).tail(max_rows)
    fig, ax = _figure(7.0, max(3.0, 0.16 * len(data) + 1.2))
    y = np.arange(len(data))
    ax.errorbar(
        data[estimate],
        y,
        xerr=[data[estimate] - data[lower], data[upper] - data[estimate]],
        fmt="o",
        ms=3,
        lw=1,
        capsize=0,
    )
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, [str(v) for v in data[label]], fontsize=6)
    ax.set_xlabel(estimate)
    ax.set_title(title or f"{estimate} with intervals")
    return _save(fig, path)


def plot_sgp_distribution(sgp: pd.Series | np.ndarray, path: Path, *, title: str = "") -> Path:
    """Histogram of growth percentiles against the flat line of a well-fitting model."""
    values = pd.Series(np.asarray(sgp, dtype=float)).dropna()
    if values.empty:
        raise InvalidInput("no growth percentiles to plot")
    fig, ax = _figure()
    ax.hist(values, bins=[b + 0.5 for b in range(100)], color="#4c72b0")
    ax.axhline(len(values) / 99, color="black", lw=1, ls="--", label="uniform")
    ax.set_xlabel("student growth percentile")
    ax.set_ylabel("students")
    ax.set_title(title or f"Growth percentiles (n = {len(values):,})")
    ax.legend(frameon=False)
    return _save(fig, path)


def plot_trend(
    trend: pd.DataFrame, path: Path, *, series: Sequence[str], time: str = "school_year", title: str = ""
) -> Path:
    """Observed values, the fitted line and the forecast's prediction band, per series."""
    _require(trend, [time, "observed", "fitted", "pi_low", "pi_high"], "trend table")
    fig, ax = _figure()
    keys: Any = list(series) if series else None
    groups = trend.groupby(keys, dropna=False) if keys else [("all", trend)]
    for key, one in groups:
        one = one.sort_values(time)
        name = " / ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        line = ax.plot(one[time], one["fitted"], lw=1.4, label=name)[0]
        ax.scatter(one[time], one["observed"], s=14, color=line.get_color())
        ax.fill_between(one[time], one["pi_low"], one["pi_high"], color=line.get_color(), alpha=0.12)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(time)
    ax.set_title(title or "Trend with forecast (band: prediction interval)")
    ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)
