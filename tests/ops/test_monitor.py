"""PSI: zero for the same distribution, large for a shifted one, missing values counted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edsight.errors import InvalidInput
from edsight.ops.monitor import PSI_MODERATE, PSI_SIGNIFICANT, drift_report, psi


def test_psi_reads_as_expected() -> None:
    rng = np.random.default_rng(0)
    ref = pd.Series(rng.normal(0, 1, 20_000))
    same = pd.Series(rng.normal(0, 1, 20_000))
    small = pd.Series(rng.normal(0.2, 1, 20_000))
    large = pd.Series(rng.normal(1.0, 1, 20_000))
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert psi(ref, same) < 0.01
    assert 0.02 < psi(ref, small) < PSI_SIGNIFICANT
    assert psi(ref, large) > PSI_SIGNIFICANT
    # a shift in missingness alone is drift too
    holes = same.copy()
    holes[: len(holes) // 3] = np.nan
    assert psi(ref, holes) > PSI_SIGNIFICANT


def test_drift_report_levels_and_errors() -> None:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 5000), "b": rng.integers(0, 5, 5000)})
    cur = pd.DataFrame({"a": rng.normal(1.5, 1, 5000), "b": rng.integers(0, 5, 5000)})
    report = drift_report(ref, cur, ["b", "a"])
    assert report["column"].tolist() == ["a", "b"]
    assert report["level"].tolist() == ["significant", "stable"]
    assert report.loc[1, "psi"] < PSI_MODERATE
    with pytest.raises(InvalidInput, match=r"column\(s\) \['c'\] missing"):
        drift_report(ref, cur, ["c"])
    with pytest.raises(InvalidInput, match="at least 2 bins"):
        psi(ref["a"], cur["a"], bins=1)
