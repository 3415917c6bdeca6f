"""Figures are written as real PNG/SVG files from the analyses' own tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edsight.errors import InvalidInput
from edsight.stats.mixed import fit_lmm
from edsight.stats.plots import plot_estimates, plot_growth_curves, plot_sgp_distribution, plot_trend
from edsight.stats.trends import linear_trend

DATA = Path(__file__).parents[1] / "data" / "multilevel"


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_growth_curves_of_sleepstudy(tmp_path: Path) -> None:
    result = fit_lmm(pd.read_csv(DATA / "sleepstudy.csv"), "Reaction ~ Days + (Days | Subject)")
    curves = result.growth_curves(time="Days", group="Subject")
    assert _is_png(plot_growth_curves(curves, tmp_path / "growth.png", time="Days", group="Subject"))
    svg = plot_growth_curves(curves, tmp_path / "growth.svg", time="Days", group="Subject").read_text()
    assert svg.lstrip().startswith("<?xml")
    assert "<svg" in svg


def test_estimates_sgp_and_trend_figures(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    effects = pd.DataFrame({"teacher": [f"T{i}" for i in range(30)], "effect": rng.normal(0, 0.2, 30)})
    effects["lower"], effects["upper"] = effects["effect"] - 0.1, effects["effect"] + 0.1
    assert _is_png(plot_estimates(effects, tmp_path / "vam.png", label="teacher"))
    assert _is_png(plot_sgp_distribution(rng.integers(1, 100, 5000), tmp_path / "sgp.png"))
    series = pd.DataFrame({"school_year": [2020, 2021, 2022, 2023], "gap": [-0.5, -0.45, -0.42, -0.4]})
    trend = linear_trend(series, value="gap", horizon=2)
    assert _is_png(plot_trend(trend, tmp_path / "trend.png", series=[]))


def test_bad_requests_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"figures are written as \.png or \.svg"):
        plot_sgp_distribution([10, 20], tmp_path / "x.pdf")
    with pytest.raises(InvalidInput, match="lacks column"):
        plot_estimates(pd.DataFrame({"a": [1]}), tmp_path / "x.png", label="a")
    with pytest.raises(InvalidInput, match="no growth percentiles"):
        plot_sgp_distribution([], tmp_path / "x.png")
