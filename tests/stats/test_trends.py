"""Gap and mean-score trends: the WLS line, its intervals, their coverage, district data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from edsight.errors import InvalidInput
from edsight.stats.gaps import achievement_gaps, gap_frame_from_tables
from edsight.stats.trends import gap_trends, linear_trend, mean_score_trends
from edsight.synth.district import generate_district


def test_exact_line_is_recovered_and_extrapolated() -> None:
    frame = pd.DataFrame({"school_year": [2019, 2020, 2021, 2022], "gap": [-0.5, -0.45, -0.40, -0.35]})
    out = linear_trend(frame, value="gap", horizon=2)
    assert out["school_year"].tolist() == [2019, 2020, 2021, 2022, 2023, 2024]
    assert out["is_forecast"].tolist() == [False] * 4 + [True] * 2
    assert out["slope"].iloc[0] == pytest.approx(0.05)
    assert out["fitted"].tolist() == pytest.approx([-0.5, -0.45, -0.40, -0.35, -0.30, -0.25])
    assert out["pi_high"].iloc[-1] - out["pi_low"].iloc[-1] == pytest.approx(0.0, abs=1e-9)


def test_count_column_is_carried_as_n_and_forecasts_take_the_smallest_year() -> None:
    frame = pd.DataFrame(
        {
            "school_year": [2019, 2020, 2021, 2019, 2020, 2021],
            "series": ["a", "a", "a", "b", "b", "b"],
            "gap": [-0.5, -0.45, -0.42, 0.1, 0.2, 0.25],
            "students": [40, 12, 55, 300, 310, 290],
        }
    )
    out = linear_trend(frame, value="gap", by=["series"], horizon=1, count="students")
    a = out[out["series"] == "a"]
    assert a["n"].tolist() == [40, 12, 55, 12]
    b = out[out["series"] == "b"]
    assert b["n"].iloc[-1] == 290
    assert "n" not in linear_trend(frame, value="gap", by=["series"]).columns


def test_unweighted_intervals_match_textbook_formulas() -> None:
    x = np.array([2016, 2017, 2018, 2019, 2020, 2021.0])
    y = np.array([3.1, 2.2, 3.9, 4.4, 4.0, 5.6])
    out = linear_trend(pd.DataFrame({"school_year": x.astype(int), "v": y}), value="v", horizon=1)
    fit = stats.linregress(x, y)
    n, x0 = len(x), 2022.0
    s = np.sqrt(np.sum((y - fit.intercept - fit.slope * x) ** 2) / (n - 2))
    sxx = np.sum((x - x.mean()) ** 2)
    t = stats.t.ppf(0.975, n - 2)
    pred = fit.intercept + fit.slope * x0
    forecast = out[out["is_forecast"]].iloc[0]
    assert forecast["slope"] == pytest.approx(fit.slope)
    assert forecast["slope_se"] == pytest.approx(fit.stderr)
    assert forecast["fitted"] == pytest.approx(pred)
    assert forecast["ci_high"] - pred == pytest.approx(t * s * np.sqrt(1 / n + (x0 - x.mean()) ** 2 / sxx))
    assert forecast["pi_high"] - pred == pytest.approx(
        t * s * np.sqrt(1 + 1 / n + (x0 - x.mean()) ** 2 / sxx)
    )


def test_weights_follow_standard_errors() -> None:
    frame = pd.DataFrame(
        {"school_year": [2020, 2021, 2022, 2023], "v": [1.0, 2.0, 2.5, 5.0], "se": [0.1, 0.2, 0.1, 1.0]}
    )
    out = linear_trend(frame, value="v", se="se", horizon=0)
    w = 1 / frame["se"].to_numpy() ** 2
    slope, _ = np.polyfit(frame["school_year"], frame["v"], 1, w=np.sqrt(w))
    assert out["slope"].iloc[0] == pytest.approx(slope)
    # the noisy last year barely moves the line, unlike an unweighted fit
    assert out["slope"].iloc[0] < linear_trend(frame, value="v")["slope"].iloc[0] - 0.3


def test_prediction_interval_covers_about_95_percent_of_next_years() -> None:
    rng = np.random.default_rng(11)
    n_series, years = 600, np.arange(2015, 2022)
    values = 2.0 + 0.3 * (years - 2015) + rng.normal(0, 1.0, (n_series, years.size))
    frame = pd.DataFrame(
        {
            "series": np.repeat(np.arange(n_series), years.size - 1),
            "school_year": np.tile(years[:-1], n_series),
            "v": values[:, :-1].ravel(),
        }
    )
    out = linear_trend(frame, value="v", by=["series"], horizon=1)
    forecast = out[out["is_forecast"]].sort_values("series")
    actual = values[:, -1]
    covered = (forecast["pi_low"].to_numpy() <= actual) & (actual <= forecast["pi_high"].to_numpy())
    assert 0.92 < covered.mean() < 0.98
    slope_covered = (forecast["slope_ci_low"] <= 0.3) & (forecast["slope_ci_high"] >= 0.3)
    assert 0.92 < slope_covered.mean() < 0.98


def test_short_groups_and_bad_arguments() -> None:
    frame = pd.DataFrame({"g": ["a", "a", "b"], "school_year": [2020, 2021, 2020], "v": [1.0, 2.0, 3.0]})
    out = linear_trend(frame, value="v", by=["g"])
    a = out[out["g"] == "a"]
    assert a["slope"].iloc[0] == pytest.approx(1.0)
    assert a["pi_low"].isna().all()  # two years: a line but no residual df
    assert out[out["g"] == "b"]["slope"].isna().all()
    with pytest.raises(InvalidInput, match="horizon"):
        linear_trend(frame, value="v", horizon=-1)
    with pytest.raises(InvalidInput, match="lacks column"):
        linear_trend(frame, value="score")


def test_district_gap_and_mean_trends() -> None:
    data = generate_district(12000, n_years=4, n_schools=6, seed=2)
    frame = gap_frame_from_tables(data.tables)
    frame["score_sd"] = frame["scale_score"] / data.truth_summary["model"]["scale_sd"]
    gaps = achievement_gaps(
        frame, "economically_disadvantaged", by=["subject", "school_year"], score="score_sd"
    )
    trend = gap_trends(gaps, horizon=1)
    assert len(trend) == 2 * 5
    assert (trend["n"] >= 1000).all()  # students behind each gap, for small-cell suppression
    for subject in ("math", "reading"):
        part = trend[trend["subject"] == subject]
        observed = part[~part["is_forecast"]]
        assert observed["observed"].to_numpy() == pytest.approx(
            gaps[gaps["subject"] == subject].sort_values("school_year")["mean_diff"].to_numpy()
        )
        # the disadvantaged gap is about -0.5 to -0.7 SD and drifts by well under 0.1 SD a year
        assert observed["fitted"].between(-0.8, -0.4).all()
        assert abs(part["slope"].iloc[0]) < 0.1
        forecast = part[part["is_forecast"]].iloc[0]
        assert forecast["pi_low"] < forecast["fitted"] < forecast["pi_high"]
        assert forecast["pi_high"] - forecast["pi_low"] > forecast["ci_high"] - forecast["ci_low"]
    means = mean_score_trends(frame, score="score_sd", by=["subject", "grade_level"])
    assert set(means["grade_level"].dropna()) == {3, 4, 5, 6, 7, 8, 10}
    observed = means[~means["is_forecast"]]
    assert (observed["n"] > 300).all()
    assert (means.loc[means["is_forecast"], "n"] > 300).all()
    # the vertical scale rises about 40/85 SD a grade, so grade means are ordered ...
    by_grade = observed.groupby("grade_level")["observed"].mean().sort_index()
    assert (np.diff(by_grade.to_numpy()) > 0.3).all()
    # ... and each grade's mean is stable over the four years (norm-centred generator)
    assert (observed.groupby(["subject", "grade_level"])["slope"].first().abs() < 0.1).all()
