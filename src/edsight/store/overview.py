"""Aggregate facts about what the warehouse holds (no student-level rows leave here)."""

from __future__ import annotations

from typing import Any

import duckdb

from edsight.sql import scalar

# Chronic absence: missed >= 10% of the instructional days a student was enrolled,
# counted against the calendar (sources send absences only, so presence is implied).
CHRONIC_ABSENCE_THRESHOLD = 0.10

_ENROLLED_DAYS = """
    SELECT e.person_id, e.school_year, count(*) AS days
    FROM school_enrollment e
    JOIN organization o ON o.org_id = e.school_id
    JOIN calendar c ON c.school_year = e.school_year
        AND c.org_id IN (e.school_id, o.parent_org_id)
        AND c.date >= e.entry_date AND (e.exit_date IS NULL OR c.date <= e.exit_date)
    GROUP BY ALL
"""

_ABSENT_DAYS = """
    SELECT e.person_id, e.school_year, count(*) AS absent
    FROM attendance a
    JOIN school_enrollment e ON e.person_id = a.person_id AND a.school_id = e.school_id
        AND a.date >= e.entry_date AND (e.exit_date IS NULL OR a.date <= e.exit_date)
    WHERE a.status IN ('absent_excused', 'absent_unexcused')
    GROUP BY ALL
"""


def district_overview(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Headline figures per school year: enrolment, chronic absence, proficiency, graduation."""
    out: dict[str, Any] = {
        "students": scalar(con, "SELECT count(*) FROM person WHERE role = 'student'"),
        "schools": scalar(con, "SELECT count(*) FROM organization WHERE org_type = 'school'"),
        "sections": scalar(con, "SELECT count(*) FROM section"),
    }
    years: dict[int, dict[str, Any]] = {}
    for year, enrolled in con.execute(
        "SELECT school_year, count(DISTINCT person_id) FROM school_enrollment GROUP BY 1 ORDER BY 1"
    ).fetchall():
        years[int(year)] = {"enrolled": int(enrolled)}
    chronic = con.execute(
        f"SELECT d.school_year, avg(CASE WHEN coalesce(a.absent, 0) >= "
        f"{CHRONIC_ABSENCE_THRESHOLD} * d.days THEN 1.0 ELSE 0.0 END) "
        f"FROM ({_ENROLLED_DAYS}) d LEFT JOIN ({_ABSENT_DAYS}) a USING (person_id, school_year) "
        "WHERE d.days > 0 GROUP BY 1"
    ).fetchall()
    for year, share in chronic:
        years.setdefault(int(year), {})["chronic_absence"] = round(float(share), 4)
    proficiency = con.execute(
        "SELECT school_year, subject, avg(CASE WHEN perf_level >= 3 THEN 1.0 ELSE 0.0 END) "
        "FROM assessment_result WHERE perf_level IS NOT NULL GROUP BY 1, 2"
    ).fetchall()
    for year, subject, share in proficiency:
        years.setdefault(int(year), {})[f"proficient_{subject}"] = round(float(share), 4)
    out["years"] = years
    # Four-year adjusted cohort graduation rate, only for cohorts seen from grade 9 to
    # their expected graduation year; transfers out leave the denominator, students
    # still enrolled stay in it as non-graduates.
    graduation = con.execute(
        "WITH window_years AS (SELECT min(school_year) AS first, max(school_year) AS last "
        "FROM school_enrollment) "
        "SELECT cohort_year, count(*) AS n, "
        "avg(CASE WHEN outcome = 'graduated' THEN 1.0 ELSE 0.0 END) "
        "FROM student_outcome, window_years WHERE outcome <> 'transferred_out' "
        "AND cohort_year - 3 >= first AND cohort_year <= last GROUP BY 1 ORDER BY 1"
    ).fetchall()
    out["graduation_rate_by_cohort"] = {
        int(year): {"students": int(n), "rate": round(float(rate), 4)} for year, n, rate in graduation
    }
    return out


def lms_overview(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Submission and lateness rates and activity volume of the LMS tables."""
    row = con.execute(
        "SELECT count(*), avg(CASE WHEN submitted_at IS NOT NULL THEN 1.0 ELSE 0.0 END), "
        "avg(CASE WHEN late THEN 1.0 ELSE 0.0 END) FILTER (WHERE submitted_at IS NOT NULL) "
        "FROM submission"
    ).fetchall()[0]
    return {
        "submissions": int(row[0]),
        "submission_rate": None if row[1] is None else round(float(row[1]), 4),
        "late_among_submitted": None if row[2] is None else round(float(row[2]), 4),
        "activity_rows": scalar(con, "SELECT count(*) FROM lms_activity"),
    }
