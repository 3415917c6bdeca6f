"""Pieces shared by the SIS connectors (OneRoster rosters, attendance and discipline files).

SQL here is assembled from names declared in :mod:`edsight.schema` or in the
connectors' own source declarations, and from constants of this package; values
from files travel as parameters or as data, never as SQL text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from edsight.ingest.files import ROW_COL, RawTable
from edsight.ingest.quarantine import BatchValidator
from edsight.sql import quote_literal

NOT_DELETED = "status IS DISTINCT FROM 'tobedeleted'"


def value_case(expr: str, mapping: Mapping[str, object]) -> str:
    """SQL mapping ``expr`` through ``mapping`` (declared vocabularies); unmapped values give NULL."""
    whens = " ".join(
        f"WHEN {quote_literal(k)} THEN {v if isinstance(v, int) else quote_literal(str(v))}"
        for k, v in mapping.items()
    )
    return f"(CASE {expr} {whens} END)"


def blank_to_null(raw: RawTable) -> RawTable:
    """Empty cells are nulls, also when quoted (``""``), as many SIS exporters quote every field."""
    data = raw.data
    for i, name in enumerate(data.column_names):
        col = data.column(i)
        if name == ROW_COL or not pa.types.is_string(col.type):
            continue
        data = data.set_column(i, name, pc.if_else(pc.equal(pc.utf8_trim_whitespace(col), ""), None, col))
    return RawTable(raw.path, data, raw.malformed)


def content_digest(kind: str, files: Iterable[Path]) -> str:
    """SHA-256 of ``kind`` and the bytes of ``files`` (by name, in name order)."""
    digest = hashlib.sha256(kind.encode())
    for path in sorted(files, key=lambda p: p.name):
        digest.update(b"\0" + path.name.encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def table_exists(validator: BatchValidator, name: str) -> bool:
    """Whether the temp table ``name`` exists on the validator's connection."""
    row = validator.con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND temporary", [name]
    ).fetchone()
    return bool(row and row[0])


def reject_rows(validator: BatchValidator, table: str, bad_sql: str, column: str) -> int:
    """Quarantine valid rows of ``table`` that cannot be mapped, naming file, row and column.

    ``bad_sql`` yields ``__file``, ``__row`` and ``reason`` for each row to reject; the
    rows leave the stage and the table's counts move from valid to quarantined, so
    ``read = valid + quarantined`` still holds.
    """
    stage = validator.stage(table)
    raw = validator.raw(table)
    con = validator.con
    con.execute(f"CREATE OR REPLACE TEMP TABLE or_rejected AS {bad_sql}")
    row = con.execute("SELECT count(*) FROM or_rejected").fetchone()
    n = int(row[0]) if row else 0
    if n:
        con.execute(
            f"INSERT INTO {validator.quarantine} SELECT ?, b.__file, b.{ROW_COL}, ?, "  # noqa: S608
            f"b.__file || ': row ' || b.{ROW_COL} || ', column ' || ? || ': ' || b.reason, to_json(r) "
            f"FROM or_rejected b JOIN {raw} r USING (__file, {ROW_COL})",
            [table, column, repr(column)],
        )
        con.execute(
            f"DELETE FROM {stage} s WHERE EXISTS (SELECT 1 FROM or_rejected b "  # noqa: S608
            f"WHERE b.__file = s.__file AND b.{ROW_COL} = s.{ROW_COL})"
        )
        report = validator.reports[table]
        report.rows_valid -= n
        report.rows_quarantined += n
    con.execute("DROP TABLE or_rejected")
    return n
