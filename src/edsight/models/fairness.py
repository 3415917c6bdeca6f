"""Fairness audit of risk scores: group metrics, bootstrap intervals, disparity flags, mitigation.

Point estimates come from fairlearn's ``MetricFrame``; intervals from a bootstrap that
resamples students within each group. Groups smaller than ``min_n`` (10, the NCES
small-cell practice) are reported as suppressed with no figures at all, not even n.
Words matter here: a model *flags* students; nothing below calls a student "at-risk".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin

from edsight.errors import InvalidInput
from edsight.models.evaluate import roc_auc, threshold_metrics

log = logging.getLogger(__name__)

__all__ = [
    "GROUP_METRICS",
    "by_group_summary",
    "disparity_flags",
    "fairness_report",
    "mitigate_thresholds",
]

#: Metrics reported per group, in report column order.
GROUP_METRICS: tuple[str, ...] = (
    "auc",
    "fpr",
    "fnr",
    "precision",
    "selection_rate",
    "mean_predicted",
    "observed_rate",
    "calibration_gap",
)
RATIO_METRICS: tuple[str, ...] = ("fpr", "fnr", "precision", "selection_rate")
INTERSECTION_SEP = " x "

ERR_SENSITIVE_LENGTH = "sensitive features have {0} rows but there are {1} predictions"
ERR_BOUNDS = "disparity bounds must satisfy 0 < low <= 1 <= high, got {0}"


def _metric_functions(threshold: float) -> dict[str, Callable[[Any, Any], float]]:
    def metric(name: str) -> Callable[[Any, Any], float]:
        return lambda y, p: threshold_metrics(y, p, threshold)[name]

    return {
        "n": lambda y, p: float(len(y)),
        "auc": roc_auc,
        "fpr": metric("fpr"),
        "fnr": metric("fnr"),
        "precision": metric("precision"),
        "selection_rate": metric("selection_rate"),
        "mean_predicted": lambda y, p: float(np.mean(p)),
        "observed_rate": lambda y, p: float(np.mean(y)),
        # Positive: the model over-predicts for this group; negative: under-predicts.
        "calibration_gap": lambda y, p: float(np.mean(p) - np.mean(y)),
    }


def _as_frame(sensitive: pd.DataFrame | pd.Series, n: int) -> pd.DataFrame:
    frame = sensitive.to_frame() if isinstance(sensitive, pd.Series) else sensitive
    if len(frame) != n:
        raise InvalidInput(ERR_SENSITIVE_LENGTH.format(len(frame), n))
    # Missing group values are a group of their own, not silently dropped.
    return frame.astype("string").fillna("(missing)").reset_index(drop=True)


def _attribute_sets(columns: Sequence[str], intersections: bool) -> list[list[str]]:
    sets = [[c] for c in columns]
    if intersections and len(columns) > 1:
        sets.append(list(columns))
    return sets


def _point_estimates(
    y: NDArray[np.int64], p: NDArray[np.float64], sens: pd.DataFrame, threshold: float
) -> pd.DataFrame:
    mf = MetricFrame(metrics=_metric_functions(threshold), y_true=y, y_pred=p, sensitive_features=sens)
    return mf.by_group.copy()


def _bootstrap(
    y: NDArray[np.int64], p: NDArray[np.float64], threshold: float, n_boot: int, rng: np.random.Generator
) -> dict[str, NDArray[np.float64]]:
    """Metric replicates for one group, vectorised over resamples."""
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    yb, pb = y[idx], p[idx]
    flag = pb >= threshold
    pos = yb.sum(axis=1).astype(float)
    neg = len(y) - pos
    tp = (flag & (yb == 1)).sum(axis=1).astype(float)
    fp = (flag & (yb == 0)).sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ranks = rankdata(pb, axis=1)
        auc = ((ranks * yb).sum(axis=1) - pos * (pos + 1) / 2) / (pos * neg)
        out = {
            "auc": auc,
            "fpr": fp / neg,
            "fnr": (pos - tp) / pos,
            "precision": tp / (tp + fp),
            "selection_rate": (tp + fp) / len(y),
            "mean_predicted": pb.mean(axis=1),
            "observed_rate": yb.mean(axis=1),
            "calibration_gap": pb.mean(axis=1) - yb.mean(axis=1),
        }
    return {k: np.where(np.isfinite(v), v, np.nan) for k, v in out.items()}


def fairness_report(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    sensitive: pd.DataFrame | pd.Series,
    *,
    threshold: float = 0.5,
    min_n: int = 10,
    intersections: bool = True,
    n_boot: int = 200,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-group metrics with bootstrap intervals, one row per (attribute, group).

    Columns: ``attribute, group, n, suppressed`` then each of :data:`GROUP_METRICS`
    with ``_lo`` / ``_hi`` interval bounds. ``attribute`` is a column name or, for the
    intersection of all columns, the names joined by ``" x "``. Suppressed rows carry
    no figures (n too). ``n_boot=0`` skips the intervals.
    """
    y = np.asarray(y_true).astype(np.int64)
    p = np.asarray(y_prob, dtype=float)
    sens = _as_frame(sensitive, len(y))
    rng = np.random.default_rng(seed)
    alpha = (1.0 - ci) / 2.0
    rows: list[dict[str, Any]] = []
    for cols in _attribute_sets([str(c) for c in sens.columns], intersections):
        table = _point_estimates(y, p, sens[cols], threshold)
        keys = sens[cols].agg(INTERSECTION_SEP.join, axis=1).to_numpy()
        for group_key, stats in table.iterrows():  # one row per group: a handful, not per student
            label = INTERSECTION_SEP.join(
                map(str, group_key if isinstance(group_key, tuple) else (group_key,))
            )
            row: dict[str, Any] = {"attribute": INTERSECTION_SEP.join(cols), "group": label}
            n = int(stats["n"])
            if n < min_n:
                row.update({"n": None, "suppressed": True})
                rows.append(row)
                continue
            row.update({"n": n, "suppressed": False})
            row.update({m: float(stats[m]) for m in GROUP_METRICS})
            if n_boot > 0:
                mask = keys == label
                reps = _bootstrap(y[mask], p[mask], threshold, n_boot, rng)
                for m in GROUP_METRICS:
                    finite = reps[m][~np.isnan(reps[m])]
                    lo, hi = np.quantile(finite, [alpha, 1 - alpha]) if finite.size else (math.nan, math.nan)
                    row[f"{m}_lo"], row[f"{m}_hi"] = float(lo), float(hi)
            rows.append(row)
    columns = ["attribute", "group", "n", "suppressed", *GROUP_METRICS]
    if n_boot > 0:
        columns += [f"{m}_{s}" for m in GROUP_METRICS for s in ("lo", "hi")]
    return pd.DataFrame(rows).reindex(columns=columns)


def by_group_summary(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    sensitive: pd.DataFrame | None,
    *,
    threshold: float = 0.5,
    min_n: int = 10,
) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``by_group`` block of the CLI JSON: ``{column: {value: {n, auc, fpr, ...}}}``.

    Suppressed groups appear as ``{"suppressed": true}``.
    """
    if sensitive is None or sensitive.shape[1] == 0:
        return {}
    report = fairness_report(
        y_true, y_prob, sensitive, threshold=threshold, min_n=min_n, intersections=False, n_boot=0
    )
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in report.to_dict(orient="records"):
        entry: dict[str, Any] = (
            {"suppressed": True}
            if rec["suppressed"]
            else {"n": int(rec["n"]), **{m: rec[m] for m in GROUP_METRICS}, "suppressed": False}
        )
        out.setdefault(str(rec["attribute"]), {})[str(rec["group"])] = entry
    return out


def disparity_flags(
    report: pd.DataFrame,
    *,
    metrics: Sequence[str] = RATIO_METRICS,
    bounds: tuple[float, float] = (0.8, 1.25),
    max_calibration_gap: float = 0.05,
    reference: Literal["largest"] | dict[str, str] = "largest",
) -> pd.DataFrame:
    """Compare each group with a reference group; flag ratios outside ``bounds``.

    The reference is the largest unsuppressed group of each attribute, or the group
    named per attribute in ``reference``. Calibration is compared in absolute terms:
    a group is flagged when |mean predicted - observed| exceeds ``max_calibration_gap``.
    Columns: ``attribute, group, metric, value, reference_group, reference_value, ratio, flagged``.
    """
    low, high = bounds
    if not 0 < low <= 1 <= high:
        raise InvalidInput(ERR_BOUNDS.format(bounds))
    visible = report[~report["suppressed"].astype(bool)]
    rows: list[dict[str, Any]] = []
    for attr_key, part in visible.groupby("attribute", sort=False):
        attribute = str(attr_key)
        if isinstance(reference, dict) and attribute in reference:
            ref: pd.DataFrame = part[part["group"] == reference[attribute]]
        else:
            ref = part.loc[[part["n"].astype(float).idxmax()]]
        if ref.empty:
            continue
        ref_row = ref.iloc[0]
        for _, grp in part.iterrows():  # groups, not students
            for m in metrics:
                value, ref_value = float(grp[m]), float(ref_row[m])
                ratio = value / ref_value if ref_value else math.nan
                flagged = bool(np.isfinite(ratio) and not low <= ratio <= high)
                rows.append(
                    {
                        "attribute": attribute,
                        "group": grp["group"],
                        "metric": m,
                        "value": value,
                        "reference_group": ref_row["group"],
                        "reference_value": ref_value,
                        "ratio": ratio,
                        "flagged": flagged,
                    }
                )
            gap = float(grp["calibration_gap"])
            rows.append(
                {
                    "attribute": attribute,
                    "group": grp["group"],
                    "metric": "calibration_gap",
                    "value": gap,
                    "reference_group": ref_row["group"],
                    "reference_value": float(ref_row["calibration_gap"]),
                    "ratio": math.nan,
                    "flagged": bool(abs(gap) > max_calibration_gap),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "attribute",
            "group",
            "metric",
            "value",
            "reference_group",
            "reference_value",
            "ratio",
            "flagged",
        ],
    )


class _ScoreAsPrediction(ClassifierMixin, BaseEstimator):
    """Prefit 'estimator' whose input is the risk score itself (lets ThresholdOptimizer pick cut-offs)."""

    classes_ = np.array([0, 1])

    def __sklearn_is_fitted__(self) -> bool:
        """Always fitted: the scores were produced by an already-trained model."""
        return True

    def fit(self, X: Any, y: Any) -> _ScoreAsPrediction:
        """Nothing to learn: the score is already fitted."""
        return self

    def predict(self, X: Any) -> NDArray[np.float64]:
        """The score column."""
        return np.asarray(X, dtype=float)[:, 0]

    def predict_proba(self, X: Any) -> NDArray[np.float64]:
        """The score as the probability of the positive class."""
        s = np.asarray(X, dtype=float)[:, 0]
        return np.column_stack([1 - s, s])


def mitigate_thresholds(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    sensitive: pd.Series,
    *,
    constraint: str = "false_positive_rate_parity",
    objective: str = "balanced_accuracy_score",
    threshold: float = 0.5,
    fit_fraction: float = 0.5,
    min_n: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """Group-specific thresholds (fairlearn ThresholdOptimizer) reported beside the single threshold.

    Thresholds are chosen on a random ``fit_fraction`` of students and both rules are
    evaluated on the rest, so the "after" column is not flattered by fitting on itself.
    Returns ``group, metric, before, after`` (suppressed groups omitted).
    """
    from fairlearn.postprocessing import ThresholdOptimizer

    y = np.asarray(y_true).astype(np.int64)
    p = np.asarray(y_prob, dtype=float)
    sens = _as_frame(sensitive, len(y)).iloc[:, 0]
    rng = np.random.default_rng(seed)
    fit_mask = rng.random(len(y)) < fit_fraction
    opt = ThresholdOptimizer(
        estimator=_ScoreAsPrediction(),
        constraints=constraint,
        objective=objective,
        prefit=True,
        predict_method="predict_proba",
    )
    opt.fit(p[fit_mask][:, None], y[fit_mask], sensitive_features=sens[fit_mask].to_numpy())
    ev = ~fit_mask
    after = np.asarray(
        opt.predict(p[ev][:, None], sensitive_features=sens[ev].to_numpy(), random_state=seed), dtype=float
    )
    before = (p[ev] >= threshold).astype(float)
    rows: list[dict[str, Any]] = []
    y_ev, s_ev = y[ev], sens[ev].to_numpy()
    for group in sorted(pd.unique(s_ev)):
        mask = s_ev == group
        if mask.sum() < min_n:
            continue
        b = threshold_metrics(y_ev[mask], before[mask], 0.5)
        a = threshold_metrics(y_ev[mask], after[mask], 0.5)
        for m in RATIO_METRICS:
            rows.append({"group": str(group), "metric": m, "before": b[m], "after": a[m]})
    log.info("threshold mitigation (%s) evaluated on %d held-out rows", constraint, int(ev.sum()))
    return pd.DataFrame(rows, columns=["group", "metric", "before", "after"])
