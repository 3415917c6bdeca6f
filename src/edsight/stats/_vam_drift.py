"""Drift-aware empirical Bayes for teacher-year mean residuals (Chetty-Friedman-Rockoff).

Model for teacher j's mean residual in year t with n_jt students::

    rbar_jt = theta_jt + e_jt,   Cov(theta_jt, theta_js) = sigma_A(|t - s|),   Var(e_jt) = sigma2 / n_jt

``sigma_A`` is estimated from the data (the across-year autocovariance of the teacher-year
means, and their variance net of sampling noise at lag 0), so persistent effects and drift
are weighted as the data say. Every estimate is a best linear predictor, computed for all
teachers at once with batched ``numpy.linalg.solve`` on (years x years) systems.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Missing years get this diagonal in the padded system, with zero covariance, so they
#: receive exactly zero weight.
_MIN_PAIRS = 20


def autocovariance(means: pd.DataFrame, sigma2: float, n_years: int) -> tuple[np.ndarray, np.ndarray]:
    """sigma_A(0..n_years-1) and the number of teacher pairs behind each lag.

    ``means`` has columns ``teacher_id, year_index, rbar, n``. Lag s >= 1 is the
    student-weighted covariance of rbar over same-teacher pairs s years apart; lag 0 is the
    weighted variance of rbar less the mean sampling variance. A lag with fewer than
    ``_MIN_PAIRS`` pairs takes the previous lag's value (CFR hold the tail constant), and
    the sequence is clipped at 0 and made non-increasing in the lag.
    """
    w0 = means["n"].to_numpy(float)
    r0 = means["rbar"].to_numpy(float)
    mean_r = float(np.average(r0, weights=w0))
    lag0 = float(np.average((r0 - mean_r) ** 2, weights=w0) - np.average(sigma2 / w0, weights=w0))
    acov = np.zeros(n_years)
    pairs = np.zeros(n_years, dtype=np.int64)
    acov[0] = max(lag0, 1e-12)
    pairs[0] = len(means)
    key = means[["teacher_id", "year_index", "rbar", "n"]]
    for lag in range(1, n_years):
        shifted = key.assign(year_index=key["year_index"] - lag)
        pair = key.merge(shifted, on=["teacher_id", "year_index"], suffixes=("_a", "_b"))
        pairs[lag] = len(pair)
        if len(pair) < _MIN_PAIRS:
            acov[lag] = acov[lag - 1]
            continue
        w = (pair["n_a"] + pair["n_b"]).to_numpy(float)
        a = pair["rbar_a"].to_numpy(float) - mean_r
        b = pair["rbar_b"].to_numpy(float) - mean_r
        acov[lag] = float(np.average(a * b, weights=w))
    # Drift only decays: a noisy long lag above a shorter one would make the model trust
    # distant years more than near ones (and over-state precision).
    acov[1:] = np.clip(acov[1:], 0.0, None)
    acov = np.minimum.accumulate(acov)
    return acov, pairs


def _padded(means: pd.DataFrame, n_years: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Teachers x years arrays: rbar (0 where missing), n (0 where missing), observed mask."""
    codes, teachers = pd.factorize(means["teacher_id"], sort=True)
    n_t = len(teachers)
    rbar = np.zeros((n_t, n_years))
    n = np.zeros((n_t, n_years))
    yi = means["year_index"].to_numpy(np.int64)
    rbar[codes, yi] = means["rbar"].to_numpy(float)
    n[codes, yi] = means["n"].to_numpy(float)
    return rbar, n, n > 0, np.asarray(teachers, dtype=object)


def _systems(
    n: np.ndarray, obs: np.ndarray, acov: np.ndarray, sigma2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Signal covariance C (masked to observed years) and data covariance S per teacher."""
    n_years = n.shape[1]
    lags = np.abs(np.subtract.outer(np.arange(n_years), np.arange(n_years)))
    toeplitz = acov[lags]
    mask = obs[:, :, None] & obs[:, None, :]
    c = np.where(mask, toeplitz[None], 0.0)
    noise = np.where(obs, sigma2 / np.where(obs, n, 1.0), 1.0)
    s = c.copy()
    idx = np.arange(n_years)
    s[:, idx, idx] += noise
    return c, s


def drift_blp(
    means: pd.DataFrame, acov: np.ndarray, sigma2: float, n_years: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Best linear predictors of teacher-year effects and of each teacher's mean effect.

    Returns (teacher_year, teacher). ``teacher_year`` has, per observed teacher-year:
    ``effect`` / ``effect_var`` (posterior mean and variance using all years),
    ``forecast`` / ``forecast_var`` (leave-year-out: only the other years, CFR's VA) and
    ``reliability`` (share of sigma_A(0) the all-years estimate explains). ``teacher`` has
    the mean of the teacher's yearly effects over observed years, with its variance.
    """
    rbar, n, obs, teachers = _padded(means, n_years)
    c, s = _systems(n, obs, acov, sigma2)
    # Posterior mean and covariance of the whole theta vector given all years.
    sol = np.linalg.solve(s, c)  # S^-1 C (C symmetric)
    post_mean = np.einsum("tij,ti->tj", sol, rbar)
    post_cov = c - np.einsum("tij,tik->tjk", c, sol)
    idx = np.arange(n_years)
    post_var = np.clip(post_cov[:, idx, idx], 0.0, None)

    # Leave-year-out: drop year t from the data, predict theta_t from the rest.
    fc = np.zeros_like(rbar)
    fc_var = np.zeros_like(rbar)
    for t in range(n_years):
        keep = obs.copy()
        keep[:, t] = False
        _ct, st = _systems(n, keep, acov, sigma2)
        gamma = np.where(keep, acov[np.abs(idx - t)][None, :], 0.0)
        psi = np.linalg.solve(st, gamma[:, :, None])[:, :, 0]
        fc[:, t] = np.einsum("ti,ti->t", psi, np.where(keep, rbar, 0.0))
        fc_var[:, t] = np.clip(acov[0] - np.einsum("ti,ti->t", psi, gamma), 0.0, None)

    ti, yi = np.nonzero(obs)
    teacher_year = pd.DataFrame(
        {
            "teacher_id": teachers[ti],
            "year_index": yi,
            "effect": post_mean[ti, yi],
            "effect_var": post_var[ti, yi],
            "forecast": fc[ti, yi],
            "forecast_var": fc_var[ti, yi],
            "reliability": 1.0 - post_var[ti, yi] / acov[0],
        }
    )
    k = obs.sum(axis=1)
    w = obs / np.maximum(k, 1)[:, None]
    avg = (post_mean * w).sum(axis=1)
    avg_var = np.einsum("ti,tij,tj->t", w, post_cov, w)
    prior_var = np.einsum("ti,tij,tj->t", w, c, w)
    teacher = pd.DataFrame(
        {
            "teacher_id": teachers,
            "years": k,
            "students": n.sum(axis=1).astype(np.int64),
            "effect": avg,
            "effect_var": np.clip(avg_var, 0.0, None),
            "reliability": 1.0 - np.clip(avg_var, 0.0, None) / np.maximum(prior_var, 1e-300),
            "raw_mean": (rbar * n).sum(axis=1) / np.maximum(n.sum(axis=1), 1.0),
        }
    )
    return teacher_year, teacher
