"""Student records and the draws that create them (private).

A student's demographics, latent achievement, growth rate and risk traits are drawn once,
when the student first enters the district; the year loop then updates the dynamic fields.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from edsight.synth import _district_model as m
from edsight.synth import _district_names as nm

# Field name -> (dtype, trailing shape). Two-column fields hold (math, reading).
FIELDS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "sex": (np.int8, ()),  # 0 = F, 1 = M
    "race": (np.int8, ()),
    "ed": (np.bool_, ()),
    "el": (np.bool_, ()),
    "dis": (np.bool_, ()),
    "in_mover": (np.bool_, ()),
    "birth": (np.int32, ()),
    "zone": (np.int32, ()),
    "grade": (np.int8, ()),
    "active": (np.bool_, ()),
    "status": (np.float64, (2,)),
    "growth": (np.float64, (2,)),  # random slope + subgroup growth shift, SD units / year
    "ach": (np.float64, (2,)),  # absolute latent achievement, SD units (0 = grade-3 spring)
    "risk": (np.float64, ()),
    "abs_trait": (np.float64, ()),
    "tardy_trait": (np.float64, ()),
    "cohort": (np.int16, ()),
    "outcome": (np.int8, ()),  # -1 none, 0 graduated, 1 dropped out, 2 transferred out
    "outcome_day": (np.int32, ()),
    "outcome_year": (np.int16, ()),
    "reached_hs": (np.bool_, ()),
    "prev_fails": (np.int16, ()),
    "prev_inc": (np.int16, ()),
    "over_age": (np.bool_, ()),
    "g12_years": (np.int8, ()),
    "opt_out": (np.bool_, ()),
    "given": (np.int16, ()),
    "family": (np.int16, ()),
}


class Students:
    """Growable struct-of-arrays over every student ever enrolled (index = person number)."""

    def __init__(self) -> None:
        self.cols: dict[str, np.ndarray] = {
            name: np.zeros((0, *shape), dtype) for name, (dtype, shape) in FIELDS.items()
        }
        self.status_intercept: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.cols["sex"].shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def extend(self, new: dict[str, np.ndarray]) -> np.ndarray:
        """Append rows (every field must be given) and return their indices."""
        first = self.n
        size = len(new["sex"])
        for name, (dtype, _shape) in FIELDS.items():
            self.cols[name] = np.concatenate([self.cols[name], np.asarray(new[name], dtype)])
        return np.arange(first, first + size, dtype=np.int64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.asarray(np.log(p / (1 - p)))


def _correlated(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    z = rng.standard_normal((n, 2))
    z[:, 1] = rho * z[:, 0] + np.sqrt(1 - rho**2) * z[:, 1]
    return z


def _sept2_epoch(years: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(years, return_inverse=True)
    epoch = dt.date(1970, 1, 1)
    base = np.array([(dt.date(int(y), 9, 2) - epoch).days for y in uniq], dtype=np.int64)
    return base[inv]


def new_students(
    stu: Students,
    rng: np.random.Generator,
    zone: np.ndarray,
    zone_dep: np.ndarray,
    grade: np.ndarray,
    school_year: int,
    in_mover: np.ndarray,
) -> np.ndarray:
    """Draw and append students entering in ``school_year`` at ``grade`` in ``zone``."""
    n = len(zone)
    grade = np.asarray(grade, np.int64)
    dep = zone_dep[zone]
    male = rng.random(n) < m.MALE_SHARE
    w = np.asarray(m.RACE_PROBS)[None, :] * np.exp(np.outer(dep, m.RACE_NEIGHBOURHOOD_TILT))
    cum = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    race = np.minimum((rng.random(n)[:, None] >= cum).sum(axis=1), len(m.RACES) - 1)
    ed_logit = _logit(np.asarray(m.ED_BY_RACE)[race]) + m.ED_NEIGHBOURHOOD_COEF * dep
    ed = rng.random(n) < _sigmoid(ed_logit)
    el_p = np.asarray(m.EL_BY_RACE)[race] * np.asarray(m.EL_GRADE_FACTOR)[grade]
    el = rng.random(n) < np.minimum(el_p, 0.9)
    dis_logit = (
        _logit(m.DISABILITY_BASE)
        + np.log(m.DISABILITY_MALE_OR) * (male - m.MALE_SHARE)
        + np.log(m.DISABILITY_ED_OR) * (ed - 0.5)
    )
    dis = rng.random(n) < _sigmoid(dis_logit)
    rc = m.RISK_COEF
    risk = (
        rc["economically_disadvantaged"] * (ed - 0.5)
        + rc["male"] * (male - m.MALE_SHARE)
        + rc["disability"] * (dis - m.DISABILITY_BASE)
        + rng.standard_normal(n) * 0.95
    )
    # Latent status: subgroup shifts + correlated residual; the intercept is fixed from the
    # first cohort drawn so that the district's year-1 mean sits on the grade norm.
    shift = np.zeros((n, 2))
    for flag, key in (
        (ed, "economically_disadvantaged"),
        (el, "english_learner"),
        (dis, "disability"),
    ):
        shift += np.outer(flag, m.STATUS_GAPS[key])
    shift += np.outer(in_mover, m.STATUS_GAPS["in_mover"])
    shift += np.asarray([m.RACE_STATUS_GAPS[r] for r in m.RACES])[race]
    if stu.status_intercept is None:
        stu.status_intercept = -shift.mean(axis=0) if n else np.zeros(2)
    status = stu.status_intercept + shift + m.STATUS_RESID_SD * _correlated(rng, n, m.STATUS_CORR)
    growth = m.GROWTH_SD * _correlated(rng, n, m.GROWTH_CORR)
    for flag, key in (
        (ed, "economically_disadvantaged"),
        (el, "english_learner"),
        (dis, "disability"),
    ):
        growth += np.outer(flag, m.GROWTH_GAPS[key])
    # Fall of grade g: the student sits at the norm of the previous spring plus status.
    ach = status + ((grade - 4) * m.NORM_GROWTH)[:, None]
    kyear = school_year - grade
    birth = _sept2_epoch(kyear - 6) + np.floor(rng.random(n) * 365).astype(np.int64)
    given = rng.integers(0, len(nm.GIVEN_NAMES_F) * len(nm.GIVEN_NAMES_M), n)
    given = np.where(
        male, len(nm.GIVEN_NAMES_F) + given % len(nm.GIVEN_NAMES_M), given % len(nm.GIVEN_NAMES_F)
    )
    return stu.extend(
        {
            "sex": male.astype(np.int8),
            "race": race,
            "ed": ed,
            "el": el,
            "dis": dis,
            "in_mover": in_mover,
            "birth": birth,
            "zone": zone,
            "grade": grade,
            "active": np.ones(n, bool),
            "status": status,
            "growth": growth,
            "ach": ach,
            "risk": risk,
            "abs_trait": rng.standard_normal(n) * m.ABSENCE_TRAIT_SD,
            "tardy_trait": rng.standard_normal(n) * m.TARDY_TRAIT_SD,
            "cohort": np.full(n, -1),
            "outcome": np.full(n, -1),
            "outcome_day": np.zeros(n),
            "outcome_year": np.zeros(n),
            "reached_hs": np.zeros(n, bool),
            "prev_fails": np.zeros(n),
            "prev_inc": np.zeros(n),
            "over_age": np.zeros(n, bool),
            "g12_years": np.zeros(n),
            "opt_out": rng.random(n) < m.DIRECTORY_OPT_OUT,
            "given": given,
            "family": rng.integers(0, len(nm.FAMILY_NAMES), n),
        }
    )


def calibrated_draw(rng: np.random.Generator, lp: np.ndarray, target: float) -> np.ndarray:
    """Bernoulli draws with P = sigmoid(a + lp), the intercept ``a`` solved so that the mean
    probability over this group equals ``target`` (Newton's method, damped)."""
    if len(lp) == 0:
        return np.zeros(0, bool)
    a = float(_logit(target)) - float(np.mean(lp))
    for _ in range(60):
        p = _sigmoid(a + lp)
        f = float(p.mean()) - target
        if abs(f) < 1e-9:
            break
        slope = max(float((p * (1 - p)).mean()), 1e-9)
        a -= float(np.clip(f / slope, -2.0, 2.0))
    return np.asarray(rng.random(len(lp)) < _sigmoid(a + lp))


sigmoid = _sigmoid
logit = _logit
