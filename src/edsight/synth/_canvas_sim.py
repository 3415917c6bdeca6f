"""Vectorized simulation core of the synthetic Canvas semester (private).

Everything here works on dense numpy arrays indexed by *pair* (one student enrolled in one
course). Times are integer seconds since ``TERM_START`` midnight. The weekly loop in
:func:`simulate_weeks` is the only place analytics are produced, and week ``w`` reads nothing
but (a) events bucketed into weeks ``<= w`` and (b) noise drawn for week ``w``, so no column of
week ``w`` can depend on anything timestamped at or after the end of week ``w``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from edsight.synth import _canvas_params as P

F64 = NDArray[np.float64]
F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
I16 = NDArray[np.int16]
I8 = NDArray[np.int8]
BOOL = NDArray[np.bool_]

# Bucket 0 collects never-submitted work; weeks 17-18 hold late work on week-16 assignments.
N_BUCKETS = P.N_WEEKS + 3
NOT_SUBMITTED = -1  # submission time sentinel (seconds since term start)

_STREAM_CATALOG = 0
_STREAM_CHUNK = 1
STAGE_STUDENTS = 0
STAGE_ENROLLMENTS = 1
STAGE_SUBMISSIONS = 2
STAGE_WEEKS = 3


def stream(seed: int, *key: int) -> np.random.Generator:
    """An independent generator for one (seed, purpose...) key; stable across numpy runs."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def catalog_rng(seed: int) -> np.random.Generator:
    """The generator of the seed-wide assignment catalogue."""
    return stream(seed, _STREAM_CATALOG)


def chunk_rng(seed: int, chunk: int, stage: int) -> np.random.Generator:
    """The generator of one stage of one fixed-size chunk of students."""
    return stream(seed, _STREAM_CHUNK, chunk, stage)


# --- catalogue ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Catalog:
    """The 64 assignments, course by course in catalogue order, due weeks ascending."""

    course: I8  # course index 0..7
    type_: I8  # index into ASSIGNMENT_TYPES
    points: I16
    difficulty: F64
    due_week: I8

    @property
    def due_s(self) -> I64:
        """Due time in seconds since term start (end of the due week)."""
        return self.due_week.astype(np.int64) * P.WEEK_S


def make_catalog(rng: np.random.Generator) -> Catalog:
    """Draw assignment types, points and difficulties (the seed's per-assignment draws)."""
    n = P.N_ASSIGNMENTS
    course = np.repeat(np.arange(P.N_COURSES, dtype=np.int8), P.ASSIGNMENTS_PER_COURSE)
    type_ = rng.choice(len(P.ASSIGNMENT_TYPES), size=n, p=P.ASSIGNMENT_TYPE_P).astype(np.int8)
    n_choices = np.array([len(c) for c in P.POINTS_BY_TYPE])[type_]
    pick = rng.integers(0, n_choices)
    table = np.zeros((len(P.POINTS_BY_TYPE), max(len(c) for c in P.POINTS_BY_TYPE)), np.int16)
    for i, choices in enumerate(P.POINTS_BY_TYPE):
        table[i, : len(choices)] = choices
    points = table[type_, pick]
    base = np.asarray(P.COURSE_DIFFICULTY)[course]
    noise = rng.normal(0.0, P.ASSIGNMENT_DIFFICULTY_SD, size=n)
    difficulty = np.clip(base + noise, P.DIFFICULTY_MIN, P.DIFFICULTY_MAX)
    due_week = np.tile(np.asarray(P.DUE_WEEKS, dtype=np.int8), P.N_COURSES)
    return Catalog(course, type_, points, difficulty, due_week)


# --- students and enrollments ---------------------------------------------------------------
@dataclass(frozen=True)
class Students:
    """Latent traits of one chunk of students (row i is student ``first_id + i``)."""

    first_id: int
    enrollment_day: I8
    ability: F64
    time_management: F64
    persistence: F64
    commitments: I8  # index into COMMITMENT_LEVELS

    def __len__(self) -> int:
        return len(self.ability)


def stratified_uniform(rng: np.random.Generator, n: int) -> F64:
    """U(0, 1) draws, one in each of the n equal strata, in random order.

    Every value is marginally U(0, 1), but the sample's empirical distribution is exact to
    1/n -- so rates driven by the traits below do not wobble with the luck of a small cohort.
    """
    strata = np.arange(n, dtype=np.int32)  # int32 shuffles ~2x faster than int64
    rng.shuffle(strata)
    return np.asarray((strata + rng.random(n)) / n, dtype=np.float64)


def beta23_ppf(u: F64) -> F64:
    """Inverse CDF of Beta(2, 3) (F(x) = 6x^2 - 8x^3 + 3x^4), by vectorized bisection."""
    lo = np.zeros_like(u)
    hi = np.ones_like(u)
    for _ in range(48):  # 2**-48 < 4e-15: as exact as float64 allows
        mid = 0.5 * (lo + hi)
        below = mid * mid * (6.0 - 8.0 * mid + 3.0 * mid * mid) < u
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def make_students(rng: np.random.Generator, first_id: int, n: int) -> Students:
    """Draw the seed's student traits for ``n`` students.

    Time management, persistence and commitments -- the traits that drive lateness and
    submission -- are stratified (exact marginals, no cohort-level luck); ability is i.i.d.
    """
    day = rng.integers(0, P.ENROLLMENT_WINDOW_DAYS, size=n).astype(np.int8)
    ability = np.clip(rng.normal(P.ABILITY_MEAN, P.ABILITY_SD, n), P.ABILITY_MIN, P.ABILITY_MAX)
    if P.TIME_MANAGEMENT_BETA != (2.0, 3.0):  # pragma: no cover - guards beta23_ppf's formula
        raise ValueError("TIME_MANAGEMENT_BETA must be (2, 3): beta23_ppf inverts that Beta only")
    time_management = beta23_ppf(stratified_uniform(rng, n))
    lo, hi = P.PERSISTENCE_RANGE
    persistence = lo + (hi - lo) * stratified_uniform(rng, n)
    cdf = np.cumsum(P.COMMITMENT_P)
    commitments = np.minimum(
        np.searchsorted(cdf / cdf[-1], stratified_uniform(rng, n), side="right"),
        len(P.COMMITMENT_LEVELS) - 1,
    ).astype(np.int8)
    return Students(first_id, day, ability, time_management, persistence, commitments)


@dataclass(frozen=True)
class Pairs:
    """Student-course enrollments, ordered by student then catalogue course order."""

    student: I64  # row in the chunk's Students
    course: I8

    def __len__(self) -> int:
        return len(self.student)


def make_enrollments(rng: np.random.Generator, n_students: int) -> Pairs:
    """Each student takes 3/4/5 of the 8 courses, chosen uniformly without replacement."""
    load = rng.choice(np.asarray(P.COURSE_LOAD), size=n_students, p=P.COURSE_LOAD_P)
    keys = rng.random((n_students, P.N_COURSES))
    # A course is taken when its random key ranks among the student's first `load` keys.
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    student, course = np.nonzero(rank < load[:, None])
    return Pairs(student.astype(np.int64), course.astype(np.int8))


# --- submissions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Submissions:
    """One row per (pair, assignment slot), shape (n_pairs, 8) flattened row-major."""

    assignment: I16  # catalogue index
    submitted: BOOL
    time_s: I64  # seconds since term start, NOT_SUBMITTED when not submitted
    was_late: BOOL
    days_late: I8
    score: F64
    grade: F64
    attempts: I8


def _categorical_lut(values: tuple[int, ...], probs: tuple[float, ...], res: int) -> I64:
    """Inverse-CDF lookup table on a grid of ``res`` cells; exact when probs are k / res."""
    scaled = np.asarray(probs) * res
    if not np.allclose(scaled, np.round(scaled), atol=1e-9) or abs(scaled.sum() - res) > 1e-6:
        raise ValueError(f"probabilities {probs} are not multiples of 1/{res}")
    return np.repeat(np.asarray(values, dtype=np.int64), np.round(scaled).astype(np.int64))


_LUT_RES = 100
# Row = timing tier (organized, mixed, chronic): days early for the organized tier, days late
# for the two others (only used when the row is late).
_DAYS_LUT = np.stack(
    [
        _categorical_lut(P.EARLY_DAYS, P.EARLY_DAYS_P, _LUT_RES),
        _categorical_lut(P.MIXED_LATE_DAYS, P.MIXED_LATE_DAYS_P, _LUT_RES),
        _categorical_lut(P.CHRONIC_LATE_DAYS, P.CHRONIC_LATE_DAYS_P, _LUT_RES),
    ]
).ravel()
_ORGANIZED = 0  # timing_tier() code of the tier that is never late


def timing_tier(time_management: F64) -> I8:
    """0 = organized (> 0.7), 1 = mixed (> 0.4), 2 = chronic, as in the seed."""
    return np.asarray(
        (time_management <= P.ORGANIZED_ABOVE).astype(np.int8)
        + (time_management <= P.MIXED_ABOVE).astype(np.int8),
        dtype=np.int8,
    )


def submit_logit_student(persistence: F64, commitments: I8) -> F64:
    """The student part of the submission logit (persistence raises it, commitments lower it)."""
    return np.asarray(
        P.SUBMIT_PERSISTENCE_SLOPE * (persistence - P.SUBMIT_PERSISTENCE_CENTER)
        + np.asarray(P.SUBMIT_COMMITMENT_SHIFT)[commitments],
        dtype=np.float64,
    )


def submit_probability(difficulty: F64, student_logit: F64) -> F64:
    """Calibrated logistic submission propensity; difficulty lowers it as in the seed."""
    z = P.SUBMIT_INTERCEPT - P.SUBMIT_DIFFICULTY_SLOPE * difficulty + student_logit
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def make_submissions(
    rng: np.random.Generator, catalog: Catalog, students: Students, pairs: Pairs
) -> Submissions:
    """Draw every (pair, assignment) outcome: submitted?, when, score, quiz attempts.

    All random arrays are drawn for every row whether or not it is used, so the stream's
    consumption depends only on the number of rows.
    """
    k = P.ASSIGNMENTS_PER_COURSE
    n = len(pairs) * k
    slots = np.arange(k, dtype=np.int16)
    assignment = np.asarray(pairs.course[:, None] * k + slots, dtype=np.int16).ravel()
    who = np.repeat(pairs.student, k)
    # Stratified (balanced) uniforms: each row is still marginally U(0, 1), but the chunk's
    # submission and late counts no longer carry binomial noise on top of the modelled rates.
    u_submit = stratified_uniform(rng, n)
    u_late = stratified_uniform(rng, n)
    u_when = rng.random(n)
    z_score = rng.standard_normal(n)
    retry = rng.integers(2, P.QUIZ_MAX_ATTEMPTS + 1, size=n, dtype=np.int8)

    difficulty = catalog.difficulty[assignment]
    student_logit = submit_logit_student(students.persistence, students.commitments)
    submitted = u_submit < submit_probability(difficulty, student_logit[who])

    tier = timing_tier(students.time_management)[who]
    late_p = np.asarray([0.0, P.LATE_P_MIXED, P.LATE_P_CHRONIC])[tier]
    was_late = submitted & (u_late < late_p)

    cell = np.minimum((u_when * _LUT_RES).astype(np.int64), _LUT_RES - 1)
    days = _DAYS_LUT[tier.astype(np.int64) * _LUT_RES + cell]
    hours_max = np.asarray([1, P.MIXED_EARLY_HOURS_MAX, P.CHRONIC_EARLY_HOURS_MAX])[tier]
    early_hours = 1 + np.minimum((u_when * hours_max).astype(np.int64), hours_max - 1)
    days_late = np.where(was_late, days, 0)
    offset = np.where(
        was_late,
        days * P.DAY_S,
        np.where(tier == _ORGANIZED, -days * P.DAY_S, -early_hours * P.HOUR_S),
    )
    time_s = np.where(submitted, catalog.due_s[assignment] + offset, NOT_SUBMITTED)

    base = (
        P.SCORE_INTERCEPT
        + P.SCORE_SLOPE * (students.ability[who] - difficulty)
        - np.minimum(P.LATE_PENALTY_MAX, P.LATE_PENALTY_PER_DAY * days_late)
    )
    points = catalog.points[assignment].astype(np.float64)
    # Canvas keeps two decimals of points; grade_percentage is derived from the rounded score.
    score = np.round(np.clip(base + P.SCORE_NOISE_SD * z_score, 0.0, 1.0) * points, 2)
    score = np.where(submitted, score, 0.0)
    grade = score / points
    is_quiz = catalog.type_[assignment] == P.QUIZ_TYPE
    retry_needed = is_quiz & (score < P.QUIZ_RETRY_BELOW * points)
    attempts = np.where(submitted, np.where(retry_needed, retry, np.int8(1)), np.int8(0))
    return Submissions(
        assignment=assignment,
        submitted=submitted,
        time_s=time_s.astype(np.int64),
        was_late=was_late,
        days_late=days_late.astype(np.int8),
        score=score,
        grade=grade,
        attempts=attempts.astype(np.int8),
    )


# --- the week loop --------------------------------------------------------------------------
@dataclass(frozen=True)
class WeekDraws:
    """The noise one week consumes, one entry per pair."""

    u_invisible: F64
    z_page_views: F64
    z_participations: F64
    discussion_posts: I64
    login_offset_s: I64


class NoiseSource(Protocol):
    """Supplies week ``w``'s noise; ``posts_rate`` is the Poisson mean of discussion posts."""

    def __call__(self, week: int, posts_rate: F64) -> WeekDraws: ...


class RngNoise:
    """The production noise source: one generator, consumed week by week in order."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def __call__(self, week: int, posts_rate: F64) -> WeekDraws:
        """Draw week ``week``'s noise (weeks must be requested in order 1..16)."""
        n = len(posts_rate)
        rng = self._rng
        return WeekDraws(
            # Balanced across pairs, like the submission draws: the invisible share of every
            # week is 15 % to within 1/n_pairs while each pair-week stays Bernoulli(0.15).
            u_invisible=stratified_uniform(rng, n),
            z_page_views=rng.standard_normal(n),
            z_participations=rng.standard_normal(n),
            discussion_posts=rng.poisson(posts_rate),
            login_offset_s=rng.integers(0, P.WEEK_S, size=n),
        )


@dataclass(frozen=True)
class Events:
    """Submission events of n_pairs pairs, as the week loop sees them (flat arrays)."""

    pair: I64
    due_week: I8  # due week of the assignment
    time_s: I64  # NOT_SUBMITTED when never submitted
    grade: F64
    was_late: BOOL
    quiz_attempts: I8  # attempt_count for quiz submissions, 0 otherwise


def events_from_submissions(subs: Submissions, catalog: Catalog, n_pairs: int) -> Events:
    """Flatten a chunk's submissions into the events the week loop consumes."""
    k = P.ASSIGNMENTS_PER_COURSE
    is_quiz = catalog.type_[subs.assignment] == P.QUIZ_TYPE
    return Events(
        pair=np.repeat(np.arange(n_pairs, dtype=np.int64), k),
        due_week=catalog.due_week[subs.assignment],
        time_s=subs.time_s,
        grade=subs.grade,
        was_late=subs.was_late,
        quiz_attempts=np.where(is_quiz, subs.attempts, 0).astype(np.int8),
    )


@dataclass(frozen=True)
class Weekly:
    """canvas_analytics columns as dense week-major (16, n_pairs) arrays; row w-1 is week w."""

    last_login_s: I64  # seconds since term start, -1 when null
    page_views: I16
    participations: I16
    assignments_submitted_week: I8
    current_grade: F32  # NaN when null
    assignments_missing: I8
    late_submission_rate: F32
    discussion_posts: I8
    quiz_attempts: I8
    is_missing_week: BOOL


def bucket_events(events: Events, n_pairs: int) -> dict[str, NDArray[Any]]:
    """Per-(week, pair) event totals; row t holds only events timestamped inside week t.

    Row 0 collects never-submitted work and is never read. ``overdue`` counts assignments whose
    due date falls before the end of week t for the first time; ``cleared`` counts such work
    once it has also been submitted by the end of week t -- so the running sum of
    ``overdue - cleared`` is the number of assignments past due and still unsubmitted.
    """
    submitted = events.time_s != NOT_SUBMITTED
    sub_week = np.where(submitted, events.time_s // P.WEEK_S + 1, 0)
    if bool((sub_week >= N_BUCKETS).any()) or bool((events.time_s[submitted] < 0).any()):
        raise ValueError("submission time outside the simulated calendar")
    pair = events.pair
    size = N_BUCKETS * n_pairs
    at = sub_week * n_pairs + pair  # never-submitted rows land in row 0

    def count(index: I64) -> I64:
        return np.bincount(index, minlength=size).reshape(N_BUCKETS, n_pairs)

    def total(index: I64, weights: NDArray[Any]) -> F64:
        flat = np.bincount(index, weights=weights, minlength=size)
        return np.asarray(flat, dtype=np.float64).reshape(N_BUCKETS, n_pairs)

    # due_date < end of week t  <=>  due_week < t, so work becomes overdue in week due_week + 1.
    overdue_week = np.minimum(events.due_week.astype(np.int64) + 1, N_BUCKETS - 1)
    cleared_week = np.where(submitted, np.maximum(overdue_week, sub_week), 0)
    return {
        "n_sub": count(at),
        "grade_sum": total(at, events.grade),
        "n_late": count(np.where(events.was_late, at, 0)),
        "quiz_attempts": count(np.repeat(at, events.quiz_attempts.astype(np.int64))),
        "overdue": count(overdue_week * n_pairs + pair),
        "cleared": count(cleared_week * n_pairs + pair),
    }


def simulate_weeks(ability: F64, persistence: F64, events: Events, noise: NoiseSource) -> Weekly:
    """Run the 16-week loop for all pairs at once (per-pair ``ability``/``persistence``).

    Week w: the running as-of state absorbs week w's event bucket; engagement is drawn from
    the momentum carried in from week w-1; then momentum is updated from the as-of grade.
    """
    n = len(ability)
    buckets = bucket_events(events, n)
    shape = (P.N_WEEKS, n)
    out_login = np.full(shape, -1, np.int64)
    out_pv = np.zeros(shape, np.int16)
    out_part = np.zeros(shape, np.int16)
    out_grade = np.full(shape, np.nan, np.float32)
    out_missing = np.zeros(shape, np.int8)
    out_late = np.zeros(shape, np.float32)
    out_posts = np.zeros(shape, np.int8)
    out_invisible = np.zeros(shape, np.bool_)

    n_sub = np.zeros(n)
    grade_sum = np.zeros(n)
    n_late = np.zeros(n)
    missing = np.zeros(n)
    momentum = persistence.astype(np.float64, copy=True)
    for w in range(1, P.N_WEEKS + 1):
        i = w - 1
        n_sub += buckets["n_sub"][w]
        grade_sum += buckets["grade_sum"][w]
        n_late += buckets["n_late"][w]
        missing += buckets["overdue"][w] - buckets["cleared"][w]
        has_sub = n_sub > 0
        safe = np.where(has_sub, n_sub, 1.0)
        grade = np.where(has_sub, grade_sum / safe, np.nan)

        engagement = momentum * ability
        draws = noise(w, P.DISCUSSION_POSTS_SCALE * engagement)
        invisible = draws.u_invisible < P.INVISIBLE_WEEK_P
        visible = ~invisible
        pv = np.trunc(engagement * P.PAGE_VIEWS_SCALE + P.PAGE_VIEWS_SD * draws.z_page_views)
        part = np.trunc(engagement * P.PARTICIPATIONS_SCALE + P.PARTICIPATIONS_SD * draws.z_participations)
        logged_in = visible & (pv > 0)
        out_pv[i] = np.where(logged_in, pv, 0)
        out_part[i] = np.where(visible & (part > 0), part, 0)
        out_posts[i] = np.where(visible, np.minimum(draws.discussion_posts, 127), 0)
        out_login[i] = np.where(logged_in, i * P.WEEK_S + draws.login_offset_s, -1)
        out_invisible[i] = invisible
        out_grade[i] = grade
        out_missing[i] = missing
        out_late[i] = np.where(has_sub, n_late / safe, 0.0)

        # NaN (no graded work yet) compares False both ways: momentum is left unchanged.
        feedback = np.where(
            grade > P.MOMENTUM_UP_ABOVE,
            np.minimum(P.MOMENTUM_MAX, momentum + P.MOMENTUM_UP_STEP),
            np.where(
                grade < P.MOMENTUM_DOWN_BELOW,
                np.maximum(P.MOMENTUM_MIN, momentum - P.MOMENTUM_DOWN_STEP),
                momentum,
            ),
        )
        momentum = np.where(invisible, momentum * P.INVISIBLE_MOMENTUM_DECAY, feedback)
    weeks = slice(1, P.N_WEEKS + 1)
    return Weekly(
        last_login_s=out_login,
        page_views=out_pv,
        participations=out_part,
        assignments_submitted_week=buckets["n_sub"][weeks].astype(np.int8),
        current_grade=out_grade,
        assignments_missing=out_missing,
        late_submission_rate=out_late,
        discussion_posts=out_posts,
        quiz_attempts=buckets["quiz_attempts"][weeks].astype(np.int8),
        is_missing_week=out_invisible,
    )
