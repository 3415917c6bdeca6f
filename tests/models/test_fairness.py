"""Fairness audit: known disparities are found, small groups suppressed, intervals sane, mitigation works."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edsight.errors import InvalidInput
from edsight.models.evaluate import threshold_metrics
from edsight.models.fairness import by_group_summary, disparity_flags, fairness_report, mitigate_thresholds


def _biased_scores(n: int = 4000, seed: int = 3) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Same true risk in both groups; the score over-states risk for group B by +0.15."""
    rng = np.random.default_rng(seed)
    group = np.where(rng.random(n) < 0.5, "A", "B")
    risk = rng.beta(2, 5, size=n)
    y = (rng.random(n) < risk).astype(int)
    score = np.clip(risk + np.where(group == "B", 0.15, 0.0), 0, 1)
    region = np.where(rng.random(n) < 0.5, "urban", "rural")
    sens = pd.DataFrame({"group": group, "region": region})
    # Seven students in a tiny group: must never be reported.
    sens.loc[:6, "group"] = "C"
    return y, score, sens


def test_report_matches_hand_computation_and_suppresses_small_groups() -> None:
    y, p, sens = _biased_scores()
    report = fairness_report(y, p, sens, threshold=0.5, n_boot=100)
    row_b = report[(report["attribute"] == "group") & (report["group"] == "B")].iloc[0]
    mask = sens["group"].to_numpy() == "B"
    expected = threshold_metrics(y[mask], p[mask], 0.5)
    assert row_b["n"] == mask.sum()
    assert row_b["fpr"] == pytest.approx(expected["fpr"])
    assert row_b["calibration_gap"] == pytest.approx(p[mask].mean() - y[mask].mean())
    assert row_b["fpr_lo"] <= row_b["fpr"] <= row_b["fpr_hi"]
    assert row_b["calibration_gap_lo"] > 0.1  # the +0.15 bias is outside noise
    tiny = report[report["group"] == "C"].iloc[0]
    assert bool(tiny["suppressed"])
    assert pd.isna(tiny["n"])
    assert tiny[["auc", "fpr", "fnr", "precision", "selection_rate"]].isna().all()
    # Intersections appear under "group x region"; the tiny group's cells are suppressed too.
    inter = report[report["attribute"] == "group x region"]
    assert {"A x urban", "B x rural"} <= set(inter["group"])
    assert inter[inter["group"].str.startswith("C")]["suppressed"].all()


def test_disparity_flags_find_the_planted_bias_only() -> None:
    y, p, sens = _biased_scores()
    flags = disparity_flags(
        fairness_report(y, p, sens, n_boot=0), bounds=(0.8, 1.25), reference={"group": "A"}
    )
    flagged = flags[flags["flagged"]]
    assert {("group", "B", "fpr"), ("group", "B", "calibration_gap")} <= set(
        zip(flagged["attribute"], flagged["group"], flagged["metric"], strict=True)
    )
    # region is independent of the bias: no ratio is flagged (both regions share B's
    # over-prediction, so their absolute calibration gaps are, correctly, both flagged).
    region = flags[(flags["attribute"] == "region") & (flags["metric"] != "calibration_gap")]
    assert not region["flagged"].any()
    with pytest.raises(InvalidInput, match="bounds"):
        disparity_flags(fairness_report(y, p, sens, n_boot=0), bounds=(1.2, 1.5))


def test_by_group_summary_shape() -> None:
    y, p, sens = _biased_scores()
    out = by_group_summary(y, p, sens[["group"]])
    assert out["group"]["C"] == {"suppressed": True}
    assert out["group"]["A"]["n"] + out["group"]["B"]["n"] == len(y) - 7
    with pytest.raises(InvalidInput, match="rows"):
        by_group_summary(y[:10], p[:10], sens)


def test_threshold_optimizer_narrows_fpr_gap() -> None:
    y, p, sens = _biased_scores(n=6000)
    table = mitigate_thresholds(y, p, sens["group"], constraint="false_positive_rate_parity")
    fpr = table[table["metric"] == "fpr"].set_index("group")
    gap_before = abs(fpr.loc["B", "before"] - fpr.loc["A", "before"])
    gap_after = abs(fpr.loc["B", "after"] - fpr.loc["A", "after"])
    assert gap_before > 0.1
    assert gap_after < gap_before / 2
    assert "C" not in set(table["group"])
