"""Small-cell suppression of published aggregates (NCES practice, minimum n).

Rules, in order:

1. Primary: a cell whose count is 0 < n < ``min_n`` is hidden (count, values, rates).
2. Complementary: within every group whose total is published (each grouping in
   ``margins``; ``by`` alone, or the whole table when neither is given), the hidden
   cells must add up to 0 or to at least ``min_n``, and a group never holds exactly
   one hidden cell among several; otherwise the smallest visible non-zero cell is
   hidden too. Groupings interact (a row complement can leave a column with one
   hidden cell), so the rules repeat until nothing changes. A group whose own total
   is below ``min_n`` ends fully hidden: its total must not be published either.
3. Top/bottom coding: in visible cells of groups smaller than ``small_group_n``,
   rates below ``rate_floor`` read ``"<5%"`` and above ``1 - rate_floor`` read ``">95%"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput


def _groupings(by: Sequence[str] | str | None, margins: Sequence[Sequence[str]] | None) -> list[list[str]]:
    out: list[list[str]] = []
    if by is not None:
        out.append([by] if isinstance(by, str) else list(by))
    for margin in margins or ():
        out.append([margin] if isinstance(margin, str) else list(margin))
    return out or [[]]


def _group_members(frame: pd.DataFrame, cols: list[str]) -> list[np.ndarray]:
    """Positional row indices of each group of ``cols`` (one group: the whole frame)."""
    if not cols:
        return [np.arange(len(frame))]
    codes = frame.groupby(cols, sort=False, dropna=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return [g for g in np.split(order, bounds) if len(g)]


def suppression_mask(counts: np.ndarray, groups: Sequence[Sequence[np.ndarray]], min_n: int) -> np.ndarray:
    """Which cells to hide, given their counts and the groups whose totals are published."""
    hidden = (counts > 0) & (counts < min_n)
    changed = True
    while changed:
        changed = False
        for grouping in groups:
            for members in grouping:
                if len(members) < 2:
                    continue
                while True:
                    h = hidden[members]
                    hidden_sum = counts[members][h].sum()
                    n_hidden = int(h.sum())
                    needs_more = (0 < hidden_sum < min_n) or n_hidden == 1
                    if not needs_more:
                        break
                    visible = members[~h]
                    if len(visible) == 0:
                        break
                    # Prefer the smallest non-zero cell: it protects at the least cost.
                    nonzero = visible[counts[visible] > 0]
                    pool = nonzero if len(nonzero) else visible
                    pick = pool[int(np.argmin(counts[pool]))]  # first of the smallest
                    hidden[pick] = True
                    changed = True
    return hidden


def suppress_table(
    frame: pd.DataFrame,
    *,
    count_col: str = "n",
    min_n: int = 10,
    by: Sequence[str] | str | None = None,
    value_cols: Sequence[str] = (),
    rate_cols: Sequence[str] = (),
    margins: Sequence[Sequence[str]] | None = None,
    small_group_n: int = 300,
    rate_floor: float = 0.05,
) -> pd.DataFrame:
    """A copy of ``frame`` safe to publish: small cells and their complements hidden.

    Hidden counts become ``<NA>`` (nullable Int64), hidden values and rates NaN;
    a ``suppressed`` column marks hidden cells; rates of small groups near 0 or 1
    are replaced by ``"<5%"`` / ``">95%"`` (the rate columns become object dtype).
    """
    missing = [c for c in (count_col, *value_cols, *rate_cols) if c not in frame.columns]
    groupings = _groupings(by, margins)
    missing += [c for g in groupings for c in g if c not in frame.columns]
    if missing:
        raise InvalidInput(f"suppress_table: no column(s) {', '.join(sorted(set(missing)))}")
    if min_n < 1:
        raise InvalidInput("suppress_table: min_n must be at least 1")
    raw = pd.to_numeric(frame[count_col], errors="raise")
    if raw.isna().any() or (raw < 0).any():
        raise InvalidInput(f"suppress_table: {count_col} must hold non-negative counts")
    counts = raw.to_numpy(dtype=np.int64)
    groups = [_group_members(frame, cols) for cols in groupings]
    hidden = suppression_mask(counts, groups, min_n)

    out = frame.copy()
    out[count_col] = pd.array(np.where(hidden, 0, counts), dtype="Int64")
    out.loc[hidden, count_col] = pd.NA
    for col in value_cols:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
        out.loc[hidden, col] = np.nan
    small = counts < small_group_n
    floor_label = f"<{rate_floor * 100:g}%"
    ceil_label = f">{(1 - rate_floor) * 100:g}%"
    for col in rate_cols:
        rates = pd.to_numeric(frame[col], errors="coerce").astype("float64").to_numpy()
        coded = pd.Series(rates, index=out.index, dtype="object")
        coded[hidden] = np.nan
        low = ~hidden & small & (rates < rate_floor)
        high = ~hidden & small & (rates > 1 - rate_floor)
        coded[low] = floor_label
        coded[high] = ceil_label
        out[col] = coded
    out["suppressed"] = hidden
    return out


__all__ = ["suppress_table", "suppression_mask"]
