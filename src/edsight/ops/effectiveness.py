"""Did an intervention work? Outcomes of students who got it against similar students who did not.

Students are not assigned to supports at random: the ones flagged get them, so a plain
comparison of outcomes mostly measures who was flagged. Both estimators here model the
probability of receiving the support from the covariates seen *before* it started (the
propensity score) and compare like with like:

* ``matching``: each treated student with the untreated student nearest in logit propensity
  (with replacement, within a caliper of 0.2 standard deviations of the logit);
* ``ipw``: inverse-probability weights for the average effect on the treated (untreated
  students weighted by p / (1 - p), normalised).

Both estimate the average effect on the treated (ATT) with a bootstrap interval, and report
covariate balance (standardised mean differences before and after). They remove bias from
*measured* differences only: :data:`CAVEAT` is shown with every result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors

from edsight.errors import InvalidInput

__all__ = ["CAVEAT", "EffectEstimate", "intervention_effect"]

CAVEAT = (
    "Observational comparison: students who received the support are compared with similar "
    "students who did not, matched on the measured covariates. Differences that were not "
    "measured (motivation, family circumstances) can still bias the estimate; treat it as "
    "evidence to weigh, not proof."
)

Method = Literal["matching", "ipw"]


@dataclass(frozen=True)
class EffectEstimate:
    """Average effect on the treated, its interval, and the evidence behind it."""

    method: str
    effect: float
    ci_low: float
    ci_high: float
    naive: float  # plain difference of means, for contrast
    n_treated: int
    n_control: int
    n_used: int  # treated students with a match (matching) or all treated (ipw)
    balance: pd.DataFrame  # covariate, smd_before, smd_after
    caveat: str = CAVEAT

    def as_row(self) -> dict[str, object]:
        return {
            "method": self.method,
            "effect": self.effect,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "naive": self.naive,
            "n_treated": self.n_treated,
            "n_control": self.n_control,
            "n_used": self.n_used,
            "max_smd_after": float(self.balance["smd_after"].abs().max()),
        }


FloatArray = NDArray[np.float64]


def _propensity(x: FloatArray, t: NDArray[np.bool_]) -> FloatArray:
    model = LogisticRegression(C=1e4, max_iter=1000)
    model.fit(x, t)
    p = model.predict_proba(x)[:, 1]
    return np.asarray(np.clip(p, 1e-6, 1 - 1e-6), dtype=np.float64)


def _smd(x: FloatArray, t: NDArray[np.bool_], w: FloatArray) -> FloatArray:
    def wstats(values: FloatArray, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
        mean = np.average(values, axis=0, weights=weights)
        var = np.average((values - mean) ** 2, axis=0, weights=weights)
        return mean, var

    mt, _ = wstats(x[t], w[t])
    mc, _ = wstats(x[~t], w[~t])
    # The denominator uses the unweighted variances, so before and after are on one scale.
    _, vt0 = wstats(x[t], np.ones(int(t.sum())))
    _, vc0 = wstats(x[~t], np.ones(int((~t).sum())))
    sd = np.sqrt((vt0 + vc0) / 2)
    return np.asarray(np.where(sd > 0, (mt - mc) / np.where(sd > 0, sd, 1), 0.0), dtype=np.float64)


def _match_weights(logit: FloatArray, t: NDArray[np.bool_], caliper: float) -> tuple[FloatArray, int]:
    """Control weights = times each control is used as a match; treated weight 1 if matched."""
    treated = np.flatnonzero(t)
    control = np.flatnonzero(~t)
    nn = NearestNeighbors(n_neighbors=1).fit(logit[control, None])
    dist, idx = nn.kneighbors(logit[treated, None])
    ok = dist[:, 0] <= caliper * float(np.std(logit))
    w = np.zeros(len(t))
    w[treated[ok]] = 1.0
    np.add.at(w, control[idx[ok, 0]], 1.0)
    return w, int(ok.sum())


def _ipw_weights(p: FloatArray, t: NDArray[np.bool_]) -> FloatArray:
    w = np.where(t, 1.0, p / (1 - p))
    w[~t] *= t.sum() / w[~t].sum()
    return np.asarray(w, dtype=np.float64)


def _att(y: FloatArray, t: NDArray[np.bool_], w: FloatArray) -> float:
    return float(np.average(y[t], weights=w[t]) - np.average(y[~t], weights=w[~t]))


def _weights(x: FloatArray, t: NDArray[np.bool_], method: Method, caliper: float) -> tuple[FloatArray, int]:
    p = _propensity(x, t)
    if method == "matching":
        return _match_weights(np.log(p / (1 - p)), t, caliper)
    return _ipw_weights(p, t), int(t.sum())


def intervention_effect(
    frame: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    method: Method = "matching",
    caliper: float = 0.2,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> EffectEstimate:
    """Average effect of ``treatment`` (bool column) on ``outcome`` among the treated.

    ``covariates`` must be measured before the intervention started (the risk score and the
    features at that date), never after it.
    """
    missing = [c for c in (treatment, outcome, *covariates) if c not in frame.columns]
    if missing:
        raise InvalidInput(f"effectiveness: missing column(s) {missing}")
    if method not in ("matching", "ipw"):
        raise InvalidInput(f"unknown method {method!r}; expected 'matching' or 'ipw'")
    data = frame[[treatment, outcome, *covariates]].dropna()
    t = data[treatment].astype(bool).to_numpy()
    if t.sum() < 10 or (~t).sum() < 10:
        raise InvalidInput("effectiveness needs at least 10 students with and 10 without the intervention")
    y: FloatArray = np.asarray(data[outcome].to_numpy(dtype=np.float64), dtype=np.float64)
    raw: FloatArray = data[list(covariates)].astype(float).to_numpy(dtype=np.float64)
    scale = raw.std(axis=0)
    x: FloatArray = np.asarray((raw - raw.mean(axis=0)) / np.where(scale > 0, scale, 1.0), dtype=np.float64)
    w, used = _weights(x, t, method, caliper)
    effect = _att(y, t, w)
    rng = np.random.default_rng(seed)
    ti, ci = np.flatnonzero(t), np.flatnonzero(~t)
    boots = []
    for _ in range(n_boot):
        rows = np.concatenate([rng.choice(ti, len(ti)), rng.choice(ci, len(ci))])
        bw, _ = _weights(x[rows], t[rows], method, caliper)
        if bw[t[rows]].sum() > 0 and bw[~t[rows]].sum() > 0:
            boots.append(_att(y[rows], t[rows], bw))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha]) if boots else (np.nan, np.nan)
    balance = pd.DataFrame(
        {
            "covariate": list(covariates),
            "smd_before": _smd(x, t, np.ones(len(t))),
            "smd_after": _smd(x, t, w),
        }
    )
    return EffectEstimate(
        method=method,
        effect=effect,
        ci_low=float(lo),
        ci_high=float(hi),
        naive=float(y[t].mean() - y[~t].mean()),
        n_treated=int(t.sum()),
        n_control=int((~t).sum()),
        n_used=used,
        balance=balance,
    )
