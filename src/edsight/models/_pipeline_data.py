"""Model frames read from the warehouse: stored weekly features joined to their labels.

One row per prediction point: (student, section, week) for LMS data and (student, school
year, week) for K-12 data. Besides the model inputs each frame carries what the pipeline
needs around them: the outcome ``y``, ``observed_at`` (the date by which that outcome is
known, so training can stop at a date without reading the future), grouping keys for the
time split and the baseline, and the protected attributes used only for the fairness audit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

import duckdb
import numpy as np
import pandas as pd

from edsight.errors import InvalidInput
from edsight.features.labels import LMS_TARGETS, lms_labels_from_features
from edsight.schema import CANONICAL
from edsight.sql import quote_ident, scalar

log = logging.getLogger(__name__)

Kind = Literal["lms", "k12"]
KINDS: tuple[str, ...] = ("lms", "k12")

K12_TARGETS: tuple[str, ...] = ("dropout_1y", "dropout_2y", "non_graduation_1y", "non_graduation_2y")
TARGETS: dict[str, tuple[str, ...]] = {"lms": LMS_TARGETS, "k12": K12_TARGETS}
FEATURE_TABLE: dict[str, str] = {"lms": "weekly_features_lms", "k12": "weekly_features_k12"}
LABEL_TABLE: dict[str, str] = {"lms": "labels_lms", "k12": "labels_k12"}

#: Protected attributes: read for the fairness audit, never model inputs.
PROTECTED: tuple[str, ...] = (
    "sex",
    "race_ethnicity",
    "economically_disadvantaged",
    "english_learner",
    "disability",
)
# Keys, dates and the school are not inputs: the model must carry over to later terms,
# years and other schools; the school's own rate is the baseline it is compared with.
_NOT_INPUTS: dict[str, frozenset[str]] = {
    "lms": frozenset({"person_id", "section_id", "week_start", "week_end"}),
    "k12": frozenset({"person_id", "school_year", "school_id", "week_start", "week_end"}),
}
#: Grades whose students have K-12 outcome labels (labels.py: high school years).
K12_GRADES: tuple[int, int] = (9, 12)
#: Earlier weeks read with the scored week, for reason texts ("2 new in the last 2 weeks").
HISTORY_WEEKS = 4
#: Default snapshot weeks of the training rows.
DEFAULT_WEEKS: dict[str, tuple[int, ...]] = {"lms": tuple(range(2, 13)), "k12": (10, 20, 30)}

ERR_KIND = "unknown kind {0!r}; expected 'lms' (Canvas/LMS) or 'k12' (district)"
ERR_TARGET = "unknown target {0!r} for kind {1!r}; expected one of: {2}"
ERR_NO_FEATURES = "the warehouse has no {0} rows yet: run `edsight features build --kind {1}` first"
ERR_NO_LABELS = (
    "the warehouse has no {0} rows yet: run `edsight features build --kind {1}` (with labels) first"
)
ERR_WEEKS = "weeks must be positive integers, got {0!r}"
ERR_NO_ROWS = "no {0} rows with an observed {1!r} outcome{2}; nothing to train on"


def check_kind(kind: str) -> Kind:
    """``kind`` validated as ``"lms"`` or ``"k12"``."""
    if kind not in KINDS:
        raise InvalidInput(ERR_KIND.format(kind))
    return kind  # type: ignore[return-value]


def check_target(kind: str, target: str) -> str:
    """``target`` validated against the label columns of ``kind``."""
    if target not in TARGETS[check_kind(kind)]:
        raise InvalidInput(ERR_TARGET.format(target, kind, ", ".join(TARGETS[kind])))
    return target


def check_weeks(weeks: Sequence[int] | None, kind: Kind) -> tuple[int, ...]:
    chosen = DEFAULT_WEEKS[kind] if weeks is None else tuple(weeks)
    if not chosen or any(isinstance(w, bool) or not isinstance(w, int | np.integer) or w < 1 for w in chosen):
        raise InvalidInput(ERR_WEEKS.format(weeks))
    return tuple(sorted({int(w) for w in chosen}))


def input_columns(kind: Kind) -> list[str]:
    """The model inputs of ``kind``: every stored feature but keys, dates and the school."""
    cols = CANONICAL[FEATURE_TABLE[kind]].column_names
    return [c for c in cols if c not in _NOT_INPUTS[kind]]


def years_ahead(target: str) -> int:
    """1 for ``*_1y`` K-12 targets, 2 for ``*_2y``."""
    return int(target.rsplit("_", 1)[1].rstrip("y"))


def require_rows(con: duckdb.DuckDBPyConnection, table: str, kind: Kind, *, labels: bool = False) -> None:
    """Raise a one-line hint when ``table`` is empty (features or labels never built)."""
    if scalar(con, f"SELECT count(*) FROM (SELECT 1 FROM {quote_ident(table)} LIMIT 1)") == 0:  # noqa: S608
        raise InvalidInput((ERR_NO_LABELS if labels else ERR_NO_FEATURES).format(table, kind))


def _inputs_sql(kind: Kind, alias: str = "f") -> str:
    # Every input as DOUBLE: booleans and nullable small ints reach pandas as float64 with NaN.
    return ", ".join(
        f"CAST({alias}.{quote_ident(c)} AS DOUBLE) AS {quote_ident(c)}" for c in input_columns(kind)
    )


def _protected_sql() -> str:
    return ", ".join(f"d.{quote_ident(c)}" for c in PROTECTED)


_SHARE_MODULUS = 1_000_003


def _share_sql(share: float | None) -> str:
    """A fixed pseudo-random share of the students (whole students, by a hash of the id)."""
    if share is None or share >= 1:
        return ""
    return f"AND hash(f.person_id) % {_SHARE_MODULUS} < {int(share * _SHARE_MODULUS)}"


def _weeks_sql(weeks: Sequence[int] | None) -> str:
    return "" if weeks is None else f"AND f.week IN ({', '.join(str(int(w)) for w in weeks)})"


@dataclass(frozen=True)
class ModelFrame:
    """A model frame and the names of its parts."""

    kind: Kind
    target: str
    frame: pd.DataFrame
    inputs: list[str]
    horizon: int  # weeks for LMS, school years for K-12

    @property
    def y(self) -> np.ndarray:
        return self.frame["y"].to_numpy(np.int64)


def _lms_label_relation(con: duckdb.DuckDBPyConnection, horizon: int) -> str:
    """Name of a relation with LMS labels of ``horizon``: the stored table or one computed now."""
    stored = scalar(con, "SELECT count(*) FROM labels_lms WHERE horizon_weeks = ?", [horizon])
    if stored:
        return "labels_lms"
    # Another horizon than the stored one: the labels are a pure function of the stored features.
    need = "person_id, section_id, week, current_grade, page_views, participations, assignments_missing"
    feats = con.sql(f"SELECT {need} FROM weekly_features_lms").df()  # noqa: S608
    computed = lms_labels_from_features(feats, horizon=horizon)
    con.register("_pipeline_labels_lms", computed)
    return "_pipeline_labels_lms"


def lms_frame(
    con: duckdb.DuckDBPyConnection,
    target: str,
    *,
    horizon: int,
    weeks: Sequence[int] | None,
    train_until: date | None = None,
    person_share: float | None = None,
) -> ModelFrame:
    """LMS rows (student, section, week) with the ``target`` over the next ``horizon`` weeks."""
    require_rows(con, "weekly_features_lms", "lms")
    require_rows(con, "labels_lms", "lms", labels=True)
    labels = _lms_label_relation(con, horizon)
    until = "" if train_until is None else "AND f.week_end + to_days(7 * l.horizon_weeks) <= $until"
    sql = f"""
        SELECT f.person_id, f.section_id, f.week_end, s.course_id, s.school_id, s.term_id,
               t.start_date AS term_start, CAST(t.end_date AS DATE) AS term_end,
               CAST(f.week_end + to_days(7 * l.horizon_weeks) AS DATE) AS observed_at,
               CAST(l.{quote_ident(target)} AS INTEGER) AS y,
               {_inputs_sql("lms")}, {_protected_sql()}
        FROM weekly_features_lms f
        JOIN {labels} l ON l.person_id = f.person_id AND l.section_id = f.section_id AND l.week = f.week
        JOIN section s ON s.section_id = f.section_id
        JOIN term t ON t.term_id = s.term_id
        LEFT JOIN student_demographics d ON d.person_id = f.person_id
        WHERE l.horizon_weeks = {int(horizon)} {_weeks_sql(weeks)} {until} {_share_sql(person_share)}
        ORDER BY f.person_id, f.section_id, f.week
    """  # noqa: S608 - identifiers come from edsight.schema and validated targets
    params = {} if train_until is None else {"until": train_until}
    frame = con.sql(sql, params=params).df()
    if labels != "labels_lms":
        con.unregister(labels)
    return ModelFrame("lms", target, _dates(frame), input_columns("lms"), horizon)


_K12_YEARS = """
    SELECT school_year, CAST(min(start_date) AS DATE) AS y_start, CAST(max(end_date) AS DATE) AS y_end
    FROM term WHERE term_type = 'school_year' GROUP BY school_year
"""


def k12_frame(
    con: duckdb.DuckDBPyConnection,
    target: str,
    *,
    weeks: Sequence[int] | None,
    train_until: date | None = None,
    person_share: float | None = None,
) -> ModelFrame:
    """K-12 rows (student, high-school year, week) with ``target`` over 1 or 2 school years.

    Rows of students whose outcome (dropout, graduation) came before the week's end are
    left out: at that week there is nothing left to predict for them.
    """
    require_rows(con, "weekly_features_k12", "k12")
    require_rows(con, "labels_k12", "k12", labels=True)
    k = years_ahead(target)
    until = "" if train_until is None else "AND yo.y_end <= $until"
    sql = f"""
        WITH years AS ({_K12_YEARS})
        SELECT f.person_id, f.school_year, CAST(f.week_end AS DATE) AS week_end, f.school_id,
               y.y_start AS year_start, yo.y_end AS observed_at,
               CAST(o.outcome_date AS DATE) AS outcome_date,
               CAST(l.{quote_ident(target)} AS INTEGER) AS y,
               {_inputs_sql("k12")}, {_protected_sql()}
        FROM weekly_features_k12 f
        JOIN labels_k12 l ON l.person_id = f.person_id AND l.school_year = f.school_year
        JOIN years y ON y.school_year = f.school_year
        JOIN years yo ON yo.school_year = f.school_year + {k - 1}
        LEFT JOIN student_outcome o ON o.person_id = f.person_id
        LEFT JOIN student_demographics d ON d.person_id = f.person_id
        WHERE l.{quote_ident(target)} IS NOT NULL
          AND f.grade_level BETWEEN {K12_GRADES[0]} AND {K12_GRADES[1]}
          AND (o.outcome_date IS NULL OR o.outcome_date >= f.week_end)
          {_weeks_sql(weeks)} {until} {_share_sql(person_share)}
        ORDER BY f.person_id, f.school_year, f.week
    """  # noqa: S608 - identifiers come from edsight.schema and validated targets
    params = {} if train_until is None else {"until": train_until}
    frame = con.sql(sql, params=params).df()
    return ModelFrame("k12", target, _dates(frame), input_columns("k12"), k)


def model_frame(
    con: duckdb.DuckDBPyConnection,
    kind: Kind,
    target: str,
    *,
    horizon: int,
    weeks: Sequence[int] | None,
    train_until: date | None = None,
    max_rows: int | None = None,
) -> ModelFrame:
    """The frame of ``kind`` for ``target``; raises when it is empty.

    With ``max_rows``, a share of whole students is read when the feature table holds more
    rows than that (with 20 % headroom, so the caller can trim exactly): training at state
    scale never pulls the whole table into memory.
    """
    check_target(kind, target)
    share = None
    if max_rows is not None:
        available = scalar(
            con,
            f"SELECT count(*) FROM {quote_ident(FEATURE_TABLE[kind])} f WHERE true {_weeks_sql(weeks)}",  # noqa: S608
        )
        if available and available > max_rows:
            share = min(1.0, 1.2 * max_rows / float(available))
    if kind == "lms":
        mf = lms_frame(con, target, horizon=horizon, weeks=weeks, train_until=train_until, person_share=share)
    else:
        mf = k12_frame(con, target, weeks=weeks, train_until=train_until, person_share=share)
    if mf.frame.empty:
        where = "" if train_until is None else f" by {train_until.isoformat()}"
        raise InvalidInput(ERR_NO_ROWS.format(kind, target, where + f" at weeks {list(weeks or [])}"))
    log.info("%s frame for %s: %d rows, %d positive", kind, target, len(mf.frame), int(mf.y.sum()))
    return mf


def _dates(frame: pd.DataFrame) -> pd.DataFrame:
    for col in ("week_end", "observed_at", "term_start", "term_end", "year_start", "outcome_date"):
        if col in frame.columns:
            frame[col] = pd.to_datetime(frame[col])
    return frame


def scoring_frame(
    con: duckdb.DuckDBPyConnection, kind: Kind, as_of: date, *, part: int = 0, parts: int = 1
) -> pd.DataFrame:
    """Feature rows to score at ``as_of``: each student's last complete week by ``as_of``.

    ``parts`` > 1 reads one of that many disjoint shares of the students (by a hash of the id),
    so a state-sized batch is scored in bounded memory.

    ``is_current`` marks the rows to score; the up to :data:`HISTORY_WEEKS` weeks before come
    along for reason texts that compare with the recent past.

    LMS: sections whose term is running at ``as_of`` (its last week may end up to a week
    after the term's end date). K-12: high-school students enrolled on the last complete
    week's end, in the school year that holds ``as_of``.
    """
    require_rows(con, FEATURE_TABLE[kind], kind)
    if kind == "lms":
        sql = f"""
            WITH live AS (
                SELECT f.section_id, max(f.week) AS week
                FROM weekly_features_lms f
                JOIN section s ON s.section_id = f.section_id
                JOIN term t ON t.term_id = s.term_id
                WHERE f.week_end <= $as_of AND t.start_date <= $as_of
                  AND $as_of < t.end_date + INTERVAL 7 DAY
                GROUP BY f.section_id
            )
            SELECT f.person_id, f.section_id, CAST(f.week_end AS DATE) AS week_end, s.school_id,
                   f.week = live.week AS is_current, {_inputs_sql("lms")}
            FROM weekly_features_lms f
            JOIN live ON live.section_id = f.section_id
                     AND f.week BETWEEN live.week - {HISTORY_WEEKS} AND live.week
            JOIN section s ON s.section_id = f.section_id
            WHERE hash(f.person_id) % $parts = $part
            ORDER BY f.person_id, f.section_id, f.week
        """  # noqa: S608
    else:
        sql = f"""
            WITH years AS ({_K12_YEARS}),
            year AS (SELECT school_year FROM years WHERE y_start <= $as_of AND $as_of <= y_end + 7),
            last AS (
                SELECT f.person_id, f.school_year, arg_max(f.week, f.week) AS week,
                       arg_max(f.week_end, f.week) AS week_end, arg_max(f.grade_level, f.week) AS grade_level
                FROM weekly_features_k12 f JOIN year USING (school_year)
                WHERE f.week_end <= $as_of GROUP BY f.person_id, f.school_year
            )
            SELECT f.person_id, NULL::VARCHAR AS section_id, f.school_year,
                   CAST(f.week_end AS DATE) AS week_end, f.school_id, f.week = last.week AS is_current,
                   {_inputs_sql("k12")}
            FROM weekly_features_k12 f
            JOIN last ON last.person_id = f.person_id AND last.school_year = f.school_year
                     AND f.week BETWEEN last.week - {HISTORY_WEEKS} AND last.week
            WHERE last.grade_level BETWEEN {K12_GRADES[0]} AND {K12_GRADES[1]}
              AND EXISTS (
                SELECT 1 FROM school_enrollment e
                WHERE e.person_id = f.person_id AND e.school_year = f.school_year
                  AND e.entry_date < last.week_end
                  AND (e.exit_date IS NULL OR e.exit_date >= last.week_end - INTERVAL 1 DAY)
              )
              AND hash(f.person_id) % $parts = $part
            ORDER BY f.person_id, f.week
        """  # noqa: S608
    return con.sql(sql, params={"as_of": as_of, "part": part, "parts": parts}).df()
