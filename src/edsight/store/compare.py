"""Compare two results of the same query from different engines (DuckDB vs Spark)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["result_differences"]


def _as_frame(table: pa.Table | pd.DataFrame) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table.reset_index(drop=True)
    return table.to_pandas(date_as_object=True)


def result_differences(
    left: pa.Table | pd.DataFrame,
    right: pa.Table | pd.DataFrame,
    keys: Sequence[str],
    *,
    tolerance: float = 1e-9,
    limit: int = 10,
) -> list[str]:
    """Where two results of the same query differ (empty when they agree).

    Rows are matched on ``keys`` (which must be identical sets); numeric columns agree within
    ``tolerance`` (absolute, or relative for large values), every other column exactly; nulls
    must sit in the same cells.
    """
    a, b = _as_frame(left), _as_frame(right)
    problems: list[str] = []
    if list(a.columns) != list(b.columns):
        return [f"columns differ: {list(a.columns)} vs {list(b.columns)}"]
    if len(a) != len(b):
        problems.append(f"row counts differ: {len(a)} vs {len(b)}")
    a = a.sort_values(list(keys), ignore_index=True, kind="stable")
    b = b.sort_values(list(keys), ignore_index=True, kind="stable")
    if problems:
        return problems
    for col in keys:
        if not a[col].astype(object).equals(b[col].astype(object)):
            return [f"key column {col} differs"]
    for col in a.columns:
        if col in keys:
            continue
        x, y = a[col], b[col]
        nx, ny = x.isna().to_numpy(), y.isna().to_numpy()
        if not np.array_equal(nx, ny):
            problems.append(f"{col}: nulls differ in {int((nx != ny).sum())} rows")
            continue
        keep = ~nx
        if (
            pd.api.types.is_numeric_dtype(x)
            and pd.api.types.is_numeric_dtype(y)
            and not (pd.api.types.is_bool_dtype(x) or pd.api.types.is_bool_dtype(y))
        ):
            xv = x.to_numpy(np.float64, na_value=np.nan)[keep]
            yv = y.to_numpy(np.float64, na_value=np.nan)[keep]
            bad = np.abs(xv - yv) > tolerance * np.maximum(1.0, np.abs(xv))
            if bad.any():
                worst = float(np.max(np.abs(xv - yv)))
                problems.append(f"{col}: {int(bad.sum())} values differ (largest by {worst:.3g})")
        else:
            xo = x[keep].astype(object).to_numpy()
            yo = y[keep].astype(object).to_numpy()
            neq = xo != yo
            if np.any(neq):
                problems.append(f"{col}: {int(np.sum(neq))} values differ")
        if len(problems) >= limit:
            break
    return problems
