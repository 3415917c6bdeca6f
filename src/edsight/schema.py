"""Canonical tables of edsight: names, columns, logical types, keys (one source of truth).

Every table that crosses a module boundary is declared here; loaders validate
against these declarations (:mod:`edsight.validation`) and the warehouse creates
its tables from them. Two namespaces exist:

* ``CANONICAL``: the warehouse model every source maps into (see DESIGN.md);
* ``CANVAS_SEED``: the six files of the seed-compatible Canvas course generator,
  declared so that files in that format are validated row by row before mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Literal

LogicalType = Literal[
    "string", "int8", "int16", "int32", "int64", "float64", "bool", "date", "timestamp", "json"
]

DUCKDB_TYPES: Mapping[str, str] = {
    "string": "VARCHAR",
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "json": "VARCHAR",
}


@dataclass(frozen=True)
class Column:
    """One column: its name, logical type, whether it may be null, allowed values."""

    name: str
    dtype: LogicalType
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    pii: bool = False  # direct identifier or quasi-identifier: never echoed in messages
    minimum: float | None = None
    maximum: float | None = None

    @property
    def sql_type(self) -> str:
        return DUCKDB_TYPES[self.dtype]


@dataclass(frozen=True)
class ForeignKey:
    """``columns`` of this table reference ``ref_columns`` of ``table``."""

    columns: tuple[str, ...]
    table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A declared table."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    description: str = ""
    column_index: Mapping[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {c.name: c for c in self.columns}
        if len(index) != len(self.columns):
            raise ValueError(f"table {self.name}: duplicate column names")
        for name in self.primary_key:
            if name not in index:
                raise ValueError(f"table {self.name}: key column {name} is not a column")
        for fk in self.foreign_keys:
            for name in fk.columns:
                if name not in index:
                    raise ValueError(f"table {self.name}: foreign key column {name} unknown")
        object.__setattr__(self, "column_index", index)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def ddl(self, qualified_name: str | None = None) -> str:
        """``CREATE TABLE IF NOT EXISTS`` statement for DuckDB.

        Keys are enforced by the loader (dedupe + replace), not by DuckDB indexes,
        which would cost memory proportional to the table at state scale.
        """
        name = qualified_name or self.name
        cols = ",\n  ".join(
            f'"{c.name}" {c.sql_type}{"" if c.nullable else " NOT NULL"}' for c in self.columns
        )
        return f'CREATE TABLE IF NOT EXISTS "{name}" (\n  {cols}\n)'


def _c(
    name: str,
    dtype: LogicalType = "string",
    *,
    null: bool = False,
    allowed: Iterable[str] | None = None,
    pii: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Column:
    return Column(
        name,
        dtype,
        nullable=null,
        allowed=tuple(allowed) if allowed is not None else None,
        pii=pii,
        minimum=minimum,
        maximum=maximum,
    )


def _fk(cols: str | tuple[str, ...], table: str, refs: str | tuple[str, ...]) -> ForeignKey:
    as_tuple = (cols,) if isinstance(cols, str) else cols
    ref_tuple = (refs,) if isinstance(refs, str) else refs
    return ForeignKey(as_tuple, table, ref_tuple)


def _person(col: str = "person_id") -> ForeignKey:
    return _fk(col, "person", "person_id")


def _school(col: str = "school_id") -> ForeignKey:
    return _fk(col, "organization", "org_id")


ORG_TYPES = ("state", "district", "school", "institution", "department")
SCHOOL_LEVELS = ("elementary", "middle", "high", "postsecondary")
PERSON_ROLES = (
    "student",
    "teacher",
    "counselor",
    "principal",
    "administrator",
    "aide",
    "guardian",
    "parent",
)
RACE_ETHNICITY = (
    "hispanic",
    "white",
    "black",
    "asian",
    "multiracial",
    "american_indian",
    "pacific_islander",
)
EXIT_TYPES = (
    "promoted",
    "retained",
    "transferred_out",
    "moved_within_district",
    "graduated",
    "dropped_out",
)
GROWTH_WINDOWS = (
    "FallToFall",
    "FallToWinter",
    "FallToSpring",
    "WinterToWinter",
    "WinterToSpring",
    "SpringToSpring",
)
ATTENDANCE_STATUS = ("absent_excused", "absent_unexcused", "tardy", "present")
INTERVENTION_OUTCOMES = ("improved", "no_change", "worsened", "withdrawn", "transferred")
RISK_TARGETS = (
    "will_fail_academically",
    "will_disengage",
    "will_miss_assignments",
    "will_dropout",
    "non_graduation",
    "dropout_1y",
    "dropout_2y",
    "non_graduation_1y",
    "non_graduation_2y",
)

_CANONICAL_TABLES: tuple[Table, ...] = (
    Table(
        "organization",
        (
            _c("org_id"),
            _c("name"),
            _c("org_type", allowed=ORG_TYPES),
            _c("parent_org_id", null=True),
            _c("school_level", null=True, allowed=SCHOOL_LEVELS),
            _c("grade_low", "int8", null=True, minimum=-1, maximum=13),
            _c("grade_high", "int8", null=True, minimum=-1, maximum=13),
        ),
        ("org_id",),
        (_fk("parent_org_id", "organization", "org_id"),),
        "States, districts, schools and institutions.",
    ),
    Table(
        "term",
        (
            _c("term_id"),
            _c("name"),
            _c("term_type", allowed=("school_year", "semester", "term", "grading_period")),
            _c("school_year", "int16", minimum=1900, maximum=2200),
            _c("start_date", "date"),
            _c("end_date", "date"),
            _c("parent_term_id", null=True),
        ),
        ("term_id",),
        (_fk("parent_term_id", "term", "term_id"),),
        "School years, semesters and grading periods; school_year is the fall year.",
    ),
    Table(
        "calendar",
        (_c("org_id"), _c("school_year", "int16"), _c("date", "date")),
        ("org_id", "date"),
        (_fk("org_id", "organization", "org_id"),),
        "Instructional days of a district or school; presence is inferred against it.",
    ),
    Table(
        "person",
        (
            _c("person_id"),
            _c("role", allowed=PERSON_ROLES),
            _c("given_name", null=True, pii=True),
            _c("family_name", null=True, pii=True),
            _c("birth_date", "date", null=True, pii=True),
            _c("local_id", null=True, pii=True),
            _c("state_id", null=True, pii=True),
            _c("directory_opt_out", "bool"),
        ),
        ("person_id",),
        (),
        "Students and staff. person_id is edsight's own; source ids live in id_map.",
    ),
    Table(
        "student_demographics",
        (
            _c("person_id"),
            _c("sex", null=True, allowed=("F", "M", "X")),
            _c("race_ethnicity", null=True, allowed=RACE_ETHNICITY),
            _c("economically_disadvantaged", "bool", null=True),
            _c("english_learner", "bool", null=True),
            _c("disability", "bool", null=True),
        ),
        ("person_id",),
        (_person(),),
        "Protected attributes: used for audits and gaps, kept out of model inputs by default.",
    ),
    Table(
        "school_enrollment",
        (
            _c("person_id"),
            _c("school_id"),
            _c("school_year", "int16"),
            _c("grade_level", "int8", minimum=-1, maximum=13),
            _c("entry_date", "date"),
            _c("exit_date", "date", null=True),
            _c("exit_type", null=True, allowed=EXIT_TYPES),
        ),
        ("person_id", "school_id", "school_year", "entry_date"),
        (_person(), _school()),
        "Enrollment windows in schools: the denominator of attendance rates.",
    ),
    Table(
        "course",
        (
            _c("course_id"),
            _c("title"),
            _c("subject", null=True),
            _c("grade_low", "int8", null=True),
            _c("grade_high", "int8", null=True),
            _c("credits", "float64", null=True, minimum=0),
        ),
        ("course_id",),
        (),
        "Catalogue courses.",
    ),
    Table(
        "section",
        (_c("section_id"), _c("course_id"), _c("term_id"), _c("school_id")),
        ("section_id",),
        (_fk("course_id", "course", "course_id"), _fk("term_id", "term", "term_id"), _school()),
        "A course taught in a term at a school (a Canvas course section, an SIS class).",
    ),
    Table(
        "enrollment",
        (
            _c("section_id"),
            _c("person_id"),
            _c("role", allowed=("student", "teacher", "aide", "observer", "administrator")),
            _c("start_date", "date"),
            _c("end_date", "date", null=True),
        ),
        ("section_id", "person_id", "role"),
        (_fk("section_id", "section", "section_id"), _person()),
        "Who is in which section, in which role.",
    ),
    Table(
        "assignment",
        (
            _c("assignment_id"),
            _c("section_id"),
            _c("title", null=True),
            _c("assignment_type", null=True),
            _c("due_at", "timestamp", null=True),
            _c("points_possible", "float64", null=True, minimum=0),
        ),
        ("assignment_id",),
        (_fk("section_id", "section", "section_id"),),
        "Gradable work in a section.",
    ),
    Table(
        "submission",
        (
            _c("assignment_id"),
            _c("person_id"),
            _c("submitted_at", "timestamp", null=True),
            _c("late", "bool"),
            _c("missing", "bool"),
            _c("excused", "bool"),
            _c("seconds_late", "int64", null=True, minimum=0),
            _c("score", "float64", null=True),
            _c("attempt", "int32", null=True, minimum=0),
            _c("workflow_state", null=True),
        ),
        ("assignment_id", "person_id"),
        (_fk("assignment_id", "assignment", "assignment_id"), _person()),
        "Latest state of a student's work on an assignment (Canvas submission fields).",
    ),
    Table(
        "lms_activity",
        (
            _c("person_id"),
            _c("section_id"),
            _c("period_start", "timestamp"),
            _c("period", allowed=("hour", "day", "week")),
            _c("page_views", "int32", minimum=0),
            _c("participations", "int32", minimum=0),
            _c("last_activity_at", "timestamp", null=True),
        ),
        ("person_id", "section_id", "period_start", "period"),
        (_person(), _fk("section_id", "section", "section_id")),
        "LMS page views and participations per person, section and period.",
    ),
    Table(
        "attendance",
        (
            _c("person_id"),
            _c("school_id"),
            _c("date", "date"),
            _c("status", allowed=ATTENDANCE_STATUS),
        ),
        ("person_id", "date"),
        (_person(), _school()),
        "Daily attendance events; most sources send absences and tardies only.",
    ),
    Table(
        "discipline",
        (
            _c("incident_id"),
            _c("person_id"),
            _c("school_id"),
            _c("date", "date"),
            _c("severity", allowed=("minor", "major", "state_offense")),
        ),
        ("incident_id", "person_id"),
        (_person(), _school()),
        "Discipline incidents a student took part in.",
    ),
    Table(
        "course_grade",
        (
            _c("person_id"),
            _c("section_id"),
            _c("term_id"),
            _c("numeric_grade", "float64", null=True, minimum=0, maximum=110),
            _c("letter_grade", null=True),
            _c("credits_attempted", "float64", null=True, minimum=0),
            _c("credits_earned", "float64", null=True, minimum=0),
        ),
        ("person_id", "section_id", "term_id"),
        (_person(), _fk("section_id", "section", "section_id"), _fk("term_id", "term", "term_id")),
        "Final or period marks per section.",
    ),
    Table(
        "assessment_result",
        (
            _c("person_id"),
            _c("assessment"),
            _c("subject"),
            _c("school_year", "int16"),
            _c("grade_level", "int8", null=True, minimum=-1, maximum=13),
            _c("test_date", "date"),
            _c("scale_score", "float64"),
            _c("sem", "float64", null=True, minimum=0),
            _c("perf_level", "int8", null=True, minimum=1, maximum=6),
            _c("percentile", "float64", null=True, minimum=0, maximum=100),
        ),
        ("person_id", "assessment", "subject", "test_date"),
        (_person(),),
        "State tests and interim assessments (NWEA MAP), one row per test event.",
    ),
    Table(
        "assessment_growth",
        (
            _c("person_id"),
            _c("assessment"),
            _c("subject"),
            _c("test_date", "date"),
            _c("growth_window", allowed=GROWTH_WINDOWS),
            _c("projected_growth", "float64", null=True),
            _c("observed_growth", "float64", null=True),
            _c("observed_growth_se", "float64", null=True, minimum=0),
            _c("met_projected", "bool", null=True),
            _c("conditional_growth_index", "float64", null=True),
            _c("conditional_growth_percentile", "float64", null=True, minimum=0, maximum=100),
            _c("typical_growth", "float64", null=True),
        ),
        ("person_id", "assessment", "subject", "test_date", "growth_window"),
        (_person(),),
        "Vendor-reported growth of a test event against an earlier window (NWEA MAP).",
    ),
    Table(
        "student_outcome",
        (
            _c("person_id"),
            _c("cohort_year", "int16"),
            _c("outcome", allowed=("graduated", "dropped_out", "transferred_out", "still_enrolled")),
            _c("outcome_date", "date", null=True),
        ),
        ("person_id",),
        (_person(),),
        "Graduation, dropout or transfer for a cohort (expected graduation school year).",
    ),
    Table(
        "intervention",
        (
            _c("intervention_id"),
            _c("person_id"),
            _c("intervention_type"),
            _c("start_date", "date"),
            _c("end_date", "date", null=True),
            _c("owner_id", null=True),
            _c("status", allowed=("recommended", "assigned", "active", "closed")),
            _c("outcome", null=True, allowed=INTERVENTION_OUTCOMES),
            _c("reason_codes", "json", null=True),
        ),
        ("intervention_id",),
        (_person(),),
        "Supports given to a student, tracked to an outcome.",
    ),
    Table(
        "intervention_note",
        (
            _c("intervention_id"),
            _c("noted_at", "timestamp"),
            _c("author_id"),
            _c("status", allowed=("recommended", "assigned", "active", "closed")),
            _c("note", null=True, pii=True),
        ),
        ("intervention_id", "noted_at"),
        (_fk("intervention_id", "intervention", "intervention_id"),),
        "Case log of an intervention: each status change and note, by whom.",
    ),
    Table(
        "risk_score",
        (
            _c("person_id"),
            _c("section_id", null=True),
            _c("as_of", "date"),
            _c("target", allowed=RISK_TARGETS),
            _c("probability", "float64", minimum=0, maximum=1),
            _c("model_id"),
            _c("reasons", "json", null=True),
        ),
        ("person_id", "section_id", "as_of", "target", "model_id"),
        (_person(),),
        "Scored risk, with the reason codes that explain it.",
    ),
    Table(
        "risk_score_latest",
        (
            _c("person_id"),
            _c("section_id", null=True),
            _c("target", allowed=RISK_TARGETS),
            _c("as_of", "date"),
            _c("probability", "float64", minimum=0, maximum=1),
            _c("model_id"),
            _c("reasons", "json", null=True),
        ),
        ("person_id", "section_id", "target"),
        (_person(),),
        "The latest score per student, section and target (rebuilt by each scoring run).",
    ),
    Table(
        "alert",
        (
            _c("alert_id"),
            _c("person_id"),
            _c("rule"),
            _c("raised_at", "timestamp"),
            _c("recipient_id", null=True),
            _c("status", allowed=("open", "acknowledged", "snoozed", "closed")),
            _c("detail", "json", null=True),
        ),
        ("alert_id",),
        (_person(),),
        "Alerts raised by rules for a recipient.",
    ),
    Table(
        "audit_event",
        (
            _c("seq", "int64"),
            _c("at", "timestamp"),
            _c("actor_id"),
            _c("role"),
            _c("action"),
            _c("resource"),
            _c("person_ids", "json", null=True),
            _c("purpose", null=True),
            _c("prev_hash"),
            _c("hash"),
        ),
        ("seq",),
        (),
        "Hash-chained audit trail of reads of student-level data and exports.",
    ),
    Table(
        "disclosure",
        (
            _c("disclosure_id"),
            _c("person_id"),
            _c("party"),
            _c("legal_basis"),
            _c("disclosed_at", "timestamp"),
            _c("fields", "json"),
        ),
        ("disclosure_id", "person_id"),
        (_person(),),
        "Per-student disclosure ledger (FERPA 34 CFR 99.32).",
    ),
    Table(
        "id_map",
        (
            _c("source_system"),
            _c("entity"),
            _c("source_id", pii=True),
            _c("edsight_id"),
        ),
        ("source_system", "entity", "source_id"),
        (),
        "Source-native identifiers (Canvas ids, SIS sourcedIds, state ids) to edsight ids.",
    ),
    # --- derived tables of the features stage (edsight.features; issue 4) -------------------
    # Rebuilt from the tables above by `store_features`; each row of week w uses only records
    # timestamped before the end of week w (see docs/features.md).
    Table(
        "weekly_features_lms",
        (
            _c("person_id"),
            _c("section_id"),
            _c("week", "int16", minimum=1),
            _c("week_start", "date"),
            _c("week_end", "date"),
            _c("page_views", "int32", minimum=0),
            _c("participations", "int32", minimum=0),
            _c("page_views_slope_4w", "float64", null=True),
            _c("participations_slope_4w", "float64", null=True),
            _c("page_views_vs_mean", "float64", null=True),
            _c("participations_vs_mean", "float64", null=True),
            _c("inactive_streak_weeks", "int16", minimum=0),
            _c("days_since_last_activity", "float64", null=True, minimum=0),
            _c("assignments_due", "int32", minimum=0),
            _c("assignments_submitted", "int32", minimum=0),
            _c("assignments_submitted_week", "int32", minimum=0),
            _c("assignments_on_time", "int32", minimum=0),
            _c("assignments_late", "int32", minimum=0),
            _c("assignments_missing", "int32", minimum=0),
            _c("on_time_rate", "float64", null=True, minimum=0, maximum=1),
            _c("late_rate", "float64", null=True, minimum=0, maximum=1),
            _c("missing_rate", "float64", null=True, minimum=0, maximum=1),
            _c("late_submission_rate", "float64", minimum=0, maximum=1),
            _c("current_grade", "float64", null=True),
            _c("grade_slope", "float64", null=True),
            _c("grade_recent_4w", "float64", null=True),
            _c("attempts_total", "int32", minimum=0),
            _c("attempts_week", "int32", minimum=0),
        ),
        ("person_id", "section_id", "week"),
        (_person(), _fk("section_id", "section", "section_id")),
        "Point-in-time LMS features per student, section and week of the term.",
    ),
    Table(
        "weekly_features_k12",
        (
            _c("person_id"),
            _c("school_year", "int16"),
            _c("week", "int16", minimum=1),
            _c("week_start", "date"),
            _c("week_end", "date"),
            _c("school_id"),
            _c("grade_level", "int8", minimum=-1, maximum=13),
            _c("days_enrolled", "int32", minimum=0),
            _c("days_absent", "int32", minimum=0),
            _c("attendance_rate", "float64", null=True, minimum=0, maximum=1),
            _c("chronic_absence", "bool", null=True),
            _c("days_enrolled_4w", "int32", minimum=0),
            _c("days_absent_4w", "int32", minimum=0),
            _c("attendance_rate_4w", "float64", null=True, minimum=0, maximum=1),
            _c("tardies", "int32", minimum=0),
            _c("incidents_minor", "int32", minimum=0),
            _c("incidents_major", "int32", minimum=0),
            _c("incidents_state_offense", "int32", minimum=0),
            _c("incidents_4w", "int32", minimum=0),
            _c("prior_math_scale_score", "float64", null=True),
            _c("prior_math_perf_level", "int8", null=True),
            _c("prior_reading_scale_score", "float64", null=True),
            _c("prior_reading_perf_level", "int8", null=True),
            _c("grades_known", "int32", minimum=0),
            _c("grade_mean", "float64", null=True),
            _c("f_count", "int32", minimum=0),
            _c("core_f_count", "int32", minimum=0),
            _c("credits_earned", "float64", minimum=0),
            _c("abc_attendance_lt90", "bool", null=True),
            _c("abc_attendance_lt80", "bool", null=True),
            _c("abc_course_failure", "bool"),
            _c("abc_behavior", "bool"),
            _c("on_track_grade9", "bool", null=True),
        ),
        ("person_id", "school_year", "week"),
        (_person(),),
        "Point-in-time K-12 features per student and week of the school year.",
    ),
    Table(
        "labels_lms",
        (
            _c("person_id"),
            _c("section_id"),
            _c("week", "int16", minimum=1),
            _c("horizon_weeks", "int16", minimum=1),
            _c("will_fail_academically", "bool"),
            _c("will_disengage", "bool"),
            _c("will_miss_assignments", "bool"),
            _c("will_dropout", "bool"),
        ),
        ("person_id", "section_id", "week", "horizon_weeks"),
        (_person(),),
        "The seed's four look-ahead targets for the feature row of each week (outcome weeks w+1..w+h).",
    ),
    Table(
        "labels_k12",
        (
            _c("person_id"),
            _c("school_year", "int16"),
            _c("cohort_year", "int16"),
            _c("dropout_1y", "bool", null=True),
            _c("dropout_2y", "bool", null=True),
            _c("non_graduation_1y", "bool", null=True),
            _c("non_graduation_2y", "bool", null=True),
        ),
        ("person_id", "school_year"),
        (_person(),),
        "Dropout / non-graduation within 1 and 2 school years of a high-school year (null: unobserved).",
    ),
    # --- end of the features stage block ------------------------------------------------------
)

# Bookkeeping of the loader itself; not loaded from files.
_SYSTEM_TABLES: tuple[Table, ...] = (
    Table(
        "load_batch",
        (
            _c("batch_id"),
            _c("source"),
            _c("content_hash"),
            _c("loaded_at", "timestamp"),
            _c("rows_read", "int64"),
            _c("rows_stored", "int64"),
            _c("rows_quarantined", "int64"),
        ),
        ("batch_id",),
        description="One row per committed load.",
    ),
    Table(
        "quarantine",
        (
            _c("batch_id"),
            _c("table_name"),
            _c("source_file"),
            _c("row_number", "int64"),
            _c("column_name", null=True),
            _c("reason"),
            _c("record", "json"),
        ),
        ("batch_id", "table_name", "source_file", "row_number"),
        description="Rows that failed validation, with the reason; nothing is dropped silently.",
    ),
    Table(
        "sync_state",
        (_c("source"), _c("entity"), _c("cursor"), _c("synced_at", "timestamp")),
        ("source", "entity"),
        description="How far each incremental source has been read (committed with the data).",
    ),
    Table(
        "event_log",
        (
            _c("event_id"),
            _c("source"),
            _c("event_name"),
            _c("event_time", "timestamp"),
            _c("received_at", "timestamp"),
        ),
        ("event_id",),
        description="Live events already applied; a repeated event id is skipped.",
    ),
    Table(
        "ops_run",
        (
            _c("run_date", "date"),
            _c("step"),
            _c("status", allowed=("started", "done", "failed", "skipped")),
            _c("started_at", "timestamp"),
            _c("finished_at", "timestamp", null=True),
            _c("seconds", "float64", null=True, minimum=0),
            _c("detail", "json", null=True),
        ),
        ("run_date", "step"),
        description="The daily run's log: one row per date and step; a done step is not run again.",
    ),
    Table(
        "alert_delivery",
        (
            _c("notification_id"),
            _c("channel"),
            _c("recipient", pii=True),
            _c("alert_ids", "json"),
            _c("status", allowed=("delivered", "dead")),
            _c("attempts", "int32", minimum=0),
            _c("last_error", null=True),
            _c("updated_at", "timestamp"),
        ),
        ("notification_id",),
        description="Outcome of each alert notification; a delivered one is never sent again.",
    ),
    Table(
        "alert_dead_letter",
        (
            _c("notification_id"),
            _c("channel"),
            _c("recipient", pii=True),
            _c("subject"),
            _c("body"),
            _c("alert_ids", "json"),
            _c("payload", "json"),
            _c("error"),
            _c("dead_at", "timestamp"),
        ),
        ("notification_id",),
        description="Notifications that ran out of delivery attempts, kept to be sent again.",
    ),
)

_EXTERNAL_COMMITMENTS = ("low", "medium", "high")
_SEED_ASSIGNMENT_TYPES = ("assignment", "quiz", "discussion_topic")
_SEED_ANALYTICS_COLUMNS: tuple[Column, ...] = (
    _c("student_id", "int64", minimum=0),
    _c("course_id"),
    _c("week", "int16", minimum=1, maximum=53),
    _c("last_login", "timestamp", null=True),
    _c("page_views", "int32", minimum=0),
    _c("participations", "int32", minimum=0),
    _c("assignments_submitted_week", "int16", minimum=0),
    _c("current_grade", "float64", null=True, minimum=0, maximum=1),
    _c("assignments_missing", "int16", minimum=0),
    _c("late_submission_rate", "float64", minimum=0, maximum=1),
    _c("discussion_posts", "int32", minimum=0),
    _c("quiz_attempts", "int16", minimum=0),
    _c("is_missing_week", "bool"),
)
_SEED_STUDENT = _fk("student_id", "students", "student_id")
_SEED_COURSE = _fk("course_id", "courses", "course_id")

_CANVAS_SEED_TABLES: tuple[Table, ...] = (
    Table(
        "courses",
        (
            _c("course_id"),
            _c("name"),
            _c("subject"),
            _c("difficulty", "float64", minimum=0, maximum=1),
            _c("workload", allowed=_EXTERNAL_COMMITMENTS),
        ),
        ("course_id",),
    ),
    Table(
        "students",
        (
            _c("student_id", "int64", minimum=0),
            _c("enrollment_date", "timestamp"),
            _c("academic_ability", "float64", minimum=0, maximum=1),
            _c("time_management", "float64", minimum=0, maximum=1),
            _c("persistence", "float64", minimum=0, maximum=1),
            _c("external_commitments", allowed=_EXTERNAL_COMMITMENTS),
        ),
        ("student_id",),
    ),
    Table(
        "assignments",
        (
            _c("assignment_id"),
            _c("course_id"),
            _c("assignment_type", allowed=_SEED_ASSIGNMENT_TYPES),
            _c("due_date", "timestamp"),
            _c("due_week", "int16", minimum=1, maximum=53),
            _c("points_possible", "float64", minimum=0),
            _c("difficulty", "float64", minimum=0, maximum=1),
        ),
        ("assignment_id",),
        (_SEED_COURSE,),
    ),
    Table(
        "submissions",
        (
            _c("student_id", "int64", minimum=0),
            _c("assignment_id"),
            _c("course_id"),
            _c("submission_date", "timestamp", null=True),
            _c("due_date", "timestamp"),
            _c("was_late", "bool"),
            _c("days_late", "int16", minimum=0),
            _c("score_earned", "float64", minimum=0),
            _c("points_possible", "float64", minimum=0),
            _c("grade_percentage", "float64", minimum=0, maximum=1),
            _c("attempt_count", "int16", minimum=0),
            _c("assignment_type", allowed=_SEED_ASSIGNMENT_TYPES),
        ),
        ("student_id", "assignment_id"),
        (_SEED_STUDENT, _fk("assignment_id", "assignments", "assignment_id"), _SEED_COURSE),
    ),
    Table(
        "canvas_analytics",
        _SEED_ANALYTICS_COLUMNS,
        ("student_id", "course_id", "week"),
        (_SEED_STUDENT, _SEED_COURSE),
    ),
    Table(
        "training_data",
        (
            *_SEED_ANALYTICS_COLUMNS,
            _c("prediction_week", "int16", minimum=1, maximum=53),
            _c("will_fail_academically", "bool"),
            _c("will_disengage", "bool"),
            _c("will_miss_assignments", "bool"),
            _c("will_dropout", "bool"),
        ),
        ("student_id", "course_id", "prediction_week"),
        (_SEED_STUDENT, _SEED_COURSE),
    ),
)


def _by_name(tables: Iterable[Table]) -> dict[str, Table]:
    return {t.name: t for t in tables}


CANONICAL: Mapping[str, Table] = _by_name(_CANONICAL_TABLES)
SYSTEM: Mapping[str, Table] = _by_name(_SYSTEM_TABLES)
CANVAS_SEED: Mapping[str, Table] = _by_name(_CANVAS_SEED_TABLES)
WAREHOUSE_TABLES: Mapping[str, Table] = {**CANONICAL, **SYSTEM}


def load_order(tables: Mapping[str, Table], names: Iterable[str] | None = None) -> list[str]:
    """Names of ``tables`` (or of the subset ``names``) with every parent before its children."""
    wanted = set(tables if names is None else names)
    graph = {
        name: {fk.table for fk in tables[name].foreign_keys if fk.table != name} & wanted for name in wanted
    }
    sorter = TopologicalSorter(graph)
    # static_order breaks ties arbitrarily; sort each ready group for a stable order.
    order: list[str] = []
    sorter.prepare()
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order


def _check_references(tables: Mapping[str, Table]) -> None:
    for table in tables.values():
        for fk in table.foreign_keys:
            parent = tables.get(fk.table)
            if parent is None:
                raise ValueError(f"{table.name}: foreign key to unknown table {fk.table}")
            for ref in fk.ref_columns:
                if ref not in parent.column_index:
                    raise ValueError(f"{table.name}: foreign key to unknown column {ref}")


_check_references(CANONICAL)
_check_references(CANVAS_SEED)

__all__ = [
    "CANONICAL",
    "CANVAS_SEED",
    "DUCKDB_TYPES",
    "SYSTEM",
    "WAREHOUSE_TABLES",
    "Column",
    "ForeignKey",
    "LogicalType",
    "Table",
    "load_order",
]
