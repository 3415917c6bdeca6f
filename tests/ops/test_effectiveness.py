"""Propensity-score estimates recover a known effect where the naive comparison cannot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edsight.errors import InvalidInput
from edsight.ops.effectiveness import CAVEAT, intervention_effect

TRUE_EFFECT = 0.08  # e.g. +8 points of final grade share


def simulated(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Flagged (low-grade, low-attendance) students get tutoring more often and do worse anyway."""
    rng = np.random.default_rng(seed)
    grade = rng.normal(0.75, 0.12, n)
    attendance = np.clip(rng.normal(0.92, 0.05, n), 0.5, 1.0)
    logit = -0.5 - 12 * (grade - 0.75) - 15 * (attendance - 0.92)
    treated = rng.random(n) < 1 / (1 + np.exp(-logit))
    final = 0.1 + 0.9 * grade + 0.3 * (attendance - 0.92) + TRUE_EFFECT * treated + rng.normal(0, 0.05, n)
    return pd.DataFrame({"tutoring": treated, "final": final, "grade": grade, "attendance": attendance})


@pytest.mark.parametrize("method", ["matching", "ipw"])
def test_recovers_the_true_effect(method: str) -> None:
    frame = simulated()
    est = intervention_effect(
        frame, treatment="tutoring", outcome="final", covariates=["grade", "attendance"],
        method=method, n_boot=60,
    )  # fmt: skip
    assert est.naive < 0  # the raw comparison says tutoring hurts: selection, not effect
    assert est.ci_low <= TRUE_EFFECT <= est.ci_high
    assert abs(est.effect - TRUE_EFFECT) < 0.02
    assert est.balance["smd_before"].abs().max() > 0.5
    assert est.balance["smd_after"].abs().max() < 0.2  # well balanced (0.25 is the usual bound)
    assert est.caveat == CAVEAT
    assert est.as_row()["n_treated"] == int(frame["tutoring"].sum())


def test_no_effect_interval_covers_zero() -> None:
    frame = simulated(seed=4)
    frame["final"] -= TRUE_EFFECT * frame["tutoring"]
    est = intervention_effect(
        frame, treatment="tutoring", outcome="final", covariates=["grade", "attendance"], n_boot=60
    )
    assert est.ci_low <= 0 <= est.ci_high


def test_bad_input_is_explained() -> None:
    frame = simulated(200)
    with pytest.raises(InvalidInput, match=r"missing column\(s\) \['nope'\]"):
        intervention_effect(frame, treatment="tutoring", outcome="final", covariates=["nope"])
    with pytest.raises(InvalidInput, match="at least 10 students with and 10 without"):
        intervention_effect(
            frame.assign(tutoring=False), treatment="tutoring", outcome="final", covariates=["grade"]
        )
    with pytest.raises(InvalidInput, match="unknown method"):
        intervention_effect(
            frame,
            treatment="tutoring",
            outcome="final",
            covariates=["grade"],
            method="magic",  # type: ignore[arg-type]
        )
