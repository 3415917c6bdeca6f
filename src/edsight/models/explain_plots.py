"""Figures for explanations: a thin matplotlib layer over :mod:`edsight.models.explain` frames.

Each function takes the DataFrames the explanation functions return and a path ending in
``.png`` or ``.svg`` and writes one figure there (Agg backend, no display). Drawn here rather
than with ``shap.plots`` so the figures take our frames directly (no ``Explanation`` object),
never touch pyplot's global state outside one figure, and the format follows the suffix.
The waterfall shows one student's row: use it only where the viewer may see that student.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput
from edsight.models.explain import BASE_VALUE, global_importance

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FORMATS", "plot_importance", "plot_summary", "plot_waterfall"]

FORMATS = (".png", ".svg")
_UP, _DOWN = "#c0392b", "#2471a3"

ERR_FORMAT = "{0}: figures are written as .png or .svg"
ERR_EMPTY = "{0} is empty: nothing to plot"
ERR_ROW = "row {0} is outside the {1} explained rows"


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.grid(axis="x", alpha=0.3)
    return fig, ax


def _check_path(path: Path | str) -> Path:
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise InvalidInput(ERR_FORMAT.format(p.name))
    return p


def _save(fig: Figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_importance(
    shap_or_importance: pd.DataFrame, path: Path | str, *, max_features: int = 15, title: str = ""
) -> Path:
    """Horizontal bars of mean |SHAP| per feature (takes shap_values or global_importance output)."""
    p = _check_path(path)
    frame = shap_or_importance
    table = frame if "mean_abs_shap" in frame.columns else global_importance(frame)
    if table.empty:
        raise InvalidInput(ERR_EMPTY.format("importance table"))
    shown = table.head(max_features).iloc[::-1]
    fig, ax = _figure(7.0, 0.9 + 0.32 * len(shown))
    ax.barh(shown["feature"].astype(str), shown["mean_abs_shap"], color=_UP)
    ax.set_xlabel("mean |SHAP value| (log-odds)")
    ax.set_title(title or f"Global feature importance (top {len(shown)})")
    return _save(fig, p)


def _color_values(values: pd.Series) -> np.ndarray:
    """Within-feature percentile of each value (0 low .. 1 high); NaN for missing or text."""
    numeric = pd.to_numeric(values.astype(object).where(values.notna(), np.nan), errors="coerce").astype(
        float
    )
    ranks = numeric.rank(pct=True)
    return np.asarray(ranks, dtype=float)


def plot_summary(
    shap_frame: pd.DataFrame,
    feature_frame: pd.DataFrame,
    path: Path | str,
    *,
    max_features: int = 15,
    max_points: int = 5000,
    seed: int = 0,
    title: str = "",
) -> Path:
    """Beeswarm: one row per feature, one dot per student-week at its SHAP value, coloured by value."""
    p = _check_path(path)
    if shap_frame.empty:
        raise InvalidInput(ERR_EMPTY.format("shap frame"))
    if len(shap_frame) != len(feature_frame):
        raise InvalidInput("shap_frame and feature_frame must describe the same rows in order")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(shap_frame), size=min(max_points, len(shap_frame)), replace=False))
    features = list(global_importance(shap_frame)["feature"].head(max_features))
    fig, ax = _figure(7.5, 1.0 + 0.38 * len(features))
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("coolwarm")
    scatter = None
    for y, feature in enumerate(reversed(features)):
        phi = shap_frame[feature].to_numpy(dtype=float)[keep]
        colour = (
            _color_values(feature_frame[feature].iloc[keep])
            if feature in feature_frame
            else np.full(len(keep), np.nan)
        )
        # Jitter grows with local density so the dots of a crowded value spread out.
        hist, edges = np.histogram(phi, bins=40)
        density = hist[np.clip(np.searchsorted(edges, phi, side="right") - 1, 0, len(hist) - 1)]
        spread = 0.38 * density / max(int(hist.max()), 1)
        jitter = rng.uniform(-1.0, 1.0, len(phi)) * spread
        known = ~np.isnan(colour)
        ax.scatter(phi[~known], y + jitter[~known], s=6, color="#999999", alpha=0.6, linewidths=0)
        scatter = ax.scatter(
            phi[known],
            y + jitter[known],
            s=6,
            c=colour[known],
            cmap=cmap,
            vmin=0,
            vmax=1,
            alpha=0.8,
            linewidths=0,
        )
    ax.axvline(0.0, color="#555555", lw=0.8)
    ax.set_yticks(range(len(features)), list(reversed(features)))
    ax.set_xlabel("SHAP value (log-odds; right = higher risk)")
    ax.set_title(title or "How each feature moves the risk score")
    if scatter is not None:
        bar = fig.colorbar(scatter, ax=ax, pad=0.01, ticks=[0, 1])
        bar.ax.set_yticklabels(["low", "high"])
        bar.set_label("feature value")
    return _save(fig, p)


def _label(feature: str, value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return f"{feature} = missing"
    if isinstance(value, float | np.floating):
        return f"{feature} = {float(value):.3g}"
    return f"{feature} = {value}"


def plot_waterfall(
    shap_frame: pd.DataFrame,
    feature_frame: pd.DataFrame,
    path: Path | str,
    *,
    row: int = 0,
    max_features: int = 10,
    title: str = "",
) -> Path:
    """One row's explanation: from the base value, each feature's push up or down to its margin."""
    p = _check_path(path)
    if not 0 <= row < len(shap_frame):
        raise InvalidInput(ERR_ROW.format(row, len(shap_frame)))
    values = shap_frame.iloc[row].drop(BASE_VALUE, errors="ignore").astype(float)
    base = float(shap_frame[BASE_VALUE].iloc[row]) if BASE_VALUE in shap_frame.columns else 0.0
    order = values.abs().sort_values(ascending=False, kind="stable").index
    shown = list(order[:max_features])
    rest = float(values[list(order[max_features:])].sum())
    items = [
        (_label(f, feature_frame[f].iloc[row] if f in feature_frame else None), float(values[f]))
        for f in shown
    ]
    if len(order) > max_features:
        items.append((f"{len(order) - max_features} other features", rest))
    items = items[::-1]  # largest at the top of the chart
    fig, ax = _figure(7.5, 1.2 + 0.4 * len(items))
    start = base + sum(v for _, v in items)
    # Bars chain upwards from the base value (bottom) to this row's margin (top), as in shap's waterfall.
    lefts = np.concatenate([[base], base + np.cumsum([v for _, v in items])[:-1]])
    for y, ((_, v), left) in enumerate(zip(items, lefts, strict=True)):
        ax.barh(y, v, left=left, color=_UP if v > 0 else _DOWN, height=0.6)
        ax.text(max(left, left + v), y, f" {v:+.2f}", va="center", ha="left", fontsize=7)
    ax.margins(x=0.12)
    ax.set_yticks(range(len(items)), [label for label, _ in items], fontsize=8)
    ax.axvline(base, color="#555555", lw=0.8, ls="--")
    ax.axvline(start, color="#222222", lw=0.8)
    ax.set_xlabel(f"log-odds: base {base:.2f} -> this row {start:.2f}")
    ax.set_title(title or "Why this score (largest pushes at the top)")
    return _save(fig, p)
