"""Look-ahead labels (targets) for the weekly features: LMS risk targets and K-12 outcomes.

LMS labels follow the seed's four rules over the *next* ``horizon`` weeks of the same
student and section (weeks ``w+1 .. w+h``), applied to the point-in-time features of
:mod:`edsight.features.weekly`:

* ``will_fail_academically``: mean ``current_grade`` < 0.6;
* ``will_disengage``: mean ``page_views`` < 10 and mean ``participations`` < 2;
* ``will_miss_assignments``: mean ``assignments_missing`` > 2;
* ``will_dropout``: mean ``current_grade`` < 0.4 and mean ``page_views`` < 5.

Null grades are skipped by the mean; when all are null the grade conditions are False. Rows
without all ``h`` future weeks get no label. Integer means are compared as integer sums and
the grade mean is summed in week order, as the generator's ``label_training_rows`` does, so
the labels equal its ``training_data`` labels.

The warehouse path (:func:`store_labels`) computes them in SQL from the stored
``weekly_features_lms`` table (:func:`lms_labels_sql`: ``lead()`` over the next ``h`` weeks);
:func:`lms_labels_from_features` is the same definition on a DataFrame.

K-12 labels come from ``student_outcome``, one row per (student, school year) of grades 9-12;
see :func:`build_k12_labels`.
"""

from __future__ import annotations

import logging
from contextlib import closing
from typing import Literal

import duckdb
import numpy as np
import pandas as pd

from edsight.errors import InvalidInput
from edsight.features._weekly_lms import lms_feature_batches
from edsight.features.weekly import Source, connection, replace_table
from edsight.schema import CANONICAL
from edsight.sql import quote_ident
from edsight.store.warehouse import Warehouse

__all__ = [
    "DEFAULT_HORIZON_WEEKS",
    "K12_LABELS_SQL",
    "LMS_TARGETS",
    "build_k12_labels",
    "build_labels",
    "lms_labels_from_features",
    "lms_labels_sql",
    "store_labels",
]

logger = logging.getLogger(__name__)

DEFAULT_HORIZON_WEEKS = 4
LMS_TARGETS: tuple[str, ...] = (
    "will_fail_academically",
    "will_disengage",
    "will_miss_assignments",
    "will_dropout",
)
_LMS_COLUMNS = CANONICAL["labels_lms"].column_names


def _check_horizon(horizon: object) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise InvalidInput(f"horizon must be a positive integer of weeks, got {horizon!r}")
    return horizon


def lms_labels_from_features(features: pd.DataFrame, *, horizon: int = DEFAULT_HORIZON_WEEKS) -> pd.DataFrame:
    """The four LMS labels for every feature row that has ``horizon`` future weeks.

    ``features`` needs ``person_id, section_id, week, current_grade, page_views,
    participations, assignments_missing`` with unique (person, section, week). Returns the
    columns of the declared ``labels_lms`` table, sorted by key.

    Raises:
        InvalidInput: on a missing column, a bad horizon or duplicate keys.
    """
    h = _check_horizon(horizon)
    keys = ["person_id", "section_id", "week"]
    need = [*keys, "current_grade", "page_views", "participations", "assignments_missing"]
    absent = [c for c in need if c not in features.columns]
    if absent:
        raise InvalidInput(f"features lack columns {absent}")
    f = features[need].sort_values(keys, ignore_index=True)
    if f.duplicated(keys).any():
        raise InvalidInput("features have duplicate (person_id, section_id, week) rows")
    n = len(f)
    pair = f.groupby(["person_id", "section_id"], sort=False).ngroup().to_numpy(np.int64)
    week = f["week"].to_numpy(np.int64)
    grade = f["current_grade"].to_numpy(np.float64, na_value=np.nan)
    counts = {c: f[c].to_numpy(np.int64) for c in ("page_views", "participations", "assignments_missing")}
    eligible = np.zeros(n, np.bool_)
    eligible[: max(n - h, 0)] = True
    g_sum = np.zeros(n)
    g_cnt = np.zeros(n, np.int64)
    sums = {c: np.zeros(n, np.int64) for c in counts}
    # Row i+k is week w+k of the same pair only if both match: gaps make the row ineligible.
    for k in range(1, h + 1):
        if n - k <= 0:
            eligible[:] = False
            break
        nxt = slice(k, n)
        cur = slice(0, n - k)
        eligible[cur] &= (pair[nxt] == pair[cur]) & (week[nxt] == week[cur] + k)
        g = grade[nxt]
        ok = ~np.isnan(g)
        g_sum[cur] += np.where(ok, g, 0.0)
        g_cnt[cur] += ok
        for c, v in counts.items():
            sums[c][cur] += v[nxt]
    has_grade = g_cnt > 0
    g_mean = g_sum / np.maximum(g_cnt, 1)
    out = f.loc[eligible, keys].reset_index(drop=True)
    out["week"] = out["week"].astype(np.int16)
    out["horizon_weeks"] = np.int16(h)
    e = eligible
    out["will_fail_academically"] = (has_grade & (g_mean < 0.6))[e]
    out["will_disengage"] = ((sums["page_views"] < 10 * h) & (sums["participations"] < 2 * h))[e]
    out["will_miss_assignments"] = (sums["assignments_missing"] > 2 * h)[e]
    out["will_dropout"] = (has_grade & (g_mean < 0.4) & (sums["page_views"] < 5 * h))[e]
    return out[list(_LMS_COLUMNS)]


def lms_labels_sql(horizon: int = DEFAULT_HORIZON_WEEKS, table: str = "weekly_features_lms") -> str:
    """A SELECT of the ``labels_lms`` rows computed from the feature table ``table``.

    ``lead(x, k)`` for k = 1..h reads the next h rows of the same student and section; a row
    is labelled when the h-th next row is week ``w + h`` (weeks are unique, so none is
    missing). The grade is summed in week order, as :func:`lms_labels_from_features` does,
    so both give the same labels. ``table`` must be a declared or internal table name.

    Raises:
        InvalidInput: on a bad horizon.
    """
    h = _check_horizon(horizon)
    ks = range(1, h + 1)
    leads = ",\n           ".join(
        f"lead({col}, {k}) OVER w AS {alias}{k}"
        for k in ks
        for col, alias in (
            ("current_grade", "g"),
            ("page_views", "v"),
            ("participations", "p"),
            ("assignments_missing", "m"),
        )
    )

    def add(alias: str, fmt: str = "{a}{k}") -> str:
        return " + ".join(fmt.format(a=alias, k=k) for k in ks)

    return f"""
WITH ahead AS (
    SELECT person_id, section_id, week, lead(week, {h}) OVER w AS week_h,
           {leads}
    FROM {quote_ident(table)}
    WINDOW w AS (PARTITION BY person_id, section_id ORDER BY week)
),
sums AS (
    SELECT person_id, section_id, week,
           {add("g", "coalesce({a}{k}, 0.0)")} AS g_sum,
           {add("g", "CAST({a}{k} IS NOT NULL AS INTEGER)")} AS g_n,
           {add("v", "CAST({a}{k} AS BIGINT)")} AS v_sum,
           {add("p", "CAST({a}{k} AS BIGINT)")} AS p_sum,
           {add("m", "CAST({a}{k} AS BIGINT)")} AS m_sum
    FROM ahead
    WHERE week_h = week + {h}
)
SELECT person_id, section_id, CAST(week AS SMALLINT) AS week, CAST({h} AS SMALLINT) AS horizon_weeks,
       g_n > 0 AND g_sum / g_n < 0.6 AS will_fail_academically,
       v_sum < {10 * h} AND p_sum < {2 * h} AS will_disengage,
       m_sum > {2 * h} AS will_miss_assignments,
       g_n > 0 AND g_sum / g_n < 0.4 AND v_sum < {5 * h} AS will_dropout
FROM sums
"""  # noqa: S608 -- the table name is quoted and only the horizon (an int) is formatted in


# Windows: school year Y opens with its school_year term; a label over k years looks at
# outcomes dated up to the end of school year Y+k-1 and exists only when that year's end is
# in the data (the outcome is observed). Students who transferred out are excluded: their
# outcome is unknown to the district. Students whose outcome predates year Y are not at risk.
K12_LABELS_SQL = """
WITH years AS (
    SELECT school_year, min(start_date) AS y_start, max(end_date) AS y_end
    FROM term WHERE term_type = 'school_year' GROUP BY school_year
),
hs AS (
    SELECT DISTINCT person_id, school_year FROM school_enrollment WHERE grade_level BETWEEN 9 AND 12
),
base AS (
    SELECT h.person_id, h.school_year, o.cohort_year, o.outcome, o.outcome_date,
           y.y_start, y1.y_end AS end_1, y2.y_end AS end_2
    FROM hs h
    JOIN student_outcome o ON o.person_id = h.person_id
    JOIN years y ON y.school_year = h.school_year
    LEFT JOIN years y1 ON y1.school_year = h.school_year
    LEFT JOIN years y2 ON y2.school_year = h.school_year + 1
    WHERE o.outcome <> 'transferred_out'
      AND (o.outcome_date IS NULL OR o.outcome_date >= y.y_start)
)
SELECT person_id, CAST(school_year AS SMALLINT) AS school_year, CAST(cohort_year AS SMALLINT) AS cohort_year,
       CASE WHEN end_1 IS NOT NULL
            THEN outcome = 'dropped_out' AND outcome_date <= end_1 END AS dropout_1y,
       CASE WHEN end_2 IS NOT NULL
            THEN outcome = 'dropped_out' AND outcome_date <= end_2 END AS dropout_2y,
       CASE WHEN end_1 IS NOT NULL AND cohort_year <= school_year
            THEN NOT coalesce(outcome = 'graduated' AND outcome_date <= end_1, false) END
            AS non_graduation_1y,
       CASE WHEN end_2 IS NOT NULL AND cohort_year <= school_year + 1
            THEN NOT coalesce(outcome = 'graduated' AND outcome_date <= end_2, false) END AS non_graduation_2y
FROM base
ORDER BY person_id, school_year
"""


def build_k12_labels(source: Source) -> pd.DataFrame:
    """Dropout and non-graduation within 1 and 2 school years, per (student, high-school year).

    For each year ``Y`` a student spends in grades 9-12 (``school_enrollment``) and whose
    ``student_outcome`` is known and not a transfer: ``dropout_ky`` = dropped out by the end of
    school year ``Y+k-1``; ``non_graduation_ky`` = not graduated by then, defined only when the
    cohort's expected graduation year is ``<= Y+k-1``. A label is null when year ``Y+k-1`` is
    not (yet) in the ``term`` table: its outcome is not observed.
    """
    with connection(source) as con:
        return con.sql(K12_LABELS_SQL).df()


_LABEL_FEATURES = "_edsight_lms_label_features"


def build_labels(
    source: Source,
    *,
    kind: Literal["lms", "k12"] = "lms",
    horizon: int = DEFAULT_HORIZON_WEEKS,
    stored: bool = False,
) -> pd.DataFrame:
    """Labels for the LMS feature rows (``kind="lms"``, ``horizon`` weeks) or K-12 years.

    LMS labels come from the stored ``weekly_features_lms`` table with ``stored=True``;
    otherwise the features are built first (inside DuckDB, from what the warehouse holds now).
    Rows are sorted by (person_id, section_id, week).

    Raises:
        InvalidInput: on an unknown kind or a bad horizon.
    """
    if kind == "lms":
        sql = lms_labels_sql(horizon, "weekly_features_lms" if stored else _LABEL_FEATURES)
        with connection(source) as con:
            if not stored:
                _features_for_labels(con)
            try:
                return con.sql(sql + " ORDER BY person_id, section_id, week").df()
            finally:
                con.execute(f"DROP TABLE IF EXISTS {_LABEL_FEATURES}")
    if kind == "k12":
        return build_k12_labels(source)
    raise InvalidInput(f"unknown label kind {kind!r}; expected 'lms' or 'k12'")


def _features_for_labels(con: duckdb.DuckDBPyConnection) -> None:
    """The LMS feature columns the labels read, built into a temporary table of ``con``."""
    keep = ["person_id", "section_id", "week", "current_grade", "page_views", "participations"]
    keep.append("assignments_missing")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_LABEL_FEATURES} (person_id VARCHAR, section_id VARCHAR, "
        "week SMALLINT, current_grade DOUBLE, page_views INTEGER, participations INTEGER, "
        "assignments_missing INTEGER)"
    )
    with closing(lms_feature_batches(con)) as batches:
        for batch in batches:
            con.from_arrow(batch.select(keep)).insert_into(_LABEL_FEATURES)


def store_labels(
    warehouse: Warehouse,
    *,
    kinds: tuple[Literal["lms", "k12"], ...] = ("lms", "k12"),
    horizon: int = DEFAULT_HORIZON_WEEKS,
) -> dict[str, int]:
    """Rebuild ``labels_lms`` and/or ``labels_k12`` in the warehouse (idempotent).

    LMS labels are computed in SQL from the stored ``weekly_features_lms`` table, so run
    :func:`~edsight.features.weekly.store_features` first (``edsight features build`` does);
    features stored with ``as_of`` give labels only for weeks whose ``horizon`` next weeks
    were stored. Returns rows written per table.

    Raises:
        InvalidInput: on an unknown kind or a bad horizon.
    """
    unknown = [k for k in kinds if k not in ("lms", "k12")]
    if unknown:
        raise InvalidInput(f"unknown label kinds {unknown}; expected 'lms' and/or 'k12'")
    sql = {"lms": lms_labels_sql(horizon), "k12": K12_LABELS_SQL}
    counts: dict[str, int] = {}
    with warehouse.connect() as con:
        con.execute(CANONICAL["weekly_features_lms"].ddl())
        for kind in kinds:
            table = f"labels_{kind}"
            counts[table] = replace_table(con, table, con.sql(sql[kind]))
    logger.info("stored labels: %s", counts)
    return counts
