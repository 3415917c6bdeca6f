"""Canonical district tables -> the files an SIS would export: OneRoster CSV, attendance, discipline.

Used to test the SIS connectors end to end and to benchmark them on a generated
district (:func:`edsight.synth.district.generate_district`): the canonical tables go
out in the source formats and must come back in unchanged. Source ids are the
canonical ids (``SCH001``, ``S00000001``, ...), so the mapping back is checkable.
"""

from __future__ import annotations

import csv
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

from edsight.ingest._oneroster_common import value_case
from edsight.ingest._oneroster_tables import OTHER_FILES, declared_columns, files_for

DEFAULT_MODIFIED = "2024-07-01T00:00:00.000Z"
# A canonical grade level as a CEDS grade code.
_GRADE_MACRO = (
    "CREATE MACRO ceds_grade(g) AS CASE WHEN g IS NULL THEN NULL WHEN g < 0 THEN 'PK' WHEN g = 0 THEN 'KG' "
    "WHEN g >= 13 THEN 'PS' ELSE lpad(CAST(g AS VARCHAR), 2, '0') END"
)
_NEEDED = (
    "organization",
    "term",
    "person",
    "student_demographics",
    "school_enrollment",
    "course",
    "section",
    "enrollment",
)

_QUERIES_COMMON = {
    "orgs": """
        SELECT org_id AS sourcedId, 'active' AS status, $modified AS dateLastModified, name,
               CASE org_type WHEN 'institution' THEN 'school' ELSE org_type END AS type,
               org_id AS identifier, parent_org_id AS parentSourcedId
        FROM organization ORDER BY org_id""",
    "academicSessions": """
        SELECT term_id AS sourcedId, 'active' AS status, $modified AS dateLastModified, name AS title,
               CASE term_type WHEN 'school_year' THEN 'schoolYear' WHEN 'grading_period' THEN 'gradingPeriod'
                    ELSE term_type END AS type,
               start_date AS startDate, end_date AS endDate, parent_term_id AS parentSourcedId,
               CAST(school_year + 1 AS VARCHAR) AS schoolYear
        FROM term ORDER BY term_id""",
    "courses": """
        SELECT course_id AS sourcedId, 'active' AS status, $modified AS dateLastModified, title,
               course_id AS courseCode,
               array_to_string(list_transform(range(grade_low, grade_high + 1),
                   lambda g: ceds_grade(g)), ',') AS grades,
               (SELECT min(org_id) FROM organization WHERE org_type = 'district') AS orgSourcedId,
               subject AS subjects
        FROM course ORDER BY course_id""",
    "classes": """
        SELECT s.section_id AS sourcedId, 'active' AS status, $modified AS dateLastModified,
               c.title AS title, array_to_string(list_transform(range(c.grade_low, c.grade_high + 1),
                   lambda g: ceds_grade(g)), ',') AS grades,
               s.course_id AS courseSourcedId, s.section_id AS classCode, 'scheduled' AS classType,
               s.school_id AS schoolSourcedId, s.term_id AS termSourcedIds, c.subject AS subjects
        FROM section s JOIN course c USING (course_id) ORDER BY s.section_id""",
    "demographics": """
        SELECT d.person_id AS sourcedId, 'active' AS status, $modified AS dateLastModified,
               p.birth_date AS birthDate,
               CASE d.sex WHEN 'M' THEN 'male' WHEN 'F' THEN 'female'
                    WHEN 'X' THEN (CASE WHEN $version = '1.2' THEN 'other' END) END AS sex,
               CAST(d.race_ethnicity = 'american_indian' AS VARCHAR) AS americanIndianOrAlaskaNative,
               CAST(d.race_ethnicity = 'asian' AS VARCHAR) AS asian,
               CAST(d.race_ethnicity = 'black' AS VARCHAR) AS blackOrAfricanAmerican,
               CAST(d.race_ethnicity = 'pacific_islander' AS VARCHAR) AS nativeHawaiianOrOtherPacificIslander,
               CAST(d.race_ethnicity = 'white' AS VARCHAR) AS white,
               CAST(d.race_ethnicity = 'multiracial' AS VARCHAR) AS demographicRaceTwoOrMoreRaces,
               CAST(d.race_ethnicity = 'hispanic' AS VARCHAR) AS hispanicOrLatinoEthnicity
        FROM student_demographics d JOIN person p USING (person_id) ORDER BY d.person_id""",
    "enrollments": """
        SELECT e.section_id || '-' || e.person_id || '-' || e.role AS sourcedId, 'active' AS status,
               $modified AS dateLastModified, e.section_id AS classSourcedId, s.school_id AS schoolSourcedId,
               e.person_id AS userSourcedId,
               CASE e.role WHEN 'aide' THEN (CASE WHEN $version = '1.2' THEN 'proctor' ELSE 'aide' END)
                    WHEN 'observer' THEN 'parent' ELSE e.role END AS role,
               CASE WHEN e.role = 'teacher' THEN 'true' END AS "primary",
               e.start_date AS beginDate, e.end_date AS endDate
        FROM enrollment e JOIN section s USING (section_id) ORDER BY 1""",
}

# Schools of each person: students by school enrollment, staff by the sections they teach.
_PERSON_ORGS = """
    CREATE TEMP TABLE person_orgs AS
    SELECT person_id, school_id, row_number() OVER (PARTITION BY person_id ORDER BY school_id) AS n FROM (
        SELECT DISTINCT person_id, school_id FROM school_enrollment
        UNION SELECT DISTINCT e.person_id, s.school_id FROM enrollment e JOIN section s USING (section_id)
            WHERE e.role <> 'student')"""
_USERS = """
    SELECT p.person_id AS sourcedId, 'active' AS status, $modified AS dateLastModified,
           'true' AS enabledUser,
           coalesce(o.orgs, (SELECT min(org_id) FROM organization WHERE org_type = 'district'))
               AS orgSourcedIds,
           CASE WHEN p.role IN ('counselor', 'principal') AND $version = '1.1' THEN 'administrator'
                ELSE p.role END AS role,
           lower(p.person_id) AS username, p.given_name AS givenName, p.family_name AS familyName,
           p.local_id AS identifier, ceds_grade(g.grade_level) AS grades,
           o.first_org AS primaryOrgSourcedId
    FROM person p
    LEFT JOIN (SELECT person_id, string_agg(school_id, ',' ORDER BY school_id) AS orgs,
                      min(school_id) AS first_org FROM person_orgs GROUP BY person_id) o USING (person_id)
    LEFT JOIN (SELECT person_id, arg_max(grade_level, school_year) AS grade_level FROM school_enrollment
               GROUP BY person_id) g USING (person_id)
    ORDER BY p.person_id"""
_ROLES = """
    SELECT u.sourcedId || '-' || o.school_id AS sourcedId, 'active' AS status, $modified AS dateLastModified,
           u.sourcedId AS userSourcedId, CASE WHEN o.n = 1 THEN 'primary' ELSE 'secondary' END AS roleType,
           u.role, o.school_id AS orgSourcedId
    FROM users u JOIN person_orgs o ON o.person_id = u.sourcedId
    UNION ALL
    SELECT u.sourcedId || '-' || u.orgSourcedIds, 'active', $modified, u.sourcedId, 'primary', u.role,
           u.orgSourcedIds
    FROM users u WHERE u.sourcedId NOT IN (SELECT person_id FROM person_orgs)
    ORDER BY 1"""


def _connect(tables: Mapping[str, pd.DataFrame], needed: tuple[str, ...]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:", config={"enable_external_access": False})
    con.execute(_GRADE_MACRO)
    for name in needed:
        if name not in tables:
            raise ValueError(f"missing district table {name!r}")
        con.register(name, pa.Table.from_pandas(tables[name], preserve_index=False))
    return con


def _query(con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, object]) -> pa.Table:
    """Run one export query with the named parameters it uses."""
    used = {k: v for k, v in params.items() if f"${k}" in sql}
    return con.sql(sql, params=used).to_arrow_table()


def _write(table: pa.Table, path: Path) -> None:
    pcsv.write_csv(table, path, pcsv.WriteOptions(quoting_style="needed"))


def _fit(table: pa.Table, name: str, version: str) -> pa.Table:
    """Keep the columns the binding has for ``name``, in its order."""
    declared = declared_columns(name, version)
    return table.select([c for c in declared if c in table.column_names])


def write_oneroster(
    tables: Mapping[str, pd.DataFrame],
    out: Path,
    *,
    version: Literal["1.1", "1.2"] = "1.1",
    mode: Literal["bulk", "delta"] = "bulk",
    modified: str | None = DEFAULT_MODIFIED,
    system_code: str = "edsight-synth",
) -> Path:
    """Write canonical district tables as a OneRoster CSV package (a folder, or a zip if ``out`` ends .zip).

    ``modified`` fills ``dateLastModified`` (``None`` leaves it blank, as bulk files may).
    Returns ``out``.
    """
    out = Path(out)
    params = {"modified": modified, "version": version}
    con = _connect(tables, _NEEDED)
    try:
        with tempfile.TemporaryDirectory(prefix="edsight-or-export-") as tmp:
            folder = Path(tmp) if out.suffix == ".zip" else out
            folder.mkdir(parents=True, exist_ok=True)
            con.execute(_PERSON_ORGS)
            users = _query(con, _USERS, params)
            con.register("users", users)
            written = {name: _query(con, sql, params) for name, sql in _QUERIES_COMMON.items()}
            written["users"] = users
            if version == "1.2":
                written["roles"] = _query(con, _ROLES, params)
            for name, table in written.items():
                _write(_fit(table, name, version), folder / f"{name}.csv")
            _write_manifest(folder / "manifest.csv", version, mode, set(written), system_code)
            if out.suffix == ".zip":
                out.parent.mkdir(parents=True, exist_ok=True)
                with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
                    for path in sorted(folder.iterdir()):
                        zf.write(path, path.name)
    finally:
        con.close()
    return out


def _write_manifest(path: Path, version: str, mode: str, written: set[str], system_code: str) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["propertyName", "value"])
        writer.writerow(["manifest.version", "1.0"])
        writer.writerow(["oneroster.version", version])
        for name in (*files_for(version), *OTHER_FILES[:6]):
            writer.writerow([f"file.{name}", mode if name in written else "absent"])
        writer.writerow(["source.systemName", "edsight synthetic district"])
        writer.writerow(["source.systemCode", system_code])


EDFI_ATTENDANCE = {
    "absent_excused": "Excused Absence",
    "absent_unexcused": "Unexcused Absence",
    "tardy": "Tardy",
    "present": "In Attendance",
}
EDFI_BEHAVIOR = {
    "state_offense": "State Offense",
    "major": "School Violation",
    "minor": "School Code of Conduct",
}


def write_attendance_csv(
    tables: Mapping[str, pd.DataFrame], path: Path, *, vocabulary: Literal["edfi", "edsight"] = "edfi"
) -> int:
    """Write the district's attendance in the attendance file layout; return the rows written."""
    con = _connect(tables, ("person", "attendance"))
    try:
        status = value_case("a.status", EDFI_ATTENDANCE) if vocabulary == "edfi" else "a.status"
        table = con.sql(
            f"SELECT p.local_id AS student_id, a.school_id, a.date, {status} AS status "  # noqa: S608
            "FROM attendance a JOIN person p USING (person_id) ORDER BY a.date, p.local_id"
        ).to_arrow_table()
    finally:
        con.close()
    _write(table, Path(path))
    return table.num_rows


def write_discipline_csv(tables: Mapping[str, pd.DataFrame], path: Path) -> int:
    """Write the district's discipline incidents in the discipline file layout (Ed-Fi behaviors)."""
    con = _connect(tables, ("person", "discipline"))
    try:
        behavior = value_case("d.severity", EDFI_BEHAVIOR)
        table = con.sql(
            f"SELECT d.incident_id, p.local_id AS student_id, d.school_id, d.date, {behavior} AS behavior "  # noqa: S608
            "FROM discipline d JOIN person p USING (person_id) ORDER BY d.date, d.incident_id"
        ).to_arrow_table()
    finally:
        con.close()
    _write(table, Path(path))
    return table.num_rows
