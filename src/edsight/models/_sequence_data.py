"""From a weekly feature frame to padded week-by-week arrays (private; see :mod:`.sequence`).

Every (person_id, section_id) pair becomes one sequence; the row of week ``w`` lands in slot
``w - 1`` so a gap in the weeks stays a gap (an all-zero slot whose ``present`` indicator is
0) instead of shifting later weeks forward. Everything here is vectorised numpy: one
``groupby().ngroup()`` and one fancy-indexed assignment, never a loop over students.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from edsight.errors import InvalidInput

KEYS: tuple[str, str, str] = ("person_id", "section_id", "week")
PAIR: list[str] = ["person_id", "section_id"]

# Columns that are never inputs: keys, calendar dates, the horizon and every known label.
# Labels joined into the feature frame (as benchmarks/ews_canvas.py does) would be leakage.
NEVER_INPUTS: frozenset[str] = frozenset(
    {
        *KEYS,
        "week_start",
        "week_end",
        "horizon_weeks",
        "will_fail_academically",
        "will_disengage",
        "will_miss_assignments",
        "will_dropout",
    }
)

# Standardised values beyond this many SDs are clipped: page views are heavy-tailed and one
# student with 5,000 views should not saturate the recurrent gates for everyone.
CLIP_SD = 8.0

ERR_NOT_FRAME = "{0} must be a pandas DataFrame, got {1}"
ERR_KEYS = "features lack the key columns {0}; a sequence model needs person_id, section_id and week"
ERR_DUPLICATE = "features have {0} duplicate (person_id, section_id, week) rows, e.g. week {1}"
ERR_WEEK = "week must be a whole number from 1 to max_weeks={0}; found {1} (row {2})"
ERR_NO_INPUTS = "features have no numeric input columns besides keys, dates and labels"
ERR_INPUTS_MISSING = "features lack the model's input columns: {0}"
ERR_NOT_NUMERIC = "input column {0!r} is not numeric (dtype {1})"
ERR_TARGET = "unknown target {0!r}; the labels frame has the label columns {1}"
ERR_LABEL_KEYS = "labels lack the key columns {0}"
ERR_Y_LENGTH = "y has {0} values but features have {1} rows"
ERR_Y_VALUES = "target {0!r} must hold only 0/1 (or True/False) and missing; found {1!r}"
ERR_NO_LABELS = "target {0!r} has no labelled rows among the features"
ERR_ONE_CLASS = "target {0!r} has only one class in the training rows; a risk model needs both"


def check_frame(frame: object, what: str = "features") -> pd.DataFrame:
    """Return ``frame`` if it is a DataFrame with the three key columns."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput(ERR_NOT_FRAME.format(what, type(frame).__name__))
    absent = [k for k in KEYS if k not in frame.columns]
    if absent:
        raise InvalidInput(ERR_KEYS.format(absent))
    return frame


def input_columns(frame: pd.DataFrame, chosen: Sequence[str] | None, target: str | None) -> list[str]:
    """The model's inputs: ``chosen`` as given, else every numeric non-key, non-label column."""
    if chosen is not None:
        absent = [c for c in chosen if c not in frame.columns]
        if absent:
            raise InvalidInput(ERR_INPUTS_MISSING.format(", ".join(map(str, absent[:10]))))
        for col in chosen:
            if not _numeric(frame[col]):
                raise InvalidInput(ERR_NOT_NUMERIC.format(col, frame[col].dtype))
        return [str(c) for c in chosen]
    skip = set(NEVER_INPUTS) | ({target} if target else set())
    cols = [str(c) for c in frame.columns if c not in skip and _numeric(frame[c])]
    if not cols:
        raise InvalidInput(ERR_NO_INPUTS)
    return cols


def _numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


def labels_for(
    features: pd.DataFrame, labels_or_y: pd.DataFrame | ArrayLike, target: str
) -> NDArray[np.float64]:
    """Outcome per feature row as 0.0/1.0 with NaN where unlabelled.

    ``labels_or_y`` is a labels frame (joined on the keys; ``target`` must be one of its
    columns) or an array aligned with ``features`` rows.
    """
    if isinstance(labels_or_y, pd.DataFrame):
        absent = [k for k in KEYS if k not in labels_or_y.columns]
        if absent:
            raise InvalidInput(ERR_LABEL_KEYS.format(absent))
        if target not in labels_or_y.columns or target in KEYS:
            names = [c for c in labels_or_y.columns if c not in NEVER_INPUTS or c.startswith("will_")]
            raise InvalidInput(ERR_TARGET.format(target, names))
        right = labels_or_y[[*KEYS, target]].drop_duplicates(list(KEYS))
        left = features[list(KEYS)].astype({"week": "int64"})
        right = right.astype({"week": "int64"})
        merged = left.merge(right, on=list(KEYS), how="left", validate="many_to_one")
        raw = merged[target]
    else:
        arr = np.asarray(labels_or_y)
        if arr.ndim != 1 or arr.shape[0] != len(features):
            raise InvalidInput(ERR_Y_LENGTH.format(arr.shape[0] if arr.ndim else 1, len(features)))
        raw = pd.Series(arr)
    values = pd.to_numeric(raw.astype("object").where(raw.notna(), np.nan), errors="coerce")
    bad = raw.notna() & ~values.isin((0, 1))
    if bad.any():
        raise InvalidInput(ERR_Y_VALUES.format(target, raw[bad].iloc[0]))
    return np.asarray(values, dtype=np.float64)


@dataclass(frozen=True)
class Layout:
    """Where each feature row sits in the padded array: sequence index and week slot."""

    seq: NDArray[np.int64]
    slot: NDArray[np.int64]
    n_seq: int
    n_slots: int
    pair_person: NDArray[Any]


def layout(frame: pd.DataFrame, max_weeks: int) -> Layout:
    """Assign every row its sequence (student-section) and slot (week - 1)."""
    week = pd.to_numeric(frame["week"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(week) | (week < 1) | (week > max_weeks) | (week != np.round(week))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInput(ERR_WEEK.format(max_weeks, frame["week"].iloc[i], i))
    dup = frame.duplicated(list(KEYS))
    if dup.any():
        raise InvalidInput(ERR_DUPLICATE.format(int(dup.sum()), frame["week"][dup].iloc[0]))
    seq = np.asarray(frame.groupby(PAIR, sort=False).ngroup().to_numpy(), dtype=np.int64)
    slot = np.asarray(week.astype(np.int64) - 1, dtype=np.int64)
    n_seq = int(seq.max()) + 1 if len(seq) else 0
    n_slots = int(slot.max()) + 1 if len(slot) else 1
    person = np.empty(n_seq, dtype=object)
    person[seq] = frame["person_id"].to_numpy()
    return Layout(seq=seq, slot=slot, n_seq=n_seq, n_slots=n_slots, pair_person=person)


@dataclass
class Scaler:
    """Per-column standardisation learnt on training rows; NaN becomes 0 plus an indicator."""

    columns: list[str]
    mean: list[float]
    scale: list[float]
    indicate_missing: list[str]

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: list[str]) -> Scaler:
        values = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(values)
            counts = finite.sum(axis=0)
            safe = np.where(finite, values, 0.0)
            mean = safe.sum(axis=0) / np.maximum(counts, 1)
            var = (np.where(finite, values - mean, 0.0) ** 2).sum(axis=0) / np.maximum(counts, 1)
        sd = np.sqrt(var)
        scale = np.where(sd > 0, sd, 1.0)
        missing = [c for c, n in zip(columns, counts, strict=True) if n < len(frame)]
        return cls(columns, [float(v) for v in mean], [float(v) for v in scale], missing)

    @property
    def width(self) -> int:
        """Inputs per week: the columns, their missing indicators and one ``present`` flag."""
        return len(self.columns) + len(self.indicate_missing) + 1

    @property
    def names(self) -> list[str]:
        return [*self.columns, *(f"{c}__missing" for c in self.indicate_missing), "present"]

    def transform(self, frame: pd.DataFrame) -> NDArray[np.float32]:
        """Row-wise inputs (rows x width) in float32."""
        absent = [c for c in self.columns if c not in frame.columns]
        if absent:
            raise InvalidInput(ERR_INPUTS_MISSING.format(", ".join(absent[:10])))
        for col in self.columns:
            if not _numeric(frame[col]):
                raise InvalidInput(ERR_NOT_NUMERIC.format(col, frame[col].dtype))
        values = frame[self.columns].to_numpy(dtype=np.float64, na_value=np.nan)
        isnan = ~np.isfinite(values)
        z = (values - np.asarray(self.mean)) / np.asarray(self.scale)
        z = np.clip(np.where(isnan, 0.0, z), -CLIP_SD, CLIP_SD)
        idx = [self.columns.index(c) for c in self.indicate_missing]
        out = np.empty((len(frame), self.width), dtype=np.float32)
        out[:, : len(self.columns)] = z
        out[:, len(self.columns) : -1] = isnan[:, idx]
        out[:, -1] = 1.0
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "mean": self.mean,
            "scale": self.scale,
            "indicate_missing": self.indicate_missing,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Scaler:
        return cls(
            [str(c) for c in state["columns"]],
            [float(v) for v in state["mean"]],
            [float(v) for v in state["scale"]],
            [str(c) for c in state["indicate_missing"]],
        )


def pad(rows: NDArray[np.float32], where: Layout) -> NDArray[np.float32]:
    """Scatter row inputs into a zero-padded (sequences x weeks x width) array."""
    out = np.zeros((where.n_seq, where.n_slots, rows.shape[1]), dtype=np.float32)
    out[where.seq, where.slot] = rows
    return out


def pad_targets(y: NDArray[np.float64], where: Layout) -> NDArray[np.float32]:
    """Outcomes in the padded layout; NaN marks slots that carry no label (masked in the loss)."""
    out = np.full((where.n_seq, where.n_slots), np.nan, dtype=np.float32)
    out[where.seq, where.slot] = y
    return out
