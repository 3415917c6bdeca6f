"""Value-added: recovery of the district generator's known effects, STAR, and the drift BLP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edsight.errors import InvalidInput
from edsight.stats._vam_drift import autocovariance, drift_blp
from edsight.stats._vam_eiv import Term, correction, hermite_moment, within_ols
from edsight.stats._vam_truth import coverage, truth_on_estimate_scale
from edsight.stats.vam import ValueAddedModel, value_added_tables, vam_frame_from_tables
from edsight.synth.district import generate_district

STAR = Path(__file__).parents[1] / "data" / "star" / "star.csv"


@pytest.fixture(scope="module")
def district_fit() -> tuple[ValueAddedModel, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    data = generate_district(12000, n_years=4, n_schools=12, seed=5)
    frame = vam_frame_from_tables(data.tables)
    model = ValueAddedModel(standardize=False).fit(frame)
    ty, t, s = truth_on_estimate_scale(model.residuals_, data.truth, unit=85.0)
    return model, ty, t, s


def test_frame_links_every_tested_student_to_a_math_or_reading_teacher() -> None:
    data = generate_district(600, n_years=2, n_schools=3, seed=1)
    frame = vam_frame_from_tables(data.tables)
    assert set(frame["subject"]) == {"math", "reading"}
    assert frame["teacher_id"].notna().mean() > 0.97
    assert frame["teacher_id"].dropna().str.startswith("T").all()
    assert frame["dosage"].between(0, 1).all()
    assert not frame.duplicated(["person_id", "school_year", "subject"]).any()


def test_teacher_year_effects_recover_truth_with_nominal_coverage(district_fit) -> None:  # type: ignore[no-untyped-def]
    model, ty, _, _ = district_fit
    est = model.teacher_year_effects_.merge(ty, on=["subject", "teacher_id", "school_year"])
    est = est[est["students"] >= 10]
    for _, g in est.groupby("subject"):
        assert np.corrcoef(g["effect"], g["true_total"])[0, 1] >= 0.9
        assert (
            0.85
            <= coverage(g["effect"].to_numpy(), g["se"].to_numpy(), g["true_total"].to_numpy(), 0.95)
            <= 0.99
        )
        # Leave-year-out forecasts are forecast-unbiased: slope of truth on forecast near 1.
        slope = np.polyfit(g["forecast"], g["true_total"], 1)[0]
        assert 0.8 <= slope <= 1.25


def test_multi_year_teacher_and_school_effects_recover_truth(district_fit) -> None:  # type: ignore[no-untyped-def]
    model, _, t, s = district_fit
    est = model.teacher_effects_.merge(t, on=["subject", "teacher_id"])
    est = est[est["students"] >= 10]
    for _, g in est.groupby("subject"):
        assert np.corrcoef(g["effect"], g["true_total"])[0, 1] >= 0.9
        assert np.corrcoef(g["effect_within_school"], g["true_teacher"])[0, 1] >= 0.8
    sch = model.school_effects_.merge(s, on=["subject", "school_id"])
    sch = sch[sch["students"] >= 100]
    for _, g in sch.groupby("subject"):
        assert np.corrcoef(g["effect"], g["true_school_total"])[0, 1] >= 0.9
    comp = model.components_.set_index("subject")
    # Truth: teacher-year SD sqrt(0.15^2 + 0.06^2 + 0.08^2) ~ 0.18 SD ~ 15 points.
    assert comp["sd_teacher_year"].between(10, 20).all()
    assert (comp["mean_reliability_teacher_year"] > 0.5).all()
    assert comp["prior_error_correction"].all()  # the generator reports each score's SEM
    # This year's measurement error returns with a minus sign through next year's prior.
    assert all(-0.6 < rho[0] < -0.2 for rho in comp["student_lag_correlation"])


def test_every_published_table_carries_a_distinct_student_count(district_fit) -> None:  # type: ignore[no-untyped-def]
    model, _, _, _ = district_fit
    ty, t, s = model.teacher_year_effects_, model.teacher_effects_, model.school_effects_
    assert (ty["n"] == ty["students"]).all()  # one row per student in a teacher-year
    for tab in (t, s):
        assert ((tab["n"] >= 1) & (tab["n"] <= tab["students"])).all()
    assert (s["n"] < s["students"]).any()  # students counted once over their years
    assert (model.components_["n"] > 0).all()
    assert (model.coefficients_["n"] > 0).all()


def test_shrinkage_pulls_noisy_means_toward_zero(district_fit) -> None:  # type: ignore[no-untyped-def]
    model, _, _, _ = district_fit
    ty = model.teacher_year_effects_
    assert (ty["effect"].abs() <= ty["raw_mean"].abs().max()).all()
    assert ty["effect"].var() < ty["raw_mean"].var()
    assert ((ty["lower"] <= ty["effect"]) & (ty["effect"] <= ty["upper"])).all()
    assert ty["reliability"].between(0, 1).all()


def test_drift_autocovariance_and_blp_on_a_known_process() -> None:
    rng = np.random.default_rng(0)
    n_t, years, sigma2, n = 3000, 4, 1.0, 25
    mu = rng.normal(0, 0.2, n_t)
    eta = np.zeros((n_t, years))
    eta[:, 0] = rng.normal(0, 0.1, n_t)
    for t in range(1, years):
        eta[:, t] = 0.5 * eta[:, t - 1] + rng.normal(0, 0.1 * np.sqrt(1 - 0.25), n_t)
    theta = mu[:, None] + eta
    rbar = theta + rng.normal(0, np.sqrt(sigma2 / n), (n_t, years))
    means = pd.DataFrame(
        {
            "teacher_id": np.repeat(np.arange(n_t), years),
            "year_index": np.tile(np.arange(years), n_t),
            "rbar": rbar.ravel(),
            "n": n,
        }
    )
    acov, pairs = autocovariance(means, sigma2, years)
    truth = 0.04 + 0.01 * 0.5 ** np.arange(years)
    assert np.allclose(acov, truth, atol=0.004)
    assert pairs[1] == n_t * (years - 1)
    ty, teacher = drift_blp(means, acov, sigma2, years)
    est = ty["effect"].to_numpy().reshape(n_t, years)
    # Shrunken estimates beat the raw means in mean squared error.
    assert np.mean((est - theta) ** 2) < 0.8 * np.mean((rbar - theta) ** 2)
    assert abs(coverage(est.ravel(), np.sqrt(ty["effect_var"].to_numpy()), theta.ravel(), 0.9) - 0.9) < 0.02
    assert np.corrcoef(teacher["effect"], theta.mean(axis=1))[0, 1] > 0.88


def test_hermite_moments_are_unbiased_for_powers_of_the_true_score() -> None:
    rng = np.random.default_rng(1)
    t = rng.normal(0.3, 1.0, 400_000)
    s2 = rng.uniform(0.05, 0.3, t.size)
    w = t + rng.normal(0, np.sqrt(s2))
    for m in range(1, 7):
        assert np.mean(hermite_moment(w, s2, m)) == pytest.approx(np.mean(t**m), abs=0.03 * max(1, m))


def test_corrected_within_regression_removes_attenuation() -> None:
    rng = np.random.default_rng(2)
    groups, size = 800, 25
    g = np.repeat(np.arange(groups), size)
    true = rng.normal(0, 1, g.size) + rng.normal(0, 0.5, groups)[g]
    s2 = rng.uniform(0.1, 0.4, g.size)
    w = true + rng.normal(0, np.sqrt(s2))
    y = 0.9 * true - 0.1 * true**3 + rng.normal(0, 0.5, groups)[g] + rng.normal(0, 0.4, g.size)
    terms = [Term(w, "prior", k, s2) for k in (1, 2, 3)]
    x = np.column_stack([t.column() for t in terms])

    def demean(a: np.ndarray) -> np.ndarray:
        return a - pd.DataFrame(a).groupby(g).transform("mean").to_numpy().reshape(a.shape)

    xd, yd = demean(x), demean(y[:, None])[:, 0]
    naive = np.linalg.lstsq(xd, yd, rcond=None)[0]
    beta, corrected = within_ols(xd, yd, [0, 1, 2], correction(terms, g))
    assert corrected
    assert beta[0] == pytest.approx(0.9, abs=0.05)
    assert beta[2] == pytest.approx(-0.1, abs=0.015)
    assert abs(naive[0] - 0.9) > 3 * abs(beta[0] - 0.9)
    # Without error variances there is nothing to correct: plain least squares.
    plain, flag = within_ols(xd, yd, [], None)
    assert not flag
    assert np.allclose(plain, naive)


@pytest.mark.slow
def test_school_and_teacher_intervals_cover_near_nominal_over_50_schools() -> None:
    """The school-coverage check of issue 5 (about 40 s on a free core): 50 schools, 4 years.

    Without the prior-score SEM the school means are inflated by about 15-20% (earlier years
    at the same school leak back through the attenuated prior) and 95% intervals cover
    about 0.7; with it, slope near 1 and coverage near nominal."""
    data = generate_district(30000, n_years=4, n_schools=50, seed=2)
    frame = vam_frame_from_tables(data.tables)
    for sem, low, high in ((True, 0.86, 0.995), (False, 0.0, 0.85)):
        model = ValueAddedModel(standardize=False).fit(frame if sem else frame.drop(columns="sem"))
        _, tt, s = truth_on_estimate_scale(model.residuals_, data.truth, unit=85.0)
        sch = model.school_effects_.merge(s, on=["subject", "school_id"])
        sch = sch[sch["students"] >= 100]
        est = model.teacher_effects_.merge(tt, on=["subject", "teacher_id"])
        est = est[est["students"] >= 10]
        for subject, g in sch.groupby("subject"):
            assert len(g) >= 35
            cov95 = coverage(
                g["effect"].to_numpy(), g["se"].to_numpy(), g["true_school_total"].to_numpy(), 0.95
            )
            slope = np.polyfit(g["true_school_total"], g["raw_mean"], 1)[0]
            assert low <= cov95 <= high, (subject, sem, cov95)
            if sem:
                assert np.corrcoef(g["effect"], g["true_school_total"])[0, 1] >= 0.95
                assert 0.95 <= slope <= 1.1
                cov90 = coverage(
                    g["effect"].to_numpy(), g["se"].to_numpy(), g["true_school_total"].to_numpy(), 0.9
                )
                assert 0.8 <= cov90 <= 0.99
                t = est[est["subject"] == subject]
                cov_t = coverage(t["effect"].to_numpy(), t["se"].to_numpy(), t["true_total"].to_numpy(), 0.9)
                assert 0.86 <= cov_t <= 0.95  # multi-year teacher means
            else:
                assert slope > 1.08


def _star_frame() -> pd.DataFrame:
    star = pd.read_csv(STAR)
    star["grade_level"] = star["gr"].replace({"K": "0"}).astype(int)
    long = star.melt(
        id_vars=["id", "sch", "tch", "grade_level", "ses", "eth", "sx"],
        value_vars=["read", "math"],
        var_name="subject",
        value_name="score",
    ).dropna(subset=["score"])
    return long.rename(columns={"id": "person_id", "sch": "school_id", "tch": "teacher_id"}).assign(
        school_year=lambda d: d["grade_level"], subject=lambda d: d["subject"].replace({"read": "reading"})
    )


def test_star_teacher_and_school_effects_table() -> None:
    tables = value_added_tables(_star_frame(), covariates=("ses", "eth", "sx"))
    teacher, school = tables["teacher"], tables["school"]
    assert set(teacher["subject"]) == {"math", "reading"}
    assert len(teacher) > 600
    assert school["school_id"].nunique() >= 75
    assert ((teacher["lower"] < teacher["effect"]) & (teacher["effect"] < teacher["upper"])).all()
    comp = tables["components"].set_index("subject")
    # STAR classes differ a lot (class size, teachers): a clear teacher-year spread in SD units.
    assert comp["sd_teacher_year"].between(0.15, 0.6).all()
    assert comp["mean_reliability_teacher_year"].between(0.3, 0.95).all()
    coefs = tables["coefficients"].set_index(["subject", "term"])["estimate"]
    assert coefs[("math", "prior_math")] > 0.4


def test_missing_column_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="missing column"):
        ValueAddedModel().fit(pd.DataFrame({"person_id": ["a"], "score": [1.0]}))
    with pytest.raises(InvalidInput, match="level"):
        ValueAddedModel(level=1.5).fit(_star_frame().head(100))
