"""Build the long "one score, one student, one cell" frame that the gap functions read.

Two sources: the canonical tables (assessment_result + student_demographics +
school_enrollment, as the warehouse or the district generator hold them) and any plain
DataFrame whose columns are named by the caller (e.g. the STAR data).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput

log = logging.getLogger(__name__)

SUBGROUPS: tuple[str, ...] = (
    "race_ethnicity",
    "economically_disadvantaged",
    "english_learner",
    "disability",
    "sex",
)
GAP_FRAME_COLUMNS: tuple[str, ...] = (
    "person_id",
    "school_id",
    "school_year",
    "grade_level",
    "subject",
    "scale_score",
    "perf_level",
    *SUBGROUPS,
)
MISSING_COLUMNS = "{what} lacks column(s) {missing}; expected {expected}"


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise InvalidInput naming the frame and the missing columns."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInput(MISSING_COLUMNS.format(what=what, missing=missing, expected=list(columns)))


def gap_frame_from_tables(
    tables: Mapping[str, pd.DataFrame], *, assessment: str | None = "state_test"
) -> pd.DataFrame:
    """Join test results to demographics and to the school the student attended on the test day.

    ``tables`` maps canonical table names to DataFrames (``DistrictData.tables`` or frames read
    from the warehouse). Scores whose test date falls in no enrollment window keep a null
    ``school_id`` (they still count in district-level gaps). ``assessment=None`` keeps every
    assessment.
    """
    for name in ("assessment_result", "student_demographics", "school_enrollment"):
        if name not in tables:
            raise InvalidInput(f"tables lacks the canonical table {name!r}")
    res = tables["assessment_result"]
    demo = tables["student_demographics"]
    enr = tables["school_enrollment"]
    res_cols = ["person_id", "assessment", "subject", "school_year", "grade_level", "test_date"]
    require_columns(res, [*res_cols, "scale_score", "perf_level"], "assessment_result")
    require_columns(demo, ["person_id", *SUBGROUPS], "student_demographics")
    require_columns(
        enr, ["person_id", "school_id", "school_year", "entry_date", "exit_date"], "school_enrollment"
    )

    scores = res if assessment is None else res[res["assessment"] == assessment]
    scores = scores[[*res_cols, "scale_score", "perf_level"]].reset_index(drop=True)
    scores["_row"] = np.arange(len(scores))
    # A student can hold several windows in a year (mid-year moves); the one that contains
    # the test date is the school accountable for that score.
    windows = enr[["person_id", "school_id", "school_year", "entry_date", "exit_date"]]
    pairs = scores[["_row", "person_id", "school_year", "test_date"]].merge(
        windows, on=["person_id", "school_year"], how="inner"
    )
    td = pd.to_datetime(pairs["test_date"])
    inside = (pd.to_datetime(pairs["entry_date"]) <= td) & (
        pairs["exit_date"].isna() | (pd.to_datetime(pairs["exit_date"]) >= td)
    )
    school = pairs.loc[inside.to_numpy(dtype=bool), ["_row", "school_id"]].drop_duplicates(
        "_row", keep="last"
    )
    out = scores.merge(school, on="_row", how="left").merge(
        demo[["person_id", *SUBGROUPS]], on="person_id", how="left"
    )
    n_unplaced = int(out["school_id"].isna().sum())
    if n_unplaced:
        log.info("%d of %d scores fall in no enrollment window; school_id left null", n_unplaced, len(out))
    return _normalise(out.drop(columns=["_row", "assessment", "test_date"]))


def gap_frame_from_frame(
    frame: pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    values: Mapping[str, Mapping[object, object]] | None = None,
) -> pd.DataFrame:
    """Rename a plain DataFrame into the gap-frame layout and recode its values.

    ``columns`` maps source names to gap-frame names (e.g. ``{"math": "scale_score", "gr":
    "grade_level", "ses": "economically_disadvantaged"}``); ``values`` maps a gap-frame column
    to a value recoding (e.g. ``{"economically_disadvantaged": {"F": True, "N": False}}``).
    Only ``scale_score`` is required; other columns are kept as they are. Rows without a score
    are dropped.
    """
    out = frame.rename(columns=dict(columns or {}))
    require_columns(out, ["scale_score"], "frame")
    out = out.copy()
    for col, mapping in (values or {}).items():
        require_columns(out, [col], "frame")
        out[col] = out[col].map(dict(mapping))
    out["scale_score"] = pd.to_numeric(out["scale_score"], errors="coerce")
    return _normalise(out[out["scale_score"].notna()].reset_index(drop=True))


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Plain numpy/object dtypes so groupby and the numeric code see no Arrow surprises."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if col in ("scale_score",):
            out[col] = pd.to_numeric(s, errors="coerce").astype("float64")
        elif col in ("perf_level", "grade_level", "school_year"):
            out[col] = pd.to_numeric(s, errors="coerce").astype("Int64")
        elif col in ("economically_disadvantaged", "english_learner", "disability"):
            out[col] = s.astype("boolean")
        elif isinstance(s.dtype, pd.ArrowDtype) or pd.api.types.is_string_dtype(s.dtype):
            out[col] = s.astype(object).where(s.notna(), None)
    return out


def perf_levels_from_cuts(scores: pd.Series, cuts: Sequence[float]) -> pd.Series:
    """Performance level 1..len(cuts)+1: a score at or above cut k reaches level k + 1."""
    arr = np.asarray(pd.to_numeric(scores, errors="coerce"), dtype=float)
    levels = np.searchsorted(np.asarray(sorted(cuts), dtype=float), arr, side="right") + 1
    return pd.Series(levels, index=scores.index, dtype="Int64").where(~np.isnan(arr))
