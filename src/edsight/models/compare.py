"""Logistic regression, LightGBM and the GRU sequence model on the same student-grouped folds.

For each target, students (``person_id``) are dealt into ``folds`` folds once
(:func:`comparison_folds`, stratified on the target); every learner is trained on the other
folds' students and scored on the held-out fold's, so a student's rows never sit on both
sides and all three learners are judged on exactly the same rows. The tabular learners
(:class:`~edsight.models.risk.RiskModel`, calibrated like ``edsight models cross-validate``)
fit one model per week on that week's rows (one row per student-section); the GRU fits one
model per fold on the whole weekly history and is read at the same weeks.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from edsight.errors import InvalidInput
from edsight.features.labels import LMS_TARGETS
from edsight.features.weekly import Source, connection
from edsight.models._sequence_data import KEYS, check_frame, input_columns, labels_for
from edsight.models.evaluate import binary_metrics
from edsight.models.risk import RiskModel
from edsight.models.sequence import SequenceRiskModel

log = logging.getLogger(__name__)

__all__ = [
    "COMPARED_LEARNERS",
    "compare_models",
    "comparison_folds",
    "comparison_markdown",
    "out_of_fold_predictions",
    "read_lms_training_data",
    "summarise_comparison",
]

COMPARED_LEARNERS: tuple[str, ...] = ("logistic", "lightgbm", "gru")
TOP_FRACTION = 0.10

ERR_NO_TABLE = "the warehouse's {0} table is missing or empty; run `edsight features build --kind lms` first"
ERR_LEARNERS = "learners must be some of {0}, got {1!r}"
ERR_WEEKS = "weeks must be a non-empty list of week numbers >= 1, got {0!r}"
ERR_NO_WEEK_ROWS = "no labelled rows of target {0!r} at week {1}; weeks with labels: {2}"
ERR_FOLDS = "folds must be at least 2 and at most the number of students with a positive {0!r} ({1}), got {2}"
ERR_TRAIN_CLASS = "target {0!r}, week {1}, fold {2}: the training students show only one class"

PREDICTION_COLUMNS = ["target", "learner", "fold", *KEYS, "y_true", "probability"]
TIMING_COLUMNS = ["target", "learner", "week", "fold", "fit_seconds"]
SUMMARY_COLUMNS = [
    "target",
    "week",
    "learner",
    "n",
    "n_positive",
    "auc",
    "auc_sd",
    "pr_auc",
    "brier",
    "precision_at_10pct",
    "recall_at_10pct",
    "fit_seconds",
]


def read_lms_training_data(source: Source) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``weekly_features_lms`` and ``labels_lms`` from a warehouse (or an open connection)."""
    out: list[pd.DataFrame] = []
    with connection(source) as con:
        present = {r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()}
        for table in ("weekly_features_lms", "labels_lms"):
            if table not in present:
                raise InvalidInput(ERR_NO_TABLE.format(table))
            # The names are the constants above, never input.
            frame = con.sql(f"SELECT * FROM {table} ORDER BY person_id, section_id, week").df()  # noqa: S608
            if frame.empty:
                raise InvalidInput(ERR_NO_TABLE.format(table))
            out.append(frame)
    return out[0], out[1]


def comparison_folds(labels: pd.DataFrame, target: str, *, folds: int = 5, seed: int = 0) -> pd.Series:
    """Fold number (0..folds-1) of every labelled student, stratified on ``target``.

    Returns a Series indexed by ``person_id``. All of a student's sections and weeks share the
    fold, so no learner ever trains on a row of a student it is scored on.
    """
    frame = check_frame(labels, "labels")
    y = labels_for(frame, frame, target)
    keep = ~np.isnan(y)
    person = frame["person_id"].to_numpy()[keep]
    yk = y[keep].astype(np.int64)
    positives = int(pd.unique(person[yk == 1]).size)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2 or folds > positives:
        raise InvalidInput(ERR_FOLDS.format(target, positives, folds))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_of_row = np.empty(len(yk), dtype=np.int64)
    for k, (_, test_idx) in enumerate(splitter.split(np.zeros((len(yk), 1)), yk, person)):
        fold_of_row[test_idx] = k
    out = pd.Series(fold_of_row, index=pd.Index(person, name="person_id"), name="fold")
    return out[~out.index.duplicated()].sort_index()


def _check_learners(learners: Sequence[str]) -> list[str]:
    chosen = list(learners)
    if not chosen or any(name not in COMPARED_LEARNERS for name in chosen):
        raise InvalidInput(ERR_LEARNERS.format(COMPARED_LEARNERS, learners))
    return chosen


def _check_weeks(weeks: Sequence[int]) -> list[int]:
    try:
        chosen = [int(w) for w in weeks]
    except (TypeError, ValueError) as exc:
        raise InvalidInput(ERR_WEEKS.format(weeks)) from exc
    if not chosen or min(chosen) < 1:
        raise InvalidInput(ERR_WEEKS.format(weeks))
    return sorted(set(chosen))


def out_of_fold_predictions(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    targets: Sequence[str] = LMS_TARGETS,
    weeks: Sequence[int] = (4, 8, 12),
    folds: int = 5,
    seed: int = 0,
    learners: Sequence[str] = COMPARED_LEARNERS,
    sequence_params: dict[str, Any] | None = None,
    lightgbm_params: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Held-out probabilities of every learner at ``weeks``, and the seconds each fit took.

    Returns ``(predictions, timings)``: ``predictions`` has one row per target, learner and
    held-out (person_id, section_id, week) with ``fold, y_true, probability``; ``timings``
    has ``target, learner, week, fold, fit_seconds`` (``week`` is -1 for the GRU, whose one
    model per fold serves every week).
    """
    chosen = _check_learners(learners)
    wanted_weeks = _check_weeks(weeks)
    feats = check_frame(features)
    labs = check_frame(labels, "labels")
    inputs = input_columns(feats, None, None)
    keys = list(KEYS)
    preds: list[pd.DataFrame] = []
    timings: list[dict[str, Any]] = []
    feats_week = feats["week"].astype("int64")
    for target in targets:
        y_all = labels_for(feats, labs, target)
        fold_of = comparison_folds(labs, target, folds=folds, seed=seed)
        person_fold = feats["person_id"].map(fold_of).fillna(-1).astype(np.int64).to_numpy()
        scored = ~np.isnan(y_all) & feats_week.isin(wanted_weeks).to_numpy() & (person_fold >= 0)
        seen = set(feats_week[scored].unique().tolist())
        for w in wanted_weeks:
            if w not in seen:
                raise InvalidInput(ERR_NO_WEEK_ROWS.format(target, w, sorted(seen)))
        for k in range(folds):
            test = scored & (person_fold == k)
            train_people = person_fold != k
            for learner in chosen:
                if learner == "gru":
                    params = {"seed": seed, **(sequence_params or {})}
                    start = time.perf_counter()
                    gru = SequenceRiskModel(**params).fit(
                        feats[train_people & (person_fold >= 0)],
                        y_all[train_people & (person_fold >= 0)],
                        target=target,
                    )
                    seconds = time.perf_counter() - start
                    # The whole history of the held-out students goes in; rows at the wanted
                    # weeks are read out (their scores use weeks <= w only).
                    held = person_fold == k
                    p = gru.predict_proba(feats[held])[:, 1][test[held]]
                    timings.append(
                        {"target": target, "learner": learner, "week": -1, "fold": k, "fit_seconds": seconds}
                    )
                    preds.append(_prediction_rows(feats[test], target, learner, k, y_all[test], p))
                    continue
                for w in wanted_weeks:
                    at_week = (feats_week == w).to_numpy()
                    tr = at_week & train_people & ~np.isnan(y_all) & (person_fold >= 0)
                    te = test & at_week
                    y_tr = y_all[tr].astype(np.int64)
                    if y_tr.min() == y_tr.max():
                        raise InvalidInput(ERR_TRAIN_CLASS.format(target, w, k))
                    extra = (lightgbm_params or {}) if learner == "lightgbm" else {}
                    model = RiskModel(learner=learner, seed=seed, n_jobs=1, **extra)  # type: ignore[arg-type]
                    start = time.perf_counter()
                    model.fit(feats.loc[tr, inputs], y_tr, groups=feats.loc[tr, "person_id"].astype(str))
                    seconds = time.perf_counter() - start
                    p = model.predict_proba(feats.loc[te, inputs])[:, 1]
                    timings.append(
                        {"target": target, "learner": learner, "week": w, "fold": k, "fit_seconds": seconds}
                    )
                    preds.append(_prediction_rows(feats[te], target, learner, k, y_all[te], p))
            log.info("compared learners on %s, fold %d/%d", target, k + 1, folds)
    predictions = pd.concat(preds, ignore_index=True) if preds else pd.DataFrame(columns=PREDICTION_COLUMNS)
    predictions = predictions.sort_values(["target", "learner", *keys], ignore_index=True)
    return predictions, pd.DataFrame(timings, columns=TIMING_COLUMNS)


def _prediction_rows(
    rows: pd.DataFrame, target: str, learner: str, fold: int, y: np.ndarray, p: np.ndarray
) -> pd.DataFrame:
    out = rows[list(KEYS)].reset_index(drop=True).astype({"week": "int64"})
    out.insert(0, "fold", fold)
    out.insert(0, "learner", learner)
    out.insert(0, "target", target)
    out["y_true"] = y.astype(np.int64)
    out["probability"] = np.asarray(p, dtype=float)
    return out[PREDICTION_COLUMNS]


def summarise_comparison(predictions: pd.DataFrame, timings: pd.DataFrame) -> pd.DataFrame:
    """Pooled held-out figures per target, week and learner (see :func:`compare_models`)."""
    rows: list[dict[str, Any]] = []
    for (target, week, learner), part in predictions.groupby(["target", "week", "learner"], sort=True):
        y = part["y_true"].to_numpy()
        p = part["probability"].to_numpy()
        m = binary_metrics(y, p, top_k=(TOP_FRACTION,))
        fold_auc = [
            binary_metrics(g["y_true"].to_numpy(), g["probability"].to_numpy(), top_k=())["auc"]
            for _, g in part.groupby("fold")
        ]
        t = timings[(timings["target"] == target) & (timings["learner"] == learner)]
        t = t[t["week"] == (-1 if learner == "gru" else week)]
        rows.append(
            {
                "target": target,
                "week": int(part["week"].iloc[0]),
                "learner": learner,
                "n": m["n"],
                "n_positive": m["n_positive"],
                "auc": m["auc"],
                "auc_sd": float(np.nanstd(fold_auc, ddof=1)) if len(fold_auc) > 1 else math.nan,
                "pr_auc": m["pr_auc"],
                "brier": m["brier"],
                "precision_at_10pct": m["precision_at_10pct"],
                "recall_at_10pct": m["recall_at_10pct"],
                "fit_seconds": float(t["fit_seconds"].sum()),
            }
        )
    order = {name: i for i, name in enumerate(COMPARED_LEARNERS)}
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    out = out.sort_values(
        ["target", "week", "learner"], key=lambda col: col.map(order) if col.name == "learner" else col
    )
    return out.reset_index(drop=True)


def compare_models(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    targets: Sequence[str] = LMS_TARGETS,
    weeks: Sequence[int] = (4, 8, 12),
    folds: int = 5,
    seed: int = 0,
    learners: Sequence[str] = COMPARED_LEARNERS,
    sequence_params: dict[str, Any] | None = None,
    lightgbm_params: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Held-out AUC, PR-AUC, Brier and top-10 % precision/recall per target, week and learner.

    Figures are pooled over the out-of-fold predictions of all folds (``auc_sd`` is the SD of
    the per-fold AUCs). ``fit_seconds`` sums the fits behind a row: for a tabular learner the
    ``folds`` models of that week, for the GRU the ``folds`` models of the target, which serve
    all weeks (the same figure repeats on each week's row).
    """
    predictions, timings = out_of_fold_predictions(
        features,
        labels,
        targets=targets,
        weeks=weeks,
        folds=folds,
        seed=seed,
        learners=learners,
        sequence_params=sequence_params,
        lightgbm_params=lightgbm_params,
    )
    return summarise_comparison(predictions, timings)


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def comparison_markdown(frame: pd.DataFrame) -> str:
    """A Markdown table of :func:`compare_models` output, best AUC per (target, week) in bold."""
    header = (
        "| target | week | learner | n | positive | AUC (± fold SD) | PR-AUC | Brier | "
        "precision@10% | recall@10% | fit s |\n"
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    best = frame.groupby(["target", "week"])["auc"].transform("max")
    lines = []
    for row, top in zip(frame.to_dict(orient="records"), best.to_numpy(), strict=True):
        auc = f"{_fmt(row['auc'])} ± {_fmt(row['auc_sd'])}"
        if not math.isnan(row["auc"]) and row["auc"] == top:
            auc = f"**{auc}**"
        lines.append(
            f"| {row['target']} | {row['week']} | {row['learner']} | {row['n']:,} | {row['n_positive']:,} | "
            f"{auc} | {_fmt(row['pr_auc'])} | {_fmt(row['brier'])} | {_fmt(row['precision_at_10pct'])} | "
            f"{_fmt(row['recall_at_10pct'])} | {_fmt(row['fit_seconds'], 1)} |"
        )
    note = (
        "\n\nFigures pool the held-out predictions of all folds; folds group rows by student. "
        "GRU fit seconds cover one model per fold serving every week.\n"
    )
    return header + "\n".join(lines) + note
