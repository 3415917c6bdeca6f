"""Evaluation of risk scores: discrimination, calibration and capacity-based flagging.

All functions take the observed outcome ``y_true`` (0/1) and a score ``y_score`` (a
probability where calibration is measured) and return plain numbers or DataFrames.
Plotting lives elsewhere; :func:`reliability_chart_spec` only emits a Vega-Lite spec.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score, roc_auc_score

from edsight.errors import InvalidInput

__all__ = [
    "DEFAULT_TOP_K",
    "binary_metrics",
    "brier_score",
    "expected_calibration_error",
    "reliability_chart_spec",
    "reliability_curve",
    "threshold_metrics",
    "top_k_precision_recall",
]

#: Flagging capacities reported by default: the top 5 %, 10 % and 20 % of scores.
DEFAULT_TOP_K: tuple[float, ...] = (0.05, 0.10, 0.20)

ERR_LENGTH = "y_true and y_score differ in length ({0} vs {1})"
ERR_BINARY = "y_true must hold only 0 and 1"
ERR_K = "top-k fraction must lie in (0, 1], got {0}"


def _arrays(y_true: ArrayLike, y_score: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=float)
    if y.shape[0] != s.shape[0]:
        raise InvalidInput(ERR_LENGTH.format(y.shape[0], s.shape[0]))
    if y.size and not np.isin(y, (0, 1)).all():
        raise InvalidInput(ERR_BINARY)
    return y.astype(np.int64), s


def _nan_if_one_class(y: NDArray[np.int64]) -> bool:
    return y.size == 0 or y.min() == y.max()


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y, s = _arrays(y_true, y_score)
    return math.nan if _nan_if_one_class(y) else float(roc_auc_score(y, s))


def pr_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the precision-recall curve (average precision); NaN without positives."""
    y, s = _arrays(y_true, y_score)
    return math.nan if y.sum() == 0 else float(average_precision_score(y, s))


def brier_score(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Mean squared difference between predicted probability and outcome."""
    y, p = _arrays(y_true, y_prob)
    return float(np.mean((p - y) ** 2)) if y.size else math.nan


def reliability_curve(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    *,
    bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> pd.DataFrame:
    """Binned reliability (calibration) curve.

    Columns: ``bin, lower, upper, n, mean_predicted, observed_rate``; empty bins are
    dropped. ``quantile`` bins hold about equal numbers of students.
    """
    y, p = _arrays(y_true, y_prob)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, bins + 1))) if p.size else np.array([0.0, 1.0])
    else:
        edges = np.linspace(0.0, 1.0, bins + 1)
    # Interior edges only: values equal to 1.0 belong to the last bin, not a new one.
    idx = np.clip(np.searchsorted(edges[1:-1], p, side="right"), 0, len(edges) - 2)
    frame = pd.DataFrame({"bin": idx, "p": p, "y": y})
    out = frame.groupby("bin", sort=True).agg(
        n=("y", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean")
    )
    out = out.reset_index()
    out.insert(1, "lower", edges[out["bin"].to_numpy()])
    out.insert(2, "upper", edges[out["bin"].to_numpy() + 1])
    return out[["bin", "lower", "upper", "n", "mean_predicted", "observed_rate"]]


def expected_calibration_error(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    *,
    bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "uniform",
) -> float:
    """Expected calibration error: n-weighted mean |observed - predicted| over bins."""
    curve = reliability_curve(y_true, y_prob, bins=bins, strategy=strategy)
    if curve.empty:
        return math.nan
    gap = (curve["observed_rate"] - curve["mean_predicted"]).abs()
    return float((gap * curve["n"]).sum() / curve["n"].sum())


def top_k_precision_recall(y_true: ArrayLike, y_score: ArrayLike, k: float) -> tuple[float, float]:
    """Precision and recall when the ``ceil(k * n)`` highest scores are flagged.

    This is capacity-based flagging: a school that can follow up with 10 % of its
    students flags exactly that many, whatever the probabilities say. Ties at the
    cut are broken by a stable sort, so the flagged count is exact.
    """
    if not 0.0 < k <= 1.0:
        raise InvalidInput(ERR_K.format(k))
    y, s = _arrays(y_true, y_score)
    if y.size == 0:
        return math.nan, math.nan
    n_flag = max(1, math.ceil(k * y.size))
    order = np.argsort(-s, kind="stable")[:n_flag]
    hits = float(y[order].sum())
    positives = float(y.sum())
    return hits / n_flag, (hits / positives if positives else math.nan)


def threshold_metrics(y_true: ArrayLike, y_prob: ArrayLike, threshold: float) -> dict[str, float]:
    """FPR, FNR, precision, recall and selection rate when ``y_prob >= threshold`` is flagged."""
    y, p = _arrays(y_true, y_prob)
    flag = p >= threshold
    tp = float(np.sum(flag & (y == 1)))
    fp = float(np.sum(flag & (y == 0)))
    fn = float(np.sum(~flag & (y == 1)))
    tn = float(np.sum(~flag & (y == 0)))
    return {
        "fpr": fp / (fp + tn) if fp + tn else math.nan,
        "fnr": fn / (fn + tp) if fn + tp else math.nan,
        "precision": tp / (tp + fp) if tp + fp else math.nan,
        "recall": tp / (tp + fn) if tp + fn else math.nan,
        "selection_rate": (tp + fp) / y.size if y.size else math.nan,
    }


def binary_metrics(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    *,
    threshold: float = 0.5,
    top_k: Sequence[float] = DEFAULT_TOP_K,
    bins: int = 10,
) -> dict[str, Any]:
    """All headline figures for one set of predictions, as a JSON-ready dict."""
    y, p = _arrays(y_true, y_prob)
    out: dict[str, Any] = {
        "n": int(y.size),
        "n_positive": int(y.sum()),
        "prevalence": float(y.mean()) if y.size else math.nan,
        "auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "brier": brier_score(y, p),
        "calibration_error": expected_calibration_error(y, p, bins=bins),
        "mean_predicted": float(p.mean()) if p.size else math.nan,
    }
    out.update(threshold_metrics(y, p, threshold))
    for k in top_k:
        precision, recall = top_k_precision_recall(y, p, k)
        out[f"precision_at_{_pct(k)}"] = precision
        out[f"recall_at_{_pct(k)}"] = recall
    return out


def _pct(k: float) -> str:
    """``0.1`` -> ``"10pct"`` (keys stay valid identifiers in JSON consumers)."""
    return f"{round(k * 100, 4):g}pct"


def reliability_chart_spec(curve: pd.DataFrame, *, title: str = "Reliability") -> dict[str, Any]:
    """Vega-Lite spec of a reliability curve (needs no plotting library)."""
    points = curve[["mean_predicted", "observed_rate", "n"]].to_dict(orient="records")
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": title,
        "layer": [
            {
                "data": {"values": [{"x": 0.0, "y": 0.0}, {"x": 1.0, "y": 1.0}]},
                "mark": {"type": "line", "strokeDash": [4, 4], "color": "gray"},
                "encoding": {
                    "x": {"field": "x", "type": "quantitative"},
                    "y": {"field": "y", "type": "quantitative"},
                },
            },
            {
                "data": {"values": points},
                "mark": {"type": "line", "point": True},
                "encoding": {
                    "x": {"field": "mean_predicted", "type": "quantitative", "title": "Mean predicted"},
                    "y": {"field": "observed_rate", "type": "quantitative", "title": "Observed rate"},
                    "tooltip": [{"field": "n", "type": "quantitative"}],
                },
            },
        ],
    }
