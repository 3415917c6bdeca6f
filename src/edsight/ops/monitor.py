"""Drift of features and scores: the population stability index (PSI).

PSI compares the distribution of a column now with a reference period (the model's training
window): ``sum((a - e) * ln(a / e))`` over bins cut at the reference's deciles, with missing
values as a bin of their own. The usual reading: below 0.10 stable, 0.10-0.25 moderate shift,
above 0.25 a shift large enough to re-check the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput

__all__ = ["PSI_MODERATE", "PSI_SIGNIFICANT", "drift_report", "psi"]

PSI_MODERATE = 0.10
PSI_SIGNIFICANT = 0.25
_FLOOR = 1e-4  # share given to empty bins, so the log stays finite


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    shares = counts / total if total else np.zeros_like(counts, dtype=float)
    return np.asarray(np.maximum(shares, _FLOOR), dtype=float)


def psi(reference: pd.Series, current: pd.Series, *, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference``."""
    if bins < 2:
        raise InvalidInput(f"psi needs at least 2 bins, got {bins}")
    ref = pd.to_numeric(reference, errors="coerce")
    cur = pd.to_numeric(current, errors="coerce")
    known = ref.dropna().to_numpy(dtype=float)
    if known.size == 0:
        return 0.0 if cur.notna().sum() == 0 else float("inf")
    edges = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1]))

    def counts(values: pd.Series) -> np.ndarray:
        present = values.dropna().to_numpy(dtype=float)
        binned = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
        return np.append(binned, values.isna().sum()).astype(float)

    e, a = _shares(counts(ref)), _shares(counts(cur))
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], *, bins: int = 10
) -> pd.DataFrame:
    """PSI per column, worst first, with a level: stable, moderate or significant."""
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise InvalidInput(f"drift report: column(s) {missing} missing from the reference or current data")
    values = [psi(reference[c], current[c], bins=bins) for c in columns]
    report = pd.DataFrame({"column": list(columns), "psi": values})
    report["level"] = np.select(
        [report["psi"] >= PSI_SIGNIFICANT, report["psi"] >= PSI_MODERATE],
        ["significant", "moderate"],
        default="stable",
    )
    return report.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)
