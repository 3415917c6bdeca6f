"""Reading tabular source files (CSV, Parquet, JSON lines) with row numbers kept.

Every reader returns a :class:`RawTable`: an Arrow table whose first column is
``__row`` (the 1-based data row, header excluded), plus the
rows that could not even be parsed (wrong field count), so that the validator can
quarantine them instead of losing them.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from edsight.errors import InvalidInput

FILE_COL = "__file"
ROW_COL = "__row"
SUFFIXES = (".csv", ".parquet", ".jsonl", ".json")


@dataclass(frozen=True)
class MalformedRow:
    """A row the parser rejected before any type check."""

    row: int
    reason: str
    text: str


@dataclass
class RawTable:
    """Rows of one source file, untyped where the format is untyped (CSV)."""

    path: Path
    data: pa.Table
    malformed: list[MalformedRow] = field(default_factory=list)

    @classmethod
    def from_arrow(cls, label: str, table: pa.Table) -> RawTable:
        """Rows that did not come from a file (an API page, an event spool), numbered from 1."""
        return _with_row_numbers(Path(label), table, [])

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def rows_read(self) -> int:
        return self.data.num_rows + len(self.malformed)

    @property
    def columns(self) -> list[str]:
        return [c for c in self.data.column_names if c != ROW_COL]


def table_files(directory: Path) -> dict[str, Path]:
    """Map table name -> file for every supported file directly inside ``directory``."""
    if not directory.is_dir():
        raise InvalidInput(f"{directory}: not a directory")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix.lower() in SUFFIXES:
            if path.stem in found:
                raise InvalidInput(
                    f"{directory}: table {path.stem} is given twice ({found[path.stem].name} and {path.name})"
                )
            found[path.stem] = path
    return found


def read_table_file(path: Path, encoding: str = "utf-8") -> RawTable:
    """Read one file by its suffix; CSV text in ``encoding`` (a UTF-8 BOM is dropped)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _read_csv(path, encoding)
        if suffix == ".parquet":
            return _with_row_numbers(path, pq.read_table(path), [])
        if suffix in (".jsonl", ".json"):
            return _with_row_numbers(path, pjson.read_json(path), [])
    except UnicodeDecodeError as exc:
        raise InvalidInput(_not_encoded(path, encoding, exc.start)) from exc
    except (pa.ArrowInvalid, OSError) as exc:
        if "invalid UTF8" in str(exc) or "UTF-8" in str(exc):
            raise InvalidInput(_not_encoded(path, encoding, None)) from exc
        raise InvalidInput(f"{path.name}: cannot be read as {suffix[1:]}: {exc}") from exc
    raise InvalidInput(f"{path.name}: unsupported file type (expected one of {SUFFIXES})")


def _not_encoded(path: Path, encoding: str, offset: int | None) -> str:
    where = f" (first bad byte at offset {offset})" if offset is not None else ""
    return (
        f"{path.name}: not valid {encoding} text{where}; if it was exported as Latin-1 "
        "or Windows-1252, load it with --encoding latin-1 (or cp1252)"
    )


def _read_csv(path: Path, encoding: str) -> RawTable:
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path.name}: empty file, expected a header row")
    python_encoding = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    with path.open(encoding=python_encoding, newline="") as fh:
        names = next(csv.reader(fh), [])
    if not names:
        raise InvalidInput(f"{path.name}: empty file, expected a header row")
    if len(set(names)) != len(names):
        raise InvalidInput(f"{path.name}: header repeats a column name")
    malformed: list[MalformedRow] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        # The parser counts physical lines including the header; rows become data rows.
        number = (row.number - 1) if row.number is not None else -1
        malformed.append(
            MalformedRow(
                number,
                f"row has {row.actual_columns} fields, expected {row.expected_columns}",
                row.text[:500],
            )
        )
        return "skip"

    table = pcsv.read_csv(
        path,
        read_options=pcsv.ReadOptions(use_threads=False, encoding=python_encoding),
        parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    return _with_row_numbers(path, table, malformed)


def _with_row_numbers(path: Path, table: pa.Table, malformed: list[MalformedRow]) -> RawTable:
    """Number the parsed rows, leaving out the numbers the malformed rows had."""
    rows = np.arange(1, table.num_rows + len(malformed) + 1, dtype=np.int64)
    if malformed:
        rows = np.setdiff1d(rows, np.array([m.row for m in malformed], dtype=np.int64))
    return RawTable(path, table.add_column(0, ROW_COL, pa.array(rows)), malformed)


def malformed_record(row: MalformedRow) -> str:
    """The JSON kept in quarantine for a row that did not parse."""
    return json.dumps({"text": row.text})
