"""The risk estimator: logistic baseline or LightGBM, with probability calibration.

Calibration is fitted on out-of-fold scores of *inner* folds of the training data, so
the calibrator never sees the rows it will later be evaluated on. The final base model
is refitted on all training rows; its state is plain data (LightGBM text model, JSON
coefficients, isotonic knots) so the registry can save it without pickle.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from edsight.errors import InvalidInput
from edsight.models._risk_encode import FeatureEncoder, Mode

log = logging.getLogger(__name__)

Learner = Literal["lightgbm", "logistic"]
Calibration = Literal["isotonic", "sigmoid", "none"]
LEARNERS: tuple[str, ...] = ("lightgbm", "logistic")
CALIBRATIONS: tuple[str, ...] = ("isotonic", "sigmoid", "none")

ERR_LEARNER = "learner must be one of {0}, got {1!r}"
ERR_CALIBRATION = "calibration must be one of {0}, got {1!r}"
ERR_ONE_CLASS = "the training outcome has only one class; a risk model needs both"
ERR_NOT_FITTED = "the risk model is not fitted yet"

_EPS = 1e-6


def _logit(p: NDArray[np.float64]) -> NDArray[np.float64]:
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.asarray(np.log(q / (1 - q)), dtype=float)


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=float)


class RiskModel:
    """Binary outcome model with calibrated probabilities (scikit-learn style).

    Parameters are stored as given; :meth:`fit` validates them. ``n_jobs`` caps
    LightGBM threads: the default 1 is fastest for
    student-sized tables (threads spin-wait on a busy machine; 2 threads ran ~20x slower here).
    """

    def __init__(
        self,
        *,
        learner: Learner = "lightgbm",
        calibration: Calibration = "isotonic",
        calibration_folds: int = 3,
        n_estimators: int = 300,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        C: float = 1.0,
        n_jobs: int = 1,
        seed: int = 0,
    ) -> None:
        self.learner = learner
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.C = C
        self.n_jobs = n_jobs
        self.seed = seed

    # -- base learners ------------------------------------------------------------------
    def _fit_base(self, X: pd.DataFrame, y: NDArray[np.int64]) -> dict[str, Any]:
        """Fit encoder + base learner; returns the plain-data state."""
        mode: Mode = "onehot" if self.learner == "logistic" else "native"
        enc = FeatureEncoder(mode=mode).fit(X)
        matrix = enc.transform(X)
        if self.learner == "logistic":
            lr = LogisticRegression(C=self.C, max_iter=2000)
            lr.fit(matrix, y)
            return {"encoder": enc, "coef": lr.coef_[0].astype(float), "intercept": float(lr.intercept_[0])}
        import lightgbm as lgb  # heavy import kept out of module import time

        params = {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "reg_lambda": 1.0,
            "num_threads": self.n_jobs,
            "seed": self.seed,
            "deterministic": True,
            "verbosity": -1,
        }
        data = lgb.Dataset(
            matrix,
            label=y,
            feature_name=[f"f{i}" for i in range(matrix.shape[1])],
            categorical_feature=enc.categorical_indices_ or "auto",
            free_raw_data=True,
        )
        booster = lgb.train(params, data, num_boost_round=self.n_estimators)
        return {"encoder": enc, "booster": booster}

    @staticmethod
    def _raw(state: dict[str, Any], X: pd.DataFrame) -> NDArray[np.float64]:
        matrix = state["encoder"].transform(X)
        if "booster" in state:
            return np.asarray(state["booster"].predict(matrix), dtype=float)
        return _sigmoid(matrix @ state["coef"] + state["intercept"])

    # -- calibration --------------------------------------------------------------------
    def _fit_calibrator(
        self, X: pd.DataFrame, y: NDArray[np.int64], groups: NDArray[Any] | None
    ) -> dict[str, Any]:
        oof = np.empty(len(y))
        n_splits = max(2, self.calibration_folds)
        if groups is not None:
            splits = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=self.seed).split(
                X, y, groups
            )
        else:
            splits = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.seed).split(X, y)
        for train_idx, cal_idx in splits:
            inner = self._fit_base(X.iloc[train_idx], y[train_idx])
            oof[cal_idx] = self._raw(inner, X.iloc[cal_idx])
        if self.calibration == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(oof, y)
            return {
                "kind": "isotonic",
                "x": [float(v) for v in iso.X_thresholds_],
                "y": [float(v) for v in iso.y_thresholds_],
            }
        platt = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(oof)[:, None], y)
        return {"kind": "sigmoid", "a": float(platt.coef_[0, 0]), "b": float(platt.intercept_[0])}

    @staticmethod
    def _calibrate(calibrator: dict[str, Any], raw: NDArray[np.float64]) -> NDArray[np.float64]:
        kind = calibrator.get("kind", "none")
        if kind == "isotonic":
            return np.asarray(np.interp(raw, calibrator["x"], calibrator["y"]), dtype=float)
        if kind == "sigmoid":
            return _sigmoid(calibrator["a"] * _logit(raw) + calibrator["b"])
        return raw

    # -- public API ---------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: ArrayLike, *, groups: ArrayLike | None = None) -> RiskModel:
        """Fit on features ``X`` and outcome ``y`` (0/1); ``groups`` keeps a student's rows together."""
        if self.learner not in LEARNERS:
            raise InvalidInput(ERR_LEARNER.format(LEARNERS, self.learner))
        if self.calibration not in CALIBRATIONS:
            raise InvalidInput(ERR_CALIBRATION.format(CALIBRATIONS, self.calibration))
        target = np.asarray(y).astype(np.int64)
        if target.size == 0 or target.min() == target.max():
            raise InvalidInput(ERR_ONE_CLASS)
        group_arr = None if groups is None else np.asarray(groups)
        self.feature_names_in_ = [str(c) for c in X.columns]
        self.calibrator_: dict[str, Any] = {"kind": "none"}
        if self.calibration != "none":
            self.calibrator_ = self._fit_calibrator(X, target, group_arr)
        self.state_ = self._fit_base(X, target)
        self.classes_ = np.array([0, 1])
        log.debug("fitted %s on %d rows, %d inputs", self.learner, len(target), X.shape[1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> NDArray[np.float64]:
        """Calibrated probabilities, shape (n, 2): column 1 is the outcome of interest."""
        if not hasattr(self, "state_"):
            raise InvalidInput(ERR_NOT_FITTED)
        p = self._calibrate(self.calibrator_, self._raw(self.state_, X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame, threshold: float = 0.5) -> NDArray[np.int64]:
        """0/1 flag where the calibrated probability reaches ``threshold``."""
        return (self.predict_proba(X)[:, 1] >= threshold).astype(np.int64)

    def params(self) -> dict[str, Any]:
        """Constructor parameters (for metadata)."""
        return {
            k: getattr(self, k)
            for k in (
                "learner",
                "calibration",
                "calibration_folds",
                "n_estimators",
                "learning_rate",
                "num_leaves",
                "min_child_samples",
                "C",
                "n_jobs",
                "seed",
            )
        }
