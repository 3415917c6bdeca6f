"""Canvas Data 2 tables as edsight reads them: the declared source format.

Private to :mod:`edsight.ingest.canvas_data2`. Each table is declared twice:
``<table>`` for upserts (``meta.action = U``) and ``<table>_deletes`` for
deletions. Only the fields edsight uses are declared; the others are dropped
on reading. Columns named ``edsight.*`` are added by edsight, never read from
a file: the edsight ids a row resolves to.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from edsight.schema import Column, LogicalType, Table

KIND = "canvas_data2"
SYSTEM = "canvas"
TABLES = ("pseudonyms", "assignments", "submissions", "enrollments", "web_logs")
PERSON, SECTION, ASSIGNMENT = "edsight.person_id", "edsight.section_id", "edsight.assignment_id"
NEW = "edsight.new"  # the enrollment creates its person
LINK = "edsight.link"  # the enrollment's user gets an id_map entry (created, or found by SIS number)
LOCAL = "edsight.local_id"  # the SIS number (pseudonyms.sis_user_id) of a person edsight creates
ROLES = {  # Canvas enrollment type -> (enrollment role, person role when edsight creates the person)
    "StudentEnrollment": ("student", "student"),
    "TeacherEnrollment": ("teacher", "teacher"),
    "TaEnrollment": ("aide", "aide"),
    "DesignerEnrollment": ("administrator", "administrator"),
    "ObserverEnrollment": ("observer", "guardian"),
}
TEST_STUDENT = "StudentViewEnrollment"
GONE = {"assignments": ("deleted",), "submissions": ("deleted",), "enrollments": ("deleted", "rejected")}
_ARROW: Mapping[str, pa.DataType] = {"int64": pa.int64(), "int32": pa.int64(), "float64": pa.float64()}
_ARROW_BOOL = pa.bool_()

Field = tuple[str, LogicalType, bool, tuple[str, ...] | None]  # name, type, required, allowed
PII = frozenset({"value.user_id", "value.real_user_id", "value.sis_user_id"})  # never echoed
VALUES: Mapping[str, list[Field]] = {
    "pseudonyms": [
        ("value.user_id", "int64", True, None),
        ("value.sis_user_id", "string", False, None),
        ("value.workflow_state", "string", False, None),
    ],
    "assignments": [
        ("value.title", "string", False, None),
        ("value.context_id", "int64", True, None),
        ("value.context_type", "string", False, None),
        ("value.due_at", "timestamp", False, None),
        ("value.points_possible", "float64", False, None),
        ("value.submission_types", "string", False, None),
        ("value.workflow_state", "string", True, None),
        ("value.updated_at", "timestamp", False, None),
    ],
    "submissions": [
        ("value.assignment_id", "int64", True, None),
        ("value.user_id", "int64", True, None),
        ("value.course_id", "int64", False, None),
        ("value.submitted_at", "timestamp", False, None),
        ("value.cached_due_date", "timestamp", False, None),
        ("value.score", "float64", False, None),
        ("value.grade", "string", False, None),
        (
            "value.workflow_state",
            "string",
            True,
            ("submitted", "unsubmitted", "graded", "pending_review", "deleted"),
        ),
        ("value.late_policy_status", "string", False, ("late", "missing", "extended", "none")),
        ("value.seconds_late_override", "int64", False, None),
        ("value.excused", "bool", False, None),
        ("value.attempt", "int32", False, None),
        ("value.graded_at", "timestamp", False, None),
    ],
    "enrollments": [
        ("value.user_id", "int64", True, None),
        ("value.course_id", "int64", True, None),
        ("value.course_section_id", "int64", False, None),
        ("value.type", "string", True, (*ROLES, TEST_STUDENT)),
        (
            "value.workflow_state",
            "string",
            True,
            ("active", "invited", "creation_pending", "deleted", "rejected", "completed", "inactive"),
        ),
        ("value.start_at", "timestamp", False, None),
        ("value.end_at", "timestamp", False, None),
        ("value.created_at", "timestamp", False, None),
        ("value.updated_at", "timestamp", False, None),
    ],
    "web_logs": [
        ("value.timestamp", "timestamp", True, None),
        ("value.user_id", "int64", False, None),
        ("value.real_user_id", "int64", False, None),
        ("value.course_id", "int64", False, None),
        ("value.http_method", "string", False, None),
    ],
}
_DERIVED: Mapping[str, tuple[str, ...]] = {
    "pseudonyms": (),
    "assignments": (ASSIGNMENT, SECTION),
    "submissions": (ASSIGNMENT, PERSON),
    "enrollments": (SECTION, PERSON, NEW, LINK, LOCAL),
    "web_logs": (SECTION, PERSON),
}


def _key_type(table: str) -> LogicalType:
    return "string" if table == "web_logs" else "int64"


def _declare(table: str, deletes: bool) -> Table:
    fields: list[Field] = [
        ("key.id", _key_type(table), True, None),
        ("meta.action", "string", True, ("D",) if deletes else ("U",)),
        ("meta.ts", "timestamp", False, None),
    ]
    cols = [
        Column(n, t, nullable=not req, allowed=a, minimum=0 if t.startswith("int") else None)
        for n, t, req, a in fields
    ]
    if not deletes:
        cols += [Column(n, t, nullable=not req, allowed=a, pii=n in PII) for n, t, req, a in VALUES[table]]
        cols += [
            Column(n, "bool" if n in (NEW, LINK) else "string", nullable=True, pii=n == LOCAL)
            for n in _DERIVED[table]
        ]
    name = f"{table}_deletes" if deletes else table
    return Table(
        name, tuple(cols), ("key.id",), description=f"Canvas Data 2 {table} ({'D' if deletes else 'U'} rows)"
    )


CD2_TABLES: Mapping[str, Table] = {
    t.name: t for table in TABLES for t in (_declare(table, False), _declare(table, True))
}


def json_types(table: str) -> dict[str, pa.DataType]:
    """Types for the fast JSON path (a value of another type sends the file to the line parser)."""
    out: dict[str, pa.DataType] = {"key.id": pa.string() if table == "web_logs" else pa.int64()}
    out["meta.action"], out["meta.ts"] = pa.string(), pa.string()
    for name, dtype, _, _ in VALUES[table]:
        out[name] = _ARROW_BOOL if dtype == "bool" else _ARROW.get(dtype, pa.string())
    return out
