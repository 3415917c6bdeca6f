"""Early-warning models over the warehouse: train, evaluate by time, score into ``risk_score``.

Inputs are the stored point-in-time tables of :mod:`edsight.features`:
``weekly_features_lms`` + ``labels_lms`` (Canvas/LMS, targets over the next ``horizon``
weeks) and ``weekly_features_k12`` + ``labels_k12`` (district, dropout and non-graduation
within one or two school years). A prediction row is one student (and section) at the end
of one week; K-12 rows are high-school student-years at snapshot weeks (10, 20, 30 by
default), so one model scores any week of the year. Protected attributes
(``student_demographics``) are never inputs; they feed the fairness audit only.
See ``docs/pipeline.md``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput
from edsight.models._pipeline_data import (
    DEFAULT_WEEKS,
    FEATURE_TABLE,
    PROTECTED,
    TARGETS,
    ModelFrame,
    check_kind,
    check_target,
    check_weeks,
    model_frame,
)
from edsight.models._pipeline_eval import (
    BASELINE_UNIT,
    flag_threshold,
    lead_time,
    school_baseline,
    summary_metrics,
    time_splits,
)
from edsight.models._pipeline_eval import fairness_block as _fairness
from edsight.models._pipeline_score import feature_importance, score_models, write_card
from edsight.models._risk_model import CALIBRATIONS, LEARNERS, Calibration, Learner, RiskModel
from edsight.models.registry import ModelRecord, data_hash, list_models, save_model
from edsight.store.warehouse import Warehouse

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_REPORT_WEEKS",
    "TARGETS",
    "default_model_name",
    "evaluate_model",
    "list_models",
    "score",
    "train_model",
]

#: Weeks whose test rows the evaluation reports (LMS: the brief's weeks 4, 8 and 12; K-12:
#: week 10, about the end of the first quarter, one row per student and school year).
DEFAULT_REPORT_WEEKS: dict[str, tuple[int, ...]] = {"lms": (4, 8, 12), "k12": (10,)}

ERR_LEARNER = "learner must be one of {0}, got {1!r}"
ERR_CALIBRATION = "calibration must be one of {0}, got {1!r}"
ERR_HORIZON = "horizon must be a whole number of weeks between 1 and 12, got {0!r}"
ERR_AS_OF = "{0} must be a date, got {1!r}"


def default_model_name(kind: str, target: str, horizon: int = 4) -> str:
    """``lms-will_dropout-h4`` / ``k12-dropout_1y``: the registry name ``train_model`` uses."""
    return f"lms-{target}-h{horizon}" if kind == "lms" else f"k12-{target}"


def _check_common(learner: str, calibration: str, horizon: int) -> None:
    if learner not in LEARNERS:
        raise InvalidInput(ERR_LEARNER.format(LEARNERS, learner))
    if calibration not in CALIBRATIONS:
        raise InvalidInput(ERR_CALIBRATION.format(CALIBRATIONS, calibration))
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= 12:
        raise InvalidInput(ERR_HORIZON.format(horizon))


def _check_date(value: object, name: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):  # also pd.Timestamp
        return value.date()
    if not isinstance(value, date):
        raise InvalidInput(ERR_AS_OF.format(name, value))
    return value


def _fit(
    mf: ModelFrame, rows: pd.DataFrame, *, learner: str, calibration: str, seed: int, n_jobs: int
) -> RiskModel:
    model = RiskModel(
        learner=learner,  # type: ignore[arg-type]
        calibration=calibration,  # type: ignore[arg-type]
        seed=seed,
        n_jobs=n_jobs,
    )
    y = rows["y"].to_numpy(np.int64)
    return model.fit(rows[mf.inputs], y, groups=rows["person_id"].astype(str).to_numpy())


MAX_TRAIN_ROWS = 600_000


def _cap_rows(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """At most about ``max_rows`` rows, by whole students drawn at random."""
    if max_rows is None or len(frame) <= max_rows:
        return frame
    people = frame["person_id"].astype(str)
    order = pd.Series(people.unique()).sample(frac=1.0, random_state=seed)
    sizes = people.value_counts().reindex(order).cumsum()
    keep = set(sizes.index[sizes <= max_rows])
    log.info(
        "training on %d of %d rows (whole students drawn at random)", people.isin(keep).sum(), len(frame)
    )
    return frame[people.isin(keep).to_numpy()].reset_index(drop=True)


def _window(mf: ModelFrame, train_until: date | None) -> dict[str, Any]:
    f = mf.frame
    periods = f["school_year"] if mf.kind == "k12" else f["term_id"]
    return {
        "train_until": None if train_until is None else train_until.isoformat(),
        "first_week_end": f["week_end"].min().date().isoformat(),
        "last_week_end": f["week_end"].max().date().isoformat(),
        "outcomes_observed_by": f["observed_at"].max().date().isoformat(),
        "periods": json.dumps(sorted(map(str, periods.unique()))),
    }


def train_model(
    warehouse: Warehouse,
    *,
    kind: str,
    target: str,
    learner: Learner = "lightgbm",
    horizon: int = 4,
    train_until: date | None = None,
    weeks: Sequence[int] | None = None,
    seed: int = 0,
    name: str | None = None,
    calibration: Calibration = "isotonic",
    evaluation: Mapping[str, Any] | None = None,
    n_jobs: int = 1,
    max_rows: int | None = MAX_TRAIN_ROWS,
) -> ModelRecord:
    """Fit a calibrated model on every row whose outcome was observed by ``train_until``.

    Above ``max_rows`` rows, whole students are drawn at random (seeded) until the cap is
    reached: training time stays bounded at state scale, and a student's weeks stay together.

    The model is saved as the next version of ``name`` (default :func:`default_model_name`)
    with its training window, inputs, metrics and data hash, and a model card is written
    next to it. ``evaluation`` (the result of :func:`evaluate_model` for this target) adds
    held-out metrics, the baseline comparison and the fairness audit to metadata and card.
    """
    k = check_kind(kind)
    check_target(k, target)
    _check_common(learner, calibration, horizon)
    until = _check_date(train_until, "train_until")
    chosen_weeks = check_weeks(weeks, k)
    started = time.perf_counter()
    with warehouse.connect(read_only=True) as con:
        mf = model_frame(
            con, k, target, horizon=horizon, weeks=chosen_weeks, train_until=until, max_rows=max_rows
        )
    rows = _cap_rows(mf.frame, max_rows, seed)
    model = _fit(mf, rows, learner=learner, calibration=calibration, seed=seed, n_jobs=n_jobs)
    y = rows["y"].to_numpy(np.int64)
    in_sample = summary_metrics(
        y,
        model.predict_proba(rows[mf.inputs])[:, 1],
        school_baseline(rows, rows, BASELINE_UNIT[k]),
    )
    metrics: dict[str, Any] = {
        "n_train": len(rows),
        "n_available": len(mf.frame),
        "n_positive": int(y.sum()),
        "prevalence": float(y.mean()),
        "in_sample": {key: in_sample[key] for key in ("auc", "pr_auc", "brier", "ece")},
        "train_seconds": round(time.perf_counter() - started, 3),
    }
    held_out = None if evaluation is None else evaluation.get("targets", {}).get(target)
    if held_out is not None:
        metrics.update({key: held_out[key] for key in ("auc", "pr_auc", "brier", "ece", "top_k")})
        metrics["calibration_error"] = held_out["ece"]
        metrics.update({"held_out_n": held_out["n"], "held_out_n_positive": held_out["n_positive"]})
        for key in ("baseline", "gain", "lead_time", "split"):
            metrics[key] = held_out[key]
    importance = feature_importance(model, rows[mf.inputs], seed=seed)
    record = save_model(
        model,
        name=name or default_model_name(k, target, horizon),
        home=warehouse.settings.home,
        metrics=metrics,
        training_window=_window(mf, until),
        data_sha256=data_hash(rows[[*mf.inputs, "y"]]),
        extra={
            "kind": k,
            "target": target,
            "horizon": mf.horizon,
            "horizon_unit": "school_years" if k == "k12" else "weeks",
            "horizon_weeks": mf.horizon if k == "lms" else None,
            "feature_table": FEATURE_TABLE[k],
            "weeks": list(chosen_weeks),
            "excluded_protected": list(PROTECTED),
            "baseline_unit": BASELINE_UNIT[k],
            "threshold": None if held_out is None else held_out["flag_threshold"],
            "importance": importance.head(20)[["feature", "mean_abs_shap", "share"]].to_dict(
                orient="records"
            ),
        },
    )
    write_card(record, metrics, importance, held_out)
    log.info(
        "trained %s (%s, %d rows) in %.1fs", record.name, learner, len(rows), time.perf_counter() - started
    )
    return record


def _outcome_at(mf: ModelFrame) -> None:
    f = mf.frame
    if mf.kind == "k12":
        # A dropout has a date; not graduating is reached when the window closes.
        dated = mf.target.startswith("dropout")
        f["outcome_at"] = f["outcome_date"] if dated else f["observed_at"]


def _evaluate_target(
    mf: ModelFrame,
    *,
    weeks: tuple[int, ...],
    report_weeks: tuple[int, ...],
    learner: str,
    calibration: str,
    folds: int,
    test_periods: int,
    seed: int,
    min_group_n: int,
    n_jobs: int,
) -> dict[str, Any]:
    _outcome_at(mf)
    f = mf.frame
    unit = BASELINE_UNIT[mf.kind]
    splits = time_splits(mf, test_periods=test_periods, folds=folds, seed=seed)
    parts: list[pd.DataFrame] = []
    started = time.perf_counter()
    for split in splits:
        train = f.iloc[split.train]
        train = train[train["week"].isin(weeks)]
        model = _fit(mf, train, learner=learner, calibration=calibration, seed=seed, n_jobs=n_jobs)
        test = f.iloc[split.test].copy()
        test["probability"] = model.predict_proba(test[mf.inputs])[:, 1]
        test["baseline"] = school_baseline(train, test, unit)
        parts.append(test)
    scored = pd.concat(parts, ignore_index=True)
    report = scored[scored["week"].isin(report_weeks)]
    if report.empty:
        raise InvalidInput(f"no test rows at weeks {list(report_weeks)} for {mf.target!r}")
    y = report["y"].to_numpy(np.int64)
    p = report["probability"].to_numpy(float)
    out = summary_metrics(y, p, report["baseline"].to_numpy(float))
    by_week: dict[str, Any] = {}
    for w in sorted(set(weeks) | set(report_weeks)):
        at = scored[scored["week"] == w]
        if at.empty or at["y"].nunique() < 2:
            continue
        m = summary_metrics(
            at["y"].to_numpy(np.int64), at["probability"].to_numpy(float), at["baseline"].to_numpy()
        )
        by_week[str(w)] = {
            "n": m["n"],
            "n_positive": m["n_positive"],
            "auc": m["auc"],
            "pr_auc": m["pr_auc"],
            "precision_at_10pct": m["top_k"]["10pct"]["precision"],
            "baseline_auc": m["baseline"]["auc"],
            "baseline_precision_at_10pct": m["baseline"]["precision_at_10pct"],
        }
    threshold = flag_threshold(p)
    split_info = dict(splits[0].info)
    if len(splits) > 1:
        split_info.pop("fold", None)
    out.update(
        {
            "by_week": by_week,
            "lead_time": lead_time(scored, mf.kind, threshold),
            "fairness": _fairness(report, y, p, threshold, min_group_n),
            "flag_threshold": threshold,
            "split": split_info,
            "baseline_unit": unit,
            "report_weeks": list(report_weeks),
            "train_weeks": list(weeks),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    return out


def evaluate_model(
    warehouse: Warehouse,
    *,
    kind: str,
    target: str | Sequence[str] | None = None,
    learner: Learner = "lightgbm",
    horizon: int = 4,
    weeks: Sequence[int] | None = None,
    report_weeks: Sequence[int] | None = None,
    calibration: Calibration = "isotonic",
    folds: int = 5,
    test_periods: int = 1,
    seed: int = 0,
    min_group_n: int = 10,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Held-out evaluation by time of one, several or (``target=None``) all targets of ``kind``.

    Returns ``{"kind", "horizon", "targets": {target: {...}}}``; per target: AUC, PR-AUC,
    Brier, ECE, precision/recall at the top 5/10/20 %, the school-level baseline and the
    gain over it, figures by week, lead time, fairness by group and the split used.
    """
    k = check_kind(kind)
    _check_common(learner, calibration, horizon)
    targets = TARGETS[k] if target is None else ((target,) if isinstance(target, str) else tuple(target))
    for t in targets:
        check_target(k, t)
    chosen = check_weeks(weeks, k)
    shown = check_weeks(report_weeks if report_weeks is not None else DEFAULT_REPORT_WEEKS[k], k)
    # Lead time needs the test rows of many weeks, not only the training weeks.
    load_weeks = None if k == "lms" else sorted(set(chosen) | set(shown) | set(range(2, 53, 2)))
    results: dict[str, Any] = {}
    with warehouse.connect(read_only=True) as con:
        frames = {t: model_frame(con, k, t, horizon=horizon, weeks=load_weeks) for t in targets}
    for t, mf in frames.items():
        results[t] = _evaluate_target(
            mf,
            weeks=chosen,
            report_weeks=shown,
            learner=learner,
            calibration=calibration,
            folds=folds,
            test_periods=test_periods,
            seed=seed,
            min_group_n=min_group_n,
            n_jobs=n_jobs,
        )
        log.info("evaluated %s %s: auc %.3f", k, t, results[t]["auc"])
    return _clean(
        {
            "kind": k,
            "horizon": horizon if k == "lms" else None,
            "learner": learner,
            "protected_never_inputs": list(PROTECTED),
            "targets": results,
        }
    )


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else float(value)
    return value


def score(
    warehouse: Warehouse,
    *,
    as_of: date,
    kind: str,
    models: Sequence[str] | None = None,
) -> int:
    """Score the last complete week by ``as_of`` with the registered models; return rows written.

    ``models`` are registry names, optionally ``name:version``; by default the latest version
    of every model trained for ``kind``. Rows of the same ``as_of`` and model are replaced in
    one transaction, so scoring twice gives the same table.
    """
    k = check_kind(kind)
    day = _check_date(as_of, "as_of")
    assert day is not None
    return score_models(warehouse, kind=k, as_of=day, models=models)


# Re-exported so callers find the defaults next to the functions that use them.
DEFAULT_TRAIN_WEEKS = DEFAULT_WEEKS
