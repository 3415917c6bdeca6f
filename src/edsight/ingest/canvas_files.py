"""Canvas course files in the seed format (``edsight generate canvas``) -> canonical tables.

The six seed files are first validated as themselves (``schema.CANVAS_SEED``), so a
bad row is reported against the file and row it came from; the valid rows are
then mapped here to the canonical model. Canvas identifiers go to ``id_map`` and
edsight ids are derived from them deterministically, so reloading the same files
maps to the same rows. ``training_data`` holds derived labels and is validated but
not stored: labels are rebuilt from the canonical tables by the features stage.
"""

from __future__ import annotations

from edsight.ingest.ids import edsight_id_sql
from edsight.ingest.quarantine import BatchValidator
from edsight.sql import quote_literal

SOURCE_SYSTEM = "canvas"
DERIVED = "(derived)"


def edsight_id(entity: str, source_expr: str) -> str:
    """SQL for the edsight id of a Canvas ``entity`` whose source id is ``source_expr``."""
    return edsight_id_sql(SOURCE_SYSTEM, entity, source_expr)


def map_seed_to_canonical(source: BatchValidator, target: BatchValidator) -> None:
    """Add the canonical relations derived from the valid seed rows to ``target``."""
    have = set(source.reports)
    st = source.stage
    term_start = (
        f"(SELECT CAST(min(due_date - to_weeks(due_week)) AS DATE) FROM {st('assignments')})"
        if "assignments" in have
        else "CAST(NULL AS DATE)"
    )
    n_weeks = (
        f"(SELECT coalesce(max(due_week), 16) FROM {st('assignments')})" if "assignments" in have else "16"
    )
    org_id = edsight_id("organization", "'institution'")
    term_id = f"('cv-ter-' || strftime({term_start}, '%Y%m%d'))"
    derived = f"SELECT {quote_literal(DERIVED)} AS __file, 0::BIGINT AS __row"

    if "courses" in have:
        target.add_relation(
            "organization",
            f"{derived}, {org_id} AS org_id, 'Canvas institution' AS name, "
            "'institution' AS org_type, NULL AS parent_org_id, 'postsecondary' AS school_level",
            DERIVED,
        )
        target.add_relation(
            "term",
            f"{derived}, {term_id} AS term_id, 'Canvas term' AS name, 'term' AS term_type, "
            f"CASE WHEN month({term_start}) >= 7 THEN year({term_start}) "
            f"ELSE year({term_start}) - 1 END AS school_year, {term_start} AS start_date, "
            f"{term_start} + to_weeks({n_weeks}) - INTERVAL 1 DAY AS end_date",
            DERIVED,
        )
        target.add_relation(
            "course",
            f"SELECT __file, __row, {edsight_id('course', 'course_id')} AS course_id, "
            f"name AS title, subject FROM {st('courses')}",
            "courses",
        )
        target.add_relation(
            "section",
            f"SELECT __file, __row, {edsight_id('section', 'course_id')} AS section_id, "
            f"{edsight_id('course', 'course_id')} AS course_id, {term_id} AS term_id, "
            f"{org_id} AS school_id FROM {st('courses')}",
            "courses",
        )
    if "students" in have:
        target.add_relation(
            "person",
            f"SELECT __file, __row, {edsight_id('person', 'student_id')} AS person_id, "
            "'student' AS role, false AS directory_opt_out "
            f"FROM {st('students')}",
            "students",
        )
    pairs = [
        f"SELECT __file, __row, student_id, course_id FROM {st(t)}"
        for t in ("submissions", "canvas_analytics")
        if t in have
    ]
    if pairs and "students" in have:
        target.add_relation(
            "enrollment",
            f"SELECT min(p.__file) AS __file, min(p.__row) AS __row, "
            f"{edsight_id('section', 'p.course_id')} AS section_id, "
            f"{edsight_id('person', 'p.student_id')} AS person_id, 'student' AS role, "
            "CAST(min(s.enrollment_date) AS DATE) AS start_date, "
            f"{term_start} + to_weeks({n_weeks}) - INTERVAL 1 DAY AS end_date "
            f"FROM ({' UNION ALL '.join(pairs)}) p LEFT JOIN {st('students')} s USING (student_id) "
            "GROUP BY p.student_id, p.course_id",
            "enrollments",
        )
    if "assignments" in have:
        target.add_relation(
            "assignment",
            f"SELECT __file, __row, {edsight_id('assignment', 'assignment_id')} AS assignment_id, "
            f"{edsight_id('section', 'course_id')} AS section_id, assignment_id AS title, "
            "assignment_type, due_date AS due_at, points_possible "
            f"FROM {st('assignments')}",
            "assignments",
        )
    if "submissions" in have:
        submitted = "(submission_date IS NOT NULL)"
        target.add_relation(
            "submission",
            f"SELECT __file, __row, {edsight_id('assignment', 'assignment_id')} AS assignment_id, "
            f"{edsight_id('person', 'student_id')} AS person_id, "
            "submission_date AS submitted_at, was_late AS late, "
            f"NOT {submitted} AS missing, false AS excused, "
            f"CASE WHEN {submitted} THEN days_late * 86400 END AS seconds_late, "
            f"CASE WHEN {submitted} THEN score_earned END AS score, "
            f"CASE WHEN {submitted} THEN attempt_count END AS attempt, "
            f"CASE WHEN {submitted} THEN 'graded' ELSE 'unsubmitted' END AS workflow_state "
            f"FROM {st('submissions')}",
            "submissions",
        )
    if "canvas_analytics" in have:
        target.add_relation(
            "lms_activity",
            f"SELECT __file, __row, {edsight_id('person', 'student_id')} AS person_id, "
            f"{edsight_id('section', 'course_id')} AS section_id, "
            f"CAST({term_start} AS TIMESTAMP) + to_weeks(week - 1) AS period_start, "
            "'week' AS period, page_views, participations, last_login AS last_activity_at "
            f"FROM {st('canvas_analytics')}",
            "canvas_analytics",
        )
    _add_id_map(source, target, have)


def _add_id_map(source: BatchValidator, target: BatchValidator, have: set[str]) -> None:
    entities = [
        ("person", "students", "student_id"),
        ("course", "courses", "course_id"),
        ("section", "courses", "course_id"),
        ("assignment", "assignments", "assignment_id"),
    ]
    parts = [
        # Two entities can come from one source row (a course and its section): the
        # label keeps (__file, __row) unique within the relation.
        f"SELECT __file || '#{entity}' AS __file, __row, '{SOURCE_SYSTEM}' AS source_system, "
        f"'{entity}' AS entity, "
        f"CAST({col} AS VARCHAR) AS source_id, {edsight_id(entity, col)} AS edsight_id "
        f"FROM {source.stage(table)}"
        for entity, table, col in entities
        if table in have
    ]
    if parts:
        target.add_relation("id_map", " UNION ALL ".join(parts), "id_map")
