"""Student growth percentiles (Betebenner's method, as US states use it).

For each subject and grade, the current score is regressed on cubic B-spline bases of the
prior score(s) (knots at the 20/40/60/80th percentiles of each prior, boundaries at its
range) at the 100 quantiles tau = 0.005, 0.015, ..., 0.995. A student's SGP is the number
of fitted conditional quantiles below the actual score, bounded to 1-99. Fitted quantile
curves can cross for a few students; the predictions are sorted per student before
counting (the monotone rearrangement of Chernozhukov, Fernandez-Val and Galichon 2010),
which is also what the SGP package does.

A student gets an SGP of each order up to ``max_order`` for which consecutive prior
grades exist (order 1: last year's score, order 2: the last two years'); ``sgp`` is the
highest order available. Growth projections chain the fitted quantile functions forward:
the score a student would reach in 1-3 years growing at percentile p, and the lowest
percentile that reaches a proficiency cut.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.interpolate import BSpline

from edsight.errors import InvalidInput
from edsight.stats._sgp_qr import quantile_regression

__all__ = [
    "TAUS",
    "StudentGrowthPercentiles",
    "growth_projections",
    "sgp_long_from_wide",
    "sgp_summary",
    "sgp_uniformity",
]

log = logging.getLogger(__name__)

#: The 100 quantiles of the SGP method.
TAUS: np.ndarray = np.round(np.arange(0.005, 1.0, 0.01), 3)
_REQUIRED = ("person_id", "school_year", "grade_level", "score")


@dataclass(frozen=True)
class _Basis:
    """Cubic B-spline basis of one prior score (intercept-free; the model adds one)."""

    knots: np.ndarray  # full knot vector incl. repeated boundaries
    low: float
    high: float

    @classmethod
    def from_data(cls, v: np.ndarray, probs: Sequence[float]) -> _Basis:
        low, high = float(v.min()), float(v.max())
        inner = np.unique(np.quantile(v, probs))
        inner = inner[(inner > low) & (inner < high)]
        return cls(np.r_[[low] * 4, inner, [high] * 4], low, high)

    def __call__(self, v: np.ndarray) -> np.ndarray:
        clipped = np.clip(v, self.low, self.high)
        dm = BSpline.design_matrix(clipped, self.knots, 3).toarray()
        return dm[:, 1:]  # drop one column: the basis sums to one, the intercept is separate


@dataclass(frozen=True)
class _Fit:
    subject: str
    grade: float
    prior_grades: tuple[float, ...]
    bases: tuple[_Basis, ...]
    coef: np.ndarray  # (len(TAUS), p)
    n: int

    def design(self, priors: np.ndarray) -> np.ndarray:
        cols = [np.ones((priors.shape[0], 1))]
        cols += [b(priors[:, i]) for i, b in enumerate(self.bases)]
        return np.hstack(cols)

    def quantiles(self, priors: np.ndarray) -> np.ndarray:
        """Sorted (non-crossing) fitted quantiles, students x 100."""
        return np.sort(self.design(priors) @ self.coef.T, axis=1)


def sgp_long_from_wide(wide: pd.DataFrame, *, id_col: str = "ID", subject: str = "score") -> pd.DataFrame:
    """SGP-package wide data (ID, GRADE_<year>, SS_<year>) to the long frame this module uses."""
    years = sorted(int(c.split("_")[1]) for c in wide.columns if c.startswith("GRADE_"))
    if not years:
        raise InvalidInput("sgp wide data: no GRADE_<year> columns")
    parts = []
    for y in years:
        if f"SS_{y}" not in wide.columns:
            raise InvalidInput(f"sgp wide data: GRADE_{y} has no SS_{y} column")
        parts.append(
            pd.DataFrame(
                {
                    "person_id": wide[id_col].astype(str),
                    "subject": subject,
                    "school_year": y,
                    "grade_level": pd.to_numeric(wide[f"GRADE_{y}"], errors="coerce"),
                    "score": pd.to_numeric(wide[f"SS_{y}"], errors="coerce"),
                }
            )
        )
    return pd.concat(parts, ignore_index=True).dropna(subset=["grade_level", "score"]).reset_index(drop=True)


def _with_priors(d: pd.DataFrame, max_order: int) -> pd.DataFrame:
    """Add prior1..k score and grade columns (years t-1..t-k, same subject)."""
    key = d[["person_id", "subject", "school_year", "grade_level", "score"]]
    out = d
    for k in range(1, max_order + 1):
        lag = key.rename(columns={"grade_level": f"pgrade{k}", "score": f"prior{k}"}).assign(
            school_year=key["school_year"] + k
        )
        out = out.merge(lag, on=["person_id", "subject", "school_year"], how="left")
    return out


class StudentGrowthPercentiles:
    """Betebenner SGPs by quantile regression on B-splines of prior scores.

    Fitted attributes: ``fits_`` (one quantile model per subject, grade and prior-grade
    sequence), ``sgp_`` (the training rows with ``sgp``, ``sgp_order`` and ``sgp_order_<k>``).
    """

    def __init__(
        self,
        *,
        max_order: int = 2,
        knot_probs: Sequence[float] = (0.2, 0.4, 0.6, 0.8),
        min_students: int = 200,
    ) -> None:
        self.max_order = max_order
        self.knot_probs = knot_probs
        self.min_students = min_students

    def fit(self, frame: pd.DataFrame) -> StudentGrowthPercentiles:
        """Fit the quantile models on a long frame (person_id, school_year, grade_level, score[, subject])."""
        d = self._validate(frame)
        d = _with_priors(d, self.max_order)
        fits: dict[tuple[str, float, tuple[float, ...]], _Fit] = {}
        for order in range(1, self.max_order + 1):
            ok = d[[f"prior{k}" for k in range(1, order + 1)]].notna().all(axis=1)
            for k in range(1, order + 1):
                ok &= d[f"pgrade{k}"] == d["grade_level"] - k  # consecutive grade progressions only
            sub = d[ok]
            for key, g in sub.groupby(["subject", "grade_level"]):
                subject, grade = str(key[0]), float(key[1])  # type: ignore[arg-type]
                if len(g) < self.min_students:
                    continue
                priors = g[[f"prior{k}" for k in range(1, order + 1)]].to_numpy(float)
                bases = tuple(_Basis.from_data(priors[:, i], self.knot_probs) for i in range(order))
                pg = tuple(float(grade) - k for k in range(1, order + 1))
                proto = _Fit(str(subject), float(grade), pg, bases, np.zeros((0, 0)), len(g))
                coef = quantile_regression(proto.design(priors), g["score"].to_numpy(float), TAUS)
                fits[(str(subject), float(grade), pg)] = _Fit(
                    str(subject), float(grade), pg, bases, coef, len(g)
                )
                log.info("sgp: %s grade %g order %d fitted on %d students", subject, grade, order, len(g))
        if not fits:
            raise InvalidInput(f"sgp: no grade has {self.min_students} students with a prior score")
        self.fits_ = fits
        self.sgp_ = self._score(d)
        return self

    def _validate(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in _REQUIRED if c not in frame.columns]
        if missing:
            raise InvalidInput(f"sgp frame: missing column(s) {', '.join(missing)}")
        if self.max_order < 1:
            raise InvalidInput(f"sgp: max_order must be >= 1, got {self.max_order}")
        d = frame.copy()
        if "subject" not in d.columns:
            d["subject"] = "score"
        d["person_id"] = d["person_id"].astype("object")
        d["subject"] = d["subject"].astype("object")
        for c in ("school_year", "grade_level", "score"):
            d[c] = pd.to_numeric(d[c], errors="coerce").astype("float64")
        d = d.dropna(subset=["school_year", "grade_level", "score"])
        return d.drop_duplicates(["person_id", "subject", "school_year"], keep="last").reset_index(drop=True)

    def _score(self, d: pd.DataFrame) -> pd.DataFrame:
        out = d[[c for c in d.columns if not c.startswith(("prior", "pgrade"))]].copy()
        out["sgp"] = np.nan
        out["sgp_order"] = np.nan
        for order in range(1, self.max_order + 1):
            col = np.full(len(d), np.nan)
            for (subject, grade, pg), fit in self.fits_.items():
                if len(pg) != order:
                    continue
                m = (d["subject"] == subject) & (d["grade_level"] == grade)
                for k in range(1, order + 1):
                    m &= d[f"pgrade{k}"] == pg[k - 1]
                m &= d[[f"prior{k}" for k in range(1, order + 1)]].notna().all(axis=1)
                idx = np.flatnonzero(m.to_numpy())
                if len(idx) == 0:
                    continue
                q = fit.quantiles(d.iloc[idx][[f"prior{k}" for k in range(1, order + 1)]].to_numpy(float))
                below = (q < d["score"].to_numpy(float)[idx, None]).sum(axis=1)
                col[idx] = np.clip(below, 1, 99)
            out[f"sgp_order_{order}"] = col
            has = ~np.isnan(col)
            out.loc[has, "sgp"] = col[has]
            out.loc[has, "sgp_order"] = order
        return out

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """SGPs for new rows (priors looked up in the same frame) with the fitted models."""
        d = _with_priors(self._validate(frame), self.max_order)
        return self._score(d)


def sgp_summary(sgps: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Median (and mean) SGP with n per group, for suppression of small cells downstream."""
    d = sgps.dropna(subset=["sgp"])
    return (
        d.groupby(list(by), dropna=False)["sgp"]
        .agg(n="size", median_sgp="median", mean_sgp="mean")
        .reset_index()
        .astype({"n": "int64"})
    )


def sgp_uniformity(sgp: pd.Series | np.ndarray) -> dict[str, object]:
    """Decile shares, a chi-square statistic over the 99 SGP values and the KS distance.

    The reference is the exact SGP distribution under a correct model: SGP 1 collects the
    scores below the 0.005 and 0.015 quantiles (1.5%), SGP 99 those above 0.985 (1.5%), every
    other value 1%; so the first decile (1-10) expects 10.5% and the last (91-99) 9.5%.
    """
    from scipy import stats

    v = np.asarray(pd.Series(sgp).dropna(), dtype=float)
    if len(v) == 0:
        raise InvalidInput("sgp uniformity: no SGPs")
    counts = np.bincount(v.astype(int), minlength=100)[1:100]
    expected_p = np.full(99, 0.01)
    expected_p[[0, -1]] = 0.015
    chi = stats.chisquare(counts, f_exp=expected_p * len(v))
    edges = [0.5, 10.5, 20.5, 30.5, 40.5, 50.5, 60.5, 70.5, 80.5, 90.5, 99.5]
    deciles = np.histogram(v, bins=edges)[0] / len(v)
    ks = float(np.max(np.abs(np.cumsum(counts) / len(v) - np.cumsum(expected_p))))
    return {
        "n": len(v),
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "decile_shares": [float(x) for x in deciles],
        "expected_decile_shares": [0.105, *([0.1] * 8), 0.095],
        "chi2": float(chi.statistic),
        "chi2_df": 98,
        "chi2_per_df": float(chi.statistic) / 98,
        "ks_distance": ks,
    }


def growth_projections(
    model: StudentGrowthPercentiles,
    current: pd.DataFrame,
    cuts: Mapping[tuple[str, float], float],
    *,
    years: int = 3,
    percentiles: Sequence[int] = (35, 50, 65),
) -> pd.DataFrame:
    """Percentile trajectories to a proficiency cut, 1..``years`` years ahead.

    ``current`` has one row per student (person_id, subject, grade_level, score and,
    optionally, ``prior1`` the previous grade's score, which enables second-order models).
    ``cuts`` maps (subject, grade) to the proficiency cut score. Output per student and
    horizon h: ``percentile_to_cut`` (lowest growth percentile whose trajectory reaches the
    cut in grade + h; 100 when none does, NaN when no model reaches that grade) and the
    projected score at each of ``percentiles``.
    """
    fits = model.fits_
    cur = current.reset_index(drop=True)
    n = len(cur)
    p_idx = np.arange(1, 100)  # growth percentile p uses tau index p (tau = (p + 0.5) / 100)
    rows: list[pd.DataFrame] = []
    for subject, g in cur.groupby(cur.get("subject", pd.Series("score", index=cur.index))):
        idx = g.index.to_numpy()
        grade = g["grade_level"].to_numpy(float)
        now = np.repeat(g["score"].to_numpy(float)[:, None], 99, axis=1)
        prev = (
            np.repeat(g["prior1"].to_numpy(float)[:, None], 99, axis=1)
            if "prior1" in g.columns
            else np.full_like(now, np.nan)
        )
        for h in range(1, years + 1):
            nxt = np.full_like(now, np.nan)
            target = grade + h
            for gr in np.unique(target):
                sel = np.flatnonzero(target == gr)
                fit2 = fits.get((str(subject), float(gr), (float(gr) - 1, float(gr) - 2)))
                fit1 = fits.get((str(subject), float(gr), (float(gr) - 1,)))
                for fit in (fit2, fit1):
                    if fit is None:
                        continue
                    todo = sel[np.isnan(nxt[sel, 0])]
                    if fit is fit2:
                        todo = todo[~np.isnan(prev[todo, 0])]
                    if len(todo) == 0:
                        continue
                    pri = [now[todo].ravel()] + ([prev[todo].ravel()] if fit is fit2 else [])
                    design = fit.design(np.column_stack(pri))
                    # Each (student, p) needs only its own quantile: a row-wise dot product.
                    coef = fit.coef[np.tile(p_idx, len(todo))]
                    vals = np.einsum("ij,ij->i", design, coef).reshape(len(todo), 99)
                    nxt[todo] = np.maximum.accumulate(vals, axis=1)  # keep trajectories monotone in p
            cut = np.array([cuts.get((str(subject), float(t)), np.nan) for t in target])
            reach = nxt >= cut[:, None]
            first = np.where(reach.any(axis=1), reach.argmax(axis=1) + 1, 100).astype(float)
            first[np.isnan(nxt[:, 0]) | np.isnan(cut)] = np.nan
            part = pd.DataFrame(
                {
                    "person_id": g["person_id"].to_numpy(),
                    "subject": subject,
                    "grade_level": grade,
                    "years_ahead": h,
                    "target_grade": target,
                    "cut_score": cut,
                    "percentile_to_cut": first,
                }
            )
            for p in percentiles:
                part[f"score_p{p}"] = nxt[:, p - 1]
            part.index = idx
            rows.append(part)
            prev, now = now, nxt
    if not rows:
        return pd.DataFrame()
    log.debug("sgp projections for %d students", n)
    return pd.concat(rows).sort_values(["person_id", "subject", "years_ahead"]).reset_index(drop=True)
