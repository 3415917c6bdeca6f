"""Synthetic Canvas LMS semester: seed-compatible, calibrated, leak-free and vectorized.

Re-implements the public "seed" simulation (sylvia010402/Canvas-AI-Student-Performance-Analytics,
``code/data_simulation.ipynb``) with its tables, columns and behavioural structure, but

* calibrated so the advertised population rates hold (85 % submission, 25 % of submitted work
  late, 15 % invisible weeks, mean grade of submitted work ~0.775);
* computing every weekly analytics value *as of the end of that week* -- no column of week ``w``
  can see anything timestamped at or after the end of week ``w``;
* deterministic for a seed and vectorized; large populations are produced in fixed-size chunks
  of students with independent random streams and streamed to disk with pyarrow.

See ``docs/synthetic-canvas.md`` for the model, its constants and measured rates.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from edsight.synth import _canvas_arrow as A
from edsight.synth import _canvas_labels as L
from edsight.synth import _canvas_params as P
from edsight.synth import _canvas_sim as S

__all__ = [
    "CANVAS_COLUMNS",
    "CANVAS_TABLES",
    "HORIZON_WEEKS",
    "N_WEEKS",
    "TERM_START",
    "arrow_schema",
    "generate_canvas",
    "label_training_rows",
    "write_canvas",
]

logger = logging.getLogger(__name__)

TERM_START: Final[date] = P.TERM_START
N_WEEKS: Final[int] = P.N_WEEKS
HORIZON_WEEKS: Final[int] = P.HORIZON_WEEKS

CANVAS_TABLES: tuple[str, ...] = A.TABLES

CANVAS_COLUMNS: dict[str, tuple[str, ...]] = {name: tuple(A.SCHEMAS[name].names) for name in CANVAS_TABLES}

# Fixed, not tunable: chunk k always holds students [k * C, (k + 1) * C) and draws from its own
# stream, so the output depends on (n_students, seed) alone. 100k students keep one chunk's
# tables near 1 GB while amortising per-chunk overhead.
_CHUNK_STUDENTS: Final[int] = 100_000
_BIG_TABLES: Final[tuple[str, ...]] = A.BIG_TABLES
_FORMATS: Final[tuple[str, ...]] = ("csv", "parquet")


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of one Canvas table (string columns plain, timestamps in seconds).

    Useful to read the CSV output back with exact types (``pyarrow.csv.ConvertOptions``).
    """
    if table not in A.SCHEMAS:
        raise ValueError(f"unknown Canvas table {table!r}; expected one of {CANVAS_TABLES}")
    return A.SCHEMAS[table]


# --- validation -----------------------------------------------------------------------------
def _check_args(n_students: object, seed: object) -> None:
    if isinstance(n_students, bool) or not isinstance(n_students, int | np.integer):
        raise ValueError(f"n_students must be an integer, got {type(n_students).__name__}")
    if n_students < 1:
        raise ValueError(f"n_students must be >= 1, got {n_students}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")


def _iter_chunks(n_students: int, seed: int) -> Iterator[tuple[int, dict[str, pa.Table]]]:
    """Yield (students done, tables) for each fixed-size chunk, in order."""
    catalog = S.make_catalog(S.catalog_rng(seed))
    for chunk, first in enumerate(range(0, n_students, _CHUNK_STUDENTS)):
        n = min(_CHUNK_STUDENTS, n_students - first)
        logger.debug("simulating chunk %d (%d students)", chunk, n)
        yield first + n, A.chunk_tables(seed, catalog, chunk, first, n)


def _small_tables(seed: int) -> dict[str, pa.Table]:
    return {
        "courses": A.courses_table(),
        "assignments": A.assignments_table(S.make_catalog(S.catalog_rng(seed))),
    }


# --- public API -----------------------------------------------------------------------------
def generate_canvas(n_students: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Simulate a Canvas semester in memory and return the six tables as DataFrames.

    Identical, value for value, to what :func:`write_canvas` streams for the same
    ``(n_students, seed)``. Meant for tests and small populations: everything is materialised.

    Raises:
        ValueError: if ``n_students < 1`` or ``seed`` is not a non-negative integer.
    """
    _check_args(n_students, seed)
    parts: dict[str, list[pa.Table]] = {name: [] for name in _BIG_TABLES}
    for _, tables in _iter_chunks(int(n_students), int(seed)):
        for name, table in tables.items():
            parts[name].append(table.cast(A.SCHEMAS[name]))
    arrow = _small_tables(int(seed))
    arrow.update({name: pa.concat_tables(parts[name]) for name in _BIG_TABLES})
    return {name: arrow[name].to_pandas() for name in CANVAS_TABLES}


class _Sink:
    """One output file, written chunk by chunk (never concurrently with itself)."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: str) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".partial")
        self.rows = 0
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None
        self._schema = schema
        self._fmt = fmt

    def write(self, table: pa.Table) -> None:
        if table.column_names != self._schema.names:
            raise ValueError(f"{self.path.name}: columns {table.column_names} != {self._schema.names}")
        if self._writer is None:
            # Open lazily with the first chunk's schema: dictionary columns stay dictionaries.
            if self._fmt == "parquet":
                dict_cols = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
                self._writer = pq.ParquetWriter(
                    self.tmp,
                    table.schema,
                    compression="zstd",
                    # Only low-cardinality columns gain from dictionary pages; random floats
                    # and timestamps would fill the dictionary and fall back anyway.
                    use_dictionary=dict_cols
                    + [
                        f.name for f in table.schema if pa.types.is_integer(f.type) and f.name != "student_id"
                    ],
                    # Without the stored Arrow schema, dictionary columns read back as plain
                    # strings, which is what the documented schema says.
                    store_schema=False,
                )
            else:
                self._writer = pa_csv.CSVWriter(self.tmp, table.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self, *, commit: bool) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if commit:
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()


def write_canvas(
    out_dir: Path,
    n_students: int,
    seed: int = 0,
    fmt: Literal["csv", "parquet"] = "csv",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Streams the six tables to out_dir/<table>.<fmt>; returns row counts per table.

    Students are simulated in fixed chunks; while chunk k+1 is simulated, chunk k's tables are
    written from worker threads (pyarrow releases the GIL), so at most two chunks are in memory.
    Files appear atomically (written as ``*.partial`` then renamed). ``progress`` is called with
    ``(students_written, n_students)`` after each chunk. CSV has a header row, ISO timestamps and
    empty cells for nulls; Parquet stores timestamps in milliseconds (Parquet has no seconds
    unit) and string columns dictionary-encoded.

    Raises:
        ValueError: if ``n_students < 1``, ``seed`` is negative or ``fmt`` is unknown.
    """
    _check_args(n_students, seed)
    if fmt not in _FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {_FORMATS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_students, seed = int(n_students), int(seed)
    sinks = {name: _Sink(out_dir / f"{name}.{fmt}", A.SCHEMAS[name], fmt) for name in CANVAS_TABLES}
    ok = False
    try:
        for name, table in _small_tables(seed).items():
            sinks[name].write(table)
        with ThreadPoolExecutor(max_workers=len(_BIG_TABLES)) as pool:
            pending: list[Future[None]] = []
            pending_done = 0
            for done, tables in _iter_chunks(n_students, seed):
                # Waiting here keeps each file's chunks in order and bounds memory to 2 chunks.
                for fut in pending:
                    fut.result()
                if pending and progress is not None:
                    progress(pending_done, n_students)
                pending = [pool.submit(sinks[name].write, tables[name]) for name in _BIG_TABLES]
                pending_done = done
                del tables
            for fut in pending:
                fut.result()
        if progress is not None:
            progress(pending_done, n_students)
        ok = True
    finally:
        for sink in sinks.values():
            sink.close(commit=ok)
    counts = {name: sinks[name].rows for name in CANVAS_TABLES}
    logger.info("wrote synthetic Canvas tables (%s) to %s: %s", fmt, out_dir, counts)
    return counts


def label_training_rows(analytics: pd.DataFrame, horizon: int = HORIZON_WEEKS) -> pd.DataFrame:
    """Attach the seed's four look-ahead labels to every analytics row that has a full horizon.

    For the row of (student, course, week w), over weeks w+1..w+horizon of the same pair:
    ``will_fail_academically`` = mean(current_grade) < 0.6; ``will_disengage`` =
    mean(page_views) < 10 and mean(participations) < 2; ``will_miss_assignments`` =
    mean(assignments_missing) > 2; ``will_dropout`` = mean(current_grade) < 0.4 and
    mean(page_views) < 5. Null grades are skipped by the mean; all-null makes the grade
    conditions False. Rows whose pair lacks any of weeks w+1..w+horizon are dropped. The result
    keeps the input's row order and columns, plus ``prediction_week`` (= week) and the labels.

    Raises:
        ValueError: on a missing column, a non-positive horizon or duplicate (pair, week) rows.
    """
    needed = (
        "student_id",
        "course_id",
        "week",
        "current_grade",
        "page_views",
        "participations",
        "assignments_missing",
    )
    missing_cols = [c for c in needed if c not in analytics.columns]
    if missing_cols:
        raise ValueError(f"analytics is missing columns {missing_cols}")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    pair = analytics.groupby(["student_id", "course_id"], sort=False, observed=True).ngroup()
    g = pair.to_numpy(dtype=np.int64)
    week = analytics["week"].to_numpy(dtype=np.int64)
    n_rows = len(analytics)
    if n_rows == 0:
        w0, width, n_groups = 0, 1, 0
    else:
        w0 = int(week.min())
        width = int(week.max()) - w0 + 1
        n_groups = int(g.max()) + 1
    col = week - w0
    present = np.zeros((width, n_groups), np.bool_)
    present[col, g] = True
    if int(present.sum()) != n_rows:
        raise ValueError("analytics has duplicate (student_id, course_id, week) rows")

    def dense(name: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        out = np.full((width, n_groups), np.nan)
        out[col, g] = analytics[name].to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    eligible, labels = L.dense_labels(
        dense("current_grade"),
        dense("page_views"),
        dense("participations"),
        dense("assignments_missing"),
        present,
        horizon,
    )
    keep = eligible[col, g]
    out: pd.DataFrame = analytics.loc[keep].copy()
    out["prediction_week"] = analytics["week"].to_numpy()[keep]
    for name in A.LABEL_COLUMNS:
        out[name] = labels[name][col, g][keep]
    return out
