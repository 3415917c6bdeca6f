"""Constants of the synthetic-district generative model (private).

Every number that shapes the simulated district lives here so that it can be written
verbatim to ``ground_truth.json`` and quoted in ``docs/synthetic-district.md``. Achievement
quantities are in *student standard-deviation units* (1.0 = ``SCALE_SD`` scale points)
unless the name says otherwise.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import numpy as np

# --------------------------------------------------------------------------- structure
GRADES: Final = tuple(range(13))  # K=0 .. 12
N_GRADES: Final = 13
ELEMENTARY_GRADES: Final = (0, 5)
MIDDLE_GRADES: Final = (6, 8)
HIGH_GRADES: Final = (9, 12)
LEVEL_NAMES: Final = ("elementary", "middle", "high")
SCHOOL_SHARE_MIDDLE: Final = 0.2  # of schools; the rest after middle/high are elementary
SCHOOL_SHARE_HIGH: Final = 0.2
# Year-1 grade sizes relative to grade K: a small 9th-grade bulge (retention) and
# shrinking upper grades (dropout, transfers).
GRADE_WEIGHTS: Final = (1.0,) * 9 + (1.06, 0.98, 0.94, 0.90)
SCHOOL_SIZE_GAMMA_SHAPE: Final = 6.0  # zone sizes ~ Gamma(6): CV about 0.4
CLASS_SIZE: Final = {"k3": 21.0, "g45": 24.0, "middle": 26.0, "high": 28.0}
SECTIONS_PER_TEACHER: Final = 5  # middle/high teacher load (per semester in high school)
TEACHER_TURNOVER: Final = 0.08  # per year
N_DAYS: Final = 180  # instructional days per school year
SEMESTER_SPLIT: Final = 90  # first day index of the spring semester

# --------------------------------------------------------------------------- achievement
SUBJECTS: Final = ("math", "reading")
TESTED_GRADES: Final = (3, 4, 5, 6, 7, 8, 10)
SCALE_G3_MEAN: Final = 2420.0
SCALE_GROWTH: Final = 40.0  # norm growth per grade, scale points
SCALE_SD: Final = 85.0
NORM_GROWTH: Final = SCALE_GROWTH / SCALE_SD  # per year, SD units
SCALE_HALF_RANGE_SD: Final = 4.0  # LOSS/HOSS = grade mean -/+ 4 SD
CUT_OFFSETS_SD: Final = (-0.55, 0.10, 1.0)  # level 2, 3, 4 cuts relative to the grade mean
SEM_MIN: Final = 20.0  # conditional SEM at the centre of the grade's scale
SEM_CURVATURE: Final = 0.3  # sem = SEM_MIN * sqrt(1 + c * z^2), z = true-score z in grade
SEM_MAX: Final = 90.0
STATUS_RESID_SD: Final = 0.85
STATUS_CORR: Final = 0.75  # math/reading latent status correlation
GROWTH_SD: Final = 0.06  # individual random slope, SD units per year
GROWTH_CORR: Final = 0.3
TRANSIENT_SD: Final = 0.10  # year-specific, non-persistent test-day/year state
TEST_OPT_OUT: Final = 0.005  # beyond students absent on the test day
TEST_WINDOW_START: Final = 150  # day index; schools test on one of the following 7 days
# Status gaps: additive partial (conditional) mean shifts in SD units, (math, reading).
STATUS_GAPS: Final = {
    "economically_disadvantaged": (-0.40, -0.45),
    "english_learner": (-0.35, -0.55),
    "disability": (-0.70, -0.75),
    "in_mover": (-0.10, -0.10),
}
RACE_STATUS_GAPS: Final = {  # relative to white
    "hispanic": (-0.15, -0.15),
    "white": (0.0, 0.0),
    "black": (-0.30, -0.30),
    "asian": (0.25, 0.10),
    "multiracial": (-0.05, -0.05),
    "american_indian": (-0.25, -0.25),
    "pacific_islander": (-0.20, -0.20),
}
# Growth gaps: additive shifts of annual growth, SD units per year, (math, reading).
GROWTH_GAPS: Final = {
    "economically_disadvantaged": (-0.02, -0.02),
    "english_learner": (0.01, 0.03),
    "disability": (-0.03, -0.03),
}
SCHOOL_EFFECT_SD: Final = 0.08
SCHOOL_EFFECT_CORR: Final = 0.5
TEACHER_EFFECT_SD: Final = 0.15  # persistent teacher mean
TEACHER_DRIFT_SD: Final = 0.06  # stationary SD of the AR(1) drift around it
TEACHER_DRIFT_AR: Final = 0.6
TEACHER_SUBJECT_CORR: Final = 0.6  # elementary homeroom teacher, math vs reading
ABSENCE_GROWTH_PENALTY: Final = 0.004  # SD units of growth lost per day absent ...
ABSENCE_REFERENCE_DAYS: Final = 10.0  # ... beyond this many per 180 enrolled days
EFFECT_PERSISTENCE: Final = 1.0  # school/teacher contributions carry forward fully

# --------------------------------------------------------------------------- demographics
RACES: Final = tuple(RACE_STATUS_GAPS)
RACE_PROBS: Final = (0.28, 0.45, 0.15, 0.055, 0.05, 0.01, 0.005)
RACE_NEIGHBOURHOOD_TILT: Final = (0.5, -0.4, 0.6, -0.1, 0.0, 0.2, 0.2)
ED_BY_RACE: Final = (0.68, 0.35, 0.70, 0.30, 0.45, 0.70, 0.60)
ED_NEIGHBOURHOOD_COEF: Final = 0.9  # logit shift per SD of zone deprivation
EL_BY_RACE: Final = (0.30, 0.01, 0.03, 0.22, 0.02, 0.05, 0.08)
EL_GRADE_FACTOR: Final = (1.5, 1.5, 1.5, 1.15, 1.15, 1.15, 0.75, 0.75, 0.75, 0.55, 0.55, 0.55, 0.55)
DISABILITY_BASE: Final = 0.12
DISABILITY_MALE_OR: Final = 1.6
DISABILITY_ED_OR: Final = 1.3
MALE_SHARE: Final = 0.51
DIRECTORY_OPT_OUT: Final = 0.02
RISK_AR: Final = 0.85  # latent disengagement, yearly AR(1), stationary SD 1
RISK_COEF: Final = {"economically_disadvantaged": 0.30, "male": 0.15, "disability": 0.20}

# --------------------------------------------------------------------------- attendance
# logit(daily absence probability) = intercept + grade + covariates + persistent + yearly.
ABSENCE_GRADE_LOGIT: Final = (
    0.15,
    0.0,
    -0.05,
    -0.05,
    -0.05,
    -0.05,
    0.05,
    0.1,
    0.15,
    0.3,
    0.4,
    0.5,
    0.6,
)
ABSENCE_COEF: Final = {
    "economically_disadvantaged": 0.35,
    "disability": 0.25,
    "english_learner": -0.10,
    "risk": 0.45,
}
ABSENCE_TRAIT_SD: Final = 0.55  # persistent student component
ABSENCE_YEAR_SD: Final = 0.30  # fresh each year
ABSENCE_PERSISTENCE: Final = 0.3  # P(absent | absent yesterday) = p + 0.3 (1 - p)
CHRONIC_THRESHOLD: Final = 0.10
CHRONIC_TARGET: Final = 0.15
# The intercept is set each year so that this share of students has a *latent* daily rate
# >= 10%; tuned so that the realised chronic-absence share (with binomial noise, absence
# spells and short enrolment windows) lands near CHRONIC_TARGET.
CHRONIC_LATENT_SHARE: Final = 0.13
CHRONIC_MIN_DAYS: Final = 10  # enrolled days needed to count a student-year
MAX_ABSENCE_PROB: Final = 0.5
TARDY_BASE: Final = 0.025
TARDY_HIGH_SCHOOL_OR: Final = 1.6
TARDY_RISK_COEF: Final = 0.5
TARDY_TRAIT_SD: Final = 0.6
MAX_TARDY_PROB: Final = 0.15
UNEXCUSED_LOGIT: Final = {
    "intercept": -0.6,
    "economically_disadvantaged": 0.6,
    "high": 0.4,
    "risk": 0.5,
}

# --------------------------------------------------------------------------- discipline
DISCIPLINE_LEVEL_RATE: Final = (0.06, 0.30, 0.22)  # mean incidents per student-year by level
DISCIPLINE_COEF: Final = {
    "risk": 0.7,
    "male": 0.35,
    "economically_disadvantaged": 0.2,
    "absence": 0.15,
}
SEVERITY_PROBS: Final = {  # minor, major, state_offense by level
    "elementary": (0.82, 0.17, 0.01),
    "middle": (0.70, 0.26, 0.04),
    "high": (0.62, 0.31, 0.07),
}

# --------------------------------------------------------------------------- course grades
GRADE_MEAN_BY_LEVEL: Final = (86.0, 82.0, 81.0)
GRADE_NINTH_SHIFT: Final = -2.0
GRADE_ELECTIVE_SHIFT: Final = 4.0
GRADE_ACH_COEF: Final = 5.0  # points per SD of achievement
GRADE_ENGAGEMENT_COEF: Final = 9.0  # points per SD of (-risk)
GRADE_ABSENCE_COEF: Final = 90.0  # points per unit absence rate above 4%
GRADE_ABSENCE_FREE: Final = 0.04
GRADE_STUDENT_YEAR_SD: Final = 4.0
GRADE_SECTION_SD: Final = 2.5  # teacher grading leniency
GRADE_NOISE_SD: Final = 6.0
LETTER_CUTS: Final = (60.0, 70.0, 80.0, 90.0)  # F < 60 <= D < 70 <= C < 80 <= B < 90 <= A
HS_CREDITS_PER_SEMESTER_COURSE: Final = 0.5

# --------------------------------------------------------------------------- mobility
MIDYEAR_TRANSFER_OUT: Final = 0.025
SUMMER_LEAVE: Final = 0.045
MIDYEAR_MOVE_WITHIN: Final = 0.015
SUMMER_MOVE_WITHIN: Final = 0.04
MIDYEAR_IN_RATE: Final = 0.025  # new students arriving during the year, share of fall roster
MIN_SUMMER_IN_RATE: Final = 0.02  # in-movers per grade each fall, at least this share
MOBILITY_COEF: Final = {"economically_disadvantaged": 0.4, "risk": 0.2}

# --------------------------------------------------------------------------- progression
RETENTION_TARGET: Final = (
    0.03,
    0.025,
    0.015,
    0.02,
    0.006,
    0.005,
    0.006,
    0.006,
    0.008,
    0.04,
    0.015,
    0.015,
)
RETENTION_COEF: Final = {"achievement": -0.9, "absence": 0.5, "fails": 0.9, "risk": 0.3}
DROPOUT_TARGET: Final = {9: 0.01, 10: 0.015, 11: 0.02, 12: 0.015, "repeat_12": 0.12}
DROPOUT_COEF: Final = {
    "risk": 0.7,
    "absence_logit": 0.8,
    "prior_fails": 0.25,
    "prior_incidents": 0.25,
    "economically_disadvantaged": 0.35,
    "over_age": 0.7,
}
NONCOMPLETION_TARGET: Final = {"first_time_12": 0.03, "repeat_12": 0.30}
NONCOMPLETION_COEF: Final = {"fails": 0.6, "risk": 0.6, "absence_logit": 0.4}
TARGET_GRAD_RATE_4YR: Final = (0.85, 0.90)
TARGET_ON_TRACK: Final = (0.75, 0.85)
TARGET_PROFICIENT: Final = (0.45, 0.50)


def model_constants() -> dict[str, Any]:
    """Every module-level constant of the model as a JSON-ready dict."""
    out: dict[str, Any] = {}
    for name, value in sorted(globals().items()):
        if name.isupper() and not name.startswith("_") and not name.endswith("NAMES"):
            out[name.lower()] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value


# --------------------------------------------------------------------------- calendar
def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    first = dt.date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    return first + dt.timedelta(days=offset + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> dt.date:
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def school_calendar(school_year: int) -> np.ndarray:
    """Instructional days (days since 1970-01-01, int32) of the school year starting in fall.

    Weekdays from the Monday on/after 21 August, skipping Labor Day, Veterans Day,
    Thanksgiving Wednesday-Friday, a winter break (22 Dec - 2 Jan), MLK and Presidents'
    Day, a spring-break week (from the third Monday of March) and Memorial Day; the first
    ``N_DAYS`` such days are the year.
    """
    y0, y1 = school_year, school_year + 1
    start = dt.date(y0, 8, 21)
    start += dt.timedelta(days=(7 - start.weekday()) % 7)
    thanks = _nth_weekday(y0, 11, 3, 4)
    spring = _nth_weekday(y1, 3, 0, 3)
    holidays = {
        _nth_weekday(y0, 9, 0, 1),
        dt.date(y0, 11, 11),
        thanks - dt.timedelta(days=1),
        thanks,
        thanks + dt.timedelta(days=1),
        _nth_weekday(y1, 1, 0, 3),
        _nth_weekday(y1, 2, 0, 3),
        _last_weekday(y1, 5, 0),
    }
    holidays.update(dt.date(y0, 12, 22) + dt.timedelta(days=i) for i in range(12))
    holidays.update(spring + dt.timedelta(days=i) for i in range(5))
    days: list[int] = []
    epoch = dt.date(1970, 1, 1)
    day = start
    while len(days) < N_DAYS:
        if day.weekday() < 5 and day not in holidays:
            days.append((day - epoch).days)
        day += dt.timedelta(days=1)
    return np.asarray(days, dtype=np.int32)


def day_multipliers(calendar: np.ndarray) -> np.ndarray:
    """Relative absence odds per instructional day (mean 1): Mondays, Fridays, days next to
    breaks, winter months and the last two weeks carry more absences."""
    weekday = (calendar.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    gap_before = np.diff(calendar, prepend=calendar[0] - 1)
    gap_after = np.diff(calendar, append=calendar[-1] + 1)
    month = (calendar.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12) + 1
    mult = np.ones(len(calendar))
    mult[weekday == 0] *= 1.10
    mult[weekday == 4] *= 1.15
    mult[(gap_before > 3) | (gap_after > 3)] *= 1.30
    mult[np.isin(month, (12, 1, 2))] *= 1.10
    mult[-10:] *= 1.20
    return (mult / mult.mean()).astype(np.float32)
