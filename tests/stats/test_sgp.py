"""Student growth percentiles: the QR solver, uniformity on sgpData, projections, truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from edsight.errors import InvalidInput
from edsight.stats._sgp_qr import quantile_regression
from edsight.stats.sgp import (
    TAUS,
    StudentGrowthPercentiles,
    growth_projections,
    sgp_long_from_wide,
    sgp_summary,
    sgp_uniformity,
)
from edsight.synth.district import generate_district

SGP_DATA = Path(__file__).parents[1] / "data" / "sgp" / "sgpData.csv"


def _check_loss(x: np.ndarray, y: np.ndarray, b: np.ndarray, tau: float) -> float:
    r = y - x @ b
    return float(np.sum(np.where(r > 0, tau, tau - 1) * r))


def test_interior_point_matches_highs_linear_program() -> None:
    rng = np.random.default_rng(1)
    n = 400
    x = np.column_stack([np.ones(n), rng.normal(size=n), rng.uniform(size=n)])
    y = x @ [1.0, 2.0, -1.0] + rng.standard_t(3, size=n) * (1 + np.abs(x[:, 1]))
    taus = np.array([0.05, 0.5, 0.95])
    ours = quantile_regression(x, y, taus)
    for k, tau in enumerate(taus):
        c = np.r_[np.zeros(3), np.full(n, tau), np.full(n, 1 - tau)]
        a_eq = np.hstack([x, np.eye(n), -np.eye(n)])
        lp = linprog(c, A_eq=a_eq, b_eq=y, bounds=[(None, None)] * 3 + [(0, None)] * (2 * n), method="highs")
        assert _check_loss(x, y, ours[k], tau) == pytest.approx(lp.fun, rel=1e-7)
        assert np.allclose(ours[k], lp.x[:3], atol=1e-4)


@pytest.fixture(scope="module")
def sgp_model() -> tuple[StudentGrowthPercentiles, pd.DataFrame]:
    wide = pd.read_csv(SGP_DATA)
    # A fixed 7% sample of students keeps the test fast; the full run is in benchmarks/.
    wide = wide[wide["ID"] % 100 < 7]
    long = sgp_long_from_wide(wide)
    return StudentGrowthPercentiles(max_order=2, min_students=300).fit(long), long


def test_sgps_are_near_uniform_on_sgpdata(sgp_model) -> None:  # type: ignore[no-untyped-def]
    model, _ = sgp_model
    sgp = model.sgp_["sgp"].dropna()
    assert sgp.between(1, 99).all()
    assert len(sgp) > 7000
    u = sgp_uniformity(sgp)
    gaps = np.abs(np.array(u["decile_shares"]) - np.array(u["expected_decile_shares"]))
    assert gaps.max() < 0.015
    assert u["ks_distance"] < 0.025  # type: ignore[operator]
    assert 48 <= u["median"] <= 52  # type: ignore[operator]
    assert u["chi2_per_df"] < 1.6  # type: ignore[operator]
    # Both orders were fitted: second-order SGPs exist where two prior grades exist.
    assert {1, 2} <= set(model.sgp_["sgp_order"].dropna().astype(int))


def test_fitted_quantiles_do_not_cross(sgp_model) -> None:  # type: ignore[no-untyped-def]
    model, _ = sgp_model
    fit = next(iter(model.fits_.values()))
    grid = np.linspace(fit.bases[0].low, fit.bases[0].high, 50)[:, None]
    q = fit.quantiles(np.repeat(grid, len(fit.prior_grades), axis=1))
    assert q.shape == (50, len(TAUS))
    assert (np.diff(q, axis=1) >= 0).all()


def test_summary_reports_median_and_n(sgp_model) -> None:  # type: ignore[no-untyped-def]
    model, _ = sgp_model
    summ = sgp_summary(model.sgp_, by=["grade_level"])
    assert list(summ.columns) == ["grade_level", "n", "median_sgp", "mean_sgp"]
    assert summ["n"].sum() == model.sgp_["sgp"].notna().sum()
    assert summ["median_sgp"].between(45, 55).all()


def test_growth_projections_are_monotone(sgp_model) -> None:  # type: ignore[no-untyped-def]
    model, long = sgp_model
    cur = long[(long["school_year"] == 2025) & (long["grade_level"] == 4)].head(300)
    cuts = {
        ("score", float(g)): float(long.loc[long["grade_level"] == g, "score"].median()) for g in range(3, 9)
    }
    proj = growth_projections(model, cur, cuts, years=3)
    assert set(proj["years_ahead"]) == {1, 2, 3}
    one = proj[proj["years_ahead"] == 1].merge(cur[["person_id", "score"]], on="person_id")
    assert (one["score_p65"] >= one["score_p35"]).all()
    # A higher score now needs a lower growth percentile to reach the same cut.
    rho = one[["score", "percentile_to_cut"]].corr(method="spearman").iloc[0, 1]
    assert rho < -0.8
    # Reaching the cut at percentile p means the p-trajectory is at or above it.
    hit = one[one["percentile_to_cut"] <= 50]
    assert (hit["score_p50"] >= hit["cut_score"] - 1e-9).all()


def test_sgps_track_true_growth_on_district_data() -> None:
    data = generate_district(8000, n_years=4, n_schools=8, seed=2)
    ar = data.tables["assessment_result"]
    long = pd.DataFrame(
        {
            "person_id": ar["person_id"].astype(str),
            "subject": ar["subject"].astype(str),
            "school_year": ar["school_year"].astype(int),
            "grade_level": ar["grade_level"].astype(float),
            "score": ar["scale_score"].astype(float),
        }
    )
    model = StudentGrowthPercentiles(max_order=1, min_students=200).fit(long)
    per_student = model.sgp_.groupby(["person_id", "subject"], as_index=False)["sgp"].mean()
    truth = data.truth["student_truth"].astype({"person_id": str, "subject": str})
    m = per_student.merge(truth, on=["person_id", "subject"]).dropna()
    rho = m[["sgp", "true_growth"]].corr(method="spearman").iloc[0, 1]
    assert rho > 0.15


def test_bad_input_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="missing column"):
        StudentGrowthPercentiles().fit(pd.DataFrame({"person_id": [1]}))
    with pytest.raises(InvalidInput, match="GRADE_"):
        sgp_long_from_wide(pd.DataFrame({"ID": [1]}))
