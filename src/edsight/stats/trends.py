"""Multi-year trends of gaps and mean scores, with a linear forecast and its uncertainty.

A handful of yearly points (a district rarely has more than 5-10 comparable years) supports
no more than a straight line, so the model is a weighted least-squares line per group,
``y_t = a + b t + e_t``, with weights 1 / se_t^2 when the yearly values come with standard
errors (small years count less). The residual scale is estimated from the fit, so year-to-
year variation beyond sampling error widens the intervals. Forecasts carry a confidence
interval for the line and a prediction interval for the value that will be observed
(t quantiles with n - 2 df). See docs/stats-gaps.md.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from edsight.errors import InvalidInput
from edsight.stats._gaps_input import require_columns

__all__ = ["gap_trends", "linear_trend", "mean_score_trends"]

log = logging.getLogger(__name__)

TREND_COLUMNS: tuple[str, ...] = (
    "observed",
    "observed_se",
    "fitted",
    "fitted_se",
    "ci_low",
    "ci_high",
    "pi_low",
    "pi_high",
    "is_forecast",
    "slope",
    "slope_se",
    "slope_ci_low",
    "slope_ci_high",
    "n_years",
)


def _fit_one(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, se: np.ndarray | None, future: np.ndarray, conf_level: float
) -> dict[str, np.ndarray | float]:
    """WLS line through (t, y) and its predictions at t and at ``future``."""
    n = len(t)
    x_all = np.r_[t, future]
    if n < 2 or np.unique(t).size < 2:
        nan_all = np.full(x_all.shape, np.nan)
        return {
            "fitted": nan_all,
            "fitted_se": nan_all,
            "pi_se": nan_all,
            "slope": np.nan,
            "slope_se": np.nan,
            "q": np.nan,
        }
    centre = float(np.average(t, weights=w))
    x = np.column_stack([np.ones(n), t - centre])
    xtwx_inv = np.linalg.inv(x.T @ (w[:, None] * x))
    beta = xtwx_inv @ (x.T @ (w * y))
    df = n - 2
    resid = y - x @ beta
    s2 = float(w @ resid**2) / df if df > 0 else np.nan
    xa = np.column_stack([np.ones(x_all.size), x_all - centre])
    fitted = xa @ beta
    lever = np.einsum("ij,jk,ik->i", xa, xtwx_inv, xa)
    # Weight of a new observation: its own 1/se^2 where observed; for future years the
    # typical (harmonic-mean) weight, i.e. a future year measured as precisely as an average one.
    if se is not None:
        w_new = np.r_[w, np.full(future.size, 1.0 / float(np.mean(1.0 / w)))]
    else:
        w_new = np.r_[w, np.full(future.size, float(np.mean(w)))]
    q = float(stats.t.ppf(0.5 + conf_level / 2.0, df)) if df > 0 else np.nan
    return {
        "fitted": fitted,
        "fitted_se": np.sqrt(s2 * lever),
        "pi_se": np.sqrt(s2 * (lever + 1.0 / w_new)),
        "slope": float(beta[1]),
        "slope_se": float(np.sqrt(s2 * xtwx_inv[1, 1])),
        "q": q,
    }


def linear_trend(
    frame: pd.DataFrame,
    *,
    value: str,
    time: str = "school_year",
    se: str | None = None,
    weight: str | None = None,
    by: Sequence[str] = (),
    horizon: int = 1,
    conf_level: float = 0.95,
    count: str | None = None,
) -> pd.DataFrame:
    """Fit a (weighted) linear trend of ``value`` over ``time`` per group and forecast ``horizon`` steps.

    Weights are 1 / ``se``^2 when ``se`` names a standard-error column, else the ``weight``
    column, else equal. Returns one row per group and time (observed years, then the
    forecast years ``max(time) + 1 .. max(time) + horizon`` with ``is_forecast``), with
    the fitted line, its confidence interval (``ci_*``), the prediction interval for a new
    observation (``pi_*``) and the group's slope per time unit. Groups with fewer than three
    distinct years get NaN intervals (no residual df). ``count`` names a column with the
    number of students behind each yearly value; it is carried to the output as ``n`` (for
    small-cell suppression), forecast rows taking the group's smallest yearly count.
    """
    if horizon < 0:
        raise InvalidInput(f"horizon must be >= 0, got {horizon}")
    if se is not None and weight is not None:
        raise InvalidInput("pass se= or weight=, not both")
    if not 0.0 < conf_level < 1.0:
        raise InvalidInput(f"conf_level must lie in (0, 1), got {conf_level}")
    by = list(by)
    extra = [c for c in (se, weight, count) if c is not None and c != value]
    require_columns(frame, [*by, time, value, *extra], "trend frame")
    data = frame[[*by, time, value, *extra]].dropna(subset=[time, value])
    if se is not None:
        data = data[data[se] > 0]
    pieces: list[pd.DataFrame] = []
    groups = data.groupby(by, sort=True, dropna=False) if by else [((), data)]
    for key, part in groups:
        key_t: tuple[Hashable, ...] = key if isinstance(key, tuple) else (key,)
        part = part.sort_values(time)
        t = part[time].to_numpy(dtype=float)
        y = part[value].to_numpy(dtype=float)
        se_arr = part[se].to_numpy(dtype=float) if se is not None else None
        if se_arr is not None:
            w = 1.0 / se_arr**2
        elif weight is not None:
            w = part[weight].to_numpy(dtype=float)
        else:
            w = np.ones(len(t))
        future = t.max() + np.arange(1, horizon + 1, dtype=float) if len(t) else np.array([])
        fit = _fit_one(t, y, w, se_arr, future, conf_level)
        fitted = np.asarray(fit["fitted"])
        half_ci = float(fit["q"]) * np.asarray(fit["fitted_se"])
        half_pi = float(fit["q"]) * np.asarray(fit["pi_se"])
        slope, slope_se = float(fit["slope"]), float(fit["slope_se"])
        out = pd.DataFrame(
            {
                time: np.r_[t, future],
                "observed": np.r_[y, np.full(future.size, np.nan)],
                "observed_se": np.r_[
                    se_arr if se_arr is not None else np.full(len(t), np.nan), np.full(future.size, np.nan)
                ],
                "fitted": fitted,
                "fitted_se": np.asarray(fit["fitted_se"]),
                "ci_low": fitted - half_ci,
                "ci_high": fitted + half_ci,
                "pi_low": fitted - half_pi,
                "pi_high": fitted + half_pi,
                "is_forecast": np.r_[np.zeros(len(t), bool), np.ones(future.size, bool)],
                "slope": slope,
                "slope_se": slope_se,
                "slope_ci_low": slope - float(fit["q"]) * slope_se,
                "slope_ci_high": slope + float(fit["q"]) * slope_se,
                "n_years": len(t),
            }
        )
        if count is not None:
            counts = part[count].to_numpy(dtype=float)
            low = counts.min() if len(counts) else np.nan
            out["n"] = np.r_[counts, np.full(future.size, low)]
        for name, val in zip(by, key_t, strict=True):
            out.insert(by.index(name), name, pd.Series([val] * len(out), dtype=object))
        pieces.append(out)
    if not pieces:
        return pd.DataFrame(columns=[*by, time, *TREND_COLUMNS, *(["n"] if count is not None else [])])
    result = pd.concat(pieces, ignore_index=True)
    if frame[time].dtype.kind in "iu" or str(frame[time].dtype).lower().startswith("int"):
        result[time] = result[time].round().astype("int64")
    return result


def gap_trends(
    gaps: pd.DataFrame,
    *,
    value: str = "mean_diff",
    se: str | None = "mean_diff_se",
    by: Sequence[str] = ("subgroup", "focal", "subject"),
    horizon: int = 1,
    conf_level: float = 0.95,
) -> pd.DataFrame:
    """Trend and forecast of a gap measure from :func:`edsight.stats.gaps.achievement_gaps` output.

    Use ``value="hedges_g", se="hedges_g_se"`` for the standardized gap; pass the gap table
    computed with ``by`` containing ``school_year``. Cells flagged ``small_cell`` are left out
    of the fit so a tiny year cannot drive the line.
    """
    require_columns(gaps, ["school_year", value], "gap table")
    data = gaps[~gaps["small_cell"].astype(bool)] if "small_cell" in gaps.columns else gaps
    count = "n" if "n" in gaps.columns else None
    return linear_trend(data, value=value, se=se, by=by, horizon=horizon, conf_level=conf_level, count=count)


def mean_score_trends(
    frame: pd.DataFrame,
    *,
    score: str = "scale_score",
    by: Sequence[str] = ("subject", "grade_level"),
    horizon: int = 1,
    conf_level: float = 0.95,
) -> pd.DataFrame:
    """Yearly mean score per group (with SE = SD / sqrt(n)) and its linear trend and forecast.

    ``frame`` is a gap frame (one score per row, a ``school_year`` column), e.g. from
    :func:`edsight.stats.gaps.gap_frame_from_tables`. The result adds ``n`` per year (forecast
    rows: the group's smallest yearly ``n``).
    """
    by = list(by)
    require_columns(frame, [*by, "school_year", score], "score frame")
    yearly = (
        frame.dropna(subset=[score])
        .groupby([*by, "school_year"], sort=True)[score]
        .agg(["size", "mean", "std"])
        .reset_index()
        .rename(columns={"size": "n", "mean": "mean_score"})
    )
    yearly["mean_se"] = yearly["std"] / np.sqrt(yearly["n"])
    return linear_trend(
        yearly, value="mean_score", se="mean_se", by=by, horizon=horizon, conf_level=conf_level, count="n"
    )
