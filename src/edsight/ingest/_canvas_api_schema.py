"""Declarations of the Canvas API source tables and of the JSON fields each one reads.

Private to :mod:`edsight.ingest.canvas_api`. Columns are Canvas's field names; the
few context columns (``course_id`` of a submission, the term dates of an
enrollment) are filled from the list a row came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from edsight.schema import Column, Table

MAX_TEXT = 10_000  # characters; no Canvas field edsight keeps is anywhere near this long
ENROLLMENT_TYPES = (
    "StudentEnrollment",
    "TeacherEnrollment",
    "TaEnrollment",
    "ObserverEnrollment",
    "DesignerEnrollment",
    "StudentViewEnrollment",
)
ROLE_OF_TYPE = {"StudentEnrollment": "student", "TeacherEnrollment": "teacher", "TaEnrollment": "aide"}

Kind = Literal["int", "float", "bool", "text", "ts", "texts"]


def _col(
    name: str,
    dtype: Any = "string",
    *,
    null: bool = True,
    pii: bool = False,
    allowed: tuple[str, ...] | None = None,
    minimum: float | None = None,
) -> Column:
    return Column(name, dtype, nullable=null, pii=pii, allowed=allowed, minimum=minimum)


SOURCE_TABLES: Mapping[str, Table] = {
    t.name: t
    for t in (
        Table(
            "canvas_accounts",
            (_col("id", "int64", null=False), _col("name")),
            ("id",),
            description="Canvas accounts of the courses read (from the courses' account).",
        ),
        Table(
            "canvas_terms",
            (
                _col("id", "int64", null=False),
                _col("name"),
                _col("start_at", "timestamp"),
                _col("end_at", "timestamp"),
            ),
            ("id",),
            description="Enrollment terms of the courses read; dates fall back to the courses' dates.",
        ),
        Table(
            "canvas_courses",
            (
                _col("id", "int64", null=False),
                _col("sis_course_id"),
                _col("name"),
                _col("course_code"),
                _col("account_id", "int64", null=False),
                _col("enrollment_term_id", "int64", null=False),
                _col("start_at", "timestamp"),
                _col("end_at", "timestamp"),
                _col("workflow_state"),
            ),
            ("id",),
        ),
        Table(
            "canvas_sections",
            (
                _col("id", "int64", null=False),
                _col("course_id", "int64", null=False),
                _col("name"),
                _col("sis_section_id"),
            ),
            ("id",),
        ),
        Table(
            "canvas_users",
            (
                _col("id", "int64", null=False),
                _col("name", pii=True),
                _col("sortable_name", pii=True),
                _col("first_name", pii=True),
                _col("last_name", pii=True),
                _col("sis_user_id", pii=True),
                _col("login_id", pii=True),
                _col("role", allowed=("student", "teacher", "aide")),
            ),
            ("id",),
            description="Users of the courses' rosters, once each; role from their enrollments.",
        ),
        Table(
            "canvas_enrollments",
            (
                _col("id", "int64", null=False),
                _col("course_id", "int64", null=False),
                _col("course_section_id", "int64"),
                _col("user_id", "int64", null=False),
                _col("sis_user_id", pii=True),
                _col("type", null=False, allowed=ENROLLMENT_TYPES),
                _col("enrollment_state"),
                _col("created_at", "timestamp"),
                _col("updated_at", "timestamp"),
                _col("start_at", "timestamp"),
                _col("end_at", "timestamp"),
                _col("last_activity_at", "timestamp"),
                _col("total_activity_time", "int64", minimum=0),
                _col("current_score", "float64"),
                _col("final_score", "float64"),
                _col("current_grade"),
                _col("term_id", "int64"),
                _col("term_start_at", "timestamp"),
                _col("term_end_at", "timestamp"),
            ),
            ("id",),
        ),
        Table(
            "canvas_assignments",
            (
                _col("id", "int64", null=False),
                _col("course_id", "int64", null=False),
                _col("name"),
                _col("due_at", "timestamp"),
                _col("points_possible", "float64", minimum=0),
                _col("submission_types"),
                _col("quiz_id", "int64"),
                _col("sis_assignment_id"),
                _col("workflow_state"),
            ),
            ("id",),
        ),
        Table(
            "canvas_submissions",
            (
                _col("assignment_id", "int64", null=False),
                _col("user_id", "int64", null=False),
                _col("course_id", "int64", null=False),
                _col("id", "int64"),
                _col("submitted_at", "timestamp"),
                _col("graded_at", "timestamp"),
                _col("score", "float64"),
                _col("attempt", "int32", minimum=0),
                _col("late", "bool"),
                _col("missing", "bool"),
                _col("excused", "bool"),
                _col("seconds_late", "int64", minimum=0),
                _col("late_policy_status"),
                _col("workflow_state"),
            ),
            ("assignment_id", "user_id"),
        ),
        Table(
            "canvas_activity",
            (
                _col("course_id", "int64", null=False),
                _col("user_id", "int64", null=False),
                _col("hour", "timestamp", null=False),
                _col("page_views", "int32", null=False, minimum=0),
                _col("participations", "int32", null=False, minimum=0),
            ),
            ("course_id", "user_id", "hour"),
            description="Hourly page views (Analytics activity) with participations bucketed by hour.",
        ),
    )
}

# (column, JSON path, kind) for the fields read from each kind of record.
Spec = tuple[tuple[str, tuple[str, ...], Kind], ...]
COURSE_SPEC: Spec = (
    ("id", ("id",), "int"),
    ("sis_course_id", ("sis_course_id",), "text"),
    ("name", ("name",), "text"),
    ("course_code", ("course_code",), "text"),
    ("account_id", ("account_id",), "int"),
    ("enrollment_term_id", ("enrollment_term_id",), "int"),
    ("start_at", ("start_at",), "ts"),
    ("end_at", ("end_at",), "ts"),
    ("workflow_state", ("workflow_state",), "text"),
)
SECTION_SPEC: Spec = (
    ("id", ("id",), "int"),
    ("course_id", ("course_id",), "int"),
    ("name", ("name",), "text"),
    ("sis_section_id", ("sis_section_id",), "text"),
)
USER_SPEC: Spec = (
    ("id", ("id",), "int"),
    ("name", ("name",), "text"),
    ("sortable_name", ("sortable_name",), "text"),
    ("first_name", ("first_name",), "text"),
    ("last_name", ("last_name",), "text"),
    ("sis_user_id", ("sis_user_id",), "text"),
    ("login_id", ("login_id",), "text"),
)
ENROLLMENT_SPEC: Spec = (
    ("id", ("id",), "int"),
    ("course_id", ("course_id",), "int"),
    ("course_section_id", ("course_section_id",), "int"),
    ("user_id", ("user_id",), "int"),
    ("sis_user_id", ("sis_user_id",), "text"),
    ("type", ("type",), "text"),
    ("enrollment_state", ("enrollment_state",), "text"),
    ("created_at", ("created_at",), "ts"),
    ("updated_at", ("updated_at",), "ts"),
    ("start_at", ("start_at",), "ts"),
    ("end_at", ("end_at",), "ts"),
    ("last_activity_at", ("last_activity_at",), "ts"),
    ("total_activity_time", ("total_activity_time",), "int"),
    ("current_score", ("grades", "current_score"), "float"),
    ("final_score", ("grades", "final_score"), "float"),
    ("current_grade", ("grades", "current_grade"), "text"),
)
ASSIGNMENT_SPEC: Spec = (
    ("id", ("id",), "int"),
    ("course_id", ("course_id",), "int"),
    ("name", ("name",), "text"),
    ("due_at", ("due_at",), "ts"),
    ("points_possible", ("points_possible",), "float"),
    ("submission_types", ("submission_types",), "texts"),
    ("quiz_id", ("quiz_id",), "int"),
    ("sis_assignment_id", ("sis_assignment_id",), "text"),
    ("workflow_state", ("workflow_state",), "text"),
)
SUBMISSION_SPEC: Spec = (
    ("assignment_id", ("assignment_id",), "int"),
    ("user_id", ("user_id",), "int"),
    ("id", ("id",), "int"),
    ("submitted_at", ("submitted_at",), "ts"),
    ("graded_at", ("graded_at",), "ts"),
    ("score", ("score",), "float"),
    ("attempt", ("attempt",), "int"),
    ("late", ("late",), "bool"),
    ("missing", ("missing",), "bool"),
    ("excused", ("excused",), "bool"),
    ("seconds_late", ("seconds_late",), "int"),
    ("late_policy_status", ("late_policy_status",), "text"),
    ("workflow_state", ("workflow_state",), "text"),
)
