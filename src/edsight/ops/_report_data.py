"""Reading the warehouse for reports: the scope (school or district), risk bands, ABC indicators,
the score frames of the statistics. SQL runs in DuckDB on a read-only connection; only
aggregates and the analysis frames the statistics need come back to Python."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import pandas as pd

from edsight.errors import InvalidInput

log = logging.getLogger(__name__)

#: Probability bands of the risk overview (the same cut-offs as the narratives and the web app).
FLAG_THRESHOLD = 0.5
ELEVATED_THRESHOLD = 0.25
BANDS: tuple[str, ...] = ("high", "elevated", "low")

UNKNOWN_SCHOOL = "unknown school {org_id!r}: no organization of type school with that id (known: {known})"
UNKNOWN_DISTRICT = (
    "unknown district {org_id!r}: no organization of type district with that id (known: {known})"
)
SEVERAL_DISTRICTS = "the warehouse holds several districts ({known}): pass --district"
NO_SCHOOLS = "no schools in the warehouse: load organization rows first"
SCHOOL_TYPES = ("school", "institution")


@dataclass(frozen=True)
class Scope:
    """Who a report is about and when: its schools and the school year of ``as_of``."""

    kind: str
    org_id: str
    name: str
    schools: dict[str, str]  # school org_id -> name
    as_of: date
    school_year: int | None
    effective: date  # the day whose enrolment counts: as_of, or the year's last day after it ended


def _known(con: duckdb.DuckDBPyConnection, types: tuple[str, ...]) -> str:
    rows = con.execute(
        "SELECT org_id FROM organization WHERE list_contains(?, org_type) ORDER BY org_id LIMIT 11",
        [list(types)],
    ).fetchall()
    names = [str(r[0]) for r in rows[:10]] + (["..."] if len(rows) > 10 else [])
    return ", ".join(names) or "none"


def _year(con: duckdb.DuckDBPyConnection, as_of: date) -> tuple[int | None, date]:
    row = con.execute(
        """SELECT school_year, end_date FROM term WHERE term_type = 'school_year' AND start_date <= ?
           ORDER BY start_date DESC LIMIT 1""",
        [as_of],
    ).fetchone()
    if row is None:
        return None, as_of
    return int(row[0]), min(as_of, row[1])


def resolve_scope(con: duckdb.DuckDBPyConnection, kind: str, org_id: str | None, as_of: date | None) -> Scope:
    """Check the organization and find its schools; unknown ids raise :class:`InvalidInput`."""
    day = as_of or date.today()
    year, effective = _year(con, day)
    if kind == "school":
        row = con.execute(
            "SELECT org_id, name FROM organization WHERE org_id = ? AND list_contains(?, org_type)",
            [org_id, list(SCHOOL_TYPES)],
        ).fetchone()
        if row is None:
            raise InvalidInput(UNKNOWN_SCHOOL.format(org_id=org_id, known=_known(con, SCHOOL_TYPES)))
        return Scope("school", str(row[0]), str(row[1]), {str(row[0]): str(row[1])}, day, year, effective)
    if org_id is None:
        districts = con.execute(
            "SELECT org_id, name FROM organization WHERE org_type = 'district'"
        ).fetchall()
        if len(districts) > 1:
            raise InvalidInput(SEVERAL_DISTRICTS.format(known=_known(con, ("district",))))
        if not districts:
            schools = con.execute(
                "SELECT org_id, name FROM organization WHERE list_contains(?, org_type) ORDER BY org_id",
                [list(SCHOOL_TYPES)],
            ).fetchall()
            if not schools:
                raise InvalidInput(NO_SCHOOLS)
            return Scope(
                "district", "all", "All schools", {str(a): str(b) for a, b in schools}, day, year, effective
            )
        org_id = str(districts[0][0])
    row = con.execute(
        "SELECT org_id, name FROM organization WHERE org_id = ? AND org_type = 'district'", [org_id]
    ).fetchone()
    if row is None:
        raise InvalidInput(UNKNOWN_DISTRICT.format(org_id=org_id, known=_known(con, ("district",))))
    schools = con.execute(
        """SELECT org_id, name FROM organization WHERE parent_org_id = ? AND list_contains(?, org_type)
           ORDER BY org_id""",
        [org_id, list(SCHOOL_TYPES)],
    ).fetchall()
    return Scope(
        "district", str(row[0]), str(row[1]), {str(a): str(b) for a, b in schools}, day, year, effective
    )


def _current_students_sql() -> str:
    """``cur(person_id, school_id)``: students of the scope's schools on the effective day.

    K-12 enrolment windows when the school has any; otherwise (an LMS institution) students of
    its sections whose term has begun, taking the latest such terms.
    """
    return """
    k12 AS (
        SELECT DISTINCT person_id, school_id FROM school_enrollment
        WHERE list_contains($schools, school_id) AND school_year = $year
          AND entry_date <= $eff AND (exit_date IS NULL OR exit_date >= $eff)),
    lms_terms AS (
        SELECT s.school_id, s.section_id, t.start_date,
               max(t.start_date) OVER (PARTITION BY s.school_id) AS latest
        FROM section s JOIN term t USING (term_id)
        WHERE list_contains($schools, s.school_id) AND t.start_date <= $as_of
          AND s.school_id NOT IN (SELECT school_id FROM school_enrollment)),
    lms AS (
        SELECT DISTINCT e.person_id, lt.school_id FROM enrollment e JOIN lms_terms lt USING (section_id)
        WHERE e.role = 'student' AND (lt.start_date = lt.latest)),
    cur AS (SELECT * FROM k12 UNION SELECT * FROM lms)"""


def _params(scope: Scope) -> dict[str, Any]:
    return {
        "schools": list(scope.schools),
        "year": scope.school_year if scope.school_year is not None else -1,
        "eff": scope.effective,
        "as_of": scope.as_of,
    }


def enrolled_counts(con: duckdb.DuckDBPyConnection, scope: Scope) -> pd.DataFrame:
    """Students per school on the effective day: school_id, n."""
    sql = (
        f"WITH {_current_students_sql()} SELECT school_id, count(DISTINCT person_id) AS n FROM cur GROUP BY 1"  # noqa: S608
    )
    return con.execute(sql, _params(scope)).df()


def risk_bands(con: duckdb.DuckDBPyConnection, scope: Scope) -> tuple[pd.DataFrame, date | None]:
    """Latest score per student and target (by ``as_of``), counted by school, target and band.

    Rows: school_id, target, band, n; target ``any`` is the student's highest probability over
    all targets. Also returns the latest scoring date used. Section-level (LMS) scores count at
    the school of the section's student; several sections of one student keep the highest.
    """
    sql = f"""WITH {_current_students_sql()},
    daily AS (
        SELECT person_id, target, as_of, max(probability) AS p FROM risk_score
        WHERE as_of <= $as_of AND person_id IN (SELECT person_id FROM cur)
        GROUP BY person_id, target, as_of),
    latest AS (
        SELECT * FROM daily
        QUALIFY row_number() OVER (PARTITION BY person_id, target ORDER BY as_of DESC) = 1),
    per AS (SELECT person_id, target, p FROM latest
            UNION ALL SELECT person_id, 'any', max(p) FROM latest GROUP BY person_id)
    SELECT cur.school_id, per.target,
           CASE WHEN per.p >= {FLAG_THRESHOLD} THEN 'high'
                WHEN per.p >= {ELEVATED_THRESHOLD} THEN 'elevated' ELSE 'low' END AS band,
           count(*) AS n
    FROM per JOIN cur USING (person_id) GROUP BY ALL"""  # noqa: S608 (constants only; values are bound)
    params = _params(scope)
    frame = con.execute(sql, params).df()
    row = con.execute(
        f"WITH {_current_students_sql()} SELECT max(as_of) FROM risk_score WHERE as_of <= $as_of "  # noqa: S608
        "AND person_id IN (SELECT person_id FROM cur)",
        params,
    ).fetchone()
    return frame, (row[0] if row else None)


def abc_indicators(con: duckdb.DuckDBPyConnection, scope: Scope) -> pd.DataFrame:
    """ABC indicators of each student's latest complete week of the year, per school.

    Columns: school_id, week_end, n, attendance_lt90, attendance_lt80, chronic_absence,
    course_failure, behavior (shares of students), n_grade9, on_track (share of 9th graders
    with an on-track value).
    """
    sql = """WITH k AS (
        SELECT * FROM weekly_features_k12
        WHERE list_contains($schools, school_id) AND school_year = $year AND week_end <= $as_of
        QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY week DESC) = 1)
    SELECT school_id, max(week_end) AS week_end, count(*) AS n,
           avg(abc_attendance_lt90::INT) AS attendance_lt90, avg(abc_attendance_lt80::INT) AS attendance_lt80,
           avg(chronic_absence::INT) AS chronic_absence, avg(abc_course_failure::INT) AS course_failure,
           avg(abc_behavior::INT) AS behavior,
           count(on_track_grade9) AS n_grade9, avg(on_track_grade9::INT) AS on_track
    FROM k GROUP BY 1 ORDER BY 1"""
    params = {k: v for k, v in _params(scope).items() if k != "eff"}
    return con.execute(sql, params).df()


def pick_assessment(con: duckdb.DuckDBPyConnection, as_of: date) -> str | None:
    """The state test when there is one, else the assessment with most results by ``as_of``."""
    rows = con.execute(
        """SELECT assessment, count(*) AS n FROM assessment_result WHERE test_date <= ?
           GROUP BY 1 ORDER BY (assessment = 'state_test') DESC, n DESC LIMIT 1""",
        [as_of],
    ).fetchall()
    return str(rows[0][0]) if rows else None


def score_tables(con: duckdb.DuckDBPyConnection, assessment: str, as_of: date) -> dict[str, pd.DataFrame]:
    """The canonical tables the gap, growth and trend frames are built from, tests up to ``as_of``."""
    return {
        "assessment_result": con.execute(
            "SELECT * FROM assessment_result WHERE assessment = ? AND test_date <= ?", [assessment, as_of]
        ).df(),
        "student_demographics": con.sql("SELECT * FROM student_demographics").df(),
        "school_enrollment": con.sql(
            "SELECT person_id, school_id, school_year, entry_date, exit_date FROM school_enrollment"
        ).df(),
    }


def vam_tables(con: duckdb.DuckDBPyConnection, assessment_rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The tables :func:`edsight.stats.vam.vam_frame_from_tables` reads (scores already cut at as-of)."""
    return {
        "assessment_result": assessment_rows,
        "section": con.sql("SELECT section_id, course_id, term_id, school_id FROM section").df(),
        "course": con.sql("SELECT course_id, subject FROM course").df(),
        "enrollment": con.sql(
            "SELECT section_id, person_id, role, start_date, end_date FROM enrollment "
            "WHERE role IN ('student', 'teacher')"
        ).df(),
        "term": con.sql("SELECT term_id, school_year, end_date FROM term").df(),
        "student_demographics": con.sql("SELECT * FROM student_demographics").df(),
    }
