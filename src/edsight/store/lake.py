"""The Parquet lake: every canonical table as ``<table>.parquet`` in one folder.

Export writes each file beside its final name and renames it into place, so a
crash never leaves a half-written table; import is an ordinary validated load.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq

from edsight.schema import CANONICAL
from edsight.sql import quote_ident, scalar
from edsight.store.warehouse import Warehouse

_BATCH_ROWS = 1 << 20


def export_lake(warehouse: Warehouse, out_dir: Path) -> dict[str, int]:
    """Write the non-empty canonical tables, sorted by key; return rows per table."""
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
            final = out_dir / f"{name}.parquet"
            partial = out_dir / f".{name}.parquet.partial"
            with pq.ParquetWriter(partial, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
            os.replace(partial, final)
            counts[name] = n
    return counts
