"""State test student files: a YAML mapping from a wide yearly layout to the long form.

A state file holds one row per student per year and columns per subject. The
mapping (a YAML file, checked by :class:`StateTestMapping`) names the student
id column, the year (a column or a constant), the grade, the test date, and per
subject the scale score, SEM, performance level and label columns. Layouts
change between years, so a subject lists column maps with ``min_year`` /
``max_year``. Years in a mapping are test years, as states label them: the
2023-24 school year's spring test is 2024 (``year.means: fall`` says the
file's years are fall years instead).

The file is validated as itself (a table declared from the mapping, so errors
name the file's own columns), then turned into the long form (student, year,
subject, grade, scale_score, sem, perf_level, perf_level_label,
proficient_flag) and stored as ``assessment_result`` (assessment
``state_test``). Long-form rows are labelled ``<file> [<subject>]``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from edsight.errors import InvalidInput
from edsight.ingest._assessments_mapping import (
    MAX_YEAR,
    MIN_YEAR,
    StateTestMapping,
    SubjectSpec,
    load_state_test_mapping,
)
from edsight.ingest._assessments_prep import (
    FIRST_ROW,
    Progress,
    column,
    content_hash,
    dates_to_iso,
    grades_to_numbers,
    keep_declared,
    normalise_vocabulary,
    reject,
    students,
    with_column,
)
from edsight.ingest.batch import IngestBatch, Mapper
from edsight.ingest.files import SUFFIXES, RawTable, read_table_file
from edsight.ingest.quarantine import BatchValidator
from edsight.schema import Column, Table
from edsight.sql import quote_ident, quote_literal

if TYPE_CHECKING:
    from edsight.store.warehouse import LoadResult, Warehouse

log = logging.getLogger(__name__)

SYSTEM = "state_test"
SOURCE_TABLE = "state_test"
PERSON = "edsight_person_id"  # added by edsight: the warehouse student of the row

# -- the source table declared by a mapping ------------------------------------------------


def _level_tokens(spec: SubjectSpec) -> list[str]:
    levels = spec.perf_levels or {}
    return [str(n) for n in sorted(levels)] + [levels[n] for n in sorted(levels)]


def source_table(mapping: StateTestMapping) -> Table:
    """The wide file as a declared table: only the columns the mapping reads."""
    cols: dict[str, Column] = {}

    def add(col: Column) -> None:
        previous = cols.get(col.name)
        if previous is not None and previous.allowed is not None and col.allowed is not None:
            col = Column(col.name, col.dtype, True, tuple(dict.fromkeys(previous.allowed + col.allowed)))
        cols[col.name] = col

    add(Column(mapping.student.column, "string", pii=True))
    if mapping.year.column:
        add(Column(mapping.year.column, "int16", minimum=MIN_YEAR, maximum=MAX_YEAR + 1))
    if mapping.test_date.column:
        add(Column(mapping.test_date.column, "date"))
    if mapping.grade:
        add(Column(mapping.grade, "int8", nullable=True, minimum=-1, maximum=13))
    for spec in mapping.subjects:
        for c in spec.columns:
            add(Column(c.scale_score, "float64", nullable=True, minimum=0))
            if c.sem:
                add(Column(c.sem, "float64", nullable=True, minimum=0))
            if c.perf_level and spec.perf_levels is not None:
                add(Column(c.perf_level, "string", nullable=True, allowed=tuple(_level_tokens(spec))))
            elif c.perf_level:
                add(Column(c.perf_level, "int8", nullable=True, minimum=1, maximum=6))
            if c.perf_level_label:
                add(Column(c.perf_level_label, "string", nullable=True))
            if c.grade:
                add(Column(c.grade, "int8", nullable=True, minimum=-1, maximum=13))
    add(Column(PERSON, "string", nullable=True, pii=True))
    key = (mapping.student.column, mapping.year.column) if mapping.year.column else (mapping.student.column,)
    return Table(SOURCE_TABLE, tuple(cols.values()), key, description=f"{mapping.name} student file")


# -- preparing a file ------------------------------------------------------------------------


_YEAR_TEXT = r"^\s*(?P<first>\d{4})\s*(?:[-/]\s*(?P<second>\d{2}|\d{4}))?\s*$"


def _spring_years(values: pa.ChunkedArray, mapping: StateTestMapping) -> pa.ChunkedArray:
    """Year text -> the spring year as text (``2023-24`` -> ``2024``); other text unchanged."""
    parts = pc.extract_regex(values, _YEAR_TEXT)
    nothing = pa.scalar(None, pa.string())
    first = pc.cast(pc.if_else(pc.is_valid(parts), pc.struct_field(parts, "first"), nothing), pa.int64())
    ranged = pc.not_equal(pc.struct_field(parts, "second"), "")
    single = first if mapping.year.means == "spring" else pc.add(first, 1)
    spring = pc.if_else(ranged, pc.add(first, 1), single)
    return pc.if_else(pc.is_null(spring), values, pc.cast(spring, pa.string()))


def _prepare(raw: RawTable, mapping: StateTestMapping, decl: Table) -> RawTable:
    raw, ignored = keep_declared(raw, decl)
    if ignored:
        log.info("%s: %d columns not read by the mapping", raw.name, len(ignored))
    if mapping.year.column and (years := column(raw, mapping.year.column)) is not None:
        raw = with_column(raw, mapping.year.column, _spring_years(years, mapping))
    if mapping.test_date.column and (dates := column(raw, mapping.test_date.column)) is not None:
        raw = with_column(
            raw, mapping.test_date.column, dates_to_iso(dates, mapping.test_date.format or "%m/%d/%Y")
        )
    grade_columns = {mapping.grade} | {c.grade for s in mapping.subjects for c in s.columns}
    for name in sorted(g for g in grade_columns if g):
        if (grades := column(raw, name)) is not None:
            raw = with_column(raw, name, grades_to_numbers(grades))
    for spec in mapping.subjects:
        if spec.perf_levels is None:
            continue
        spellings = {t.casefold(): t for t in _level_tokens(spec)}
        for name in {c.perf_level for c in spec.columns if c.perf_level}:
            if (levels := column(raw, name)) is not None:
                raw = with_column(raw, name, normalise_vocabulary(levels, spellings))
    return _check_coverage(raw, mapping)


def _row_years(raw: RawTable, mapping: StateTestMapping) -> np.ndarray:
    """The spring year of each row (0 where the year is not a number yet)."""
    if mapping.year.value is not None:
        return np.full(raw.data.num_rows, mapping.spring_year(mapping.year.value), dtype=np.int64)
    years = column(raw, mapping.year.column or "")
    if years is None:
        return np.zeros(raw.data.num_rows, dtype=np.int64)
    ok = pc.match_substring_regex(years, r"^\d{4}$")
    numbers = pc.cast(pc.if_else(ok, years, pa.scalar(None, pa.string())), pa.int64())
    return np.asarray(pc.fill_null(numbers, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def _check_coverage(raw: RawTable, mapping: StateTestMapping) -> RawTable:
    """Set aside rows of a year no subject covers, or whose year's columns the file lacks."""
    years = _row_years(raw, mapping)
    present = set(raw.columns)
    reasons = np.full(len(years), "", dtype=object)
    for year in np.unique(years[years > 0]):
        shown = mapping.mapping_year(int(year))
        maps = [(s.subject, s.column_map(shown)) for s in mapping.subjects]
        used = [(subject, m) for subject, m in maps if m is not None]
        if not used:
            reasons[years == year] = (
                f"no subject of the mapping covers test year {shown} (see min_year/max_year)"
            )
            continue
        for subject, m in used:
            needed = [n for n in (m.scale_score, m.sem, m.perf_level, m.perf_level_label, m.grade) if n]
            missing = [n for n in needed if n not in present]
            if missing:
                reasons[(years == year) & (reasons == "")] = (
                    f"the mapping reads column {missing[0]!r} for {subject} in {shown}, which this file lacks"
                )
                break
    return reject(raw, pa.array(reasons != ""), list(reasons))


def _attach_students(raw: RawTable, mapping: StateTestMapping, warehouse: Warehouse) -> RawTable:
    ids = column(raw, mapping.student.column)
    if ids is None or raw.data.num_rows == 0:
        return raw
    with warehouse.connect(read_only=True) as con:
        person, ambiguous = students(con, SYSTEM, [("id_map", ids), (mapping.student.match, ids)])
    raw = with_column(raw, PERSON, person)
    what = "SIS student number" if mapping.student.match == "local_id" else "state id"
    col = mapping.student.column
    reasons = pc.if_else(
        ambiguous,
        pa.scalar(f"column {col!r}: matches more than one student in the warehouse"),
        pa.scalar(f"column {col!r}: no student in the warehouse has this {what}; load the SIS roster first"),
    )
    return reject(raw, pc.and_(pc.is_null(person), pc.is_valid(ids)), reasons)


def state_files(source: Path) -> list[Path]:
    """The table files of ``source`` (a file, or the files directly inside a folder)."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise InvalidInput(f"{source}: no such file or folder")
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise InvalidInput(f"{source}: no .csv, .parquet or .jsonl files found")
    return files


# -- the long form ------------------------------------------------------------------------------


def _levels_table(mapping: StateTestMapping) -> pa.Table:
    rows: list[tuple[str, str, int, str]] = []
    for spec in mapping.subjects:
        for level, label in sorted((spec.perf_levels or {}).items()):
            rows += [(spec.subject, str(level), level, label), (spec.subject, label.casefold(), level, label)]
    subjects, tokens, levels, labels = (
        (list(x) for x in zip(*rows, strict=True)) if rows else ([], [], [], [])
    )
    return pa.table(
        {
            "subject": pa.array(subjects, pa.string()),
            "token": pa.array(tokens, pa.string()),
            "level": pa.array(levels, pa.int8()),
            "label": pa.array(labels, pa.string()),
        }
    )


def long_form_sql(mapping: StateTestMapping, stage: str, levels: str, *, with_person: bool) -> str:
    """SQL turning the valid wide rows in ``stage`` into long-form rows, one per subject tested."""
    q = quote_ident
    year = (
        str(mapping.spring_year(mapping.year.value))
        if mapping.year.value
        else f"r.{q(mapping.year.column or '')}"
    )
    if mapping.test_date.column:
        test_date = f"r.{q(mapping.test_date.column)}"
    elif mapping.test_date.value:
        test_date = f"DATE {quote_literal(mapping.test_date.value.isoformat())}"
    else:
        month, day = (int(x) for x in (mapping.test_date.month_day or "04-15").split("-"))
        test_date = f"make_date(CAST({year} AS INTEGER), {month}, {day})"
    selects = []
    for spec in mapping.subjects:
        subject = quote_literal(spec.subject)
        for m in spec.columns:
            low, high = (
                mapping.spring_year(m.min_year or MIN_YEAR - 1),
                mapping.spring_year(m.max_year or MAX_YEAR),
            )
            grade = f"r.{q(m.grade)}" if m.grade else (f"r.{q(mapping.grade)}" if mapping.grade else "NULL")
            sem = f"r.{q(m.sem)}" if m.sem else "NULL"
            own_label = f"r.{q(m.perf_level_label)}" if m.perf_level_label else "NULL"
            if m.perf_level and spec.perf_levels is not None:
                level, label = "lv.level", f"coalesce({own_label}, lv.label)"
                join = (
                    f"LEFT JOIN {levels} lv ON lv.subject = {subject} "
                    f"AND lv.token = lower(CAST(r.{q(m.perf_level)} AS VARCHAR))"
                )
            else:
                level = f"CAST(r.{q(m.perf_level)} AS TINYINT)" if m.perf_level else "CAST(NULL AS TINYINT)"
                label, join = own_label, ""
            cut = spec.proficient_level
            proficient = f"({level} >= {int(cut)})" if cut is not None else "CAST(NULL AS BOOLEAN)"
            person = f"r.{q(PERSON)} AS person_id, " if with_person else ""
            selects.append(
                f"SELECT r.__file || ' [' || {subject} || ']' AS __file, r.__row, "  # noqa: S608
                f"r.{q(mapping.student.column)} AS student_id, {person}"
                f"CAST({year} AS SMALLINT) - 1 AS school_year, {subject} AS subject, "
                f"CAST({grade} AS TINYINT) AS grade_level, {test_date} AS test_date, "
                f"r.{q(m.scale_score)} AS scale_score, {sem} AS sem, {level} AS perf_level, "
                f"{label} AS perf_level_label, {proficient} AS proficient_flag "
                f"FROM {stage} r {join} WHERE r.{q(m.scale_score)} IS NOT NULL "
                f"AND {year} BETWEEN {low} AND {high}"
            )
    return " UNION ALL ".join(selects)


def _mapper(mapping: StateTestMapping) -> Mapper:
    def map_to_canonical(source: BatchValidator, target: BatchValidator) -> None:
        levels = f"{target.prefix}_state_levels"
        target.con.register("_edsight_levels", _levels_table(mapping))
        target.con.execute(f"CREATE OR REPLACE TEMP TABLE {levels} AS SELECT * FROM _edsight_levels")  # noqa: S608
        target.con.unregister("_edsight_levels")
        stage = source.stage(SOURCE_TABLE)
        long = long_form_sql(mapping, stage, levels, with_person=True)
        target.add_relation(
            "assessment_result",
            f"SELECT __file, __row, person_id, {quote_literal(mapping.assessment)} AS assessment, "  # noqa: S608
            f"subject, school_year, grade_level, test_date, scale_score, sem, perf_level FROM ({long})",
            SOURCE_TABLE,
        )
        student = quote_ident(mapping.student.column)
        target.add_relation(
            "id_map",
            f"SELECT {FIRST_ROW}, '{SYSTEM}' AS source_system, "  # noqa: S608
            f"'person' AS entity, {student} AS source_id, {quote_ident(PERSON)} AS edsight_id "
            f"FROM {stage} GROUP BY {student}, {quote_ident(PERSON)}",
            "id_map",
        )

    return map_to_canonical


def _read(
    path: Path, mapping: StateTestMapping, decl: Table, encoding: str, progress: Progress | None
) -> RawTable:
    if progress:
        progress(f"reading {path.name}")
    return _prepare(read_table_file(path, encoding), mapping, decl)


def state_test_long_form(
    source: Path, mapping: Path | StateTestMapping, *, encoding: str = "utf-8"
) -> pa.Table:
    """The long form of state files without a warehouse (valid rows only, students unresolved).

    Columns: ``__file`` (``<file> [<subject>]``), ``__row``, student_id, school_year,
    subject, grade_level, test_date, scale_score, sem, perf_level,
    perf_level_label, proficient_flag.
    """
    spec = mapping if isinstance(mapping, StateTestMapping) else load_state_test_mapping(mapping)
    decl = source_table(spec)
    con = duckdb.connect(config={"enable_external_access": False})
    try:
        validator = BatchValidator(con, {SOURCE_TABLE: decl}, prefix="lf")
        for path in state_files(source):
            validator.add_file(SOURCE_TABLE, _read(path, spec, decl, encoding, None))
        validator.run()
        con.register("_edsight_levels", _levels_table(spec))
        con.execute("CREATE TEMP TABLE lf_levels AS SELECT * FROM _edsight_levels")
        sql = long_form_sql(spec, validator.stage(SOURCE_TABLE), "lf_levels", with_person=False)
        return con.sql(f"SELECT * FROM ({sql}) ORDER BY __file, __row").to_arrow_table()  # noqa: S608
    finally:
        con.close()


def ingest_state_tests(
    warehouse: Warehouse,
    source: Path,
    *,
    mapping: Path,
    encoding: str = "utf-8",
    force: bool = False,
    progress: Progress | None = None,
) -> LoadResult:
    """Load state test files (a file or a folder of them) through a YAML ``mapping``."""
    spec = load_state_test_mapping(mapping)
    decl = source_table(spec)
    raws = [
        _attach_students(_read(p, spec, decl, encoding, progress), spec, warehouse)
        for p in state_files(source)
    ]
    batch = IngestBatch(
        source=f"{SYSTEM}:{source}",
        content_hash=content_hash(SYSTEM, [(SOURCE_TABLE, r) for r in raws], spec.model_dump_json().encode()),
        source_tables={SOURCE_TABLE: decl},
        mapper=_mapper(spec),
    )
    for raw in raws:
        batch.add_source(SOURCE_TABLE, raw)
    return warehouse.load_batch(batch, force=force, progress=progress)
