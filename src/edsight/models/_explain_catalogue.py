"""The reason-code catalogue: one plain-language template per weekly feature (private).

Each :class:`ReasonTemplate` turns the rows where a feature pushed risk up into a text that
quotes the student's actual values, and a stable code from a fixed list so operations can map
codes to interventions. Templates are vectorised: they receive a frame of the selected rows
(every column of the feature row, plus lagged values ``"<feature>@-<k>"`` for the weeks named
in ``lags``) and return the texts and codes as Series aligned with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

Render = Callable[[pd.DataFrame, str], tuple[pd.Series, pd.Series]]

#: Code of the generic fallback for features the catalogue does not know.
OTHER_CODE = "OTHER"

#: Columns of the weekly feature tables that identify a row; they are never reasons.
IDENTIFIERS: frozenset[str] = frozenset({"person_id", "section_id", "week_start", "week_end"})


@dataclass(frozen=True)
class ReasonTemplate:
    """How one feature is put into words; ``codes[0]`` is the primary code (one reason per code)."""

    feature: str
    codes: tuple[str, ...]
    says: str
    render: Render
    lags: tuple[int, ...] = ()


# -- vectorised formatting ---------------------------------------------------------------------


def col(ctx: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` as floats (booleans as 1/0), NaN where missing or absent from ``ctx``."""
    if name not in ctx.columns:
        return pd.Series(np.nan, index=ctx.index, dtype=float)
    series = ctx[name]
    if pd.api.types.is_bool_dtype(series) or series.dtype == object:
        series = series.map(lambda v: np.nan if v is None or v is pd.NA else v)
    return pd.to_numeric(series, errors="coerce").astype(float)


def _fmt(values: pd.Series, spec: str, missing: str = "unknown") -> pd.Series:
    return values.map(lambda v: missing if pd.isna(v) else format(v, spec)).astype(object)


def count(values: pd.Series) -> pd.Series:
    """Whole numbers as text: ``3``."""
    return _fmt(values.round(), ".0f")


def pct(values: pd.Series) -> pd.Series:
    """Fractions as whole percentages: ``0.823 -> "82%"``."""
    return _fmt((values * 100).round(), ".0f").where(values.isna(), lambda s: s + "%")


def qty(values: pd.Series) -> pd.Series:
    """A magnitude with one decimal under 10 and none above: ``0.4``, ``3``, ``12``."""
    one = _fmt(values.round(1), ".1f").str.replace(r"\.0$", "", regex=True)
    return when(values.abs() < 9.95, one, _fmt(values.round(), ".0f"))


def noun(n: pd.Series, singular: str, plural: str | None = None) -> pd.Series:
    """``"3 missing assignments"`` / ``"1 missing assignment"``."""
    word = pd.Series(
        np.where(n.round() == 1, singular, plural or singular + "s"), index=n.index, dtype=object
    )
    return count(n) + " " + word


def when(cond: pd.Series | np.ndarray, yes: pd.Series | str, no: pd.Series | str) -> pd.Series:
    """Element-wise choice between two texts (``cond`` NaN counts as false)."""
    mask = np.asarray(pd.Series(cond).fillna(False).astype(bool))
    index = next((s.index for s in (cond, yes, no) if isinstance(s, pd.Series)), None)
    return pd.Series(np.where(mask, yes, no), index=index, dtype=object)


def _fixed(ctx: pd.DataFrame, code: str) -> pd.Series:
    return pd.Series(code, index=ctx.index, dtype=object)


def _simple(code: str, text: Callable[[pd.DataFrame, pd.Series], pd.Series]) -> Render:
    def render(ctx: pd.DataFrame, feature: str) -> tuple[pd.Series, pd.Series]:
        return text(ctx, col(ctx, feature)), _fixed(ctx, code)

    return render


def _with_missing(code: str, missing_code: str, missing_text: str, text: Callable[..., pd.Series]) -> Render:
    """A template whose value may be unknown (no grades yet): its own code and words then."""

    def render(ctx: pd.DataFrame, feature: str) -> tuple[pd.Series, pd.Series]:
        v = col(ctx, feature)
        known = v.notna()
        return when(known, text(ctx, v), missing_text), when(known, code, missing_code)

    return render


# -- LMS templates -----------------------------------------------------------------------------


def _this_week_vs_before(what: str) -> Callable[[pd.DataFrame, pd.Series], pd.Series]:
    def text(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
        before = v - col(ctx, f"{what}_vs_mean")
        base = count(v) + f" {what.replace('_', ' ')} this week"
        return when(before > v, base + " (average " + qty(before) + " a week before)", base)

    return text


def _vs_mean(what: str) -> Callable[[pd.DataFrame, pd.Series], pd.Series]:
    def text(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
        now = col(ctx, what)
        label = what.replace("_", " ")
        head = count(now) + f" {label} this week, " + qty(v.abs())
        return when(
            v < 0,
            head + " fewer than their weekly average so far",
            head + " more than their weekly average so far",
        )

    return text


def _slope(what: str, scale: float = 1.0, unit: str = "") -> Callable[[pd.DataFrame, pd.Series], pd.Series]:
    def text(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
        step = qty((v * scale).abs())
        falling = f"{what} falling by about " + step + f"{unit} a week"
        rising = f"{what} rising by about " + step + f"{unit} a week"
        return when(v.isna(), f"{what} trend not known yet", when(v < 0, falling, rising))

    return text


def _missing_work(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
    base = noun(v, "missing assignment") + " so far"
    new = v - col(ctx, "assignments_missing@-2")
    return when(new > 0, base + " (" + count(new) + " new in the last 2 weeks)", base)


def _current_grade(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
    base = "current grade " + pct(v)
    before = col(ctx, "current_grade@-4")
    fell = (before * 100).round() > (v * 100).round()
    return when(fell, base + " (down from " + pct(before) + " 4 weeks ago)", base)


def _weeks_inactive(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
    return when(v > 0, "no course activity for " + noun(v, "week"), "active in the course this week")


def _days_inactive(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
    return when(v.isna(), "no course activity recorded yet", "no course activity for " + noun(v, "day"))


_LMS: tuple[ReasonTemplate, ...] = (
    ReasonTemplate(
        "page_views",
        ("LOW_ACTIVITY",),
        "page views this week (and the weekly average before)",
        _simple("LOW_ACTIVITY", _this_week_vs_before("page_views")),
    ),
    ReasonTemplate(
        "participations",
        ("LOW_PARTICIPATION",),
        "participations this week (and the weekly average before)",
        _simple("LOW_PARTICIPATION", _this_week_vs_before("participations")),
    ),
    ReasonTemplate(
        "page_views_slope_4w",
        ("ACTIVITY_DECLINE",),
        "trend of page views over 4 weeks",
        _simple("ACTIVITY_DECLINE", _slope("page views")),
    ),
    ReasonTemplate(
        "participations_slope_4w",
        ("ACTIVITY_DECLINE",),
        "trend of participations over 4 weeks",
        _simple("ACTIVITY_DECLINE", _slope("participations")),
    ),
    ReasonTemplate(
        "page_views_vs_mean",
        ("ACTIVITY_DECLINE",),
        "page views this week against the student's average",
        _simple("ACTIVITY_DECLINE", _vs_mean("page_views")),
    ),
    ReasonTemplate(
        "participations_vs_mean",
        ("ACTIVITY_DECLINE",),
        "participations this week against the average",
        _simple("ACTIVITY_DECLINE", _vs_mean("participations")),
    ),
    ReasonTemplate(
        "inactive_streak_weeks",
        ("INACTIVITY",),
        "weeks without any course activity",
        _simple("INACTIVITY", _weeks_inactive),
    ),
    ReasonTemplate(
        "days_since_last_activity",
        ("INACTIVITY",),
        "days since the last course activity",
        _simple("INACTIVITY", _days_inactive),
    ),
    ReasonTemplate(
        "assignments_due",
        ("WORKLOAD",),
        "assignments due so far",
        _simple("WORKLOAD", lambda c, v: noun(v, "assignment") + " due so far"),
    ),
    ReasonTemplate(
        "assignments_submitted",
        ("LOW_SUBMISSIONS",),
        "submissions so far (and how many were due)",
        _simple(
            "LOW_SUBMISSIONS",
            lambda c, v: (
                noun(v, "assignment") + " submitted so far (" + count(col(c, "assignments_due")) + " due)"
            ),
        ),
    ),
    ReasonTemplate(
        "assignments_submitted_week",
        ("LOW_SUBMISSIONS",),
        "submissions this week",
        _simple("LOW_SUBMISSIONS", lambda c, v: noun(v, "assignment") + " submitted this week"),
    ),
    ReasonTemplate(
        "assignments_on_time",
        ("ON_TIME_LOW",),
        "due work handed in on time, of all due",
        _simple(
            "ON_TIME_LOW",
            lambda c, v: (
                count(v) + " of " + noun(col(c, "assignments_due"), "due assignment") + " handed in on time"
            ),
        ),
    ),
    ReasonTemplate(
        "assignments_late",
        ("LATE_WORK",),
        "due work handed in late so far",
        _simple("LATE_WORK", lambda c, v: noun(v, "assignment") + " handed in late so far"),
    ),
    ReasonTemplate(
        "assignments_missing",
        ("MISSING_WORK",),
        "missing work so far and how much is new in 2 weeks",
        _simple("MISSING_WORK", _missing_work),
        lags=(2,),
    ),
    ReasonTemplate(
        "on_time_rate",
        ("ON_TIME_LOW",),
        "share of due work handed in on time",
        _with_missing(
            "ON_TIME_LOW",
            "ON_TIME_LOW",
            "no assignments due yet",
            lambda c, v: pct(v) + " of due assignments handed in on time",
        ),
    ),
    ReasonTemplate(
        "late_rate",
        ("LATE_WORK",),
        "share of due work handed in late",
        _with_missing(
            "LATE_WORK",
            "LATE_WORK",
            "no assignments due yet",
            lambda c, v: pct(v) + " of due assignments handed in late",
        ),
    ),
    ReasonTemplate(
        "missing_rate",
        ("MISSING_WORK",),
        "share of due work missing (count of due)",
        _with_missing(
            "MISSING_WORK",
            "MISSING_WORK",
            "no assignments due yet",
            lambda c, v: (
                pct(v)
                + " of due assignments missing ("
                + count(col(c, "assignments_missing"))
                + " of "
                + count(col(c, "assignments_due"))
                + ")"
            ),
        ),
    ),
    ReasonTemplate(
        "late_submission_rate",
        ("LATE_WORK",),
        "share of submissions handed in late",
        _simple("LATE_WORK", lambda c, v: pct(v) + " of submissions handed in late"),
    ),
    ReasonTemplate(
        "current_grade",
        ("GRADE_LOW", "NO_GRADED_WORK"),
        "grade so far (and 4 weeks ago if higher)",
        _with_missing("GRADE_LOW", "NO_GRADED_WORK", "no graded work yet", _current_grade),
        lags=(4,),
    ),
    ReasonTemplate(
        "grade_slope",
        ("GRADE_DECLINE",),
        "trend of scores in points a week",
        _simple("GRADE_DECLINE", _slope("scores", 100.0, " points")),
    ),
    ReasonTemplate(
        "grade_recent_4w",
        ("GRADE_LOW", "NO_GRADED_WORK"),
        "average score on work of the last 4 weeks",
        _with_missing(
            "GRADE_LOW",
            "NO_GRADED_WORK",
            "no graded work in the last 4 weeks",
            lambda c, v: "average " + pct(v) + " on work handed in over the last 4 weeks",
        ),
    ),
    ReasonTemplate(
        "attempts_total",
        ("SUBMISSION_ATTEMPTS",),
        "submission attempts so far",
        _simple("SUBMISSION_ATTEMPTS", lambda c, v: noun(v, "submission attempt") + " so far"),
    ),
    ReasonTemplate(
        "attempts_week",
        ("SUBMISSION_ATTEMPTS",),
        "submission attempts this week",
        _simple("SUBMISSION_ATTEMPTS", lambda c, v: noun(v, "submission attempt") + " this week"),
    ),
    ReasonTemplate(
        "week",
        ("TIME_IN_TERM",),
        "how far into the term or year",
        _simple("TIME_IN_TERM", lambda c, v: "week " + count(v) + " of the term"),
    ),
)


# -- K-12 templates ----------------------------------------------------------------------------


def _grade_level(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
    return when(v == 0, "in kindergarten", when(v < 0, "in pre-kindergarten", "in grade " + count(v)))


def _attendance_year(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
    before = col(ctx, "attendance_rate@-4")
    fell = (before * 100).round() > (v * 100).round()
    return when(
        fell,
        "attendance fell from " + pct(before) + " to " + pct(v) + " over 4 weeks",
        "attendance " + pct(v) + " this year so far",
    )


def _attendance_year_render(ctx: pd.DataFrame, feature: str) -> tuple[pd.Series, pd.Series]:
    v = col(ctx, feature)
    fell = (col(ctx, "attendance_rate@-4") * 100).round() > (v * 100).round()
    text = when(v.isna(), "no school days enrolled yet", _attendance_year(ctx, v))
    return text, when(fell, "ATTENDANCE_DROP", "ATTENDANCE_LOW")


def _attendance_recent(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
    year = col(ctx, "attendance_rate")
    base = "attendance " + pct(v) + " over the last 4 weeks"
    below = (year * 100).round() > (v * 100).round()
    return when(
        v.isna(),
        "no school days enrolled in the last 4 weeks",
        when(below, base + ", below " + pct(year) + " for the year so far", base),
    )


def _absent_days(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
    return noun(v, "day") + " absent so far this year (of " + count(col(ctx, "days_enrolled")) + " enrolled)"


def _absent_days_4w(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
    return noun(v, "day") + " absent in the last 4 weeks (of " + count(col(ctx, "days_enrolled_4w")) + ")"


def _chronic(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
    missed = count(col(ctx, "days_absent")) + " of " + count(col(ctx, "days_enrolled")) + " days missed"
    return when(
        v.isna(),
        "no school days enrolled yet",
        when(
            v == 1,
            "chronically absent: " + missed + " (10% or more)",
            "not chronically absent (" + missed + ")",
        ),
    )


def _below(limit: str) -> Callable[[pd.DataFrame, pd.Series], pd.Series]:
    def text(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
        rate = pct(col(ctx, "attendance_rate"))
        return when(
            v.isna(),
            "no school days enrolled yet",
            when(
                v == 1,
                f"attendance below {limit} (" + rate + ")",
                f"attendance at or above {limit} (" + rate + ")",
            ),
        )

    return text


def _prior(subject: str) -> Callable[[pd.DataFrame, pd.Series], pd.Series]:
    def text(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
        level = col(ctx, f"prior_{subject}_perf_level")
        base = f"prior-year {subject} scale score " + qty(v)
        return when(level.notna(), base + " (performance level " + count(level) + ")", base)

    return text


def _prior_level(subject: str) -> Callable[[pd.DataFrame, pd.Series], pd.Series]:
    return lambda ctx, v: f"prior-year {subject} performance level " + count(v)


def _core_failure(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
    n = col(ctx, "core_f_count")
    failed = when(
        n.notna(),
        "failed a core course this year (" + noun(n, "core-course F") + ")",
        "failed a core course this year",
    )
    return when(v == 1, failed, "no core-course F this year")


def _behavior(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
    serious = col(ctx, "incidents_major").fillna(0) + col(ctx, "incidents_state_offense").fillna(0)
    minor = col(ctx, "incidents_minor").fillna(0)
    counts = noun(serious, "major or state-offense incident") + " and " + noun(minor, "minor incident")
    return when(
        v == 1, "behavior indicator: " + counts + " this year", "no behavior indicator (" + counts + ")"
    )


def _on_track(ctx: pd.DataFrame, v: pd.Series) -> pd.Series:
    credits = qty(col(ctx, "credits_earned"))
    core = noun(col(ctx, "core_f_count"), "core-course F")
    return when(
        v.isna(),
        "9th-grade on-track status not known yet",
        when(
            v == 0,
            "off track in 9th grade: " + credits + " credits and " + core,
            "on track in 9th grade (" + credits + " credits)",
        ),
    )


def _school(ctx: pd.DataFrame, feature: str) -> tuple[pd.Series, pd.Series]:
    name = ctx[feature].astype("string").fillna("unknown").astype(object)
    return "enrolled at school " + name, _fixed(ctx, "SCHOOL_CONTEXT")


def _score_missing(subject: str) -> Render:
    return _with_missing(
        "PRIOR_ACHIEVEMENT", "NO_PRIOR_SCORE", f"no prior-year {subject} score on record", _prior(subject)
    )


_K12: tuple[ReasonTemplate, ...] = (
    ReasonTemplate(
        "school_year",
        ("SCHOOL_YEAR",),
        "the school year",
        _simple("SCHOOL_YEAR", lambda c, v: "school year " + count(v) + "-" + count((v + 1) % 100)),
    ),
    ReasonTemplate("school_id", ("SCHOOL_CONTEXT",), "the school attended", _school),
    ReasonTemplate("grade_level", ("GRADE_LEVEL",), "grade level", _simple("GRADE_LEVEL", _grade_level)),
    ReasonTemplate(
        "days_enrolled",
        ("ENROLLMENT",),
        "school days enrolled this year",
        _simple("ENROLLMENT", lambda c, v: noun(v, "school day") + " enrolled so far this year"),
    ),
    ReasonTemplate(
        "days_absent",
        ("ATTENDANCE_LOW",),
        "days absent of days enrolled",
        _simple("ATTENDANCE_LOW", _absent_days),
    ),
    ReasonTemplate(
        "attendance_rate",
        ("ATTENDANCE_LOW", "ATTENDANCE_DROP"),
        "attendance this year; a fall over 4 weeks gives ATTENDANCE_DROP",
        _attendance_year_render,
        lags=(4,),
    ),
    ReasonTemplate(
        "chronic_absence",
        ("CHRONIC_ABSENCE",),
        "chronic absence (10% or more days missed)",
        _simple("CHRONIC_ABSENCE", _chronic),
    ),
    ReasonTemplate(
        "days_enrolled_4w",
        ("ENROLLMENT",),
        "school days enrolled in the last 4 weeks",
        _simple("ENROLLMENT", lambda c, v: noun(v, "school day") + " enrolled in the last 4 weeks"),
    ),
    ReasonTemplate(
        "days_absent_4w",
        ("ATTENDANCE_RECENT",),
        "days absent in the last 4 weeks",
        _simple("ATTENDANCE_RECENT", _absent_days_4w),
    ),
    ReasonTemplate(
        "attendance_rate_4w",
        ("ATTENDANCE_RECENT",),
        "attendance of the last 4 weeks vs the year",
        _simple("ATTENDANCE_RECENT", _attendance_recent),
    ),
    ReasonTemplate(
        "tardies",
        ("TARDIES",),
        "tardies this year",
        _simple("TARDIES", lambda c, v: noun(v, "tardy", "tardies") + " this year"),
    ),
    ReasonTemplate(
        "incidents_minor",
        ("BEHAVIOR",),
        "minor discipline incidents this year",
        _simple("BEHAVIOR", lambda c, v: noun(v, "minor discipline incident") + " this year"),
    ),
    ReasonTemplate(
        "incidents_major",
        ("BEHAVIOR",),
        "major discipline incidents this year",
        _simple("BEHAVIOR", lambda c, v: noun(v, "major discipline incident") + " this year"),
    ),
    ReasonTemplate(
        "incidents_state_offense",
        ("BEHAVIOR",),
        "state-reportable offenses this year",
        _simple("BEHAVIOR", lambda c, v: noun(v, "state-reportable offense") + " this year"),
    ),
    ReasonTemplate(
        "incidents_4w",
        ("BEHAVIOR_RECENT",),
        "discipline incidents in the last 4 weeks",
        _simple("BEHAVIOR_RECENT", lambda c, v: noun(v, "discipline incident") + " in the last 4 weeks"),
    ),
    ReasonTemplate(
        "prior_math_scale_score",
        ("PRIOR_ACHIEVEMENT", "NO_PRIOR_SCORE"),
        "latest earlier-year math score",
        _score_missing("math"),
    ),
    ReasonTemplate(
        "prior_math_perf_level",
        ("PRIOR_ACHIEVEMENT", "NO_PRIOR_SCORE"),
        "latest earlier-year math performance level",
        _with_missing(
            "PRIOR_ACHIEVEMENT", "NO_PRIOR_SCORE", "no prior-year math score on record", _prior_level("math")
        ),
    ),
    ReasonTemplate(
        "prior_reading_scale_score",
        ("PRIOR_ACHIEVEMENT", "NO_PRIOR_SCORE"),
        "latest earlier-year reading score",
        _score_missing("reading"),
    ),
    ReasonTemplate(
        "prior_reading_perf_level",
        ("PRIOR_ACHIEVEMENT", "NO_PRIOR_SCORE"),
        "latest earlier-year reading performance level",
        _with_missing(
            "PRIOR_ACHIEVEMENT",
            "NO_PRIOR_SCORE",
            "no prior-year reading score on record",
            _prior_level("reading"),
        ),
    ),
    ReasonTemplate(
        "grades_known",
        ("COURSE_GRADES",),
        "course grades recorded this year",
        _simple("COURSE_GRADES", lambda c, v: noun(v, "course grade") + " recorded so far this year"),
    ),
    ReasonTemplate(
        "grade_mean",
        ("GRADE_LOW", "NO_GRADED_WORK"),
        "mean numeric course grade this year",
        _with_missing(
            "GRADE_LOW",
            "NO_GRADED_WORK",
            "no numeric course grades yet this year",
            lambda c, v: "course grade average " + qty(v) + " of 100",
        ),
    ),
    ReasonTemplate(
        "f_count",
        ("COURSE_FAILURE",),
        "course Fs this year",
        _simple("COURSE_FAILURE", lambda c, v: noun(v, "course F") + " this year"),
    ),
    ReasonTemplate(
        "core_f_count",
        ("COURSE_FAILURE",),
        "core-course Fs this year",
        _simple("COURSE_FAILURE", lambda c, v: noun(v, "core-course F") + " this year"),
    ),
    ReasonTemplate(
        "credits_earned",
        ("CREDITS_LOW",),
        "credits earned this year",
        _simple("CREDITS_LOW", lambda c, v: qty(v) + " credits earned so far this year"),
    ),
    ReasonTemplate(
        "abc_attendance_lt90",
        ("ATTENDANCE_LOW",),
        "ABC indicator: attendance below 90%",
        _simple("ATTENDANCE_LOW", _below("90%")),
    ),
    ReasonTemplate(
        "abc_attendance_lt80",
        ("ATTENDANCE_LOW",),
        "ABC indicator: attendance below 80%",
        _simple("ATTENDANCE_LOW", _below("80%")),
    ),
    ReasonTemplate(
        "abc_course_failure",
        ("COURSE_FAILURE",),
        "ABC indicator: a core-course F",
        _simple("COURSE_FAILURE", _core_failure),
    ),
    ReasonTemplate(
        "abc_behavior",
        ("BEHAVIOR",),
        "ABC indicator: serious or repeated incidents",
        _simple("BEHAVIOR", _behavior),
    ),
    ReasonTemplate(
        "on_track_grade9",
        ("OFF_TRACK",),
        "Chicago 9th-grade on-track indicator",
        _simple("OFF_TRACK", _on_track),
    ),
)

CATALOGUE: dict[str, ReasonTemplate] = {t.feature: t for t in (*_LMS, *_K12)}


def render_other(ctx: pd.DataFrame, feature: str, typical: float | None) -> tuple[pd.Series, pd.Series]:
    """Fallback for a feature outside the catalogue: ``"<feature> = value (higher than typical)"``."""
    raw = ctx[feature] if feature in ctx.columns else pd.Series(np.nan, index=ctx.index)
    numeric = col(ctx, feature)
    is_numeric = bool(numeric.notna().any() or raw.isna().all())
    if is_numeric and typical is not None and not np.isnan(typical):
        shown = qty(numeric)
        side = when(
            numeric > typical,
            " (higher than typical)",
            when(numeric < typical, " (lower than typical)", " (typical)"),
        )
        text = when(numeric.isna(), f"{feature} not recorded", f"{feature} = " + shown + side)
    else:
        text = f"{feature} = " + raw.astype("string").fillna("not recorded").astype(object)
    return pd.Series(text, index=ctx.index, dtype=object), _fixed(ctx, OTHER_CODE)
