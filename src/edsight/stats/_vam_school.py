"""School value-added: shrunken school mean residuals with a student-clustered sampling variance.

The estimand is the school's whole contribution over the analysed years with the staff it
had (its tested-grade teachers' effects included): the mean over its student-years of the
true school + teacher contribution, relative to the average student of the same year and
grade. Its sampling error is the mean of the students' noise, and that noise is *not*
independent across one student's years: this year's measurement error (and transient
test-day state) is in this year's residual with a plus sign and, through the prior score, in
next year's with a minus sign. A school that keeps its students for several tested years
therefore has a smaller sampling variance than ``sigma2 / n`` (the errors telescope, as in a
gain score), and a student-independent formula over-covers. The variance here is

    Var(mean_s) = sigma2_s (n_s + 2 sum_k rho_k P_s(k)) / n_s^2

with ``rho_k`` the correlation of a student's within-teacher-year residuals k years apart
(pooled over the district), ``P_s(k)`` the number of such same-student pairs inside school
s, and ``sigma2_s`` the school's own residual variance (conditional SEMs make the noise
larger where scores are extreme) pooled towards the district value.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Pseudo student-years of the district-wide residual variance in each school's variance.
_PRIOR_ROWS = 50.0


def lag_correlations(rows: pd.DataFrame, noise: np.ndarray, sigma2: float, n_years: int) -> np.ndarray:
    """rho_k, k = 1..n_years-1: correlation of one student's noise k years apart (same subject)."""
    key = pd.DataFrame({"person_id": rows["person_id"], "school_year": rows["school_year"], "e": noise})
    rho = np.zeros(max(n_years - 1, 0))
    for lag in range(1, n_years):
        later = key.assign(school_year=key["school_year"] - lag)
        pair = key.merge(later, on=["person_id", "school_year"], suffixes=("_a", "_b"))
        if len(pair) < 30:
            continue
        rho[lag - 1] = float(np.clip(np.mean(pair["e_a"] * pair["e_b"]) / sigma2, -0.5, 0.5))
    return rho


def school_effects(
    rows: pd.DataFrame, noise: np.ndarray, sigma2: float, dof_factor: float, z: float
) -> pd.DataFrame:
    """Shrunken school effects with intervals (one subject).

    ``rows`` holds ``school_id, teacher_id, person_id, school_year, residual``; ``noise`` is
    the residual less its teacher-year mean and ``dof_factor`` rescales its mean square to an
    unbiased variance. The between-school variance is the Paule-Mandel moment estimate, which
    is not thrown off by a few schools with a handful of tested students.
    """
    years = rows["school_year"].to_numpy(np.int64)
    n_years = int(years.max() - years.min()) + 1
    rho = lag_correlations(rows, noise * np.sqrt(dof_factor), sigma2, n_years)
    sch = (
        rows.assign(e2=noise**2 * dof_factor)
        .groupby("school_id", as_index=False)
        .agg(
            raw_mean=("residual", "mean"),
            n=("residual", "size"),
            k=("teacher_id", "nunique"),
            persons=("person_id", "nunique"),
            e2=("e2", "sum"),
        )
    )
    n = sch["n"].to_numpy(float)
    s2 = (sch["e2"].to_numpy(float) + _PRIOR_ROWS * sigma2) / (n + _PRIOR_ROWS)
    inflation = n.copy()
    if len(rho):
        key = rows[["person_id", "school_year", "school_id"]]
        for lag in range(1, n_years):
            if rho[lag - 1] == 0.0:
                continue
            later = key.assign(school_year=key["school_year"] - lag)
            pair = key.merge(later, on=["person_id", "school_year", "school_id"])
            p = pair.groupby("school_id").size().reindex(sch["school_id"], fill_value=0)
            inflation += 2.0 * rho[lag - 1] * p.to_numpy(float)
    # A student contributes at most one row per year, so the clipped floor only guards
    # against a pathological rho estimate.
    var = s2 * np.maximum(inflation, 0.25 * n) / n**2
    m = sch["raw_mean"].to_numpy(float)
    tau2 = paule_mandel(m, var)
    w = 1.0 / (tau2 + var)
    mu = float(np.sum(w * m) / np.sum(w))
    shrink = tau2 / (tau2 + var)
    eff = mu + shrink * (m - mu)
    post = tau2 * var / (tau2 + var) + (1 - shrink) ** 2 / np.sum(w)
    out = pd.DataFrame(
        {
            "school_id": sch["school_id"],
            "n": sch["persons"].astype(np.int64),
            "students": n.astype(np.int64),
            "teachers": sch["k"].astype(np.int64),
            "raw_mean": m,
            "effect": eff,
            "se": np.sqrt(post),
            "lower": eff - z * np.sqrt(post),
            "upper": eff + z * np.sqrt(post),
            "reliability": shrink,
        }
    )
    out.attrs["sd_school"] = float(np.sqrt(tau2))
    out.attrs["student_lag_correlation"] = [float(r) for r in rho]
    return out


def paule_mandel(m: np.ndarray, var: np.ndarray) -> float:
    """Between-group variance tau2 solving sum w (m - mu_w)^2 = K - 1, w = 1 / (tau2 + var)."""
    k = len(m)
    if k < 2:
        return 0.0

    def q(t2: float) -> float:
        w = 1.0 / (t2 + var)
        mu = np.sum(w * m) / np.sum(w)
        return float(np.sum(w * (m - mu) ** 2) - (k - 1))

    if q(0.0) <= 0:
        return 0.0
    lo, hi = 0.0, float(np.var(m)) * 10 + float(np.max(var))
    for _ in range(100):  # q is decreasing in tau2: bisection is safe
        mid = 0.5 * (lo + hi)
        if q(mid) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
