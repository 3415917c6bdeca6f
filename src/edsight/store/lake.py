"""The Parquet lake: every canonical table as ``<table>.parquet`` in one folder.

Export writes each file beside its final name and renames it into place, so a
crash never leaves a half-written table; import is an ordinary validated load.

With ``partitioned=True`` the tables that carry ``school_year`` and/or ``school_id`` (declared
non-null) are written hive-style instead, as ``<table>/school_year=Y/school_id=S/part-0.parquet``,
so DuckDB and Spark (:mod:`edsight.store.engine`) prune whole years and schools when reading.
Partition values are typed from the declaration when read back, never inferred. Other tables
stay single files. ``edsight lake import`` reads the flat layout only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from edsight.schema import CANONICAL, Table
from edsight.sql import quote_ident, scalar
from edsight.store.warehouse import Warehouse

__all__ = ["PARTITION_COLUMNS", "export_lake", "partition_columns"]

_BATCH_ROWS = 1 << 20
# Outermost first: a year's folder holds its schools.
PARTITION_COLUMNS: tuple[str, ...] = ("school_year", "school_id")


def partition_columns(table: Table) -> list[str]:
    """The hive partition columns of a declared table: those of PARTITION_COLUMNS it has, non-null."""
    return [c for c in PARTITION_COLUMNS if c in table.column_index and not table.column_index[c].nullable]


def _replace(partial: Path, final: Path, other: Path) -> None:
    """Move ``partial`` (file or folder) to ``final``; drop ``other``, the table's other layout."""
    if other.is_dir():
        shutil.rmtree(other)
    elif other.exists():
        other.unlink()
    if final.is_dir():
        old = final.parent / f".{final.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, final)


def export_lake(warehouse: Warehouse, out_dir: Path, *, partitioned: bool = False) -> dict[str, int]:
    """Write the non-empty canonical tables, sorted by key; return rows per table.

    ``partitioned`` writes tables with year/school columns as hive-partitioned folders.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with warehouse.connect(read_only=True) as con:
        for name, decl in CANONICAL.items():
            n = int(scalar(con, f"SELECT count(*) FROM {quote_ident(name)}"))
            if not n:
                continue
            cols = ", ".join(quote_ident(c) for c in decl.column_names)
            key = ", ".join(quote_ident(k) for k in decl.primary_key)
            query = f"SELECT {cols} FROM {quote_ident(name)} ORDER BY {key}"
            reader = con.sql(query).to_arrow_reader(_BATCH_ROWS)
            parts = partition_columns(decl) if partitioned else []
            if parts:
                final = out_dir / name
                partial = out_dir / f".{name}.partial"
                shutil.rmtree(partial, ignore_errors=True)
                ds.write_dataset(
                    reader,
                    partial,
                    format="parquet",
                    partitioning=parts,
                    partitioning_flavor="hive",
                    basename_template="part-{i}.parquet",
                    max_partitions=1 << 16,
                    existing_data_behavior="overwrite_or_ignore",
                    preserve_order=True,  # rows stay sorted by key inside each file
                )
            else:
                final = out_dir / f"{name}.parquet"
                partial = out_dir / f".{name}.parquet.partial"
                with pq.ParquetWriter(partial, reader.schema) as writer:
                    for batch in reader:
                        writer.write_batch(batch)
            other = out_dir / f"{name}.parquet" if parts else out_dir / name
            _replace(partial, final, other)
            counts[name] = n
    return counts
