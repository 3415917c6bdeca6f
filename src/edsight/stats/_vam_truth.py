"""Compare value-added estimates with the district generator's known effects.

Takes the generator's truth tables as plain DataFrames (no import of edsight.synth), so
tests and benchmarks share one definition of "the truth on the estimate's scale".
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import NormalDist

import numpy as np
import pandas as pd


def truth_on_estimate_scale(
    residuals: pd.DataFrame, truth: Mapping[str, pd.DataFrame], unit: float = 1.0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """True teacher-year, teacher and school effects, centred like the estimates.

    School truth is given twice: ``true_school`` (the generator's school effect) and
    ``true_school_total`` (the mean centred school + teacher contribution over the school's
    students, the quantity a school's value-added estimates).

    Value-added is relative to the average student of the same subject, year and grade, so
    each student's true contribution (school + teacher effect that year) is centred within
    that cell before averaging to teacher-years; ``unit`` converts the truth (student SD)
    into the estimate's unit (85 for the generator's scale points).
    """
    te = truth["teacher_effects"].astype({"teacher_id": "object", "subject": "object"}).copy()
    te["school_year"] = te["school_year"].astype("int64")
    se = truth["school_effects"].astype({"school_id": "object", "subject": "object"})
    r = residuals.merge(
        te[["teacher_id", "subject", "school_year", "effect", "persistent_effect"]].rename(
            columns={"effect": "t_eff", "persistent_effect": "t_pers"}
        ),
        on=["teacher_id", "subject", "school_year"],
        how="left",
    ).merge(se.rename(columns={"effect": "s_eff"}), on=["school_id", "subject"], how="left")
    r[["t_eff", "t_pers", "s_eff"]] = r[["t_eff", "t_pers", "s_eff"]].astype("float64").fillna(0.0) * unit
    r["total"] = r["t_eff"] + r["s_eff"]
    cell = r.groupby(["subject", "school_year", "grade_level"])["total"].transform("mean")
    r["total_c"] = r["total"] - cell
    ty = r.groupby(["subject", "teacher_id", "school_year"], as_index=False).agg(
        true_total=("total_c", "mean"), true_teacher=("t_eff", "mean"), true_persistent=("t_pers", "mean")
    )
    t = ty.groupby(["subject", "teacher_id"], as_index=False).agg(
        true_total=("true_total", "mean"),
        true_teacher=("true_teacher", "mean"),
        true_persistent=("true_persistent", "mean"),
    )
    s = r.groupby(["subject", "school_id"], as_index=False).agg(
        true_school=("s_eff", "first"), true_school_total=("total_c", "mean")
    )
    return ty, t, s


def coverage(est: np.ndarray, se: np.ndarray, truth: np.ndarray, level: float) -> float:
    """Share of intervals est +/- z se (at ``level``) that contain the truth."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return float(np.mean(np.abs(est - truth) <= z * se))
