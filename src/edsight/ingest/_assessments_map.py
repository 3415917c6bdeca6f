"""NWEA MAP Growth exports (AssessmentResults, StudentsBySchool, ComboStudentAssessment).

The files are validated as themselves (``MAP_TABLES``), then mapped to
``assessment_result`` (assessment ``nwea_map``), one row per test event.
Headers are matched case-insensitively and the renamed legacy headers are
accepted (``MeasurementScale`` -> ``Course``, ``Discipline`` -> ``Subject``,
``RITtoReading*`` -> ``Lexile*``). Growth, percentile, Lexile and Quantile
fields are validated but have no canonical column yet; they stay in the
source table.

Students are never created from MAP files: ``StudentID`` is matched to an
``id_map`` entry of ``nwea_map``, then to the SIS student number
(``person.local_id``), then ``Student_StateID`` to ``person.state_id``. Rows of
students not in the warehouse are quarantined; once the roster is loaded, the
same file loads them (the batch id covers how rows resolved).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from edsight.errors import InvalidInput
from edsight.ingest._assessments_prep import (
    FIRST_ROW,
    Progress,
    column,
    content_hash,
    dates_to_iso,
    echo,
    grades_to_numbers,
    keep_declared,
    normalise_vocabulary,
    reject,
    students,
    with_column,
)
from edsight.ingest.batch import IngestBatch
from edsight.ingest.files import ROW_COL, SUFFIXES, RawTable, read_table_file
from edsight.ingest.quarantine import BatchValidator
from edsight.schema import GROWTH_WINDOWS, Column, LogicalType, Table
from edsight.sql import quote_ident

if TYPE_CHECKING:
    from edsight.store.warehouse import LoadResult, Warehouse

log = logging.getLogger(__name__)

SYSTEM = "nwea_map"
SUBJECTS = ("math", "reading", "language", "science")
QUINTILES = ("Low", "LoAvg", "Avg", "HiAvg", "High")
MET_GROWTH = ("Yes", "No", "Yes*", "No*")
WINDOWS = GROWTH_WINDOWS
PERSON = "edsight_person_id"  # added by edsight: the warehouse student the row belongs to
SUBJECT = "edsight_subject"  # added by edsight: Course/Subject normalised to SUBJECTS
RESULTS = "map_results"
STUDENTS = "map_students"
TERM_PATTERN = r"^\s*(?i:fall|winter|spring|summer)\s+\d{4}\s*-\s*\d{4}\s*$"


def _col(
    name: str,
    dtype: LogicalType = "string",
    *,
    required: bool = False,
    allowed: tuple[str, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    pii: bool = False,
) -> Column:
    return Column(name, dtype, nullable=not required, allowed=allowed, pii=pii, minimum=low, maximum=high)


def _growth_columns() -> list[Column]:
    cols: list[Column] = []
    for w in WINDOWS:
        cols += [
            _col(f"{w}ProjectedGrowth", "float64"),
            _col(f"{w}ObservedGrowth", "float64"),
            _col(f"{w}ObservedGrowthSE", "float64", low=0),
            _col(f"{w}MetProjectedGrowth", allowed=MET_GROWTH),
            _col(f"{w}ConditionalGrowthIndex", "float64"),
            _col(f"{w}ConditionalGrowthPercentile", "float64", low=0, high=100),
            _col(f"{w}GrowthQuintile", allowed=QUINTILES),
        ]
    return cols + [_col(f"Typical{w}Growth", "float64") for w in WINDOWS]


MAP_TABLES: Mapping[str, Table] = {
    RESULTS: Table(
        RESULTS,
        (
            _col("TermName", required=True),
            _col("DistrictName"),
            _col("SchoolName"),
            _col("School_StateID"),
            _col("StudentID", required=True, pii=True),
            _col("Student_StateID", pii=True),
            _col("Subject"),
            _col("Course"),
            _col("Grade", "int8", low=-1, high=13),
            _col("GrowthMeasureYN", "bool"),
            _col("NormsReferenceData"),
            _col("TestType"),
            _col("TestName"),
            _col("TestID"),
            _col("TestStartDate", "date", required=True),
            _col("TestStartTime"),
            _col("TestDurationMinutes", "float64", low=0),
            _col("TestRITScore", "float64", required=True, low=0, high=400),
            _col("TestStandardError", "float64", low=0),
            _col("TestPercentile", "int16", low=0, high=100),
            _col("AchievementQuintile", allowed=QUINTILES),
            _col("PercentCorrect", "float64", low=0, high=100),
            _col("RapidGuessingPercentage", "float64", low=0, high=100),
            *_growth_columns(),
            *(_col(f"{scale}{part}") for scale in ("Lexile", "Quantile") for part in ("Score", "Min", "Max")),
            _col(SUBJECT, allowed=SUBJECTS),
            _col(PERSON, pii=True),
        ),
        ("StudentID", SUBJECT, "TestStartDate"),
        description="AssessmentResults.csv / ComboStudentAssessment.csv: one row per test event.",
    ),
    STUDENTS: Table(
        STUDENTS,
        (
            _col("TermName", required=True),
            _col("SchoolName"),
            _col("StudentID", required=True, pii=True),
            _col("Grade", "int8", low=-1, high=13),
        ),
        ("TermName", "StudentID", "SchoolName"),
        description="StudentsBySchool.csv: only the grade is read; names and birth dates stay with the SIS.",
    ),
}

LEGACY_HEADERS: Mapping[str, str] = {
    "MeasurementScale": "Course",
    "Discipline": "Subject",
    "RITtoReadingScore": "LexileScore",
    "RITtoReadingMin": "LexileMin",
    "RITtoReadingMax": "LexileMax",
}
_SPELLINGS: Mapping[str, Mapping[str, str]] = {
    "AchievementQuintile": {q.lower(): q for q in QUINTILES},
    **{f"{w}GrowthQuintile": {q.lower(): q for q in QUINTILES} for w in WINDOWS},
    **{f"{w}MetProjectedGrowth": {m.lower(): m for m in MET_GROWTH} for w in WINDOWS},
}
# Course names are specific ("Language Usage", "Math 6+"); Subject is broad
# ("Language Arts" covers reading and language usage), so Course is read first.
_COURSE_PATTERNS = (
    ("reading", r"(?i)read|lectura"),
    ("language", r"(?i)language"),
    ("math", r"(?i)math|algebra|geometr"),
    ("science", r"(?i)science"),
)
_SUBJECT_PATTERNS = (
    ("reading", r"(?i)^\s*reading\s*$"),
    ("language", r"(?i)^\s*language(\s+usage)?\s*$"),
    ("math", r"(?i)math"),
    ("science", r"(?i)science"),
)
_TRUE = ("true", "t", "y", "yes", "1")


# -- files -------------------------------------------------------------------------------


def map_files(source: Path) -> tuple[list[Path], list[Path], list[str]]:
    """Results files, StudentsBySchool files and messages for files not read."""
    if source.is_file():
        return [source], [], []
    if not source.is_dir():
        raise InvalidInput(f"{source}: no such file or folder")
    results: list[Path] = []
    roster: list[Path] = []
    skipped: list[str] = []
    for path in sorted(p for p in source.iterdir() if p.is_file()):
        stem = path.stem.lower()
        if path.suffix.lower() not in SUFFIXES:
            continue
        if stem.startswith(("assessmentresults", "combostudentassessment")):
            results.append(path)
        elif stem.startswith("studentsbyschool"):
            roster.append(path)
        else:
            skipped.append(
                f"{path.name}: not used (class, program and accommodation files come from the SIS)"
            )
    if not results:
        raise InvalidInput(f"{source}: no AssessmentResults.csv or ComboStudentAssessment.csv found")
    return results, roster, skipped


def _read(path: Path, table: str, encoding: str, progress: Progress | None) -> RawTable:
    if progress:
        progress(f"reading {path.name}")
    raw, ignored = keep_declared(read_table_file(path, encoding), MAP_TABLES[table], LEGACY_HEADERS)
    if ignored:
        log.info("%s: %d columns not used", path.name, len(ignored))
        log.debug("%s: columns not used: %s", path.name, ", ".join(ignored))
    dates = column(raw, "TestStartDate")
    if dates is not None:
        raw = with_column(raw, "TestStartDate", dates_to_iso(dates))
    grades = column(raw, "Grade")
    if grades is not None:
        raw = with_column(raw, "Grade", grades_to_numbers(grades))
    for name, spellings in _SPELLINGS.items():
        values = column(raw, name)
        if values is not None:
            raw = with_column(raw, name, normalise_vocabulary(values, spellings))
    return _check_term_names(raw)


def _check_term_names(raw: RawTable) -> RawTable:
    terms = column(raw, "TermName")
    if terms is None:
        return raw  # the validator quarantines the file: required column missing
    bad = pc.and_(pc.is_valid(terms), pc.invert(pc.match_substring_regex(terms, TERM_PATTERN)))
    return reject(
        raw,
        bad,
        lambda i: (
            "column 'TermName': expected '<Fall|Winter|Spring|Summer> YYYY-YYYY' "
            f"(e.g. 'Fall 2023-2024'), got {echo(terms[i].as_py())}"
        ),
    )


# -- subjects, duplicates, students ------------------------------------------------------


def _classify(values: pa.ChunkedArray, patterns: tuple[tuple[str, str], ...]) -> pa.ChunkedArray:
    out = pa.chunked_array([pa.nulls(len(values), pa.string())])
    for subject, pattern in reversed(patterns):
        out = pc.if_else(pc.match_substring_regex(values, pattern), pa.scalar(subject), out)
    return out


def _add_subjects(raw: RawTable) -> RawTable:
    nothing = pa.chunked_array([pa.nulls(raw.data.num_rows, pa.string())])
    course, subject = (column(raw, c) for c in ("Course", "Subject"))
    course = nothing if course is None else course
    subject = nothing if subject is None else subject
    found = pc.coalesce(_classify(course, _COURSE_PATTERNS), _classify(subject, _SUBJECT_PATTERNS))
    raw = with_column(raw, SUBJECT, found)

    def reason(i: int) -> str:
        shown = " / ".join(str(v) for v in (course[i].as_py(), subject[i].as_py()) if v is not None)
        return (
            "columns 'Course'/'Subject': not a MAP Growth subject (math, reading, language usage, "
            f"science), got {echo(shown or 'nothing')}"
        )

    return reject(raw, pc.is_null(found), reason)


def _prefer_growth_measure(raw: RawTable) -> RawTable:
    """Of two test events of a student in a subject on one day, keep the growth measure.

    The warehouse holds one result per student, subject and test date; the row
    MAP flags ``GrowthMeasureYN`` (the one that counts for growth) is kept, else
    the first in the file. The others are quarantined naming the kept row.
    """
    n = raw.data.num_rows
    keys = [column(raw, c) for c in ("StudentID", SUBJECT, "TestStartDate")]
    if n < 2 or any(k is None for k in keys):
        return raw
    growth = column(raw, "GrowthMeasureYN")
    flagged = (
        pc.is_in(pc.utf8_lower(growth), value_set=pa.array(_TRUE))
        if growth is not None
        else pa.chunked_array([pa.repeat(False, n)])
    )
    table = pa.table(
        {
            "k0": keys[0],
            "k1": keys[1],
            "k2": keys[2],
            "later": pc.invert(pc.fill_null(flagged, False)),
            "row": raw.data.column(ROW_COL),
        }
    )
    order = pc.sort_indices(table, [(c, "ascending") for c in ("k0", "k1", "k2", "later", "row")]).to_numpy()
    ordered = table.take(order)
    first = np.ones(n, dtype=bool)
    same = np.ones(n - 1, dtype=bool)
    for name in ("k0", "k1", "k2"):
        values = ordered.column(name).to_numpy(zero_copy_only=False)
        same &= values[1:] == values[:-1]
    first[1:] = ~same
    if first.all():
        return raw
    rows = ordered.column("row").to_numpy()
    kept_flag = ~ordered.column("later").to_numpy(zero_copy_only=False)
    group = np.cumsum(first) - 1
    winners, winner_flag = rows[first][group], kept_flag[first][group]
    mask = np.zeros(n, dtype=bool)
    reasons = np.empty(n, dtype=object)
    for i in np.flatnonzero(~first):
        why = " (GrowthMeasureYN)" if winner_flag[i] else ""
        mask[order[i]] = True
        reasons[order[i]] = (
            f"duplicate test event (StudentID, subject, TestStartDate): row {winners[i]} is kept{why}"
        )
    return reject(raw, pa.array(mask), [r or "" for r in reasons])


def _attach_students(raw: RawTable, warehouse: Warehouse) -> RawTable:
    ids = column(raw, "StudentID")
    if ids is None or raw.data.num_rows == 0:
        return raw
    with warehouse.connect(read_only=True) as con:
        person, ambiguous = students(
            con,
            SYSTEM,
            [("id_map", ids), ("local_id", ids), ("state_id", column(raw, "Student_StateID"))],
        )
    raw = with_column(raw, PERSON, person)
    unknown = pc.and_(pc.is_null(person), pc.is_valid(ids))
    reasons = pc.if_else(
        ambiguous,
        pa.scalar("column 'StudentID': matches more than one student in the warehouse"),
        pa.scalar(
            "column 'StudentID': no student in the warehouse has this SIS student number "
            "(nor this Student_StateID); load the SIS roster first"
        ),
    )
    return reject(raw, unknown, reasons)


# -- mapping -----------------------------------------------------------------------------


def map_to_canonical(source: BatchValidator, target: BatchValidator) -> None:
    """Add ``assessment_result`` and ``id_map`` relations built from the valid MAP rows."""
    q = quote_ident
    results = source.stage(RESULTS)
    grade = f"r.{q('Grade')}"
    join = ""
    if STUDENTS in source.reports:
        join = (
            f"LEFT JOIN (SELECT {q('TermName')}, {q('StudentID')}, max({q('Grade')}) AS roster_grade "  # noqa: S608
            f"FROM {source.stage(STUDENTS)} GROUP BY ALL) g USING ({q('TermName')}, {q('StudentID')})"
        )
        grade = f"coalesce(r.{q('Grade')}, g.roster_grade)"
    quintile = " ".join(f"WHEN '{name}' THEN {level}" for level, name in enumerate(QUINTILES, start=1))
    target.add_relation(
        "assessment_result",
        f"SELECT r.__file, r.__row, r.{q(PERSON)} AS person_id, '{SYSTEM}' AS assessment, "  # noqa: S608
        f"r.{q(SUBJECT)} AS subject, "
        f"CAST(regexp_extract(r.{q('TermName')}, '(\\d{{4}})\\s*-', 1) AS SMALLINT) AS school_year, "
        f"{grade} AS grade_level, r.{q('TestStartDate')} AS test_date, "
        f"r.{q('TestRITScore')} AS scale_score, r.{q('TestStandardError')} AS sem, "
        f"CASE r.{q('AchievementQuintile')} {quintile} END AS perf_level, "
        f"r.{q('TestPercentile')} AS percentile "
        f"FROM {results} r {join}",
        RESULTS,
    )
    # One growth row per window that reports anything; the window label is a declared constant.
    growth = " UNION ALL ".join(
        f"SELECT __file || '#{w}' AS __file, __row, {q(PERSON)} AS person_id, '{SYSTEM}' AS assessment, "  # noqa: S608
        f"{q(SUBJECT)} AS subject, {q('TestStartDate')} AS test_date, '{w}' AS growth_window, "
        f"{q(w + 'ProjectedGrowth')} AS projected_growth, {q(w + 'ObservedGrowth')} AS observed_growth, "
        f"{q(w + 'ObservedGrowthSE')} AS observed_growth_se, "
        f"CASE WHEN {q(w + 'MetProjectedGrowth')} IS NULL THEN NULL "
        f"ELSE starts_with({q(w + 'MetProjectedGrowth')}, 'Yes') END AS met_projected, "
        f"{q(w + 'ConditionalGrowthIndex')} AS conditional_growth_index, "
        f"{q(w + 'ConditionalGrowthPercentile')} AS conditional_growth_percentile, "
        f"{q('Typical' + w + 'Growth')} AS typical_growth FROM {results} "
        f"WHERE coalesce({q(w + 'ProjectedGrowth')}, {q(w + 'ObservedGrowth')}, "
        f"{q(w + 'ConditionalGrowthPercentile')}) IS NOT NULL"
        for w in WINDOWS
    )
    target.add_relation("assessment_growth", growth, RESULTS)
    target.add_relation(
        "id_map",
        f"SELECT {FIRST_ROW}, '{SYSTEM}' AS source_system, "  # noqa: S608
        f"'person' AS entity, {q('StudentID')} AS source_id, {q(PERSON)} AS edsight_id "
        f"FROM {results} GROUP BY {q('StudentID')}, {q(PERSON)}",
        "id_map",
    )


def ingest_map(
    warehouse: Warehouse,
    source: Path,
    *,
    encoding: str = "utf-8",
    force: bool = False,
    progress: Progress | None = None,
) -> LoadResult:
    """Load a MAP Growth export (a folder, or one AssessmentResults / ComboStudentAssessment file)."""
    result_files, roster_files, skipped = map_files(source)
    results = []
    for path in result_files:
        raw = _add_subjects(_read(path, RESULTS, encoding, progress))
        results.append(_attach_students(_prefer_growth_measure(raw), warehouse))
    rosters = [_read(path, STUDENTS, encoding, progress) for path in roster_files]
    parts = [(RESULTS, r) for r in results] + [(STUDENTS, r) for r in rosters]
    batch = IngestBatch(
        source=f"{SYSTEM}:{source}",
        content_hash=content_hash(SYSTEM, parts),
        source_tables=MAP_TABLES,
        mapper=map_to_canonical,
        skipped=skipped,
    )
    for table, raw in parts:
        batch.add_source(table, raw)
    return warehouse.load_batch(batch, force=force, progress=progress)
