"""Value-added: recovery of the district generator's known effects, STAR, and the drift BLP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edsight.errors import InvalidInput
from edsight.stats._vam_drift import autocovariance, drift_blp
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
        assert np.corrcoef(g["effect"], g["true_school_total"])[0, 1] >= 0.85
    comp = model.components_.set_index("subject")
    # Truth: teacher-year SD sqrt(0.15^2 + 0.06^2 + 0.08^2) ~ 0.18 SD ~ 15 points.
    assert comp["sd_teacher_year"].between(10, 20).all()
    assert (comp["mean_reliability_teacher_year"] > 0.5).all()


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
