"""Daily attendance and discipline files from an SIS, in a small documented CSV layout.

``attendance.csv``: ``student_id, school_id, date, status``;
``discipline.csv``: ``incident_id, student_id, school_id, date, behavior, severity``.
(Parquet and JSON-lines files with the same columns are read too; header names
match regardless of case.)

* ``student_id`` is the SIS student number: the ``local_id`` of exactly one student
  already in the warehouse (loaded from the roster, OneRoster ``users.identifier``).
  A row naming no student, or several, is quarantined with that reason.
* ``school_id`` is an edsight ``org_id``, a OneRoster org ``sourcedId`` or the
  school's own code (OneRoster ``orgs.identifier``), resolved through ``id_map``.
* ``status`` is edsight's value or an Ed-Fi AttendanceEventCategoryDescriptor
  (case-insensitive; ``uri://...#Excused Absence`` works too). ``Early departure``
  and ``Partial`` are partial-day attendance: the student was in school that day,
  so they count as attended, and they are kept as ``tardy`` (the only partial-day
  status of the canonical model) rather than dropped.
* ``In Attendance`` / ``present`` rows are not stored: the canonical table holds
  events, and presence follows from the calendar and the enrollment window (many
  SIS send absences only, so stored presence rows would make schools differ). They
  are counted as skipped (``LoadResult.unchanged``) so that counts reconcile, and a
  presence row for a day that has a stored event deletes it (the SIS corrected it).
* ``behavior`` is an Ed-Fi BehaviorDescriptor; ``severity`` (edsight's value) wins
  when both are given. ``State Offense`` -> ``state_offense``, ``School Violation``
  -> ``major``, ``School Code of Conduct`` and ``Other`` -> ``minor`` (the Ed-Fi
  early-warning indicators count state offenses apart and conduct incidents
  cumulatively).

Rows identical to what the warehouse holds are counted as unchanged and not staged
again, so a year-to-date file re-sent every night stores only what changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from edsight.errors import InvalidInput
from edsight.ingest._oneroster_common import blank_to_null, content_digest, reject_rows, value_case
from edsight.ingest._oneroster_export import write_attendance_csv, write_discipline_csv
from edsight.ingest.batch import IngestBatch, Mapper
from edsight.ingest.files import ROW_COL, RawTable, read_table_file
from edsight.ingest.quarantine import BatchValidator
from edsight.schema import ATTENDANCE_STATUS, Column, Table
from edsight.sql import quote_literal

if TYPE_CHECKING:
    from collections.abc import Callable

    import duckdb

    from edsight.store.warehouse import LoadResult, Warehouse

log = logging.getLogger(__name__)

__all__ = [
    "ATTENDANCE_FILE",
    "DISCIPLINE_FILE",
    "ingest_attendance",
    "ingest_discipline",
    "write_attendance_csv",
    "write_discipline_csv",
]

PRESENT = ("present", "in attendance")
STATUS_MAP = {
    **{s: s for s in ATTENDANCE_STATUS if s != "present"},
    "excused absence": "absent_excused",
    "unexcused absence": "absent_unexcused",
    "early departure": "tardy",
    "partial": "tardy",
}
BEHAVIOR_MAP = {
    "state offense": "state_offense",
    "school violation": "major",
    "school code of conduct": "minor",
    "other": "minor",
}
SEVERITIES = ("minor", "major", "state_offense")

ATTENDANCE_FILE = Table(
    "attendance",
    (
        Column("student_id", "string", pii=True),
        Column("school_id", "string"),
        Column("date", "date"),
        Column("status", "string", allowed=(*STATUS_MAP, *PRESENT)),
    ),
    ("student_id", "date"),
    description="SIS daily attendance: one row per student and day (absences, tardies, presence).",
)
DISCIPLINE_FILE = Table(
    "discipline",
    (
        Column("incident_id", "string"),
        Column("student_id", "string", pii=True),
        Column("school_id", "string"),
        Column("date", "date"),
        Column("behavior", "string", nullable=True, allowed=tuple(BEHAVIOR_MAP)),
        Column("severity", "string", nullable=True, allowed=SEVERITIES),
    ),
    ("incident_id", "student_id"),
    description="SIS discipline: one row per incident and student taking part.",
)

_DATE = "coalesce(TRY_CAST({v} AS DATE), TRY_CAST(TRY_CAST({v} AS TIMESTAMP) AS DATE))"
_UNKNOWN_STUDENT = (
    "no student in the warehouse has this student number (person.local_id); load the roster first"
)
_AMBIGUOUS_STUDENT = "several students in the warehouse have this student number (person.local_id)"
_UNKNOWN_SCHOOL = "no organization has this id (an edsight org_id, a OneRoster sourcedId or a school code)"
_AMBIGUOUS_SCHOOL = "this school id names several organizations"


@dataclass(frozen=True)
class _Kind:
    """One file layout: its declaration, the value column to normalise, and its mapping."""

    name: str
    table: Table
    vocabulary_column: str
    canonical: Callable[[str], str]  # select list (after __file, __row) over alias f, s, c
    match: str  # how a stored canonical row ``t`` equals the mapped row (unchanged check)


def _attendance_select(f: str) -> str:
    return (
        f"s.person_id, c.org_id AS school_id, {_DATE.format(v=f + '.date')} AS date, "
        f"{value_case(f + '.status', STATUS_MAP)} AS status"
    )


def _discipline_select(f: str) -> str:
    severity = f"coalesce({f}.severity, {value_case(f + '.behavior', BEHAVIOR_MAP)})"
    return (
        f"{f}.incident_id, s.person_id, c.org_id AS school_id, {_DATE.format(v=f + '.date')} AS date, "
        f"{severity} AS severity"
    )


ATTENDANCE = _Kind(
    "attendance",
    ATTENDANCE_FILE,
    "status",
    _attendance_select,
    "t.person_id = m.person_id AND t.date = m.date AND t.school_id = m.school_id AND t.status = m.status",
)
DISCIPLINE = _Kind(
    "discipline",
    DISCIPLINE_FILE,
    "behavior",
    _discipline_select,
    "t.incident_id = m.incident_id AND t.person_id = m.person_id AND t.school_id = m.school_id "
    "AND t.date = m.date AND t.severity = m.severity",
)


def _students_sql(rel: str) -> str:
    """student_id -> the one student with that local_id (n = how many there are)."""
    return (
        "SELECT x.student_id, min(p.person_id) AS person_id, count(p.person_id) AS n "  # noqa: S608
        f"FROM (SELECT DISTINCT student_id FROM {rel} WHERE student_id IS NOT NULL) x "
        "LEFT JOIN main.person p ON p.local_id = x.student_id AND p.role = 'student' GROUP BY x.student_id"
    )


def _schools_sql(rel: str) -> str:
    """school_id -> the organization it names, by org_id or by any id_map entry."""
    return (
        "SELECT x.code, min(o.org_id) AS org_id, count(DISTINCT o.org_id) AS n "  # noqa: S608
        f"FROM (SELECT DISTINCT school_id AS code FROM {rel} WHERE school_id IS NOT NULL) x "
        "LEFT JOIN (SELECT org_id AS code, org_id FROM main.organization UNION "
        "SELECT m.source_id, m.edsight_id FROM main.id_map m JOIN main.organization g "
        "ON g.org_id = m.edsight_id WHERE m.entity = 'organization') o ON o.code = x.code GROUP BY x.code"
    )


def _resolved(kind: _Kind, rel: str, file: str = "f.__file") -> str:
    """Rows of ``rel`` whose student and school resolve, mapped to the canonical columns."""
    return (
        f"SELECT {file} AS __file, f.{ROW_COL}, {kind.canonical('f')} FROM {rel} f "  # noqa: S608
        "JOIN or_students s ON s.student_id = f.student_id AND s.n = 1 "
        "JOIN or_schools c ON c.code = f.school_id AND c.n = 1"
    )


def _mapper(kind: _Kind) -> Mapper:
    def mapper(source: BatchValidator, target: BatchValidator) -> None:
        if kind.name not in source.reports:
            return
        stage = source.stage(kind.name)
        con = source.con
        con.execute(f"CREATE OR REPLACE TEMP TABLE or_students AS {_students_sql(stage)}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE or_schools AS {_schools_sql(stage)}")
        student = (
            f"SELECT f.__file, f.{ROW_COL}, CASE WHEN s.n = 0 THEN {quote_literal(_UNKNOWN_STUDENT)} "  # noqa: S608
            f"ELSE {quote_literal(_AMBIGUOUS_STUDENT)} END AS reason FROM {stage} f "
            "JOIN or_students s ON s.student_id = f.student_id WHERE s.n <> 1"
        )
        reject_rows(source, kind.name, student, "student_id")
        school = (
            f"SELECT f.__file, f.{ROW_COL}, CASE WHEN c.n = 0 THEN {quote_literal(_UNKNOWN_SCHOOL)} "  # noqa: S608
            f"ELSE {quote_literal(_AMBIGUOUS_SCHOOL)} END AS reason FROM {stage} f "
            "JOIN or_schools c ON c.code = f.school_id WHERE c.n <> 1"
        )
        reject_rows(source, kind.name, school, "school_id")
        if kind is DISCIPLINE:
            neither = (
                f"SELECT __file, {ROW_COL}, 'give a behavior (Ed-Fi BehaviorDescriptor) or a severity' "  # noqa: S608
                f"AS reason FROM {stage} WHERE behavior IS NULL AND severity IS NULL"
            )
            reject_rows(source, kind.name, neither, "behavior")
        target.add_relation(kind.name, _resolved(kind, stage), source.reports[kind.name].files[0])

    return mapper


def _normalise(raw: RawTable, kind: _Kind, notes: list[str]) -> RawTable:
    """Header names to the declaration's case, other columns dropped; vocabulary values to plain words."""
    declared = {c.lower(): c for c in kind.table.column_names}
    keep, names, dropped = [ROW_COL], [ROW_COL], []
    for column in raw.columns:
        target = declared.get(column.strip().lower())
        if target is None or target in names:
            dropped.append(column)
        else:
            keep.append(column)
            names.append(target)
    if dropped:
        notes.append(
            f"{raw.name}: column(s) {', '.join(repr(c) for c in dropped[:10])} are not part of the "
            f"{kind.name} layout ({', '.join(kind.table.column_names)}); ignored"
        )
    data = raw.data.select(keep).rename_columns(names)
    # Typed files (Parquet, JSON) become text like CSV, so student numbers keep their leading
    # zeros in comparisons and every value is checked by the same rules.
    for i, field in enumerate(data.schema):
        if field.name != ROW_COL and not pa.types.is_string(field.type):
            data = data.set_column(i, field.name, pc.cast(data.column(i), pa.string()))
    for column in (kind.vocabulary_column, "severity"):
        if column in data.column_names:
            # Ed-Fi descriptors may come as URIs (uri://ed-fi.org/...Descriptor#Tardy).
            values = pc.utf8_lower(pc.replace_substring_regex(data.column(column), r"^.*#", ""))
            values = pc.utf8_trim_whitespace(pc.replace_substring_regex(values, r"\s+", " "))
            data = data.set_column(data.schema.get_field_index(column), column, values)
    return blank_to_null(RawTable(raw.path, data, raw.malformed))


@dataclass
class _Plan:
    raw: RawTable
    unchanged: int
    presence: int
    deletes: pa.Table | None


def _plan(con: duckdb.DuckDBPyConnection, raw: RawTable, kind: _Kind) -> _Plan:
    """Split off presence rows and rows identical to stored ones; presence rows delete stored events."""
    required = {c.name for c in kind.table.columns if not c.nullable}
    if not required <= set(raw.columns):
        return _Plan(raw, 0, 0, None)  # the validator reports the missing columns
    data = raw.data
    if kind is ATTENDANCE:
        presence_mask = pc.fill_null(pc.is_in(data.column("status"), pa.array(PRESENT)), False)
    else:
        presence_mask = pa.array([False] * data.num_rows)
    # Optional columns a file leaves out are null, as in the validator's stage.
    planned = data
    for column in kind.table.columns:
        if column.name not in planned.column_names:
            planned = planned.append_column(column.name, pa.nulls(planned.num_rows, pa.string()))
    con.register("or_file", planned)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE or_students AS {_students_sql('or_file')}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE or_schools AS {_schools_sql('or_file')}")
        same = con.sql(
            f"SELECT m.{ROW_COL} FROM ({_resolved(kind, 'or_file', 'NULL')}) m "  # noqa: S608
            f"JOIN main.{kind.name} t ON {kind.match}"
        ).to_arrow_table()
        deletes = None
        if kind is ATTENDANCE:
            con.register("or_present", planned.filter(presence_mask))
            deletes = con.sql(
                f"SELECT DISTINCT t.person_id, t.date FROM ({_resolved(kind, 'or_present', 'NULL')}) m "  # noqa: S608
                "JOIN main.attendance t ON t.person_id = m.person_id AND t.date = m.date"
            ).to_arrow_table()
            con.unregister("or_present")
    finally:
        con.unregister("or_file")
    unchanged_mask = pc.is_in(data.column(ROW_COL), same.column(ROW_COL))
    keep = pc.invert(pc.or_(presence_mask, unchanged_mask))
    kept = data.filter(keep)
    presence = int(pc.sum(presence_mask).as_py() or 0)
    unchanged = data.num_rows - kept.num_rows - presence
    return _Plan(RawTable(raw.path, kept, raw.malformed), unchanged, presence, deletes)


def _ingest(
    warehouse: Warehouse,
    path: Path,
    kind: _Kind,
    *,
    encoding: str,
    force: bool,
    progress: Callable[[str], None] | None,
) -> LoadResult:
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    if progress:
        progress(f"reading {path.name}")
    notes: list[str] = []
    raw = _normalise(read_table_file(path, encoding), kind, notes)
    with warehouse.connect(read_only=True) as con:
        plan = _plan(con, raw, kind)
    batch = IngestBatch(source=f"{kind.name}:{path}", content_hash=content_digest(kind.name, [path]))
    batch.source_tables = {kind.name: kind.table}
    batch.mapper = _mapper(kind)
    batch.add_source(kind.name, plan.raw)
    batch.unchanged = plan.unchanged + plan.presence
    batch.skipped.extend(notes)
    if plan.presence:
        batch.skipped.append(
            f"{path.name}: {plan.presence} presence row(s) not stored (presence follows from the calendar "
            "and enrollment); counted with the unchanged rows"
        )
    if plan.unchanged:
        batch.skipped.append(f"{path.name}: {plan.unchanged} row(s) identical to stored ones")
    if plan.deletes is not None and plan.deletes.num_rows:
        batch.deletes["attendance"] = plan.deletes
    return warehouse.load_batch(batch, force=force, progress=progress)


def ingest_attendance(
    warehouse: Warehouse,
    path: Path,
    *,
    encoding: str = "utf-8",
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> LoadResult:
    """Load a daily attendance file (see the module docstring for the layout and the mapping).

    Raises:
        InvalidInput: the file cannot be read (missing, not in ``encoding``, not a table).
    """
    return _ingest(warehouse, path, ATTENDANCE, encoding=encoding, force=force, progress=progress)


def ingest_discipline(
    warehouse: Warehouse,
    path: Path,
    *,
    encoding: str = "utf-8",
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> LoadResult:
    """Load a discipline incident file (see the module docstring for the layout and the mapping).

    Raises:
        InvalidInput: the file cannot be read (missing, not in ``encoding``, not a table).
    """
    return _ingest(warehouse, path, DISCIPLINE, encoding=encoding, force=force, progress=progress)
