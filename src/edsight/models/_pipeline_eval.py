"""Validation by time, the school-level baseline and lead time for the warehouse pipeline.

Splits never let a model see an outcome that was not yet observed when the test rows
were predicted: K-12 trains on outcomes observed before the first test school year
starts; LMS data with several terms trains on outcomes observed before the last term
starts; LMS data with one term falls back to folds grouped by student.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.model_selection import StratifiedGroupKFold

from edsight.errors import InvalidInput
from edsight.models._pipeline_data import PROTECTED, ModelFrame
from edsight.models.evaluate import binary_metrics
from edsight.models.fairness import by_group_summary

#: The grouping unit of the baseline: a school for K-12, a course for LMS data (a Canvas
#: account is usually one "school", so its rate would rank nobody).
BASELINE_UNIT: dict[str, str] = {"k12": "school_id", "lms": "course_id"}
#: Flagging capacity whose probability cut defines "flagged" for lead time and fairness.
FLAG_SHARE = 0.10

ERR_NO_TRAIN = (
    "no {0} rows have an outcome observed before the test period starts ({1}); "
    "a time split needs at least one earlier period with observed outcomes"
)
ERR_ONE_PERIOD_K12 = "K-12 evaluation needs outcomes in at least two school years; found {0}"
ERR_ONE_CLASS = "{0} rows of the {1} have only one outcome class; cannot evaluate {2!r}"
ERR_FOLDS = "folds must be between 2 and the number of positive students ({0}), got {1}"


@dataclass
class Split:
    """Row positions of one train/test split and how it was made."""

    train: NDArray[np.int64]
    test: NDArray[np.int64]
    info: dict[str, Any] = field(default_factory=dict)


def _iso(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).date().isoformat()


def time_splits(mf: ModelFrame, *, test_periods: int = 1, folds: int = 5, seed: int = 0) -> list[Split]:
    """Train/test splits by time where time exists (see the module docstring)."""
    f = mf.frame
    if mf.kind == "k12":
        years = sorted(int(y) for y in f["school_year"].unique())
        if len(years) < 2:
            raise InvalidInput(ERR_ONE_PERIOD_K12.format(years))
        test_years = years[-max(1, min(test_periods, len(years) - 1)) :]
        is_test = f["school_year"].isin(test_years).to_numpy()
        start = f.loc[is_test, "year_start"].min()
        is_train = (f["observed_at"] <= start).to_numpy() & ~is_test
        info = {
            "method": "time: earlier school years -> later school years",
            "train_periods": sorted(int(y) for y in f.loc[is_train, "school_year"].unique()),
            "test_periods": test_years,
        }
        return [_checked(mf, is_train, is_test, start, info)]
    terms = f.groupby("term_id")["term_start"].min().sort_values()
    if len(terms) > 1:
        test_terms = list(terms.index[-max(1, min(test_periods, len(terms) - 1)) :])
        is_test = f["term_id"].isin(test_terms).to_numpy()
        start = terms[test_terms].min()
        is_train = (f["observed_at"] <= start).to_numpy() & ~is_test
        info = {
            "method": "time: earlier terms -> later term",
            "train_periods": sorted(map(str, f.loc[is_train, "term_id"].unique())),
            "test_periods": [str(t) for t in test_terms],
        }
        return [_checked(mf, is_train, is_test, start, info)]
    return _grouped_folds(mf, folds, seed)


def _checked(
    mf: ModelFrame, is_train: NDArray[np.bool_], is_test: NDArray[np.bool_], start: Any, info: dict[str, Any]
) -> Split:
    y = mf.y
    if not is_train.any():
        raise InvalidInput(ERR_NO_TRAIN.format(mf.kind, _iso(start)))
    for mask, part in ((is_train, "training period"), (is_test, "test period")):
        if y[mask].min() == y[mask].max():
            raise InvalidInput(ERR_ONE_CLASS.format(int(mask.sum()), part, mf.target))
    info.update(
        {
            "test_start": _iso(start),
            "train_observed_until": _iso(mf.frame.loc[is_train, "observed_at"].max()),
            "n_train_rows": int(is_train.sum()),
            "n_test_rows": int(is_test.sum()),
        }
    )
    return Split(np.flatnonzero(is_train), np.flatnonzero(is_test), info)


def _grouped_folds(mf: ModelFrame, folds: int, seed: int) -> list[Split]:
    # One term: no later period exists, so students (all their rows) are held out instead.
    y = mf.y
    people = mf.frame["person_id"].astype(str).to_numpy()
    positives = len(np.unique(people[y == 1]))
    if not 2 <= folds <= max(positives, 1):
        raise InvalidInput(ERR_FOLDS.format(positives, folds))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    info = {"method": "StratifiedGroupKFold by person_id (one term: no later period)", "folds": folds}
    return [
        Split(np.asarray(tr), np.asarray(te), {**info, "fold": k})
        for k, (tr, te) in enumerate(splitter.split(np.zeros((len(y), 1)), y, people))
    ]


def school_baseline(train: pd.DataFrame, test: pd.DataFrame, unit: str) -> NDArray[np.float64]:
    """Each test row's score: its unit's outcome rate among the training rows (else the overall rate)."""
    rates = train.groupby(unit)["y"].mean()
    overall = float(train["y"].mean())
    return np.asarray(test[unit].map(rates).fillna(overall).to_numpy(float))


def lead_time(scored: pd.DataFrame, kind: str, threshold: float) -> dict[str, Any]:
    """How long before the outcome flagged students were first flagged.

    ``scored`` holds test rows of every available week with ``y`` and ``probability``.
    K-12: per positive student-year, weeks from the end of the first flagged week to the
    outcome date (the dropout date; the window's end for non-graduation). LMS: per positive
    student-section, weeks from the first flagged week to the first week whose label is
    positive (0: flagged the week the outcome window is about to open).
    """
    key = ["person_id", "school_year"] if kind == "k12" else ["person_id", "section_id"]
    pos = scored[scored["y"] == 1]
    flagged = scored["probability"] >= threshold
    if kind == "k12":
        reached = pos.groupby(key)["outcome_at"].first()
        first = scored[flagged & (scored["y"] == 1) & (scored["week_end"] <= scored["outcome_at"])]
        first_flag = first.groupby(key)["week_end"].min()
        weeks = (reached.reindex(first_flag.index) - first_flag).dt.days / 7.0
    else:
        reached = pos.groupby(key)["week"].min()
        rows = scored[flagged].merge(reached.rename("outcome_week").reset_index(), on=key)
        rows = rows[rows["week"] <= rows["outcome_week"]]
        first_flag = rows.groupby(key)["week"].min()
        weeks = reached.reindex(first_flag.index) - first_flag
    values = weeks.to_numpy(float)
    out: dict[str, Any] = {
        "threshold": threshold,
        "n_reached": len(reached),
        "n_flagged_before": len(values),
        "share_flagged_before": len(values) / len(reached) if len(reached) else math.nan,
        "unit": "weeks",
    }
    for name, fn in (("mean", np.mean), ("median", np.median), ("min", np.min), ("max", np.max)):
        out[f"{name}_weeks"] = float(fn(values)) if values.size else math.nan
    return out


def flag_threshold(probability: NDArray[np.float64], share: float = FLAG_SHARE) -> float:
    """The probability at the top-``share`` cut: flagging p >= it flags about that share."""
    if probability.size == 0:
        return math.nan
    order = np.sort(probability)[::-1]
    return float(order[max(1, math.ceil(share * probability.size)) - 1])


def fairness_block(
    frame: pd.DataFrame, y: NDArray[np.int64], p: NDArray[np.float64], threshold: float, min_n: int
) -> dict[str, Any]:
    """Group metrics by each protected attribute present (attributes never recorded are skipped)."""
    present = [c for c in PROTECTED if c in frame.columns and frame[c].notna().any()]
    if not present:
        return {}
    return by_group_summary(y, p, frame[present].reset_index(drop=True), threshold=threshold, min_n=min_n)


_BASELINE_KEYS = ("auc", "pr_auc", "precision_at_10pct", "recall_at_10pct")


def summary_metrics(
    y: NDArray[np.int64], p: NDArray[np.float64], baseline: NDArray[np.float64]
) -> dict[str, Any]:
    """Headline figures of the model next to the baseline, and the model's gain over it."""
    m = binary_metrics(y, p, threshold=flag_threshold(p))
    b = binary_metrics(y, baseline, threshold=flag_threshold(baseline))
    top = {
        f"{k}pct": {"precision": m[f"precision_at_{k}pct"], "recall": m[f"recall_at_{k}pct"]}
        for k in (5, 10, 20)
    }
    return {
        "n": m["n"],
        "n_positive": m["n_positive"],
        "prevalence": m["prevalence"],
        "auc": m["auc"],
        "pr_auc": m["pr_auc"],
        "brier": m["brier"],
        "ece": m["calibration_error"],
        "top_k": top,
        "baseline": {k: b[k] for k in _BASELINE_KEYS},
        "gain": {k: m[k] - b[k] for k in _BASELINE_KEYS},
    }
