"""Achievement gaps: reference values, the V statistic, truth recovery and the STAR table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from edsight.errors import InvalidInput
from edsight.stats.gaps import (
    achievement_gaps,
    adjusted_gaps,
    auc_from_counts,
    gap_frame_from_frame,
    gap_frame_from_tables,
    hedges_j,
    perf_levels_from_cuts,
    v_statistic,
    v_statistic_ml,
)
from edsight.synth.district import DistrictData, generate_district

STAR = Path(__file__).resolve().parents[1] / "data" / "star" / "star.csv"


def _exact_sample(mean: float, sd: float, n: int, seed: int) -> np.ndarray:
    """A sample whose mean and SD (ddof=1) are exactly the given ones."""
    x = np.random.default_rng(seed).normal(size=n)
    return mean + sd * (x - x.mean()) / x.std(ddof=1)


def _two_groups(a: np.ndarray, b: np.ndarray, **extra: object) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "economically_disadvantaged": np.r_[np.ones(len(a), bool), np.zeros(len(b), bool)],
            "scale_score": np.r_[a, b],
            "cell": "all",
        }
    )
    for key, value in extra.items():
        frame[key] = value
    return frame


def test_effect_sizes_match_borenstein_worked_example() -> None:
    # Borenstein et al. (2009) Introduction to Meta-Analysis, ch. 4: means 103 / 100, SDs 5.5 / 4.5,
    # n = 50 each -> d = 0.5970, Var(d) = 0.0418, g = 0.5924, Var(g) = 0.0411.
    frame = _two_groups(_exact_sample(103, 5.5, 50, 1), _exact_sample(100, 4.5, 50, 2))
    row = achievement_gaps(frame, "economically_disadvantaged", by=["cell"], level=None).iloc[0]
    assert row["n_focal"] == 50
    assert row["n_reference"] == 50
    assert row["n"] == 100  # students behind the cell's estimates, for small-cell suppression
    assert row["mean_diff"] == pytest.approx(3.0)
    assert row["cohens_d"] == pytest.approx(0.5970, abs=5e-5)
    assert row["cohens_d_se"] ** 2 == pytest.approx(0.0418, abs=5e-5)
    assert row["hedges_g"] == pytest.approx(0.5924, abs=5e-5)
    assert row["hedges_g_se"] ** 2 == pytest.approx(0.0411, abs=5e-5)
    half = 1.959964 * row["hedges_g_se"]
    assert row["hedges_g_ci_low"] == pytest.approx(0.5924 - half, abs=1e-4)
    assert row["hedges_g_ci_high"] == pytest.approx(0.5924 + half, abs=1e-4)


def test_hedges_j_matches_hedges_1981_table() -> None:
    # J(2) = 1 / sqrt(pi); J(10) = 0.9227 (Hedges 1981, table 1); large df -> 1 - 3 / (4 df - 1).
    assert hedges_j(np.array(2.0)) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-12)
    assert hedges_j(np.array(10.0)) == pytest.approx(0.9227, abs=5e-5)
    assert hedges_j(np.array(400.0)) == pytest.approx(1 - 3 / 1599, abs=1e-6)
    assert np.isnan(hedges_j(np.array(1.0)))


def test_mean_difference_ci_is_welch() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(10, 3, 23), rng.normal(12, 6, 41)
    row = achievement_gaps(_two_groups(a, b), "economically_disadvantaged", by=["cell"], level=None).iloc[0]
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert row["mean_diff"] == pytest.approx(a.mean() - b.mean())
    assert row["mean_diff_ci_low"] == pytest.approx(ci.low, rel=1e-9)
    assert row["mean_diff_ci_high"] == pytest.approx(ci.high, rel=1e-9)


def test_percent_proficient_gap_counts_levels_at_or_above_cut() -> None:
    # focal: 3 of 8 at level >= 3; reference: 9 of 12
    frame = _two_groups(np.arange(8.0), np.arange(12.0) + 5)
    frame["perf_level"] = [1, 2, 2, 3, 4, 1, 2, 3, 3, 3, 4, 4, 2, 3, 3, 4, 1, 2, 3, 4]
    row = achievement_gaps(frame, "economically_disadvantaged", by=["cell"]).iloc[0]
    assert row["pct_proficient_focal"] == pytest.approx(37.5)
    assert row["pct_proficient_reference"] == pytest.approx(75.0)
    assert row["pct_proficient_gap"] == pytest.approx(-37.5)
    se = 100 * math.sqrt(0.375 * 0.625 / 8 + 0.75 * 0.25 / 12)
    assert row["pct_proficient_gap_se"] == pytest.approx(se)
    assert bool(row["small_cell"])  # 8 < 10: governance must be able to hide it


def _normal_level_proportions(
    d: float, cuts: np.ndarray, sd_focal: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    edges = np.r_[-np.inf, cuts, np.inf]
    return np.diff(stats.norm.cdf((edges - d) / sd_focal)), np.diff(stats.norm.cdf(edges))


@pytest.mark.parametrize("d", [-0.8, -0.3, 0.25, 1.0])
def test_v_equals_cohens_d_for_equal_variance_normals_with_many_categories(d: float) -> None:
    focal, reference = _normal_level_proportions(d, np.linspace(-5, 5, 999))
    assert v_statistic(focal, reference) == pytest.approx(d, abs=1e-3)
    # Four performance levels: ties shrink the trapezoidal V, the respective-normal ML V does not.
    focal4, reference4 = _normal_level_proportions(d, np.array([-0.55, 0.1, 1.0]))
    assert abs(float(v_statistic(focal4, reference4))) < abs(d) - 0.02
    assert v_statistic_ml(focal4 * 1e5, reference4 * 1e5) == pytest.approx(d, abs=1e-4)


def test_v_ml_recovers_unequal_variance_gap_and_v_is_antisymmetric() -> None:
    focal, reference = _normal_level_proportions(-0.3, np.array([-0.55, 0.1, 1.0]), sd_focal=1.4)
    expected = -0.3 / math.sqrt((1 + 1.4**2) / 2)
    assert v_statistic_ml(focal * 1e5, reference * 1e5) == pytest.approx(expected, abs=1e-4)
    assert float(v_statistic(focal, reference)) == pytest.approx(-float(v_statistic(reference, focal)))
    assert np.isnan(v_statistic(np.zeros(4), reference))


def test_auc_with_split_ties_equals_mann_whitney() -> None:
    rng = np.random.default_rng(9)
    f = rng.integers(1, 5, 300)
    r = rng.integers(1, 5, 200) + (rng.random(200) < 0.3)
    counts_f = np.bincount(f, minlength=6)[1:]
    counts_r = np.bincount(r, minlength=6)[1:]
    u = stats.mannwhitneyu(f, r).statistic  # counts ties as 1/2
    assert float(auc_from_counts(counts_f, counts_r)) == pytest.approx(u / (300 * 200), rel=1e-12)


def test_v_from_sampled_levels_is_close_to_d() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(-0.5, 1, 20000), rng.normal(0, 1, 20000)
    frame = _two_groups(a, b)
    frame["perf_level"] = perf_levels_from_cuts(frame["scale_score"], [-0.55, 0.1, 1.0])
    trap = achievement_gaps(frame, "economically_disadvantaged", by=["cell"]).iloc[0]
    ml = achievement_gaps(frame, "economically_disadvantaged", by=["cell"], v_method="ml").iloc[0]
    assert ml["v_statistic"] == pytest.approx(trap["cohens_d"], abs=0.04)
    assert abs(trap["v_statistic"]) < abs(ml["v_statistic"])


def test_perf_levels_from_cuts() -> None:
    levels = perf_levels_from_cuts(pd.Series([0.0, 10.0, 9.99, 20.0, np.nan]), [10, 20])
    assert levels.tolist()[:4] == [1, 2, 1, 3]
    assert pd.isna(levels.iloc[4])


def test_every_focal_value_gets_a_row_and_bad_arguments_raise() -> None:
    frame = pd.DataFrame(
        {
            "race_ethnicity": ["white"] * 6 + ["black"] * 4 + ["asian"] * 3 + [None],
            "scale_score": np.arange(14.0),
            "g": 1,
        }
    )
    out = achievement_gaps(frame, "race_ethnicity", by=["g"], level=None)
    assert out["focal"].tolist() == ["asian", "black"]
    assert out["n_focal"].tolist() == [3, 4]
    assert out["n_reference"].tolist() == [6, 6]
    assert out["mean_diff"].tolist() == pytest.approx([11.0 - 2.5, 7.5 - 2.5])
    with pytest.raises(InvalidInput, match="v_method"):
        achievement_gaps(frame, "race_ethnicity", by=["g"], v_method="probit")
    with pytest.raises(InvalidInput, match="lacks column"):
        achievement_gaps(frame, "race_ethnicity", by=["school_id"], level=None)
    with pytest.raises(InvalidInput, match="no default reference"):
        achievement_gaps(frame.assign(zone=1), "zone", by=["g"], level=None)


# --- district generator: gaps against the generator's constants -----------------------------


@pytest.fixture(scope="module")
def district() -> DistrictData:
    return generate_district(50000, n_years=1, n_schools=10, seed=3)


@pytest.fixture(scope="module")
def district_frame(district: DistrictData) -> pd.DataFrame:
    frame = gap_frame_from_tables(district.tables)
    # 1 student SD = scale_sd points, the unit of the generator's gap constants
    frame["score_sd"] = frame["scale_score"] / district.truth_summary["model"]["scale_sd"]
    return frame


def test_gap_frame_places_each_score_in_the_school_of_the_test_day(
    district: DistrictData, district_frame: pd.DataFrame
) -> None:
    res = district.tables["assessment_result"]
    assert len(district_frame) == len(res)
    assert district_frame["school_id"].notna().mean() > 0.999
    enr = district.tables["school_enrollment"]
    movers = enr.groupby("person_id").size()
    mover = movers[movers > 1].index[0]
    for row in district_frame[district_frame["person_id"] == mover].itertuples():
        windows = enr[(enr["person_id"] == mover) & (enr["school_year"] == row.school_year)]
        test_day = res[(res["person_id"] == mover) & (res["subject"] == row.subject)]["test_date"].iloc[0]
        inside = windows[
            (windows["entry_date"] <= test_day)
            & (windows["exit_date"].isna() | (windows["exit_date"] >= test_day))
        ]
        assert row.school_id == inside["school_id"].iloc[-1]


def test_adjusted_gaps_recover_generator_constants(
    district: DistrictData, district_frame: pd.DataFrame
) -> None:
    model = district.truth_summary["model"]
    est = adjusted_gaps(district_frame, score="score_sd", fixed_effects=("grade_level", "school_id"))
    checked = 0
    for s, subject in enumerate(("math", "reading")):
        part = est[est["subject"] == subject].set_index(["subgroup", "focal"])["estimate"]
        for sg in ("economically_disadvantaged", "english_learner", "disability"):
            # one spring after the first fall: status gap + one year of growth gap
            truth = model["status_gaps"][sg][s] + model["growth_gaps"][sg][s]
            assert part[(sg, True)] == pytest.approx(truth, abs=0.08), (subject, sg)
            checked += 1
        for race in ("hispanic", "black", "asian"):
            assert part[("race_ethnicity", race)] == pytest.approx(
                model["race_status_gaps"][race][s], abs=0.08
            )
            checked += 1
        assert abs(part[("sex", "F")]) < 0.06  # the generator has no sex gap
    assert checked == 12


def test_marginal_gaps_include_correlated_membership(
    district: DistrictData, district_frame: pd.DataFrame
) -> None:
    marginal = achievement_gaps(
        district_frame, "economically_disadvantaged", by=["subject"], score="score_sd"
    )
    adjusted = adjusted_gaps(district_frame, score="score_sd", by=["subject"])
    truth = district.truth["student_truth"].astype({"person_id": object, "subject": object})
    joined = district_frame.merge(truth, on=["person_id", "subject"])
    growth = district.truth_summary["model"]["growth_gaps"]["economically_disadvantaged"]
    for s, subject in enumerate(("math", "reading")):
        m = marginal.set_index("subject").loc[subject, "mean_diff"]
        a = adjusted[
            (adjusted["subject"] == subject) & (adjusted["subgroup"] == "economically_disadvantaged")
        ]
        # race and EL status travel with disadvantage, so the marginal gap is the larger one
        assert m < a["estimate"].iloc[0] - 0.1
        part = joined[joined["subject"] == subject]
        ed = part["economically_disadvantaged"].astype(bool)
        true_marginal = part.loc[ed, "true_status"].mean() - part.loc[~ed, "true_status"].mean() + growth[s]
        assert m == pytest.approx(true_marginal, abs=0.05)


# --- STAR: gaps by ethnicity and free lunch, grades K-3 --------------------------------------


@pytest.fixture(scope="module")
def star_frame() -> pd.DataFrame:
    star = pd.read_csv(STAR, dtype={"gr": str})
    long = star.melt(
        id_vars=["id", "sch", "gr", "ses", "eth", "sx"],
        value_vars=["read", "math"],
        var_name="subject",
        value_name="score",
    )
    frame = gap_frame_from_frame(
        long,
        columns={
            "id": "person_id",
            "sch": "school_id",
            "gr": "grade_level",
            "score": "scale_score",
            "ses": "economically_disadvantaged",
            "eth": "race_ethnicity",
            "sx": "sex",
        },
        values={
            "grade_level": {"K": 0, "1": 1, "2": 2, "3": 3},
            "economically_disadvantaged": {"F": True, "N": False},
            "race_ethnicity": {
                "W": "white",
                "B": "black",
                "A": "asian",
                "H": "hispanic",
                "I": "american_indian",
                "O": "other",
            },
        },
    )
    # STAR reports no performance levels: 50 equal-count bins per grade and subject stand in
    ranks = frame.groupby(["grade_level", "subject"])["scale_score"].rank(method="first", pct=True)
    frame["perf_level"] = np.ceil(ranks * 50).astype(int)
    return frame


@pytest.mark.parametrize(
    ("subgroup", "focal"), [("race_ethnicity", "black"), ("economically_disadvantaged", True)]
)
def test_star_gaps_by_grade(star_frame: pd.DataFrame, subgroup: str, focal: object) -> None:
    out = achievement_gaps(star_frame, subgroup, focal=focal, by=["subject", "grade_level"])
    assert len(out) == 8  # 2 subjects x grades K-3
    assert (out[["n_focal", "n_reference"]] > 1800).all().all()
    # Black and free-lunch students score 0.35-0.8 SD lower in every grade and subject.
    assert out["hedges_g"].between(-0.85, -0.33).all()
    assert (out["hedges_g_ci_high"] < 0).all()
    assert (out["pct_proficient_gap"] < 0).all()
    # the gap widens from kindergarten to grade 1 in both subjects
    for subject in ("math", "read"):
        g = out[out["subject"] == subject].set_index("grade_level")["hedges_g"]
        assert g[1] < g[0] - 0.1
    # with 50 ordered categories V is close to d even for these non-normal scores
    assert np.abs(out["v_statistic"] - out["cohens_d"]).max() < 0.06
