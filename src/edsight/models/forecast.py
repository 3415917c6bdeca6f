"""Grade forecasting with conformal prediction intervals.

A point forecast (gradient boosting or ridge regression) of a numeric outcome such as a final
course grade or next-term GPA, wrapped in a distribution-free interval: split conformal or CV+
(see :mod:`edsight.models._forecast_conformal`). Works on any frame: name the target and the
feature columns; text/boolean columns are one-hot encoded, numeric ones used as they are.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from lightgbm import LGBMRegressor
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupKFold, GroupShuffleSplit
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from edsight.errors import InvalidInput
from edsight.models._forecast_conformal import FloatArray, IntArray, cv_plus_bounds, split_halfwidth
from edsight.models._forecast_uci import (
    UCI_BACKGROUND,
    UCI_FEATURE_SETS,
    UCI_GRADE_BOUNDS,
    UCI_STUDENT_KEY,
    UCI_TARGET,
    load_uci_student_performance,
)

__all__ = [
    "UCI_BACKGROUND",
    "UCI_FEATURE_SETS",
    "UCI_GRADE_BOUNDS",
    "UCI_STUDENT_KEY",
    "UCI_TARGET",
    "GradeForecaster",
    "compare_feature_sets",
    "evaluate_forecaster",
    "fit_grade_forecaster",
    "load_uci_student_performance",
]

log = logging.getLogger(__name__)

Method = Literal["cv_plus", "split"]
ModelKind = Literal["gbm", "ridge"]

MSG_ALPHA = "alpha must be strictly between 0 and 1, got {alpha!r}"
MSG_METHOD = "method must be 'cv_plus' or 'split', got {method!r}"
MSG_MODEL = "model must be 'gbm' or 'ridge', got {model!r}"
MSG_MISSING_COLUMNS = "frame lacks column(s) {columns}"
MSG_TARGET_IN_FEATURES = "target {target!r} is also listed as a feature"
MSG_TARGET_NOT_NUMERIC = "target {target!r} must be numeric"
MSG_TARGET_MISSING = "target {target!r} is missing in {count} row(s); drop them before fitting"
MSG_TOO_FEW_ROWS = "need at least {needed} rows with a target to fit, got {count}"
MSG_NOT_FITTED = "GradeForecaster is not fitted; call fit() first"


class GradeForecaster:
    """Point forecast plus conformal interval for a numeric outcome (scikit-learn estimator contract).

    ``method="cv_plus"`` fits ``n_folds`` leave-fold-out models and builds CV+ intervals from their
    out-of-fold residuals; the point forecast comes from a model refit on all rows.
    ``method="split"`` holds out ``calibration_fraction`` of the rows to measure residuals.
    ``bounds`` clips predictions and interval ends to the outcome's range (0-20 for UCI grades),
    which narrows intervals without losing coverage.
    """

    def __init__(
        self,
        *,
        model: ModelKind = "gbm",
        alpha: float = 0.1,
        method: Method = "cv_plus",
        n_folds: int = 5,
        calibration_fraction: float = 0.25,
        bounds: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.alpha = alpha
        self.method = method
        self.n_folds = n_folds
        self.calibration_fraction = calibration_fraction
        self.bounds = bounds
        self.seed = seed

    def fit(
        self, frame: pd.DataFrame, *, target: str, features: Sequence[str], groups: str | None = None
    ) -> GradeForecaster:
        """Fit on ``frame``; ``groups`` names a column whose rows stay in one fold (a student id)."""
        _check_alpha(self.alpha)
        if self.method not in ("cv_plus", "split"):
            raise InvalidInput(MSG_METHOD.format(method=self.method))
        if self.model not in ("gbm", "ridge"):
            raise InvalidInput(MSG_MODEL.format(model=self.model))
        features = list(features)
        x, y = _validated_xy(frame, target, features, groups, minimum=max(2 * self.n_folds, 10))
        group_values = frame[groups].to_numpy() if groups is not None else np.arange(len(frame))
        self.feature_names_in_ = features
        self.target_ = target
        self.categorical_ = [c for c in features if not _is_numeric(x[c])]
        if self.method == "cv_plus":
            self._fit_cv_plus(x, y, group_values)
        else:
            self._fit_split(x, y, group_values)
        log.info(
            "fitted %s forecaster (%s) of %s on %d rows, %d features",
            self.model, self.method, target, len(y), len(features),
        )  # fmt: skip
        return self

    def _fit_cv_plus(self, x: pd.DataFrame, y: FloatArray, group_values: np.ndarray[Any, Any]) -> None:
        folds = GroupKFold(n_splits=self.n_folds, shuffle=True, random_state=self.seed)
        train_fold = np.empty(len(y), dtype=np.intp)
        residuals = np.empty(len(y))
        self.fold_models_: list[Pipeline] = []
        for k, (fit_idx, out_idx) in enumerate(folds.split(x, y, groups=group_values)):
            estimator = self._new_pipeline().fit(x.iloc[fit_idx], y[fit_idx])
            residuals[out_idx] = np.abs(y[out_idx] - estimator.predict(x.iloc[out_idx]))
            train_fold[out_idx] = k
            self.fold_models_.append(estimator)
        self.train_fold_: IntArray = train_fold
        self.residuals_: FloatArray = residuals
        self.model_ = self._new_pipeline().fit(x, y)

    def _fit_split(self, x: pd.DataFrame, y: FloatArray, group_values: np.ndarray[Any, Any]) -> None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=self.calibration_fraction, random_state=self.seed)
        fit_idx, cal_idx = next(splitter.split(x, y, groups=group_values))
        self.model_ = self._new_pipeline().fit(x.iloc[fit_idx], y[fit_idx])
        self.residuals_ = np.abs(y[cal_idx] - self.model_.predict(x.iloc[cal_idx]))

    def _new_pipeline(self) -> Pipeline:
        numeric = [c for c in self.feature_names_in_ if c not in self.categorical_]
        encode = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        if self.model == "ridge":
            # Scaling matters for the ridge penalty; the median fills gaps a linear model cannot take.
            numeric_steps = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
            regressor: Any = RidgeCV(alphas=np.logspace(-2, 3, 11))
        else:
            # Trees take NaN natively and do not need scaling.
            numeric_steps = "passthrough"
            # One thread: the fits are small and many (K + 1 per forecaster); OpenMP threads on a
            # shared machine cost far more than they save at a few hundred rows.
            regressor = LGBMRegressor(
                n_estimators=150, learning_rate=0.05, num_leaves=15, min_child_samples=20,
                reg_lambda=1.0, subsample=1.0, n_jobs=1, random_state=self.seed, verbose=-1,
            )  # fmt: skip
        columns = ColumnTransformer(
            [("categorical", encode, self.categorical_), ("numeric", numeric_steps, numeric)],
            remainder="drop",
        )
        return Pipeline([("columns", columns), ("regressor", regressor)])

    def predict(self, frame: pd.DataFrame, *, alpha: float | None = None) -> pd.DataFrame:
        """Columns ``prediction``, ``lower``, ``upper`` on ``frame``'s index.

        ``alpha`` overrides the fitted miscoverage level: conformal residuals are kept, so other
        nominal levels (e.g. 80% next to 90%) cost no refit.
        """
        if not hasattr(self, "model_"):
            raise InvalidInput(MSG_NOT_FITTED)
        level = self.alpha if alpha is None else alpha
        _check_alpha(level)
        missing = [c for c in self.feature_names_in_ if c not in frame.columns]
        if missing:
            raise InvalidInput(MSG_MISSING_COLUMNS.format(columns=", ".join(missing)))
        x = _design_frame(frame, self.feature_names_in_, self.categorical_)
        point = np.asarray(self.model_.predict(x), dtype=np.float64)
        if self.method == "cv_plus":
            fold_predictions = np.column_stack([m.predict(x) for m in self.fold_models_]).astype(np.float64)
            lower, upper = cv_plus_bounds(fold_predictions, self.train_fold_, self.residuals_, level)
        else:
            half = split_halfwidth(self.residuals_, level)
            lower, upper = point - half, point + half
        if self.bounds is not None:
            low, high = self.bounds
            point, lower, upper = (np.clip(a, low, high) for a in (point, lower, upper))
        return pd.DataFrame({"prediction": point, "lower": lower, "upper": upper}, index=frame.index)


def fit_grade_forecaster(
    frame: pd.DataFrame,
    *,
    target: str,
    features: Sequence[str],
    alpha: float = 0.1,
    method: Method = "cv_plus",
    model: ModelKind = "gbm",
    groups: str | None = None,
    bounds: tuple[float, float] | None = None,
    n_folds: int = 5,
    seed: int = 0,
) -> GradeForecaster:
    """Fit a :class:`GradeForecaster` on ``frame`` (one row a student-course or student-term)."""
    forecaster = GradeForecaster(
        model=model, alpha=alpha, method=method, n_folds=n_folds, bounds=bounds, seed=seed
    )
    return forecaster.fit(frame, target=target, features=features, groups=groups)


def evaluate_forecaster(
    frame: pd.DataFrame,
    *,
    target: str,
    features: Sequence[str],
    alpha: float = 0.1,
    method: Method = "cv_plus",
    model: ModelKind = "gbm",
    groups: str | None = None,
    bounds: tuple[float, float] | None = None,
    test_size: float = 0.25,
    n_repeats: int = 10,
    n_folds: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Held-out RMSE, MAE, empirical coverage and mean interval width over repeated random splits.

    Each repeat holds out ``test_size`` of the groups (of the rows when ``groups`` is None), fits on
    the rest and scores the held-out rows; figures pool all held-out predictions. Keys: ``rmse``,
    ``mae``, ``coverage``, ``nominal``, ``mean_width``, ``coverage_sd`` (across repeats),
    ``n_test`` (pooled held-out rows), ``n_repeats``.
    """
    results = _evaluate_levels(
        frame, target=target, features=features, alphas=(alpha,), method=method, model=model, groups=groups,
        bounds=bounds, test_size=test_size, n_repeats=n_repeats, n_folds=n_folds, seed=seed,
    )  # fmt: skip
    return results[0]


def compare_feature_sets(
    frame: pd.DataFrame,
    feature_sets: Mapping[str, Sequence[str]],
    *,
    target: str,
    alphas: Sequence[float] = (0.1, 0.2),
    method: Method = "cv_plus",
    model: ModelKind = "gbm",
    groups: str | None = None,
    bounds: tuple[float, float] | None = None,
    test_size: float = 0.25,
    n_repeats: int = 10,
    n_folds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (feature set, nominal level) of :func:`evaluate_forecaster` figures, same splits."""
    rows: list[dict[str, Any]] = []
    for name, features in feature_sets.items():
        results = _evaluate_levels(
            frame, target=target, features=features, alphas=alphas, method=method, model=model, groups=groups,
            bounds=bounds, test_size=test_size, n_repeats=n_repeats, n_folds=n_folds, seed=seed,
        )  # fmt: skip
        rows.extend({"feature_set": name, **result} for result in results)
    return pd.DataFrame(rows)


def _evaluate_levels(
    frame: pd.DataFrame,
    *,
    target: str,
    features: Sequence[str],
    alphas: Sequence[float],
    method: Method,
    model: ModelKind,
    groups: str | None,
    bounds: tuple[float, float] | None,
    test_size: float,
    n_repeats: int,
    n_folds: int,
    seed: int,
) -> list[dict[str, float]]:
    """Fit once per repeat and score every level in ``alphas`` on the same held-out rows."""
    for level in alphas:
        _check_alpha(level)
    if n_repeats < 1 or not 0.0 < test_size < 1.0:
        raise InvalidInput(
            f"n_repeats must be >= 1 and test_size in (0, 1), got {n_repeats!r}, {test_size!r}"
        )
    _validated_xy(frame, target, list(features), groups, minimum=max(2 * n_folds, 10))
    group_values = frame[groups].to_numpy() if groups is not None else np.arange(len(frame))
    splitter = GroupShuffleSplit(n_splits=n_repeats, test_size=test_size, random_state=seed)
    squared: list[FloatArray] = []
    absolute: list[FloatArray] = []
    covered: dict[float, list[FloatArray]] = {a: [] for a in alphas}
    widths: dict[float, list[FloatArray]] = {a: [] for a in alphas}
    for repeat, (train_idx, test_idx) in enumerate(splitter.split(frame, groups=group_values)):
        train, test = frame.iloc[train_idx], frame.iloc[test_idx]
        forecaster = GradeForecaster(
            model=model, method=method, n_folds=n_folds, bounds=bounds, seed=seed + repeat
        )
        forecaster.fit(train, target=target, features=features, groups=groups)
        y = test[target].to_numpy(dtype=np.float64)
        for i, level in enumerate(alphas):
            out = forecaster.predict(test, alpha=level)
            if i == 0:
                error = y - out["prediction"].to_numpy()
                squared.append(error**2)
                absolute.append(np.abs(error))
            lower, upper = out["lower"].to_numpy(), out["upper"].to_numpy()
            covered[level].append(((y >= lower) & (y <= upper)).astype(np.float64))
            widths[level].append(upper - lower)
    results: list[dict[str, float]] = []
    for level in alphas:
        per_repeat = np.array([c.mean() for c in covered[level]])
        results.append(
            {
                "nominal": 1.0 - level,
                "coverage": float(np.concatenate(covered[level]).mean()),
                "coverage_sd": float(per_repeat.std(ddof=1)) if len(per_repeat) > 1 else math.nan,
                "mean_width": float(np.concatenate(widths[level]).mean()),
                "rmse": float(math.sqrt(np.concatenate(squared).mean())),
                "mae": float(np.concatenate(absolute).mean()),
                "n_test": float(sum(len(c) for c in covered[level])),
                "n_repeats": float(n_repeats),
            }
        )
    return results


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise InvalidInput(MSG_ALPHA.format(alpha=alpha))


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _design_frame(frame: pd.DataFrame, features: list[str], categorical: list[str]) -> pd.DataFrame:
    """Features only, categoricals as plain text with an explicit missing level, numerics as float."""
    x = frame.loc[:, features].copy()
    for column in features:
        if column in categorical:
            x[column] = (
                x[column].astype(object).where(x[column].notna(), "__missing__").astype(str).astype(object)
            )
        else:
            x[column] = pd.to_numeric(x[column], errors="coerce").astype("float64")
    return x


def _validated_xy(
    frame: pd.DataFrame, target: str, features: list[str], groups: str | None, *, minimum: int
) -> tuple[pd.DataFrame, FloatArray]:
    if target in features:
        raise InvalidInput(MSG_TARGET_IN_FEATURES.format(target=target))
    wanted = [target, *features, *([groups] if groups is not None else [])]
    missing = [c for c in dict.fromkeys(wanted) if c not in frame.columns]
    if missing:
        raise InvalidInput(MSG_MISSING_COLUMNS.format(columns=", ".join(missing)))
    if not _is_numeric(frame[target]):
        raise InvalidInput(MSG_TARGET_NOT_NUMERIC.format(target=target))
    n_missing = int(frame[target].isna().sum())
    if n_missing:
        raise InvalidInput(MSG_TARGET_MISSING.format(target=target, count=n_missing))
    if len(frame) < minimum:
        raise InvalidInput(MSG_TOO_FEW_ROWS.format(needed=minimum, count=len(frame)))
    categorical = [c for c in features if not _is_numeric(frame[c])]
    return _design_frame(frame, features, categorical), frame[target].to_numpy(dtype=np.float64)
