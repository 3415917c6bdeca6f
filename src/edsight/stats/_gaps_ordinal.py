"""The V gap statistic of Ho & Reardon (2012) from proficiency-category counts only.

V is the gap expressed as a Cohen's-d-like quantity that is invariant to monotone
transformations of the score scale: V = sqrt(2) * Phi^-1(AUC), where AUC = P(X_f > X_r)
is the area under the curve that plots the focal group's cumulative proportions against
the reference group's at each cut score. With counts in ordered categories, students in
the same category are tied; following Ho & Reardon the ties are split evenly,
AUC = P(X_f > X_r) + P(X_f = X_r) / 2, i.e. the points are joined by straight lines.

That trapezoidal V shrinks toward zero when there are few categories, so
:func:`v_statistic_ml` also gives Ho & Reardon's maximum-likelihood estimate under
"respective normality" (both groups normal after one common monotone transformation),
which stays close to d with four performance levels.

Reference: Ho, A. D. & Reardon, S. F. (2012). Estimating achievement gaps from test scores
reported in ordinal "proficiency" categories. JEBS 37(4), 489-517.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

SQRT2 = math.sqrt(2.0)
# Proportions are clipped away from 0 and 1 so empty categories give finite probits.
_EPS = 1e-9


def auc_from_counts(counts_focal: np.ndarray, counts_reference: np.ndarray) -> np.ndarray:
    """P(focal > reference) + P(tie) / 2 from category counts ordered low to high.

    Both arrays have shape (..., K); leading axes are cells. Cells where either group is
    empty give NaN.
    """
    cf = np.asarray(counts_focal, dtype=float)
    cr = np.asarray(counts_reference, dtype=float)
    if cf.shape != cr.shape:
        raise ValueError("focal and reference counts must have the same shape")
    n_f = cf.sum(axis=-1, keepdims=True)
    n_r = cr.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_f = cf / n_f
        p_r = cr / n_r
    below_r = np.cumsum(p_r, axis=-1) - p_r
    auc = np.sum(p_f * (below_r + 0.5 * p_r), axis=-1)
    return np.where((n_f[..., 0] > 0) & (n_r[..., 0] > 0), auc, np.nan)


def v_statistic(counts_focal: np.ndarray, counts_reference: np.ndarray) -> np.ndarray:
    """V = sqrt(2) Phi^-1(AUC) with ties split evenly; positive when the focal group scores higher."""
    auc = auc_from_counts(counts_focal, counts_reference)
    return SQRT2 * special.ndtri(auc)


def _neg_loglik(params: np.ndarray, cf: np.ndarray, cr: np.ndarray, free_sd: bool) -> float:
    k = cf.size - 1
    cuts = params[0] + np.concatenate(([0.0], np.cumsum(np.exp(params[1:k]))))
    mu = params[k]
    sd = math.exp(params[k + 1]) if free_sd else 1.0
    edges_r = np.concatenate(([0.0], special.ndtr(cuts), [1.0]))
    edges_f = np.concatenate(([0.0], special.ndtr((cuts - mu) / sd), [1.0]))
    pr = np.clip(np.diff(edges_r), _EPS, None)
    pf = np.clip(np.diff(edges_f), _EPS, None)
    return -float(np.sum(cr * np.log(pr)) + np.sum(cf * np.log(pf)))


def v_statistic_ml(counts_focal: np.ndarray, counts_reference: np.ndarray) -> float:
    """Ho & Reardon's ML V for one cell: reference ~ N(0, 1), focal ~ N(mu, sd^2), free cuts.

    V = mu / sqrt((1 + sd^2) / 2). With only two non-empty-able categories the SD is not
    identified and is fixed at 1 (equal variances).
    """
    cf = np.asarray(counts_focal, dtype=float)
    cr = np.asarray(counts_reference, dtype=float)
    if cf.ndim != 1 or cf.shape != cr.shape or cf.size < 2:
        raise ValueError("counts must be two 1-D arrays of the same length >= 2")
    if cf.sum() <= 0 or cr.sum() <= 0:
        return math.nan
    k = cf.size - 1
    free_sd = k >= 2
    # Start from the probit-probit line through the cumulative proportions (Ho & Reardon's
    # "PTFIT"), which is already close to the optimum.
    cum_r = np.clip(np.cumsum(cr)[:-1] / cr.sum(), 1e-4, 1 - 1e-4)
    cum_f = np.clip(np.cumsum(cf)[:-1] / cf.sum(), 1e-4, 1 - 1e-4)
    z_r = special.ndtri(cum_r)
    z_f = special.ndtri(cum_f)
    z_r = np.maximum.accumulate(z_r + np.arange(k) * 1e-3)
    mu0 = float(np.mean(z_r - z_f))
    steps = np.log(np.maximum(np.diff(z_r), 1e-3))
    start = np.concatenate(([z_r[0]], steps, [mu0], [0.0] if free_sd else []))
    res = optimize.minimize(_neg_loglik, start, args=(cf, cr, free_sd), method="BFGS")
    mu = float(res.x[k])
    sd = math.exp(float(res.x[k + 1])) if free_sd else 1.0
    return mu / math.sqrt((1.0 + sd * sd) / 2.0)
