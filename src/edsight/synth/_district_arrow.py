"""Arrow schemas, id builders and table sinks for the district generator (private)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

_S = pa.string()
_D = pa.date32()
_I8 = pa.int8()
_I16 = pa.int16()
_F = pa.float64()


def _schema(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(name, typ, nullable=nullable) for name, typ, nullable in fields])


# Nullable flags mirror edsight.schema.CANONICAL (the generator itself never writes nulls
# outside the columns the brief marks optional); tests check the two stay in step.
SCHEMAS: dict[str, pa.Schema] = {
    "organization": _schema(
        ("org_id", _S, False),
        ("name", _S, False),
        ("org_type", _S, False),
        ("parent_org_id", _S, True),
        ("school_level", _S, True),
        ("grade_low", _I8, True),
        ("grade_high", _I8, True),
    ),
    "term": _schema(
        ("term_id", _S, False),
        ("name", _S, False),
        ("term_type", _S, False),
        ("school_year", _I16, False),
        ("start_date", _D, False),
        ("end_date", _D, False),
        ("parent_term_id", _S, True),
    ),
    "calendar": _schema(("org_id", _S, False), ("school_year", _I16, False), ("date", _D, False)),
    "person": _schema(
        ("person_id", _S, False),
        ("role", _S, False),
        ("given_name", _S, False),
        ("family_name", _S, False),
        ("birth_date", _D, True),
        ("local_id", _S, True),
        ("state_id", _S, True),
        ("directory_opt_out", pa.bool_(), False),
    ),
    "student_demographics": _schema(
        ("person_id", _S, False),
        ("sex", _S, True),
        ("race_ethnicity", _S, True),
        ("economically_disadvantaged", pa.bool_(), True),
        ("english_learner", pa.bool_(), True),
        ("disability", pa.bool_(), True),
    ),
    "school_enrollment": _schema(
        ("person_id", _S, False),
        ("school_id", _S, False),
        ("school_year", _I16, False),
        ("grade_level", _I8, False),
        ("entry_date", _D, False),
        ("exit_date", _D, True),
        ("exit_type", _S, True),
    ),
    "course": _schema(
        ("course_id", _S, False),
        ("title", _S, False),
        ("subject", _S, True),
        ("grade_low", _I8, True),
        ("grade_high", _I8, True),
        ("credits", _F, True),
    ),
    "section": _schema(
        ("section_id", _S, False),
        ("course_id", _S, False),
        ("term_id", _S, False),
        ("school_id", _S, False),
    ),
    "enrollment": _schema(
        ("section_id", _S, False),
        ("person_id", _S, False),
        ("role", _S, False),
        ("start_date", _D, False),
        ("end_date", _D, True),
    ),
    "attendance": _schema(
        ("person_id", _S, False),
        ("school_id", _S, False),
        ("date", _D, False),
        ("status", _S, False),
    ),
    "discipline": _schema(
        ("incident_id", _S, False),
        ("person_id", _S, False),
        ("school_id", _S, False),
        ("date", _D, False),
        ("severity", _S, False),
    ),
    "course_grade": _schema(
        ("person_id", _S, False),
        ("section_id", _S, False),
        ("term_id", _S, False),
        ("numeric_grade", _F, True),
        ("letter_grade", _S, True),
        ("credits_attempted", _F, True),
        ("credits_earned", _F, True),
    ),
    "assessment_result": _schema(
        ("person_id", _S, False),
        ("assessment", _S, False),
        ("subject", _S, False),
        ("school_year", _I16, False),
        ("grade_level", _I8, True),
        ("test_date", _D, False),
        ("scale_score", _F, False),
        ("sem", _F, True),
        ("perf_level", _I8, True),
        ("percentile", _F, True),
    ),
    "student_outcome": _schema(
        ("person_id", _S, False),
        ("cohort_year", _I16, False),
        ("outcome", _S, False),
        ("outcome_date", _D, True),
    ),
}


def _align_nullability(schemas: dict[str, pa.Schema]) -> dict[str, pa.Schema]:
    """Take nullability from ``edsight.schema.CANONICAL`` where it declares the column, so
    written files carry the same flags as the warehouse; the types stay the ones above."""
    try:
        from edsight.schema import CANONICAL
    except ImportError:  # pragma: no cover - the schema module ships with edsight
        return schemas
    out: dict[str, pa.Schema] = {}
    for name, schema in schemas.items():
        declared = getattr(CANONICAL.get(name), "column_index", {})
        fields = [
            f.with_nullable(bool(declared[f.name].nullable)) if f.name in declared else f for f in schema
        ]
        out[name] = pa.schema(fields)
    return out


SCHEMAS = _align_nullability(SCHEMAS)


TRUTH_SCHEMAS: dict[str, pa.Schema] = {
    "school_effects": _schema(("school_id", _S, False), ("subject", _S, False), ("effect", _F, False)),
    "teacher_effects": _schema(
        ("teacher_id", _S, False),
        ("subject", _S, False),
        ("school_year", _I16, False),
        ("effect", _F, False),
        ("persistent_effect", _F, False),
    ),
    "student_truth": _schema(
        ("person_id", _S, False),
        ("subject", _S, False),
        ("true_status", _F, False),
        ("true_growth", _F, False),
    ),
}


# --------------------------------------------------------------------------- array helpers
def fixed_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Zero-padded ids ``prefix + number`` built straight into an Arrow string buffer.

    Far cheaper than Python string formatting for millions of ids; ``numbers`` must be
    non-negative and below ``10**width``.
    """
    nums = np.asarray(numbers, dtype=np.int64)
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    row = len(head) + width
    buf = np.empty((len(nums), row), dtype=np.uint8)
    buf[:, : len(head)] = head
    rest = nums.copy()
    for k in range(width - 1, -1, -1):
        buf[:, len(head) + k] = (rest % 10).astype(np.uint8) + 48
        rest //= 10
    offsets = np.arange(0, (len(nums) + 1) * row, row, dtype=np.int32)
    return pa.Array.from_buffers(
        _S, len(nums), [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(buf))]
    )


def labels(values: Sequence[str], codes: np.ndarray) -> pa.Array:
    """Decode small integer codes into a plain string array."""
    return pc.take(pa.array(list(values), _S), pa.array(np.asarray(codes, dtype=np.int32)))


def const(value: str, n: int) -> pa.Array:
    """A string column holding ``value`` ``n`` times."""
    return pa.repeat(pa.scalar(value, _S), n)


def take(ids: pa.Array, idx: np.ndarray) -> pa.Array:
    """``ids[idx]`` for an Arrow array and a numpy index array."""
    return pc.take(ids, pa.array(np.asarray(idx, dtype=np.int64)))


def dates(epoch_days: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """date32 array from days since 1970-01-01 (``valid`` False -> null)."""
    arr = pa.array(np.asarray(epoch_days, dtype=np.int32), pa.int32())
    if valid is not None:
        arr = pa.array(np.asarray(epoch_days, dtype=np.int32), pa.int32(), mask=~valid)
    return arr.cast(_D)


def num(values: np.ndarray, typ: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """Numeric Arrow array of ``typ`` with an optional validity mask."""
    np_type = typ.to_pandas_dtype()
    mask = None if valid is None else ~valid
    return pa.array(np.asarray(values).astype(np_type, copy=False), typ, mask=mask)


def table(name: str, columns: Sequence[pa.Array], truth: bool = False) -> pa.Table:
    """Assemble a table against its canonical schema (fails loudly on type drift)."""
    schema = (TRUTH_SCHEMAS if truth else SCHEMAS)[name]
    return pa.Table.from_arrays(list(columns), schema=schema)


def empty(name: str) -> pa.Table:
    """A zero-row table with the canonical schema of ``name``."""
    schema = TRUTH_SCHEMAS.get(name) or SCHEMAS[name]
    return schema.empty_table()


def to_frame(tab: pa.Table) -> pd.DataFrame:
    """Arrow-backed DataFrame: keeps date32, small ints and nulls exactly as in the schema."""
    return tab.to_pandas(types_mapper=pd.ArrowDtype)


# --------------------------------------------------------------------------- sinks
class FileSink:
    """Streams table chunks to ``out_dir/<name>.<fmt>`` (truth tables under ground_truth/)."""

    def __init__(self, out_dir: Path, fmt: Literal["csv", "parquet"]) -> None:
        self.out_dir = out_dir
        self.fmt = fmt
        self.rows: dict[str, int] = {}
        self._writers: dict[str, Any] = {}
        (out_dir / "ground_truth").mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        sub = self.out_dir / "ground_truth" if name in TRUTH_SCHEMAS else self.out_dir
        return sub / f"{name}.{self.fmt}"

    def write(self, name: str, tab: pa.Table) -> None:
        writer = self._writers.get(name)
        if writer is None:
            path = self.path(name)
            if self.fmt == "parquet":
                writer = pq.ParquetWriter(path, tab.schema, compression="zstd")
            else:
                writer = pacsv.CSVWriter(path, tab.schema)
            self._writers[name] = writer
            self.rows[name] = 0
        writer.write_table(tab)
        self.rows[name] += tab.num_rows

    def close(self, names: Sequence[str]) -> None:
        for name in names:
            if name not in self._writers:
                self.write(name, empty(name))
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def abort(self) -> None:
        """Close open writers after a failure without adding placeholder files."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def write_json(self, payload: dict[str, Any]) -> None:
        text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False)
        (self.out_dir / "ground_truth" / "ground_truth.json").write_text(text + "\n")


class MemorySink:
    """Collects table chunks in memory for :func:`generate_district`."""

    def __init__(self) -> None:
        self.chunks: dict[str, list[pa.Table]] = {}

    def write(self, name: str, tab: pa.Table) -> None:
        self.chunks.setdefault(name, []).append(tab)

    def frame(self, name: str) -> pd.DataFrame:
        parts = self.chunks.get(name) or [empty(name)]
        return to_frame(pa.concat_tables(parts))
