"""Predictions and growth curves from a fitted linear mixed model."""

from __future__ import annotations

from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput
from edsight.stats._mixed_formula import group_codes, model_matrix

if TYPE_CHECKING:
    from edsight.stats.mixed import LmmResult


def predict_frame(
    result: LmmResult, newdata: pd.DataFrame, *, groups: list[str] | None, level: float
) -> pd.DataFrame:
    """fit, se, lower, upper for every row of ``newdata``.

    The interval combines the sampling variance of the fixed effects with the conditional
    variance of the random effects used (treated as independent, as lme4's condVar does);
    levels not seen in the fit get no random effect.
    """
    if not 0.0 < level < 1.0:
        raise InvalidInput(f"level must be between 0 and 1, got {level}")
    spec = result.spec
    needed = [v for v in spec.variables()[1:]]
    missing = [c for c in needed if c not in newdata.columns]
    if missing:
        raise InvalidInput(f"new data lacks columns the model needs: {', '.join(missing)}")
    known = {t.group for t in result.terms}
    use = known if groups is None else set(groups)
    unknown = sorted(use - known)
    if unknown:
        raise InvalidInput(f"unknown grouping terms {unknown}; the model has {sorted(known)}")
    x, _ = model_matrix(spec.fixed, newdata, result.coding)
    fit = x @ result.beta
    var = np.einsum("ij,jk,ik->i", x, result.beta_cov, x)
    for term, b, cv in zip(result.terms, result.ranef_values, result.ranef_condvar, strict=True):
        if term.group not in use:
            continue
        z, _ = model_matrix(term.lhs, newdata, result.coding)
        codes, labels = group_codes(newdata, term.factors)
        lookup = {lab: i for i, lab in enumerate(term.levels)}
        fitted_idx = np.array([lookup.get(lab, -1) for lab in labels], dtype=np.int64)[codes]
        seen = fitted_idx >= 0
        idx = np.where(seen, fitted_idx, 0)
        fit += np.where(seen, np.einsum("iq,iq->i", z, b[idx]), 0.0)
        var += np.where(seen, np.einsum("iq,iqr,ir->i", z, cv[idx], z), 0.0)
    se = np.sqrt(var)
    zq = NormalDist().inv_cdf(0.5 + level / 2.0)
    out = newdata.reset_index(drop=True).copy()
    out["fit"] = fit
    out["se"] = se
    out["lower"] = fit - zq * se
    out["upper"] = fit + zq * se
    return out


def growth_curves(
    result: LmmResult, *, time: str, group: str, times: list[float] | None, level: float
) -> pd.DataFrame:
    """One predicted trajectory per level of ``group`` (a grouping name such as ``school``).

    Covariates other than ``time`` take each group's first observed row; the curve uses the
    random effects of ``group`` and of every coarser term whose factors it contains (a
    student's curve includes its school's deviation). For an interaction such as
    ``student:school`` a column of that name holds the level label, so the table can be
    plotted by ``group`` like a single factor.
    """
    term = next((t for t in result.terms if t.group == group), None)
    if term is None:
        raise InvalidInput(f"no random-effect term for {group!r}; have {[t.group for t in result.terms]}")
    if time not in result.data.columns:
        raise InvalidInput(f"time column {time!r} is not in the model")
    grid = np.unique(result.data[time].to_numpy(dtype=float)) if times is None else np.asarray(times, float)
    first = result.data.drop_duplicates(list(term.factors)).reset_index(drop=True)
    rows = first.loc[first.index.repeat(len(grid))].reset_index(drop=True)
    rows[time] = np.tile(grid, len(first))
    included = [t.group for t in result.terms if set(t.factors) <= set(term.factors)]
    pred = predict_frame(result, rows, groups=included, level=level)
    keep = [*term.factors, time, "fit", "se", "lower", "upper"]
    if len(term.factors) > 1:
        codes, labels = group_codes(first, term.factors)
        pred.insert(0, group, np.repeat(np.asarray(labels, dtype=object)[codes], len(grid)))
        keep.insert(0, group)
    return pred[keep]
