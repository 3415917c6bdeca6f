"""Aggregates behind the dashboards and the gap/trend tables, as SQL that runs on any engine.

Each aggregate is one DuckDB query over declared tables (plus, for risk, a scores table named
``k12_risk_scores``); :func:`aggregate` runs it on an :class:`~edsight.store.engine.Engine`, so
DuckDB and Spark compute the same cells. Integer sums are cast to BIGINT (DuckDB would give
HUGEINT, Spark BIGINT) so both engines return the same column types. Every row carries its
``n`` so that small-cell suppression (:mod:`edsight.governance.suppression`) can be applied
before anything is shown to a role without student-level access; these functions do not
suppress.

* ``abc_indicators``: per school, school year and grade, the ABC early-warning indicators
  (attendance, behaviour, course failure) at each student's latest feature week that ended by
  ``$as_of`` (the whole year when ``as_of`` is None);
* ``scale_scores``: mean and standard deviation of scale scores by school, school year,
  subject, assessment and subgroup (the long input of gap and trend analyses); each score is
  credited to the school whose enrolment window holds the test date, null when none does;
* ``risk_distribution``: per school, school year and target, how many students fall in the
  low / middle / high bands of a scored probability (``$low`` and ``$high`` cut-offs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edsight.errors import InvalidInput
from edsight.store.engine import Engine, Relation

__all__ = ["AGGREGATES", "RISK_SCORES_VIEW", "Aggregate", "aggregate"]

RISK_SCORES_VIEW = "k12_risk_scores"
ERR_UNKNOWN = "unknown aggregate {0!r}; expected one of {1}"
ERR_PARAM = "aggregate {0!r} takes parameters {1}; got {2}"

# The latest week per student and year by a window, not a self-join: one pass over the table
# on both engines (Spark would otherwise broadcast the per-student maxima).
ABC_INDICATORS_SQL = """
WITH known AS (
    SELECT *, max(week) OVER (PARTITION BY person_id, school_year) AS last_week
    FROM weekly_features_k12
    WHERE CAST($as_of AS DATE) IS NULL OR week_end <= CAST($as_of AS DATE)
)
SELECT school_id, school_year, grade_level,
       count(*) AS n_students,
       avg(attendance_rate) AS mean_attendance_rate,
       avg(CAST(chronic_absence AS DOUBLE)) AS chronic_absence_rate,
       avg(CAST(abc_attendance_lt90 AS DOUBLE)) AS attendance_lt90_rate,
       avg(CAST(abc_attendance_lt80 AS DOUBLE)) AS attendance_lt80_rate,
       avg(CAST(abc_behavior AS DOUBLE)) AS behavior_rate,
       avg(CAST(abc_course_failure AS DOUBLE)) AS course_failure_rate,
       CAST(sum(CAST(coalesce(abc_attendance_lt90, false) OR abc_behavior OR abc_course_failure
                     AS INTEGER)) AS BIGINT) AS n_any_indicator,
       count(on_track_grade9) AS n_on_track_evaluated,
       CAST(sum(CAST(on_track_grade9 AS INTEGER)) AS BIGINT) AS n_on_track
FROM known
WHERE week = last_week
GROUP BY school_id, school_year, grade_level
ORDER BY school_id, school_year, grade_level
"""

# One row per (score, subgroup dimension): 'all' plus the five protected attributes.
SCALE_SCORES_SQL = """
WITH placed AS (
    SELECT r.person_id, r.assessment, r.subject, r.school_year, r.test_date, r.scale_score,
           e.school_id,
           row_number() OVER (PARTITION BY r.person_id, r.assessment, r.subject, r.test_date
                              ORDER BY e.entry_date DESC, e.school_id) AS rn
    FROM assessment_result r
    LEFT JOIN school_enrollment e
      ON e.person_id = r.person_id AND e.school_year = r.school_year
     AND e.entry_date <= r.test_date AND (e.exit_date IS NULL OR e.exit_date >= r.test_date)
),
scores AS (
    SELECT p.school_id, p.school_year, p.subject, p.assessment, p.scale_score,
           d.sex, d.race_ethnicity,
           CAST(d.economically_disadvantaged AS VARCHAR) AS economically_disadvantaged,
           CAST(d.english_learner AS VARCHAR) AS english_learner,
           CAST(d.disability AS VARCHAR) AS disability
    FROM placed p LEFT JOIN student_demographics d ON d.person_id = p.person_id
    WHERE p.rn = 1 AND p.scale_score IS NOT NULL
),
long AS (
    SELECT school_id, school_year, subject, assessment, 'all' AS subgroup, 'all' AS subgroup_value,
           scale_score FROM scores
    UNION ALL
    SELECT school_id, school_year, subject, assessment, 'sex', sex, scale_score FROM scores
    UNION ALL
    SELECT school_id, school_year, subject, assessment, 'race_ethnicity', race_ethnicity, scale_score
    FROM scores
    UNION ALL
    SELECT school_id, school_year, subject, assessment, 'economically_disadvantaged',
           economically_disadvantaged, scale_score FROM scores
    UNION ALL
    SELECT school_id, school_year, subject, assessment, 'english_learner', english_learner, scale_score
    FROM scores
    UNION ALL
    SELECT school_id, school_year, subject, assessment, 'disability', disability, scale_score FROM scores
)
SELECT school_id, school_year, subject, assessment, subgroup, subgroup_value,
       count(*) AS n, avg(scale_score) AS mean_scale_score, stddev_samp(scale_score) AS sd_scale_score
FROM long
GROUP BY school_id, school_year, subject, assessment, subgroup, subgroup_value
ORDER BY school_id, school_year, subject, assessment, subgroup, subgroup_value
"""

RISK_DISTRIBUTION_SQL = f"""
SELECT school_id, school_year, target,
       count(*) AS n_students,
       avg(probability) AS mean_probability,
       CAST(count_if(probability < $low) AS BIGINT) AS n_low,
       CAST(count_if(probability >= $low AND probability < $high) AS BIGINT) AS n_middle,
       CAST(count_if(probability >= $high) AS BIGINT) AS n_high
FROM {RISK_SCORES_VIEW}
GROUP BY school_id, school_year, target
ORDER BY school_id, school_year, target
"""


@dataclass(frozen=True)
class Aggregate:
    """A named aggregate: its SQL, the columns that identify a row, and its parameters."""

    name: str
    sql: str
    keys: tuple[str, ...]
    tables: tuple[str, ...]
    defaults: Mapping[str, object] = field(default_factory=dict)


AGGREGATES: dict[str, Aggregate] = {
    a.name: a
    for a in (
        Aggregate(
            "abc_indicators",
            ABC_INDICATORS_SQL,
            ("school_id", "school_year", "grade_level"),
            ("weekly_features_k12",),
            {"as_of": None},
        ),
        Aggregate(
            "scale_scores",
            SCALE_SCORES_SQL,
            ("school_id", "school_year", "subject", "assessment", "subgroup", "subgroup_value"),
            ("assessment_result", "school_enrollment", "student_demographics"),
        ),
        Aggregate(
            "risk_distribution",
            RISK_DISTRIBUTION_SQL,
            ("school_id", "school_year", "target"),
            (RISK_SCORES_VIEW,),
            {"low": 0.2, "high": 0.5},
        ),
    )
}


def aggregate(engine: Engine, name: str, **params: object) -> Relation:
    """Run the named aggregate on ``engine``; ``params`` override its defaults.

    Raises:
        InvalidInput: on an unknown aggregate or parameter.
    """
    if name not in AGGREGATES:
        raise InvalidInput(ERR_UNKNOWN.format(name, sorted(AGGREGATES)))
    agg = AGGREGATES[name]
    unknown = sorted(set(params) - set(agg.defaults))
    if unknown:
        raise InvalidInput(ERR_PARAM.format(name, sorted(agg.defaults), unknown))
    return engine.sql(agg.sql, {**agg.defaults, **params})
