"""Turning any tabular student frame into a numeric matrix, reproducibly and serialisably.

The encoder's whole state is plain JSON (medians, means, scales, category levels) so a
saved model never needs pickle to be loaded again.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from edsight.errors import InvalidInput

Mode = Literal["onehot", "native"]

ERR_MISSING_COLUMNS = "the frame lacks the model's input columns: {0}"
ERR_NO_FEATURES = "no input columns left after removing target, id, groups and dropped columns"

# Categories rarer than this in training collapse into "other": keeps one-hot width sane
# for free-text-like columns and avoids coefficients fitted on a handful of students.
_MIN_LEVEL_COUNT = 5
_MAX_LEVELS = 50


def _is_numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


class FeatureEncoder:
    """Fit-once encoder: numeric columns imputed (and standardised for ``onehot``), categoricals coded.

    ``onehot`` (logistic regression): numeric -> median-imputed, standardised, plus a
    missing indicator where training had missing values; categorical -> one-hot with an
    ``other`` level. ``native`` (LightGBM): numeric passes through with NaN; categorical
    -> integer codes (NaN for missing/unseen), declared categorical to LightGBM.
    """

    def __init__(self, *, mode: Mode = "onehot") -> None:
        self.mode = mode

    def fit(self, frame: pd.DataFrame) -> FeatureEncoder:
        """Learn column kinds, imputation values, scales and category levels."""
        if frame.shape[1] == 0:
            raise InvalidInput(ERR_NO_FEATURES)
        self.columns_: list[str] = [str(c) for c in frame.columns]
        self.numeric_: dict[str, dict[str, float | bool]] = {}
        self.categorical_: dict[str, list[str]] = {}
        for col in self.columns_:
            series = frame[col]
            if _is_numeric(series):
                values = series.astype(float)
                median = float(values.median()) if values.notna().any() else 0.0
                filled = values.fillna(median)
                std = float(filled.std(ddof=0))
                self.numeric_[col] = {
                    "median": median,
                    "mean": float(filled.mean()),
                    "scale": std if std > 0 else 1.0,
                    "has_missing": bool(values.isna().any()),
                }
            else:
                counts = series.dropna().astype(str).value_counts()
                levels = [str(v) for v in counts[counts >= _MIN_LEVEL_COUNT].index[:_MAX_LEVELS]]
                self.categorical_[col] = sorted(levels)
        self.feature_names_out_ = self._names()
        return self

    def _names(self) -> list[str]:
        names: list[str] = []
        for col in self.columns_:
            if col in self.numeric_:
                names.append(col)
                if self.mode == "onehot" and self.numeric_[col]["has_missing"]:
                    names.append(f"{col}__missing")
            elif self.mode == "onehot":
                names.extend(f"{col}={level}" for level in self.categorical_[col])
                names.append(f"{col}=other")
            else:
                names.append(col)
        return names

    @property
    def categorical_indices_(self) -> list[int]:
        """Positions of categorical columns in ``native`` output (for LightGBM)."""
        return [i for i, col in enumerate(self.columns_) if col in self.categorical_]

    def transform(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        """Encode ``frame`` with the fitted state; unseen categories go to ``other``/NaN."""
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise InvalidInput(ERR_MISSING_COLUMNS.format(", ".join(missing[:10])))
        parts: list[NDArray[np.float64]] = []
        for col in self.columns_:
            series = frame[col]
            if col in self.numeric_:
                stats = self.numeric_[col]
                values = np.asarray(pd.to_numeric(series, errors="coerce"), dtype=np.float64)
                if self.mode == "native":
                    parts.append(values[:, None])
                    continue
                isna = np.isnan(values)
                filled = np.where(isna, float(stats["median"]), values)
                parts.append(
                    np.asarray((filled - float(stats["mean"])) / float(stats["scale"]), dtype=float)[:, None]
                )
                if stats["has_missing"]:
                    parts.append(isna.astype(float)[:, None])
            else:
                levels = self.categorical_[col]
                text = series.astype("string")
                codes = pd.Categorical(text, categories=levels).codes.astype(float)
                if self.mode == "native":
                    parts.append(np.where(codes < 0, np.nan, codes)[:, None])
                    continue
                onehot = np.zeros((len(series), len(levels) + 1))
                rows = np.arange(len(series))
                # Missing and unseen values share the "other" column (last).
                onehot[rows, np.where(codes < 0, len(levels), codes).astype(int)] = 1.0
                parts.append(onehot)
        return np.hstack(parts) if parts else np.empty((len(frame), 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {
            "mode": self.mode,
            "columns": self.columns_,
            "numeric": self.numeric_,
            "categorical": self.categorical_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> FeatureEncoder:
        """Rebuild a fitted encoder from :meth:`to_dict` output."""
        enc = cls(mode=state["mode"])
        enc.columns_ = list(state["columns"])
        enc.numeric_ = dict(state["numeric"])
        enc.categorical_ = {k: list(v) for k, v in state["categorical"].items()}
        enc.feature_names_out_ = enc._names()
        return enc
