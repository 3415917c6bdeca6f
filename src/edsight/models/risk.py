"""Student risk models: cross-validation and training on any tabular student file.

``cross_validate`` is what ``edsight models cross-validate`` prints: held-out AUC,
PR-AUC, Brier, calibration, capacity-based precision/recall, per-fold figures and a
fairness table by group. Protected attributes named in ``group_cols`` are audited and,
unless ``include_groups=True``, kept out of the model's inputs.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from edsight.errors import InvalidInput
from edsight.models._risk_encode import FeatureEncoder
from edsight.models._risk_model import CALIBRATIONS, LEARNERS, Calibration, Learner, RiskModel
from edsight.models.evaluate import DEFAULT_TOP_K, binary_metrics, reliability_curve
from edsight.models.fairness import by_group_summary

log = logging.getLogger(__name__)

__all__ = [
    "FeatureEncoder",
    "RiskModel",
    "cross_validate",
    "cross_validated_scores",
    "fit_risk_model",
    "model_inputs",
    "outcome",
    "read_table",
]

ERR_NO_FILE = "table file not found: {0}"
ERR_FORMAT = "table {0}: unsupported extension {1!r} (use .csv, .tsv, .txt or .parquet)"
ERR_COLUMN = "column {0!r} ({1}) is not in the table; columns are: {2}"
ERR_POSITIVE = "target {0!r} never equals {1!r}; values seen: {2}"
ERR_ALL_POSITIVE = "target {0!r} equals {1!r} on every row; nothing to contrast"
ERR_FOLDS = "folds must be at least 2 and at most the smaller class size ({0}), got {1}"
ERR_TARGET_MISSING = "target {0!r} is missing on {1} rows; drop or label them first"


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a student table: CSV/TSV (separator sniffed, byte-order mark tolerated) or Parquet."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(ERR_NO_FILE.format(p))
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(p)
    if suffix not in (".csv", ".tsv", ".txt"):
        raise InvalidInput(ERR_FORMAT.format(p, suffix))
    with p.open(encoding="utf-8-sig", newline="") as fh:
        sample = fh.read(64_000)
    try:
        sep = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        sep = ","
    return pd.read_csv(p, sep=sep, encoding="utf-8-sig")


def _require(frame: pd.DataFrame, col: str, role: str) -> None:
    if col not in frame.columns:
        raise InvalidInput(ERR_COLUMN.format(col, role, ", ".join(map(str, frame.columns[:40]))))


def outcome(frame: pd.DataFrame, target: str, positive: object) -> NDArray[np.int64]:
    """0/1 outcome: 1 where ``target`` equals ``positive`` (compared as text, so CLI strings match)."""
    _require(frame, target, "target")
    values = frame[target]
    if values.isna().any():
        raise InvalidInput(ERR_TARGET_MISSING.format(target, int(values.isna().sum())))
    text = values.astype(str)
    wanted = str(positive)
    # "1" must also match a float column read as 1.0.
    if pd.api.types.is_numeric_dtype(values):
        try:
            y = (values.astype(float) == float(wanted)).to_numpy()
        except ValueError:
            y = (text == wanted).to_numpy()
    else:
        y = (text == wanted).to_numpy()
    if not y.any():
        raise InvalidInput(ERR_POSITIVE.format(target, positive, sorted(text.unique())[:20]))
    if y.all():
        raise InvalidInput(ERR_ALL_POSITIVE.format(target, positive))
    return y.astype(np.int64)


def model_inputs(
    frame: pd.DataFrame,
    *,
    target: str,
    id_col: str | None = None,
    group_cols: Sequence[str] = (),
    drop: Sequence[str] = (),
    include_groups: bool = False,
) -> list[str]:
    """Columns the model may use: everything but target, id, dropped and (by default) protected columns."""
    for col in (*drop, *group_cols):
        _require(frame, col, "drop/group")
    if id_col is not None:
        _require(frame, id_col, "id")
    excluded = {target, *drop}
    if id_col is not None:
        excluded.add(id_col)
    if not include_groups:
        excluded.update(group_cols)
    return [str(c) for c in frame.columns if c not in excluded]


def _splits(
    y: NDArray[np.int64], ids: NDArray[Any] | None, folds: int, seed: int
) -> tuple[list[tuple[NDArray[np.int64], NDArray[np.int64]]], dict[str, Any]]:
    minority = int(min(y.sum(), len(y) - y.sum()))
    if folds < 2 or folds > minority:
        raise InvalidInput(ERR_FOLDS.format(minority, folds))
    dummy = np.zeros((len(y), 1))
    if ids is not None:
        # Stratified *group* K-fold: all rows of one student land in the same fold
        # (GroupKFold's guarantee) while keeping the outcome rate similar across folds.
        splitter: StratifiedGroupKFold | StratifiedKFold = StratifiedGroupKFold(
            n_splits=folds, shuffle=True, random_state=seed
        )
        split = list(splitter.split(dummy, y, ids))
        method = {"method": "StratifiedGroupKFold", "group_by": "id", "n_ids": len(np.unique(ids))}
    else:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        split = list(splitter.split(dummy, y))
        method = {"method": "StratifiedKFold", "group_by": None}
    method.update({"folds": folds, "seed": seed, "shuffle": True})
    return [(np.asarray(a), np.asarray(b)) for a, b in split], method


def cross_validated_scores(
    frame: pd.DataFrame,
    *,
    target: str,
    positive: object,
    id_col: str | None = None,
    group_cols: Sequence[str] = (),
    drop: Sequence[str] = (),
    folds: int = 5,
    learner: Learner = "lightgbm",
    calibration: Calibration = "isotonic",
    include_groups: bool = False,
    seed: int = 0,
    n_jobs: int = 1,
    model_params: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Out-of-fold calibrated probabilities for every row, and how they were made.

    Returns ``(scores, info)``: ``scores`` has columns ``fold, y_true, probability``
    indexed like ``frame``; ``info`` names the split, the inputs and per-fold timings.
    """
    if learner not in LEARNERS:
        raise InvalidInput(f"learner must be one of {LEARNERS}, got {learner!r}")
    if calibration not in CALIBRATIONS:
        raise InvalidInput(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
    y = outcome(frame, target, positive)
    inputs = model_inputs(
        frame, target=target, id_col=id_col, group_cols=group_cols, drop=drop, include_groups=include_groups
    )
    if not inputs:
        raise InvalidInput("no input columns left after removing target, id, groups and dropped columns")
    ids = None if id_col is None else frame[id_col].astype(str).to_numpy()
    splits, split_info = _splits(y, ids, folds, seed)
    X = frame[inputs]
    proba = np.full(len(y), np.nan)
    fold_of = np.full(len(y), -1)
    seconds: list[float] = []
    for k, (train_idx, test_idx) in enumerate(splits):
        start = time.perf_counter()
        model = RiskModel(
            learner=learner, calibration=calibration, n_jobs=n_jobs, seed=seed, **(model_params or {})
        )
        model.fit(X.iloc[train_idx], y[train_idx], groups=None if ids is None else ids[train_idx])
        proba[test_idx] = model.predict_proba(X.iloc[test_idx])[:, 1]
        fold_of[test_idx] = k
        seconds.append(time.perf_counter() - start)
        log.info("fold %d/%d done in %.2fs", k + 1, folds, seconds[-1])
    scores = pd.DataFrame({"fold": fold_of, "y_true": y, "probability": proba}, index=frame.index)
    info = {
        "split": split_info,
        "features": inputs,
        "excluded_protected": [] if include_groups else list(group_cols),
        "fold_seconds": seconds,
    }
    return scores, info


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return None if math.isnan(f) else round(f, 6)
    return value


def cross_validate(
    frame: pd.DataFrame,
    *,
    target: str,
    positive: object,
    id_col: str | None = None,
    group_cols: Sequence[str] = (),
    drop: Sequence[str] = (),
    folds: int = 5,
    learner: Learner = "lightgbm",
    calibration: Calibration = "isotonic",
    include_groups: bool = False,
    threshold: float = 0.5,
    top_k: Sequence[float] = DEFAULT_TOP_K,
    min_group_n: int = 10,
    seed: int = 0,
    n_jobs: int = 1,
    model_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """K-fold cross-validation of a risk model; JSON-ready dict (DESIGN.md contract plus extras).

    Top-level ``auc``, ``pr_auc``, ``brier`` are means over held-out folds; ``pooled``
    holds the same figures over all out-of-fold predictions. ``by_group`` reports, per
    column in ``group_cols`` and per value, n, AUC, FPR, FNR, precision, selection rate
    and calibration at ``threshold`` (groups under ``min_group_n`` are only marked
    ``suppressed``). Splits never put one student's rows (``id_col``) on both sides.
    """
    start = time.perf_counter()
    scores, info = cross_validated_scores(
        frame,
        target=target,
        positive=positive,
        id_col=id_col,
        group_cols=group_cols,
        drop=drop,
        folds=folds,
        learner=learner,
        calibration=calibration,
        include_groups=include_groups,
        seed=seed,
        n_jobs=n_jobs,
        model_params=model_params,
    )
    y = scores["y_true"].to_numpy()
    p = scores["probability"].to_numpy()
    per_fold: list[dict[str, Any]] = []
    for k in range(folds):
        mask = scores["fold"].to_numpy() == k
        m = binary_metrics(y[mask], p[mask], threshold=threshold, top_k=top_k)
        per_fold.append(
            {
                "fold": k,
                "n_test": int(mask.sum()),
                "auc": m["auc"],
                "pr_auc": m["pr_auc"],
                "brier": m["brier"],
                "calibration_error": m["calibration_error"],
                "seconds": info["fold_seconds"][k],
            }
        )
    pooled = binary_metrics(y, p, threshold=threshold, top_k=top_k)
    by_group = by_group_summary(
        y, p, frame[list(group_cols)] if group_cols else None, threshold=threshold, min_n=min_group_n
    )

    def fold_mean(key: str) -> float:
        return float(np.nanmean([f[key] for f in per_fold]))

    result: dict[str, Any] = {
        "auc": fold_mean("auc"),
        "pr_auc": fold_mean("pr_auc"),
        "brier": fold_mean("brier"),
        "by_group": by_group,
        "auc_sd": float(np.nanstd([f["auc"] for f in per_fold], ddof=1)),
        "calibration_error": fold_mean("calibration_error"),
        "n": len(y),
        "n_positive": int(y.sum()),
        "target": target,
        "positive": str(positive),
        "learner": learner,
        "calibration": calibration,
        "threshold": threshold,
        "split": info["split"],
        "features": info["features"],
        "excluded_protected": info["excluded_protected"],
        "pooled": pooled,
        "top_k": {
            f"{k:g}": {
                "precision": pooled[f"precision_at_{round(k * 100, 4):g}pct"],
                "recall": pooled[f"recall_at_{round(k * 100, 4):g}pct"],
            }
            for k in top_k
        },
        "reliability": reliability_curve(y, p).to_dict(orient="records"),
        "folds": per_fold,
        "seconds": time.perf_counter() - start,
    }
    log.info("cross-validated %s: auc %.3f over %d folds", learner, result["auc"], folds)
    return dict(_clean(result))


def fit_risk_model(
    frame: pd.DataFrame,
    *,
    target: str,
    positive: object,
    id_col: str | None = None,
    group_cols: Sequence[str] = (),
    drop: Sequence[str] = (),
    learner: Learner = "lightgbm",
    calibration: Calibration = "isotonic",
    include_groups: bool = False,
    seed: int = 0,
    n_jobs: int = 1,
    model_params: dict[str, Any] | None = None,
) -> RiskModel:
    """Fit one calibrated risk model on the whole frame (what ``edsight models train`` saves)."""
    y = outcome(frame, target, positive)
    inputs = model_inputs(
        frame, target=target, id_col=id_col, group_cols=group_cols, drop=drop, include_groups=include_groups
    )
    groups = None if id_col is None else frame[id_col].astype(str).to_numpy()
    model = RiskModel(
        learner=learner, calibration=calibration, n_jobs=n_jobs, seed=seed, **(model_params or {})
    )
    return model.fit(frame[inputs], y, groups=groups)
