"""Row-by-row validation of a batch against declared tables, with quarantine.

A batch is a set of source relations (files, or rows mapped from files) for some
declared tables. :class:`BatchValidator` checks them on a DuckDB connection, in
foreign-key order, and leaves two kinds of temp tables behind:

* ``stage(table)``: the valid rows, cast to the declared types, one row per key;
* ``quarantine``: every rejected row with the file, the row, the column and the
  reason, plus the raw record as JSON.

Checks, in order: file-level (unknown or missing columns; the whole file is
quarantined), parse errors (wrong field count), types, required values, allowed
values and ranges, foreign keys against the batch and the warehouse, then
duplicate keys within the batch (the first remaining row wins). For every table,
``rows_read == rows_valid + rows_quarantined`` holds, and is checked.

SQL here is assembled only from names declared in :mod:`edsight.schema`;
values from files travel as parameters or as data, never as SQL text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import duckdb

from edsight.errors import InvalidInput
from edsight.ingest.files import ROW_COL, RawTable, malformed_record
from edsight.schema import Column, Table, load_order
from edsight.sql import quote_ident, quote_literal, scalar

log = logging.getLogger(__name__)

QUARANTINE = "_q_rows"
_MAX_ECHO = 40

TYPE_WORDS: Mapping[str, str] = {
    "string": "text",
    "json": "JSON text",
    "int8": "an integer",
    "int16": "an integer",
    "int32": "an integer",
    "int64": "an integer",
    "float64": "a number",
    "bool": "true or false",
    "date": "a date (YYYY-MM-DD)",
    "timestamp": "a timestamp (YYYY-MM-DD HH:MM:SS)",
}


@dataclass
class TableReport:
    """What happened to one table of a batch."""

    table: str
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    problems: list[str] = field(default_factory=list)  # file-level problems, one line each


@dataclass
class _Input:
    name: str  # temp table holding the rows, with __file and __row
    file: str


class BatchValidator:
    """Validates one batch on ``con`` into temp tables named with ``prefix``."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        tables: Mapping[str, Table],
        *,
        prefix: str,
        existing: Callable[[str], str | None] = lambda _name: None,
    ) -> None:
        self.con = con
        self.tables = tables
        self.prefix = prefix
        self.existing = existing
        self.reports: dict[str, TableReport] = {}
        self._inputs: dict[str, list[_Input]] = {}
        self._n_inputs = 0
        self.quarantine = f"{prefix}{QUARANTINE}"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {self.quarantine} (table_name VARCHAR, "
            "source_file VARCHAR, row_number BIGINT, column_name VARCHAR, reason VARCHAR, "
            "record VARCHAR)"
        )

    def _input_name(self) -> str:
        self._n_inputs += 1
        return f"{self.prefix}_in_{self._n_inputs}"

    def stage(self, table: str) -> str:
        """Temp table with the valid rows of ``table``."""
        return f"{self.prefix}_stage_{table}"

    def raw(self, table: str) -> str:
        return f"{self.prefix}_raw_{table}"

    def _report(self, table: str) -> TableReport:
        if table not in self.tables:
            raise InvalidInput(f"unknown table {table!r}")
        return self.reports.setdefault(table, TableReport(table))

    def add_file(self, table: str, raw: RawTable) -> None:
        """Add the rows of one file for ``table``."""
        report = self._report(table)
        decl = self.tables[table]
        report.files.append(raw.name)
        report.rows_read += raw.rows_read
        name = self._input_name()
        self.con.register(f"{name}_arrow", raw.data)
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT ?::VARCHAR AS __file, * FROM {name}_arrow",
            [raw.name],
        )
        self.con.unregister(f"{name}_arrow")
        for bad in raw.malformed:
            self._quarantine_values(table, raw.name, bad.row, None, bad.reason, malformed_record(bad))
        report.rows_quarantined += len(raw.malformed)

        problem = _column_problem(decl, raw.columns)
        if problem is not None:
            report.problems.append(f"{raw.name}: {problem}")
            n = self._quarantine_all(table, name, f"{raw.name}: {problem}")
            report.rows_quarantined += n
            return
        self._inputs.setdefault(table, []).append(_Input(name, raw.name))

    def add_relation(self, table: str, relation_sql: str, label: str) -> None:
        """Add rows produced by a query (``__file``, ``__row`` and declared columns).

        ``relation_sql`` is code of edsight's own mappings, never text from a file.
        """
        report = self._report(table)
        name = self._input_name()
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {relation_sql}")
        (n,) = self._one(f"SELECT count(*) FROM {name}")
        report.files.append(label)
        report.rows_read += n
        self._inputs.setdefault(table, []).append(_Input(name, label))

    def run(self) -> dict[str, TableReport]:
        """Validate every added table, parents first."""
        for table in load_order(self.tables, self.reports):
            self._validate_table(self.tables[table], self.reports[table])
        return self.reports

    # -- the checks -----------------------------------------------------------

    def _validate_table(self, decl: Table, report: TableReport) -> None:
        inputs = self._inputs.get(decl.name, [])
        stage = self.stage(decl.name)
        raw = self.raw(decl.name)
        if inputs:
            union = " UNION ALL BY NAME ".join(f"SELECT * FROM {i.name}" for i in inputs)
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {raw} AS {union}")
            present = {c[0] for c in self.con.execute(f"DESCRIBE {raw}").fetchall()}
            self._cast_and_check(decl, raw, stage, present)
            # References first: a row pointing nowhere must not shadow a valid row
            # with the same key as its "first occurrence".
            self._check_foreign_keys(decl, raw, stage)
            self._drop_duplicate_keys(decl, raw, stage)
        else:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {stage} AS {_empty_select(decl)}")
        (valid,) = self._one(f"SELECT count(*) FROM {stage}")
        (quarantined,) = self._one(
            f"SELECT count(*) FROM {self.quarantine} WHERE table_name = ?", [decl.name]
        )
        report.rows_valid = valid
        report.rows_quarantined = quarantined
        if report.rows_read != valid + quarantined:
            raise AssertionError(
                f"{decl.name}: {report.rows_read} read != {valid} valid + {quarantined} quarantined"
            )
        if quarantined:
            log.info("%s: %d of %d rows quarantined", decl.name, quarantined, report.rows_read)

    def _cast_and_check(self, decl: Table, raw: str, stage: str, present: set[str]) -> None:
        typed: list[str] = []
        errors: list[str] = []
        for col in decl.columns:
            value = f"r.{quote_ident(col.name)}" if col.name in present else "NULL"
            cast = _cast_expr(col, value)
            typed.append(f"{cast} AS {quote_ident(col.name)}")
            errors.append(f"{_error_expr(col, value, cast)} AS {quote_ident('__err_' + col.name)}")
        checked = f"{self.prefix}_checked_{decl.name}"
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {checked} AS SELECT r.__file, r.{ROW_COL}, "
            f"{', '.join(typed)}, {', '.join(errors)} FROM {raw} r"
        )
        err_cols = [quote_ident("__err_" + c.name) for c in decl.columns]
        first_bad = ", ".join(
            f"CASE WHEN {e} IS NOT NULL THEN {quote_literal(c.name)} END"
            for e, c in zip(err_cols, decl.columns, strict=True)
        )
        self.con.execute(
            f"INSERT INTO {self.quarantine} SELECT {quote_literal(decl.name)}, c.__file, "
            f"c.{ROW_COL}, coalesce({first_bad}), c.__file || ': row ' || c.{ROW_COL} || ', ' "
            f"|| concat_ws('; ', {', '.join(err_cols)}), to_json(r) "
            f"FROM {checked} c JOIN {raw} r USING (__file, {ROW_COL}) "
            f"WHERE concat_ws('', {', '.join(err_cols)}) <> ''"
        )
        cols = ", ".join(quote_ident(c.name) for c in decl.columns)
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {stage} AS SELECT __file, {ROW_COL}, {cols} "
            f"FROM {checked} WHERE concat_ws('', {', '.join(err_cols)}) = ''"
        )
        self.con.execute(f"DROP TABLE {checked}")

    def _drop_duplicate_keys(self, decl: Table, raw: str, stage: str) -> None:
        key = ", ".join(quote_ident(k) for k in decl.primary_key)
        dups = f"{self.prefix}_dups_{decl.name}"
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {dups} AS SELECT * FROM ("
            f"SELECT __file, {ROW_COL}, first(__file) OVER w AS f0, first({ROW_COL}) OVER w AS r0,"
            f" row_number() OVER w AS rn FROM {stage} "
            f"WINDOW w AS (PARTITION BY {key} ORDER BY __file, {ROW_COL})) WHERE rn > 1"
        )
        reason = f"duplicate key ({', '.join(decl.primary_key)}): same key as "
        self.con.execute(
            f"INSERT INTO {self.quarantine} SELECT {quote_literal(decl.name)}, d.__file, "
            f"d.{ROW_COL}, {quote_literal(', '.join(decl.primary_key))}, "
            f"d.__file || ': row ' || d.{ROW_COL} || ', ' || {quote_literal(reason)} "
            f"|| d.f0 || ' row ' || d.r0, to_json(r) "
            f"FROM {dups} d JOIN {raw} r USING (__file, {ROW_COL})"
        )
        self._remove_rows(stage, dups)

    def _check_foreign_keys(self, decl: Table, raw: str, stage: str) -> None:
        # A self-reference can dangle only after its parent row left; repeat until stable.
        while True:
            removed = 0
            for fk in decl.foreign_keys:
                removed += self._check_foreign_key(decl, fk.columns, fk.table, fk.ref_columns, raw)
            if removed == 0 or all(fk.table != decl.name for fk in decl.foreign_keys):
                return

    def _check_foreign_key(
        self,
        decl: Table,
        columns: tuple[str, ...],
        parent: str,
        refs: tuple[str, ...],
        raw: str,
    ) -> int:
        stage = self.stage(decl.name)
        sources = []
        if parent == decl.name or parent in self.reports:
            sources.append(f"SELECT {', '.join(quote_ident(r) for r in refs)} FROM {self.stage(parent)}")
        existing = self.existing(parent)
        if existing is not None:
            sources.append(f"SELECT {', '.join(quote_ident(r) for r in refs)} FROM {existing}")
        match = " AND ".join(
            f"p.{quote_ident(r)} = s.{quote_ident(c)}" for c, r in zip(columns, refs, strict=True)
        )
        not_null = " AND ".join(f"s.{quote_ident(c)} IS NOT NULL" for c in columns)
        parents = " UNION ALL ".join(sources) if sources else _empty_keys(self.tables[parent], refs)
        # Tell apart a reference to nothing from one to a parent row this batch rejected.
        parent_raw = self.raw(parent)
        if parent in self._inputs and parent != decl.name:
            as_text = " AND ".join(
                f"CAST(q.{quote_ident(r)} AS VARCHAR) = CAST(s.{quote_ident(c)} AS VARCHAR)"
                for c, r in zip(columns, refs, strict=True)
            )
            rejected = f"EXISTS (SELECT 1 FROM {parent_raw} q WHERE {as_text})"
        else:
            rejected = "false"
        bad = f"{self.prefix}_fk_{decl.name}"
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {bad} AS SELECT s.__file, s.{ROW_COL}, "
            f"{rejected} AS parent_rejected FROM {stage} s "
            f"WHERE {not_null} AND NOT EXISTS (SELECT 1 FROM ({parents}) p WHERE {match})"
        )
        (n,) = self._one(f"SELECT count(*) FROM {bad}")
        if n:
            cols = ", ".join(columns)
            missing = f"unknown {cols}: no row of {parent} has this {', '.join(refs)}"
            rejected_reason = f"{cols} refers to a row of {parent} that was quarantined"
            self.con.execute(
                f"INSERT INTO {self.quarantine} SELECT {quote_literal(decl.name)}, b.__file, "
                f"b.{ROW_COL}, {quote_literal(cols)}, b.__file || ': row ' || b.{ROW_COL} || ', '"
                f" || CASE WHEN b.parent_rejected THEN {quote_literal(rejected_reason)} "
                f"ELSE {quote_literal(missing)} END, to_json(r) "
                f"FROM {bad} b JOIN {raw} r USING (__file, {ROW_COL})"
            )
            self._remove_rows(stage, bad)
        return int(n)

    # -- helpers ----------------------------------------------------------------

    def _remove_rows(self, stage: str, rows: str) -> None:
        self.con.execute(
            f"DELETE FROM {stage} s WHERE EXISTS (SELECT 1 FROM {rows} x "
            f"WHERE x.__file = s.__file AND x.{ROW_COL} = s.{ROW_COL})"
        )
        self.con.execute(f"DROP TABLE {rows}")

    def _quarantine_all(self, table: str, name: str, reason: str) -> int:
        self.con.execute(
            f"INSERT INTO {self.quarantine} SELECT ?, __file, {ROW_COL}, NULL, "
            f"? || ' (row ' || {ROW_COL} || ')', to_json(r) FROM {name} r",
            [table, reason],
        )
        (n,) = self._one(f"SELECT count(*) FROM {name}")
        return int(n)

    def _quarantine_values(
        self, table: str, file: str, row: int, column: str | None, reason: str, record: str
    ) -> None:
        self.con.execute(
            f"INSERT INTO {self.quarantine} VALUES (?, ?, ?, ?, ?, ?)",
            [table, file, row, column, f"{file}: row {row}, {reason}", record],
        )

    def _one(self, sql: str, params: list[object] | None = None) -> tuple[int]:
        return (int(scalar(self.con, sql, params or [])),)

    def problems(self) -> list[str]:
        """The first reasons of this batch, for messages (at most 20)."""
        rows = self.con.execute(
            f"SELECT reason FROM {self.quarantine} ORDER BY table_name, source_file, row_number LIMIT 20"
        ).fetchall()
        return [r[0] for r in rows]


def _column_problem(decl: Table, columns: list[str]) -> str | None:
    unknown = [c for c in columns if c not in decl.column_index]
    missing = [c.name for c in decl.columns if not c.nullable and c.name not in columns]
    parts = []
    if unknown:
        parts.append(
            f"unknown column(s) {', '.join(repr(c) for c in unknown)} for table {decl.name} "
            f"(expected: {', '.join(decl.column_names)})"
        )
    if missing:
        parts.append(f"missing required column(s) {', '.join(repr(c) for c in missing)}")
    return "; ".join(parts) if parts else None


def _cast_expr(col: Column, value: str) -> str:
    sql_type = col.sql_type
    if col.dtype == "date":
        return f"coalesce(TRY_CAST({value} AS DATE), TRY_CAST(TRY_CAST({value} AS TIMESTAMP) AS DATE))"
    if col.dtype in ("string", "json"):
        return f"CAST({value} AS VARCHAR)"
    return f"TRY_CAST({value} AS {sql_type})"


def _error_expr(col: Column, value: str, cast: str) -> str:
    label = f"column {col.name!r}: "
    got = "" if col.pii else f" || ', got ' || left(CAST({value} AS VARCHAR), {_MAX_ECHO})"
    whens: list[str] = []
    if not col.nullable:
        whens.append(f"WHEN {value} IS NULL THEN {quote_literal(label + 'required value is missing')}")
    else:
        whens.append(f"WHEN {value} IS NULL THEN NULL")
    expected = quote_literal(label + "expected " + TYPE_WORDS[col.dtype])
    whens.append(f"WHEN {cast} IS NULL THEN {expected}{got}")
    if col.dtype.startswith("int"):
        whens.append(
            f"WHEN TRY_CAST({value} AS DOUBLE) IS NOT NULL AND TRY_CAST({value} AS DOUBLE) <> {cast}"
            f" THEN {quote_literal(label + 'expected an integer')}{got}"
        )
    if col.allowed is not None:
        options = ", ".join(quote_literal(a) for a in col.allowed)
        message = quote_literal(label + "expected one of " + ", ".join(col.allowed))
        whens.append(f"WHEN {cast} NOT IN ({options}) THEN {message}{got}")
    if col.minimum is not None:
        message = quote_literal(f"{label}expected a value >= {col.minimum:g}")
        whens.append(f"WHEN {cast} < {col.minimum!r} THEN {message}{got}")
    if col.maximum is not None:
        message = quote_literal(f"{label}expected a value <= {col.maximum:g}")
        whens.append(f"WHEN {cast} > {col.maximum!r} THEN {message}{got}")
    return "CASE " + " ".join(whens) + " END"


def _empty_select(decl: Table) -> str:
    cols = ", ".join(f"NULL::{c.sql_type} AS {quote_ident(c.name)}" for c in decl.columns)
    return f"SELECT NULL::VARCHAR AS __file, NULL::BIGINT AS {ROW_COL}, {cols} LIMIT 0"


def _empty_keys(decl: Table, refs: tuple[str, ...]) -> str:
    cols = ", ".join(f"NULL::{decl.column_index[r].sql_type} AS {quote_ident(r)}" for r in refs)
    return f"SELECT {cols} LIMIT 0"
