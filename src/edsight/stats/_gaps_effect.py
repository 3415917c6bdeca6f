"""Two-group effect sizes on summary statistics, vectorised over cells.

Every function takes numpy arrays of per-cell summaries (n, mean, variance) for the focal
and the reference group and returns arrays of the same shape, so one call covers every
school x grade x subject x year cell. Formulas follow Borenstein, Hedges, Higgins &
Rothstein (2009), *Introduction to Meta-Analysis*, ch. 4.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

FloatArray = np.ndarray


def pooled_sd(n_f: FloatArray, var_f: FloatArray, n_r: FloatArray, var_r: FloatArray) -> FloatArray:
    """Within-group SD pooled over both groups (weights n - 1); NaN where df < 1."""
    df = n_f + n_r - 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.sqrt(((n_f - 1.0) * var_f + (n_r - 1.0) * var_r) / df)
    return np.where(df >= 1, out, np.nan)


def hedges_j(df: FloatArray) -> FloatArray:
    """Exact small-sample correction J(df) = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2)).

    The exact form rather than 1 - 3/(4 df - 1) because the cells of a gap table can be
    tiny (a grade in one school), where the approximation is off in the third decimal.
    """
    df = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore"):
        log_j = special.gammaln(df / 2.0) - 0.5 * np.log(df / 2.0) - special.gammaln((df - 1.0) / 2.0)
    return np.where(df > 1, np.exp(log_j), np.nan)


def effect_sizes(
    n_f: FloatArray,
    mean_f: FloatArray,
    var_f: FloatArray,
    n_r: FloatArray,
    mean_r: FloatArray,
    var_r: FloatArray,
    conf_level: float,
) -> dict[str, FloatArray]:
    """Mean difference (Welch SE/CI), Cohen's d and Hedges' g with a normal-theory CI.

    Differences are focal minus reference. Var(d) = (n_f + n_r) / (n_f n_r) + d^2 / (2 (n_f + n_r))
    and Var(g) = J^2 Var(d) (Borenstein et al. 2009, eq. 4.20 and 4.24).
    """
    n_f = np.asarray(n_f, dtype=float)
    n_r = np.asarray(n_r, dtype=float)
    diff = np.asarray(mean_f, dtype=float) - np.asarray(mean_r, dtype=float)
    z = float(stats.norm.ppf(0.5 + conf_level / 2.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        a = var_f / n_f
        b = var_r / n_r
        diff_se = np.sqrt(a + b)
        # Welch-Satterthwaite df for the CI of the raw difference
        welch_df = (a + b) ** 2 / (a**2 / (n_f - 1.0) + b**2 / (n_r - 1.0))
        t = stats.t.ppf(0.5 + conf_level / 2.0, welch_df)
        sp = pooled_sd(n_f, var_f, n_r, var_r)
        d = np.where(sp > 0, diff / sp, np.nan)
        var_d = (n_f + n_r) / (n_f * n_r) + d**2 / (2.0 * (n_f + n_r))
        j = hedges_j(n_f + n_r - 2.0)
        g = j * d
        g_se = j * np.sqrt(var_d)
    ok = (n_f >= 2) & (n_r >= 2)
    nan = np.full(diff.shape, np.nan)
    return {
        "mean_diff": np.where((n_f >= 1) & (n_r >= 1), diff, np.nan),
        "mean_diff_se": np.where(ok, diff_se, nan),
        "mean_diff_ci_low": np.where(ok, diff - t * diff_se, nan),
        "mean_diff_ci_high": np.where(ok, diff + t * diff_se, nan),
        "pooled_sd": np.where(ok, sp, nan),
        "cohens_d": np.where(ok, d, nan),
        "cohens_d_se": np.where(ok, np.sqrt(var_d), nan),
        "hedges_g": np.where(ok, g, nan),
        "hedges_g_se": np.where(ok, g_se, nan),
        "hedges_g_ci_low": np.where(ok, g - z * g_se, nan),
        "hedges_g_ci_high": np.where(ok, g + z * g_se, nan),
    }


def proportion_gap(
    k_f: FloatArray, n_f: FloatArray, k_r: FloatArray, n_r: FloatArray, conf_level: float
) -> dict[str, FloatArray]:
    """Percent proficient per group, the gap in percentage points and its Wald SE/CI."""
    z = float(stats.norm.ppf(0.5 + conf_level / 2.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_f = k_f / n_f
        p_r = k_r / n_r
        se = np.sqrt(p_f * (1.0 - p_f) / n_f + p_r * (1.0 - p_r) / n_r)
    gap = p_f - p_r
    return {
        "pct_proficient_focal": 100.0 * p_f,
        "pct_proficient_reference": 100.0 * p_r,
        "pct_proficient_gap": 100.0 * gap,
        "pct_proficient_gap_se": 100.0 * se,
        "pct_proficient_gap_ci_low": 100.0 * (gap - z * se),
        "pct_proficient_gap_ci_high": 100.0 * (gap + z * se),
    }
