"""Conformal prediction intervals: split conformal and CV+ (pure numpy).

Written from the definitions in Lei et al. (2018), "Distribution-free predictive inference
for regression" (split conformal) and Barber et al. (2021), "Predictive inference with the
jackknife+" (CV+). Both only need absolute residuals measured on points the model did not
train on, so they wrap any regressor.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

# Caps the (test rows x training rows) matrix CV+ builds, so memory stays ~40 MB per chunk.
_CV_PLUS_CELLS_PER_CHUNK = 5_000_000


def upper_rank(n: int, alpha: float) -> int:
    """1-based rank ceil((1 - alpha)(n + 1)) of the conformal upper quantile; n + 1 means "infinite"."""
    # The small epsilon keeps exact products such as 0.9 * 100 from rounding up to 91.
    return min(math.ceil((1.0 - alpha) * (n + 1) - 1e-9), n + 1)


def lower_rank(n: int, alpha: float) -> int:
    """1-based rank floor(alpha (n + 1)) of the CV+ lower quantile; 0 means "minus infinite"."""
    return max(math.floor(alpha * (n + 1) + 1e-9), 0)


def split_halfwidth(residuals: FloatArray, alpha: float) -> float:
    """Half-width of the split-conformal interval: the ceil((1-alpha)(n+1))-th smallest residual."""
    n = residuals.shape[0]
    rank = upper_rank(n, alpha)
    if rank > n:
        # Too few calibration points for this level: the only valid interval is unbounded.
        return math.inf
    return float(np.partition(residuals, rank - 1)[rank - 1])


def cv_plus_bounds(
    fold_predictions: FloatArray, train_fold: IntArray, residuals: FloatArray, alpha: float
) -> tuple[FloatArray, FloatArray]:
    """CV+ interval ends for each test row.

    ``fold_predictions`` is (n_test, K): the prediction of the model that left out fold k.
    ``train_fold[i]`` is the fold of training point i and ``residuals[i]`` its out-of-fold
    absolute residual. The lower end is the floor(alpha(n+1))-th smallest of
    mu_{-k(i)}(x) - R_i, the upper end the ceil((1-alpha)(n+1))-th smallest of mu_{-k(i)}(x) + R_i.
    """
    n = residuals.shape[0]
    n_test = fold_predictions.shape[0]
    lo_rank = lower_rank(n, alpha)
    hi_rank = upper_rank(n, alpha)
    lower = np.full(n_test, -np.inf)
    upper = np.full(n_test, np.inf)
    chunk = max(1, _CV_PLUS_CELLS_PER_CHUNK // max(n, 1))
    for start in range(0, n_test, chunk):
        stop = min(start + chunk, n_test)
        # (chunk, n): for test row t and training point i, the leave-fold-out prediction mu_{-k(i)}(x_t).
        mu = fold_predictions[start:stop][:, train_fold]
        if lo_rank >= 1:
            low_values = mu - residuals[np.newaxis, :]
            lower[start:stop] = np.partition(low_values, lo_rank - 1, axis=1)[:, lo_rank - 1]
        if hi_rank <= n:
            high_values = mu + residuals[np.newaxis, :]
            upper[start:stop] = np.partition(high_values, hi_rank - 1, axis=1)[:, hi_rank - 1]
    return lower, upper
