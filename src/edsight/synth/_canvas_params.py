"""Constants of the synthetic Canvas semester and the solver for its calibrated intercepts.

Private to :mod:`edsight.synth.canvas`. The structural constants follow the public seed
notebook; the four ``*_INTERCEPT``/``LATE_P_*`` values are solved once, analytically or by
deterministic quadrature over the *input* distributions (never against a drawn sample), so that
the population rates promised in ``docs/synthetic-canvas.md`` hold in expectation for every seed.
``solve_calibration()`` recomputes them; a unit test pins the hard-coded values to its output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

# --- calendar -------------------------------------------------------------------------------
TERM_START: Final[date] = date(2024, 8, 15)
N_WEEKS: Final[int] = 16
HORIZON_WEEKS: Final[int] = 4
DAY_S: Final[int] = 86_400
HOUR_S: Final[int] = 3_600
WEEK_S: Final[int] = 7 * DAY_S
TERM_START_EPOCH_S: Final[int] = int(
    (datetime(TERM_START.year, TERM_START.month, TERM_START.day) - datetime(1970, 1, 1)).total_seconds()
)

# --- catalogue (seed, verbatim) -------------------------------------------------------------
COURSE_ROWS: Final[tuple[tuple[str, str, str, float, str], ...]] = (
    ("CS101", "Intro to Programming", "Computer Science", 0.7, "high"),
    ("MATH200", "Calculus II", "Mathematics", 0.8, "high"),
    ("ENG110", "Composition I", "English", 0.4, "medium"),
    ("HIST150", "World History", "History", 0.3, "medium"),
    ("CHEM201", "Organic Chemistry", "Chemistry", 0.9, "high"),
    ("PSYC100", "Intro Psychology", "Psychology", 0.2, "low"),
    ("ECON200", "Microeconomics", "Economics", 0.6, "medium"),
    ("ART120", "Digital Design", "Art", 0.4, "medium"),
)
COURSE_IDS: Final[tuple[str, ...]] = tuple(row[0] for row in COURSE_ROWS)
COURSE_DIFFICULTY: Final[tuple[float, ...]] = tuple(row[3] for row in COURSE_ROWS)
N_COURSES: Final[int] = len(COURSE_ROWS)
DUE_WEEKS: Final[tuple[int, ...]] = tuple(range(2, N_WEEKS + 1, 2))
ASSIGNMENTS_PER_COURSE: Final[int] = len(DUE_WEEKS)
N_ASSIGNMENTS: Final[int] = N_COURSES * ASSIGNMENTS_PER_COURSE

ASSIGNMENT_TYPES: Final[tuple[str, ...]] = ("assignment", "quiz", "discussion_topic")
ASSIGNMENT_TYPE_P: Final[tuple[float, ...]] = (0.6, 0.3, 0.1)
QUIZ_TYPE: Final[int] = 1
POINTS_BY_TYPE: Final[tuple[tuple[int, ...], ...]] = (
    (100, 150, 200, 250),
    (50, 75, 100),
    (25, 50, 75),
)
ASSIGNMENT_DIFFICULTY_SD: Final[float] = 0.1
DIFFICULTY_MIN: Final[float] = 0.1
DIFFICULTY_MAX: Final[float] = 1.0

# --- students (seed, verbatim) --------------------------------------------------------------
ENROLLMENT_WINDOW_DAYS: Final[int] = 15  # enrollment_date = TERM_START + 0..14 days
ABILITY_MEAN: Final[float] = 0.6
ABILITY_SD: Final[float] = 0.25
ABILITY_MIN: Final[float] = 0.1
ABILITY_MAX: Final[float] = 1.0
TIME_MANAGEMENT_BETA: Final[tuple[float, float]] = (2.0, 3.0)
PERSISTENCE_RANGE: Final[tuple[float, float]] = (0.3, 1.0)
COMMITMENT_LEVELS: Final[tuple[str, ...]] = ("low", "medium", "high")
COMMITMENT_P: Final[tuple[float, ...]] = (0.3, 0.5, 0.2)
COURSE_LOAD: Final[tuple[int, ...]] = (3, 4, 5)
COURSE_LOAD_P: Final[tuple[float, ...]] = (0.2, 0.6, 0.2)

# --- submission timing (seed structure; lateness probabilities calibrated) ------------------
ORGANIZED_ABOVE: Final[float] = 0.7  # time_management above this: always early, never late
MIXED_ABOVE: Final[float] = 0.4  # above this (and <= 0.7): "mixed"; at or below: "chronic"
EARLY_DAYS: Final[tuple[int, ...]] = (1, 2, 3, 4, 5)
EARLY_DAYS_P: Final[tuple[float, ...]] = (0.4, 0.3, 0.2, 0.07, 0.03)
MIXED_LATE_DAYS: Final[tuple[int, ...]] = (1, 2, 3, 4)
MIXED_LATE_DAYS_P: Final[tuple[float, ...]] = (0.5, 0.3, 0.15, 0.05)
CHRONIC_LATE_DAYS: Final[tuple[int, ...]] = (1, 2, 3, 5, 7)
CHRONIC_LATE_DAYS_P: Final[tuple[float, ...]] = (0.3, 0.25, 0.2, 0.15, 0.1)
MIXED_EARLY_HOURS_MAX: Final[int] = 47  # on-time "mixed" work lands 1..47 hours before due
CHRONIC_EARLY_HOURS_MAX: Final[int] = 23  # on-time "chronic" work lands 1..23 hours before due
# The seed's 2:1 ratio between the chronic and the mixed tier is kept; only the level moves.
CHRONIC_TO_MIXED_LATE_RATIO: Final[float] = 2.0

# --- submission propensity (logistic; seed: 0.85 - 0.2 * difficulty) -----------------------
# Slope on difficulty matches the seed's -0.2 per unit at p ~ 0.85 (0.2 / (0.85 * 0.15)).
SUBMIT_DIFFICULTY_SLOPE: Final[float] = 1.6
# Student-level heterogeneity the seed lacked, kept mild so that N=200 still lands within +-2 pp.
SUBMIT_PERSISTENCE_SLOPE: Final[float] = 1.5
SUBMIT_PERSISTENCE_CENTER: Final[float] = 0.65
SUBMIT_COMMITMENT_SHIFT: Final[tuple[float, ...]] = (0.3, 0.0, -0.5)

# --- scores (seed: ability - difficulty + 0.3, late penalty, N(., 0.15), clip to [0, 1]) ----
SCORE_SLOPE: Final[float] = 0.6
SCORE_NOISE_SD: Final[float] = 0.15
LATE_PENALTY_PER_DAY: Final[float] = 0.1
LATE_PENALTY_MAX: Final[float] = 0.3
QUIZ_RETRY_BELOW: Final[float] = 0.6
QUIZ_MAX_ATTEMPTS: Final[int] = 3

# --- weekly engagement (seed, verbatim) -----------------------------------------------------
INVISIBLE_WEEK_P: Final[float] = 0.15
INVISIBLE_MOMENTUM_DECAY: Final[float] = 0.9
PAGE_VIEWS_SCALE: Final[float] = 40.0
PAGE_VIEWS_SD: Final[float] = 15.0
PARTICIPATIONS_SCALE: Final[float] = 8.0
PARTICIPATIONS_SD: Final[float] = 3.0
DISCUSSION_POSTS_SCALE: Final[float] = 2.0
MOMENTUM_UP_ABOVE: Final[float] = 0.7
MOMENTUM_UP_STEP: Final[float] = 0.02
MOMENTUM_MAX: Final[float] = 1.0
MOMENTUM_DOWN_BELOW: Final[float] = 0.5
MOMENTUM_DOWN_STEP: Final[float] = 0.05
MOMENTUM_MIN: Final[float] = 0.2

# --- calibration targets and solved constants -----------------------------------------------
TARGET_SUBMISSION_RATE: Final[float] = 0.85
TARGET_LATE_RATE: Final[float] = 0.25  # among submitted work
TARGET_MEAN_GRADE: Final[float] = 0.775  # mean grade_percentage of submitted work

# Hard-coded outputs of ``solve_calibration()``; tests/synth/test_canvas.py re-solves and pins.
SUBMIT_INTERCEPT: Final[float] = 2.716442
LATE_P_MIXED: Final[float] = 0.173479
LATE_P_CHRONIC: Final[float] = CHRONIC_TO_MIXED_LATE_RATIO * LATE_P_MIXED
SCORE_INTERCEPT: Final[float] = 0.820245


@dataclass(frozen=True)
class Calibration:
    """The solved intercepts (see the module docstring)."""

    submit_intercept: float
    late_p_mixed: float
    late_p_chronic: float
    score_intercept: float


def _beta23_cdf(x: float) -> float:
    # Closed form of the Beta(2, 3) CDF: integral of 12 t (1 - t)^2.
    return 6.0 * x**2 - 8.0 * x**3 + 3.0 * x**4


def tier_probabilities() -> tuple[float, float, float]:
    """P(organized), P(mixed), P(chronic) under time_management ~ Beta(2, 3)."""
    chronic = _beta23_cdf(MIXED_ABOVE)
    mixed = _beta23_cdf(ORGANIZED_ABOVE) - chronic
    return 1.0 - mixed - chronic, mixed, chronic


def _normal_grid(mean: float, sd: float, n: int = 801) -> tuple[F64, F64]:
    # Midpoint rule on +-8 sd: exact enough (1e-9) for the smooth integrands used here.
    x = np.linspace(mean - 8 * sd, mean + 8 * sd, n)
    w = np.exp(-0.5 * ((x - mean) / sd) ** 2)
    return x, w / w.sum()


def _erf(x: F64) -> F64:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7); numpy has no erf and scipy is not a dep.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.asarray(sign * (1.0 - poly * np.exp(-a * a)), dtype=np.float64)


def _expected_clipped_normal(mu: F64, sd: float) -> F64:
    """E[clip(N(mu, sd), 0, 1)], elementwise, in closed form."""
    a0 = (0.0 - mu) / sd
    a1 = (1.0 - mu) / sd
    cdf0 = 0.5 * (1.0 + _erf(a0 / math.sqrt(2.0)))
    cdf1 = 0.5 * (1.0 + _erf(a1 / math.sqrt(2.0)))
    pdf0 = np.exp(-0.5 * a0**2) / math.sqrt(2.0 * math.pi)
    pdf1 = np.exp(-0.5 * a1**2) / math.sqrt(2.0 * math.pi)
    return np.asarray(mu * (cdf1 - cdf0) + sd * (pdf0 - pdf1) + (1.0 - cdf1), dtype=np.float64)


def _bisect(f: object, lo: float, hi: float, iters: int = 80) -> float:
    assert callable(f)
    f_lo = f(lo)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        f_mid = f(mid)
        if (f_mid > 0) == (f_lo > 0):
            lo, f_lo = mid, f_mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _assignment_difficulty_grid() -> tuple[F64, F64]:
    """Support and weights of an enrolled assignment's difficulty (all courses equally likely)."""
    noise, w_noise = _normal_grid(0.0, ASSIGNMENT_DIFFICULTY_SD, 201)
    d = np.clip(np.add.outer(np.asarray(COURSE_DIFFICULTY), noise), DIFFICULTY_MIN, DIFFICULTY_MAX)
    w = np.broadcast_to(w_noise / N_COURSES, d.shape)
    return d.ravel(), np.ascontiguousarray(w).ravel()


def _submit_weight_by_difficulty(intercept: float, d: F64) -> F64:
    """E over persistence and commitments of P(submit | assignment difficulty d)."""
    lo, hi = PERSISTENCE_RANGE
    n_p = 200
    p = lo + (hi - lo) * (np.arange(n_p) + 0.5) / n_p
    shift = SUBMIT_PERSISTENCE_SLOPE * (p - SUBMIT_PERSISTENCE_CENTER)
    out = np.zeros_like(d)
    for c_shift, c_p in zip(SUBMIT_COMMITMENT_SHIFT, COMMITMENT_P, strict=True):
        z = intercept - SUBMIT_DIFFICULTY_SLOPE * d[:, None] + shift[None, :] + c_shift
        out += c_p * (1.0 / (1.0 + np.exp(-z))).mean(axis=1)
    return out


def _late_penalty_distribution(late_p_mixed: float) -> tuple[F64, F64]:
    """Support and probabilities of the late penalty among submitted work."""
    _, p_mixed, p_chronic = tier_probabilities()
    late_chronic = CHRONIC_TO_MIXED_LATE_RATIO * late_p_mixed
    support = [0.0]
    probs = [1.0 - p_mixed * late_p_mixed - p_chronic * late_chronic]
    for tier_p, late_p, days, days_p in (
        (p_mixed, late_p_mixed, MIXED_LATE_DAYS, MIXED_LATE_DAYS_P),
        (p_chronic, late_chronic, CHRONIC_LATE_DAYS, CHRONIC_LATE_DAYS_P),
    ):
        for d, dp in zip(days, days_p, strict=True):
            support.append(min(LATE_PENALTY_MAX, LATE_PENALTY_PER_DAY * d))
            probs.append(tier_p * late_p * dp)
    return np.asarray(support), np.asarray(probs)


def _ability_grid() -> tuple[F64, F64]:
    x, w = _normal_grid(ABILITY_MEAN, ABILITY_SD)
    return np.clip(x, ABILITY_MIN, ABILITY_MAX), w


def solve_calibration(
    submission_rate: float = TARGET_SUBMISSION_RATE,
    late_rate: float = TARGET_LATE_RATE,
    mean_grade: float = TARGET_MEAN_GRADE,
) -> Calibration:
    """Solve the intercepts so the population rates equal the targets in expectation.

    * late: time management is independent of everything that drives submission, so the late
      share among submitted work is ``P(mixed) q + P(chronic) 2 q``, solved in closed form;
    * submission: bisection on the logistic intercept of E[P(submit)] over the difficulty
      mixture, persistence ~ U(0.3, 1) and the commitment levels;
    * score: bisection on the score intercept of E[clip(N(base, sd), 0, 1)] over ability,
      submitted assignments' difficulty (weighted by their submission probability) and the
      late-penalty distribution.
    """
    _, p_mixed, p_chronic = tier_probabilities()
    late_p_mixed = late_rate / (p_mixed + CHRONIC_TO_MIXED_LATE_RATIO * p_chronic)

    d, w_d = _assignment_difficulty_grid()

    def submit_gap(a: float) -> float:
        return float(np.dot(w_d, _submit_weight_by_difficulty(a, d))) - submission_rate

    submit_intercept = _bisect(submit_gap, -10.0, 10.0)

    w_sub = w_d * _submit_weight_by_difficulty(submit_intercept, d)
    w_sub = w_sub / w_sub.sum()
    ability, w_a = _ability_grid()
    pen, w_pen = _late_penalty_distribution(late_p_mixed)
    # Only ability - difficulty enters the score: bin that gap on a fine grid (second-order
    # error ~1e-7) so that each bisection step is a few thousand closed-form evaluations.
    gap = np.subtract.outer(ability, d).ravel()
    w_gap_full = np.outer(w_a, w_sub).ravel()
    edges = np.linspace(gap.min(), gap.max(), 4002)
    w_gap, _ = np.histogram(gap, bins=edges, weights=w_gap_full)
    gap = 0.5 * (edges[:-1] + edges[1:])

    def grade_gap(c: float) -> float:
        mu = c + SCORE_SLOPE * gap[:, None] - pen[None, :]
        g = _expected_clipped_normal(mu, SCORE_NOISE_SD) @ w_pen
        return float(np.dot(w_gap, g)) - mean_grade

    score_intercept = _bisect(grade_gap, -2.0, 3.0, iters=60)
    return Calibration(
        submit_intercept=submit_intercept,
        late_p_mixed=late_p_mixed,
        late_p_chronic=CHRONIC_TO_MIXED_LATE_RATIO * late_p_mixed,
        score_intercept=score_intercept,
    )
