"""Canvas API source tables -> canonical relations, and which rows changed since the last sync.

Private to :mod:`edsight.ingest.canvas_api`. A Canvas course is one canonical course
and one canonical section (the offering that assignments, grades and activity belong
to); Canvas sections are kept in ``id_map`` (entity ``course_section``) pointing at it.
Ids derive from Canvas ids with :mod:`edsight.ingest.ids` (system ``canvas``), the same
derivation the Canvas files connector uses; SIS ids are mapped too (system
``canvas_sis``) so that other sources can link through them.

People follow the linking policy: a Canvas user already in ``id_map`` keeps its edsight
id; else a user whose ``sis_user_id`` is the ``local_id`` of exactly one person in the
warehouse (the SIS roster) becomes that person; else the id derives from the Canvas
user id and edsight owns the person row (with ``local_id`` = ``sis_user_id``). A
person owned by another source is never rewritten from Canvas.

SQL here is assembled only from names declared in :mod:`edsight.schema` and this
package's source declarations; values from Canvas travel as data in stage tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from edsight.ingest._canvas_api_schema import SOURCE_TABLES
from edsight.ingest.files import ROW_COL, RawTable
from edsight.ingest.ids import edsight_id_sql
from edsight.ingest.quarantine import BatchValidator
from edsight.schema import CANONICAL, load_order
from edsight.sql import quote_ident

SYSTEM = "canvas"
SIS_SYSTEM = "canvas_sis"
# Labels of id_map rows that come from the same source row as another id_map row; the
# suffix keeps (file, row) unique within the table, as the validator needs.
SIS_SUFFIX = " (sis id)"
SECTION_SUFFIX = " (section)"


class RelationSink(Protocol):
    """Where mapped relations go: a :class:`BatchValidator`, or the change detector."""

    def add_relation(self, table: str, relation_sql: str, label: str) -> None: ...


def _id(entity: str, expr: str) -> str:
    return edsight_id_sql(SYSTEM, entity, expr)


def map_canvas_api(source: BatchValidator, target: RelationSink) -> None:
    """Add the canonical relations of the valid Canvas rows in ``source`` to ``target``."""
    have = set(source.reports)
    people = f"{source.prefix}_canvas_people"
    _resolve_people(source.con, have, source.stage, people)
    for table, sql, label in _relations(have, source.stage, people):
        target.add_relation(table, _only_new(table, sql), label)


def _only_new(table: str, relation_sql: str) -> str:
    """``relation_sql`` without the rows the warehouse already holds exactly (nothing to store)."""
    decl = CANONICAL[table]
    same = " AND ".join(
        f"m.{quote_ident(c.name)} IS NOT DISTINCT FROM CAST(r.{quote_ident(c.name)} AS {c.sql_type})"
        for c in decl.columns
    )
    return (
        f"SELECT * FROM ({relation_sql}) r "  # noqa: S608
        f"WHERE NOT EXISTS (SELECT 1 FROM main.{quote_ident(table)} m WHERE {same})"
    )


def _resolve_people(con: duckdb.DuckDBPyConnection, have: set[str], st: _Stage, people: str) -> None:
    parts = [
        f"SELECT {col} AS user_id, {sis} AS sis_user_id FROM {st(table)}"  # noqa: S608
        for table, col, sis in (
            ("canvas_users", "id", "sis_user_id"),
            ("canvas_enrollments", "user_id", "sis_user_id"),
            ("canvas_submissions", "user_id", "NULL"),
            ("canvas_activity", "user_id", "NULL"),
        )
        if table in have
    ]
    ids = (
        " UNION ALL ".join(parts) if parts else "SELECT NULL::BIGINT AS user_id, NULL::VARCHAR AS sis_user_id"
    )
    derived = _id("person", "o.user_id")
    resolved = f"coalesce(l.edsight_id, s.person_id, {derived})"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {people} AS "  # noqa: S608
        f"WITH ids AS ({ids}), "
        "one AS (SELECT user_id, max(sis_user_id) AS sis_user_id FROM ids WHERE user_id IS NOT NULL "
        "GROUP BY user_id), "
        "linked AS (SELECT source_id, any_value(edsight_id) AS edsight_id FROM main.id_map "
        f"WHERE source_system = '{SYSTEM}' AND entity = 'person' GROUP BY source_id), "
        "roster AS (SELECT local_id, any_value(person_id) AS person_id FROM main.person "
        "WHERE local_id IS NOT NULL GROUP BY local_id HAVING count(*) = 1) "
        f"SELECT o.user_id, {resolved} AS person_id, {resolved} = {derived} AS owned FROM one o "
        "LEFT JOIN linked l ON l.source_id = CAST(o.user_id AS VARCHAR) "
        "LEFT JOIN roster s ON s.local_id = o.sis_user_id"
    )


class _Stage(Protocol):
    def __call__(self, table: str) -> str: ...


def _relations(have: set[str], st: _Stage, people: str) -> Iterator[tuple[str, str, str]]:
    """(canonical table, SELECT, label) for every relation the present source tables give."""
    if "canvas_accounts" in have:
        yield (
            "organization",
            f"SELECT a.__file, a.__row, {_id('organization', 'a.id')} AS org_id, "  # noqa: S608
            "coalesce(a.name, 'Canvas account ' || a.id) AS name, 'institution' AS org_type, "
            "NULL::VARCHAR AS parent_org_id, NULL::VARCHAR AS school_level, "
            f"NULL::TINYINT AS grade_low, NULL::TINYINT AS grade_high FROM {st('canvas_accounts')} a",
            "accounts",
        )
    if "canvas_terms" in have:
        yield (
            "term",
            f"SELECT t.__file, t.__row, {_id('term', 't.id')} AS term_id, "  # noqa: S608
            "coalesce(t.name, 'Canvas term ' || t.id) AS name, 'term' AS term_type, "
            "CAST(CASE WHEN month(t.start_at) >= 7 THEN year(t.start_at) ELSE year(t.start_at) - 1 END "
            "AS SMALLINT) AS school_year, CAST(t.start_at AS DATE) AS start_date, "
            "CAST(t.end_at AS DATE) AS end_date, NULL::VARCHAR AS parent_term_id "
            f"FROM {st('canvas_terms')} t",
            "terms",
        )
    if "canvas_courses" in have:
        courses = st("canvas_courses")
        yield (
            "course",
            f"SELECT c.__file, c.__row, {_id('course', 'c.id')} AS course_id, "  # noqa: S608
            "coalesce(c.name, c.course_code, 'Canvas course ' || c.id) AS title, NULL::VARCHAR AS subject, "
            "NULL::TINYINT AS grade_low, NULL::TINYINT AS grade_high, NULL::DOUBLE AS credits "
            f"FROM {courses} c",
            "courses",
        )
        yield (
            "section",
            f"SELECT c.__file, c.__row, {_id('section', 'c.id')} AS section_id, "  # noqa: S608
            f"{_id('course', 'c.id')} AS course_id, {_id('term', 'c.enrollment_term_id')} AS term_id, "
            f"{_id('organization', 'c.account_id')} AS school_id FROM {courses} c",
            "courses",
        )
    if "canvas_users" in have:
        given = (
            "coalesce(u.first_name, CASE WHEN contains(u.sortable_name, ', ') "
            "THEN split_part(u.sortable_name, ', ', 2) END, u.name)"
        )
        family = (
            "coalesce(u.last_name, CASE WHEN contains(u.sortable_name, ', ') "
            "THEN split_part(u.sortable_name, ', ', 1) END)"
        )
        yield (
            "person",
            f"SELECT u.__file, u.__row, p.person_id, coalesce(u.role, 'student') AS role, "  # noqa: S608
            f"{given} AS given_name, {family} AS family_name, NULL::DATE AS birth_date, "
            "u.sis_user_id AS local_id, NULL::VARCHAR AS state_id, false AS directory_opt_out "
            f"FROM {st('canvas_users')} u JOIN {people} p ON p.user_id = u.id WHERE p.owned",
            "users",
        )
    if "canvas_enrollments" in have:
        enrollments = st("canvas_enrollments")
        role = (
            "CASE e.type WHEN 'StudentEnrollment' THEN 'student' WHEN 'TeacherEnrollment' THEN 'teacher' "
            "WHEN 'TaEnrollment' THEN 'aide' END"
        )
        # Inactive or deleted enrollments end when Canvas last changed them.
        end = (
            "CASE WHEN e.enrollment_state IN ('inactive', 'deleted') THEN coalesce(e.end_at, e.updated_at) "
            "ELSE coalesce(e.end_at, e.term_end_at) END"
        )
        yield (
            "enrollment",
            "SELECT __file, __row, section_id, person_id, role, start_date, end_date FROM ("  # noqa: S608
            f"SELECT e.__file, e.__row, {_id('section', 'e.course_id')} AS section_id, p.person_id, "
            f"{role} AS role, "
            "CAST(coalesce(e.start_at, e.created_at, e.term_start_at) AS DATE) AS start_date, "
            f"CAST({end} AS DATE) AS end_date FROM {enrollments} e JOIN {people} p ON p.user_id = e.user_id) "
            "WHERE role IS NOT NULL "
            "QUALIFY row_number() OVER (PARTITION BY section_id, person_id, role ORDER BY __file, __row) = 1",
            "enrollments",
        )
        yield (
            "course_grade",
            f"SELECT e.__file, e.__row, p.person_id, {_id('section', 'e.course_id')} AS section_id, "  # noqa: S608
            f"{_id('term', 'e.term_id')} AS term_id, e.current_score AS numeric_grade, "
            "e.current_grade AS letter_grade, NULL::DOUBLE AS credits_attempted, "
            "NULL::DOUBLE AS credits_earned "
            f"FROM {enrollments} e JOIN {people} p ON p.user_id = e.user_id "
            "WHERE e.type = 'StudentEnrollment' "
            "AND (e.current_score IS NOT NULL OR e.current_grade IS NOT NULL) "
            "QUALIFY row_number() OVER (PARTITION BY e.course_id, e.user_id ORDER BY e.__file, e.__row) = 1",
            "enrollments",
        )
    if "canvas_assignments" in have:
        kind = (
            "CASE WHEN x.quiz_id IS NOT NULL OR contains(coalesce(x.submission_types, ''), 'online_quiz') "
            "THEN 'quiz' WHEN contains(coalesce(x.submission_types, ''), 'discussion_topic') "
            "THEN 'discussion_topic' ELSE 'assignment' END"
        )
        yield (
            "assignment",
            f"SELECT x.__file, x.__row, {_id('assignment', 'x.id')} AS assignment_id, "  # noqa: S608
            f"{_id('section', 'x.course_id')} AS section_id, x.name AS title, {kind} AS assignment_type, "
            f"x.due_at, x.points_possible FROM {st('canvas_assignments')} x",
            "assignments",
        )
    if "canvas_submissions" in have:
        yield (
            "submission",
            f"SELECT s.__file, s.__row, {_id('assignment', 's.assignment_id')} AS assignment_id, "  # noqa: S608
            "p.person_id, s.submitted_at, coalesce(s.late, false) AS late, "
            "coalesce(s.missing, false) AS missing, coalesce(s.excused, false) AS excused, s.seconds_late, "
            "s.score, s.attempt, s.workflow_state "
            f"FROM {st('canvas_submissions')} s JOIN {people} p ON p.user_id = s.user_id",
            "submissions",
        )
    if "canvas_activity" in have:
        yield (
            "lms_activity",
            f"SELECT y.__file, y.__row, p.person_id, {_id('section', 'y.course_id')} AS section_id, "  # noqa: S608
            "y.hour AS period_start, 'hour' AS period, y.page_views, y.participations, "
            "NULL::TIMESTAMP AS last_activity_at "
            f"FROM {st('canvas_activity')} y JOIN {people} p ON p.user_id = y.user_id",
            "activity",
        )
    id_map = " UNION ALL ".join(_id_map_parts(have, st, people))
    if id_map:
        yield ("id_map", id_map, "id_map")


def _id_map_parts(have: set[str], st: _Stage, people: str) -> Iterator[str]:
    def part(
        table: str, suffix: str, system: str, entity: str, source_id: str, edsight_id: str, join: str = ""
    ) -> str:
        where = f" WHERE {source_id} IS NOT NULL"
        return (
            f"SELECT x.__file || '{suffix}' AS __file, x.__row, '{system}' AS source_system, "  # noqa: S608
            f"'{entity}' AS entity, CAST({source_id} AS VARCHAR) AS source_id, {edsight_id} AS edsight_id "
            f"FROM {st(table)} x{join}{where}"
        )

    if "canvas_accounts" in have:
        yield part("canvas_accounts", "", SYSTEM, "organization", "x.id", _id("organization", "x.id"))
    if "canvas_terms" in have:
        yield part("canvas_terms", "", SYSTEM, "term", "x.id", _id("term", "x.id"))
    if "canvas_courses" in have:
        yield part("canvas_courses", "", SYSTEM, "course", "x.id", _id("course", "x.id"))
        yield part("canvas_courses", SECTION_SUFFIX, SYSTEM, "section", "x.id", _id("section", "x.id"))
        yield part(
            "canvas_courses", SIS_SUFFIX, SIS_SYSTEM, "course", "x.sis_course_id", _id("course", "x.id")
        )
    if "canvas_sections" in have:
        section = _id("section", "x.course_id")
        yield part("canvas_sections", "", SYSTEM, "course_section", "x.id", section)
        yield part("canvas_sections", SIS_SUFFIX, SIS_SYSTEM, "course_section", "x.sis_section_id", section)
    if "canvas_users" in have:
        join = f" JOIN {people} p ON p.user_id = x.id"
        yield part("canvas_users", "", SYSTEM, "person", "x.id", "p.person_id", join)
        yield part("canvas_users", SIS_SUFFIX, SIS_SYSTEM, "person", "x.sis_user_id", "p.person_id", join)
    if "canvas_assignments" in have:
        assignment = _id("assignment", "x.id")
        yield part("canvas_assignments", "", SYSTEM, "assignment", "x.id", assignment)
        yield part(
            "canvas_assignments", SIS_SUFFIX, SIS_SYSTEM, "assignment", "x.sis_assignment_id", assignment
        )


# -- what changed since the last sync ------------------------------------------------------


@dataclass
class _Collector:
    """A RelationSink that keeps the relations, to compare them with the warehouse."""

    relations: list[tuple[str, str]] = field(default_factory=list)

    def add_relation(self, table: str, relation_sql: str, label: str) -> None:
        self.relations.append((table, relation_sql))


def unchanged_rows(con: duckdb.DuckDBPyConnection, tables: dict[str, list[RawTable]]) -> dict[str, set[int]]:
    """Rows (by label) that would store nothing new: every canonical row they map to is stored already.

    Runs the source validation and the mapping on ``con`` (a read-only warehouse
    connection; only temp tables are written). Rows the validation rejects are never
    unchanged, so they are reported again by the real load.
    """
    source = BatchValidator(con, SOURCE_TABLES, prefix="cvd")
    for table in load_order(SOURCE_TABLES, tables):
        for raw in tables[table]:
            source.add_file(table, raw)
    source.run()
    collector = _Collector()
    map_canvas_api(source, collector)
    changed = "cvd_changed"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {changed} (__file VARCHAR, __row BIGINT)")
    strip = "regexp_replace(r.__file, ' \\((sis id|section)\\)$', '')"
    for _table, sql in collector.relations:
        con.execute(f"INSERT INTO {changed} SELECT DISTINCT {strip}, r.__row FROM ({sql}) r")  # noqa: S608
    out: dict[str, set[int]] = {}
    for table in source.reports:
        rows = con.execute(
            f"SELECT s.__file, s.__row FROM {source.stage(table)} s "  # noqa: S608
            f"WHERE NOT EXISTS (SELECT 1 FROM {changed} c WHERE c.__file = s.__file AND c.__row = s.__row)"
        ).fetchall()
        for label, row in rows:
            out.setdefault(label, set()).add(int(row))
    return out


def without_rows(raw: RawTable, rows: set[int]) -> RawTable:
    """``raw`` without the given row numbers (the others keep theirs)."""
    if not rows:
        return raw
    keep = pc.invert(pc.is_in(raw.data[ROW_COL], value_set=pa.array(sorted(rows), pa.int64())))
    return RawTable(raw.path, raw.data.filter(keep), raw.malformed)
