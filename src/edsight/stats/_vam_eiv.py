"""Within-group least squares corrected for measurement error in the prior scores.

A prior score ``W = T + U`` measures the student's true prior achievement ``T`` with an
error of known standard deviation ``s`` (the test's reported conditional SEM). Regressing on
``W`` attenuates its coefficient, so part of every earlier contribution that the prior score
carries (for a school, the years the same students already spent there) reappears in this
year's residuals and inflates the school's estimate.

The correction is the corrected-score estimator for polynomial regression (Cheng and
Schneeweiss 1998): the design uses ``t_m(W)``, the unbiased estimator of ``T^m`` under
normal error (``t_1 = W``, ``t_2 = W^2 - s^2``, ``t_3 = W^3 - 3 s^2 W``), and the
cross-product matrix replaces each ``t_j(W) t_k(W)`` of one error-prone variable by
``t_{j+k}(W)``; products of different variables (independent errors) and of error-free
columns need no correction. With group (teacher-year) fixed effects, the group-mean part of
the cross-product carries ``1 / n_g`` of the same bias, so the per-student correction is
weighted by ``1 - 1 / n_g``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


def hermite_moment(w: np.ndarray, s2: np.ndarray, m: int) -> np.ndarray:
    """``t_m(W)``: unbiased for ``T^m`` when ``W = T + U``, ``U ~ N(0, s2)``.

    Recurrence ``t_{m+1} = W t_m - m s2 t_{m-1}`` (scaled Hermite polynomials).
    """
    prev, cur = np.ones_like(w), w.copy()
    if m == 0:
        return prev
    for k in range(1, m):
        prev, cur = cur, w * cur - k * s2 * prev
    return cur


@dataclass(frozen=True)
class Term:
    """One design column: ``t_power(values)`` of an error-prone variable, or a plain column.

    ``variable`` names the error-prone score the column is a power of (``None`` for
    error-free columns such as missing indicators and demographics); ``s2`` is the
    per-row error variance of that score (0 where it is missing or error-free).
    """

    values: np.ndarray
    variable: str | None = None
    power: int = 1
    s2: np.ndarray | None = None

    def column(self) -> np.ndarray:
        if self.variable is None:
            return self.values
        if self.s2 is None:  # no error variance known: the plain power
            return self.values**self.power
        return hermite_moment(self.values, self.s2, self.power)


def correction(terms: list[Term], group: np.ndarray) -> np.ndarray:
    """Expected excess of the within-group cross-product matrix due to measurement error.

    Entry (a, b) is ``sum_i (t_j t_k - t_{j+k})(W_i) (1 - 1 / n_g(i))`` for two powers of
    the same error-prone variable, else 0.
    """
    k = len(terms)
    out = np.zeros((k, k))
    cnt = np.bincount(group).astype(float)
    keep = 1.0 - 1.0 / cnt[group]
    for a in range(k):
        ta = terms[a]
        if ta.variable is None or ta.s2 is None:
            continue
        for b in range(a, k):
            tb = terms[b]
            if tb.variable != ta.variable or tb.s2 is None:
                continue
            w, s2 = ta.values, ta.s2
            delta = hermite_moment(w, s2, ta.power) * hermite_moment(w, s2, tb.power)
            delta -= hermite_moment(w, s2, ta.power + tb.power)
            out[a, b] = out[b, a] = float(np.sum(delta * keep))
    return out


def within_ols(
    xd: np.ndarray, yd: np.ndarray, noisy: list[int], corr: np.ndarray | None
) -> tuple[np.ndarray, bool]:
    """Least squares on demeaned data with the measurement-error correction.

    ``noisy`` are the column indices of the error-prone terms and ``corr`` their correction
    matrix (:func:`correction`). The error-free columns are partialled out first
    (Frisch-Waugh; they may be rank deficient, e.g. grade-year dummies inside teacher-years),
    then the corrected normal equations are solved for the noisy block. Returns
    (coefficients in column order, corrected). Falls back to plain least squares
    (``corrected`` False) when there is nothing to correct or the corrected matrix is not
    positive definite (error variances too large for the spread of the scores).
    """
    if corr is None or not noisy or not np.any(corr):
        return np.linalg.lstsq(xd, yd, rcond=None)[0], False
    clean = [j for j in range(xd.shape[1]) if j not in set(noisy)]
    xn = xd[:, noisy]
    if clean:
        z = xd[:, clean]
        proj = np.linalg.lstsq(z, np.column_stack([xn, yd]), rcond=None)[0]
        rest = np.column_stack([xn, yd]) - z @ proj
        xr, yr = rest[:, :-1], rest[:, -1]
    else:
        xr, yr = xn, yd
    xtx = xr.T @ xr - corr
    # Unit diagonal before the definiteness check: columns on very different scales (cubic
    # terms) must not hide a negative direction.
    d = np.sqrt(np.clip(np.diag(xtx), 1e-300, None))
    scaled = xtx / np.outer(d, d)
    if np.linalg.eigvalsh(scaled).min() <= 1e-8:
        log.warning("value-added: measurement-error correction not positive definite; plain least squares")
        return np.linalg.lstsq(xd, yd, rcond=None)[0], False
    b_noisy = np.linalg.solve(scaled, (xr.T @ yr) / d) / d
    beta = np.zeros(xd.shape[1])
    beta[noisy] = b_noisy
    if clean:
        beta[clean] = np.linalg.lstsq(xd[:, clean], yd - xn @ b_noisy, rcond=None)[0]
    return beta, True
