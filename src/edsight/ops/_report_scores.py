"""Report sections from test scores: achievement gaps, growth percentiles, value-added, trends.

Each builder takes the gap frame (one score per student, subject and year, with the school
where the student tested) and returns a :class:`Section` whose tables passed suppression.
Norm groups (growth percentiles, value-added) are fitted on the whole district even in a
school report; only the published summaries are restricted to the school.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput
from edsight.ops import _report_charts as charts
from edsight.ops._report_data import Scope
from edsight.ops._report_model import (
    HIDDEN,
    Chart,
    PublishedTable,
    Section,
    fmt_count,
    fmt_interval,
    fmt_rate,
    fmt_value,
    group_label,
    is_number,
    numeric,
    publish,
    words,
)
from edsight.stats._gaps_input import SUBGROUPS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

NO_SCORES = "No assessment data in the warehouse for {what} by this date."
#: Gap trends are drawn for this subgroup (present in every district's data); tables hold all.
TREND_CHART_SUBGROUP = "economically_disadvantaged"


def _chart(fig: Figure, description: str = "") -> Chart:
    return Chart(fig.axes[0].get_title(), fig, description)


def in_scope(frame: pd.DataFrame, scope: Scope) -> pd.DataFrame:
    """Scores of the scope's schools; a district keeps scores placed in no school too."""
    mask = frame["school_id"].isin(list(scope.schools))
    if scope.kind == "district":
        mask |= frame["school_id"].isna()
    return frame[mask]


def _what(scope: Scope) -> str:
    return "this school" if scope.kind == "school" else "this district"


# -- gaps ------------------------------------------------------------------------------------


def all_gaps(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """``achievement_gaps`` of every subgroup present in ``frame`` (focal values vs the reference)."""
    from edsight.stats.gaps import achievement_gaps

    level = "perf_level" if "perf_level" in frame.columns and frame["perf_level"].notna().any() else None
    pieces = []
    for subgroup in SUBGROUPS:
        if subgroup not in frame.columns or frame[subgroup].notna().sum() == 0:
            continue
        try:
            pieces.append(achievement_gaps(frame, subgroup, by=list(by), level=level))
        except InvalidInput as exc:  # e.g. only the reference group present
            log.debug("gaps: %s skipped: %s", subgroup, exc)
    return pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame()


def publishable_gaps(gaps: pd.DataFrame, cells: Sequence[str], min_n: int) -> pd.DataFrame:
    """Gap rows with ``visible`` set where both groups' counts survive suppression.

    The groups of a subgroup (each focal value and the reference) partition the tested
    students of a cell, so suppression runs on that partition (primary and complementary
    within the cell); a gap is published only when both of its groups are.
    """
    key = [*cells, "subgroup"]
    ref = gaps[[*key, "reference", "n_reference"]].drop_duplicates(key)
    ref = ref.rename(columns={"reference": "group", "n_reference": "n"})
    foc = gaps[[*key, "focal", "n_focal"]].rename(columns={"focal": "group", "n_focal": "n"})
    long = pd.concat([ref, foc], ignore_index=True)
    long["group"] = long["group"].astype(str)
    pub = publish(long.reset_index(drop=True), min_n=min_n, by=key)[[*key, "group", "n", "suppressed"]]
    out = gaps.copy()
    out["_focal"] = out["focal"].astype(str)
    out["_reference"] = out["reference"].astype(str)
    focal = pub.rename(columns={"group": "_focal", "n": "pub_n_focal", "suppressed": "_hf"})
    refs = pub.rename(columns={"group": "_reference", "n": "pub_n_reference", "suppressed": "_hr"})
    out = out.merge(focal, on=[*key, "_focal"], how="left").merge(refs, on=[*key, "_reference"], how="left")
    out["visible"] = ~(out["_hf"].fillna(True).astype(bool) | out["_hr"].fillna(True).astype(bool))
    return out.drop(columns=["_focal", "_reference", "_hf", "_hr"])


def _proficiency_gap(row: Any) -> str:
    """The percentage-point gap, unless a group's rate would be top/bottom-coded (small, near 0/100%)."""
    if not row.visible or not is_number(row.pct_proficient_gap):
        return HIDDEN
    for n, pct in ((row.n_focal, row.pct_proficient_focal), (row.n_reference, row.pct_proficient_reference)):
        if n < 300 and not 5.0 <= float(pct) <= 95.0:
            return HIDDEN
    return f"{float(row.pct_proficient_gap):+.0f}"


def gaps_section(
    frame: pd.DataFrame | None, scope: Scope, min_n: int
) -> tuple[Section, dict[str, Any] | None]:
    """Latest year's gaps by subject for every subgroup; returns the largest published gap too."""
    section = Section("gaps", "Achievement gaps")
    data = in_scope(frame, scope) if frame is not None else pd.DataFrame()
    if data.empty:
        section.unavailable = NO_SCORES.format(what=_what(scope))
        return section, None
    year = int(data["school_year"].max())
    gaps = all_gaps(data[data["school_year"] == year], ["subject"])
    if gaps.empty:
        section.unavailable = "No demographic subgroups to compare (student_demographics is empty)."
        return section, None
    pub = publishable_gaps(gaps, ["subject"], min_n)
    has_prof = "pct_proficient_gap" in pub.columns
    section.paragraphs.append(
        f"Spring {year + 1} tests ({year}-{(year + 1) % 100:02d} school year). Gaps are focal group minus "
        "reference group: negative means the focal group scores lower. Hedges' g is the gap in "
        "standard deviations with its 95% interval"
        + ("; proficiency gap in percentage points." if has_prof else ".")
    )
    rows = []
    for r in pub.itertuples(index=False):
        row = {
            "subject": str(r.subject),
            "subgroup": words(str(r.subgroup)),
            "focal": group_label(str(r.subgroup), r.focal),
            "reference": group_label(str(r.subgroup), r.reference),
            "n focal": fmt_count(r.pub_n_focal),
            "n reference": fmt_count(r.pub_n_reference),
            "score gap": fmt_value(r.mean_diff, 1) if r.visible else HIDDEN,
            "Hedges' g": fmt_value(r.hedges_g) if r.visible else HIDDEN,
            "95% interval": fmt_interval(r.hedges_g_ci_low, r.hedges_g_ci_high) if r.visible else HIDDEN,
        }
        if has_prof:
            row["proficiency gap (pp)"] = _proficiency_gap(r)
        rows.append(row)
    section.tables.append(
        PublishedTable("Gaps by subgroup and subject", pd.DataFrame(rows), ("n focal", "n reference"))
    )

    shown = pub[pub["visible"] & pub["hedges_g"].notna()]
    if not shown.empty:
        labels = [
            f"{r.subject}: {group_label(str(r.subgroup), r.focal)}" for r in shown.itertuples(index=False)
        ]
        fig = charts.estimate_intervals(
            labels,
            shown["hedges_g"].to_numpy(float),
            shown["hedges_g_ci_low"].to_numpy(float),
            shown["hedges_g_ci_high"].to_numpy(float),
            "Achievement gaps (Hedges' g, 95% interval)",
            "standard deviations (focal minus reference)",
        )
        section.charts.append(_chart(fig))
        top = shown.iloc[int(np.argmax(shown["hedges_g"].abs().to_numpy()))]
        largest = {
            "subject": str(top["subject"]),
            "focal": group_label(str(top["subgroup"]), top["focal"]),
            "reference": group_label(str(top["subgroup"]), top["reference"]),
            "effect_size": float(top["hedges_g"]),
        }
        return section, largest
    section.paragraphs.append("Every subgroup comparison involves a group too small to report.")
    return section, None


# -- growth ----------------------------------------------------------------------------------


def growth_section(frame: pd.DataFrame | None, scope: Scope, min_n: int, min_students: int) -> Section:
    """Median student growth percentiles of the latest year (district norm group)."""
    from edsight.stats.sgp import StudentGrowthPercentiles, sgp_summary

    section = Section("growth", "Growth (student growth percentiles)")
    if frame is None or frame.empty:
        section.unavailable = NO_SCORES.format(what="the district")
        return section
    years = sorted(int(y) for y in frame["school_year"].dropna().unique())
    if len(years) < 2:
        section.unavailable = (
            f"Growth percentiles need scores from at least two consecutive school years; "
            f"the warehouse has {len(years)} ({', '.join(map(str, years))})."
        )
        return section
    long = frame.rename(columns={"scale_score": "score"})[
        ["person_id", "subject", "school_year", "grade_level", "score", "school_id"]
    ]
    try:
        model = StudentGrowthPercentiles(max_order=2, min_students=min_students).fit(long)
    except InvalidInput:
        section.unavailable = (
            f"Not enough students for growth percentiles: no grade and subject has {min_students} students "
            "with a prior-year score in the district (the norm group the method needs)."
        )
        return section
    sgps = model.sgp_
    latest = int(years[-1])
    sgps = in_scope(sgps[sgps["school_year"] == latest], scope)
    by = ["grade_level", "subject"] if scope.kind == "school" else ["school_id", "subject"]
    summary = sgp_summary(sgps, by) if not sgps.empty else pd.DataFrame()
    if summary.empty:
        section.unavailable = (
            f"No growth percentiles for {_what(scope)} in {latest}-{(latest + 1) % 100:02d}."
        )
        return section
    summary = summary.dropna(subset=[by[0]]).reset_index(drop=True)
    pub = publish(summary, min_n=min_n, by="subject", value_cols=("median_sgp", "mean_sgp"))
    section.paragraphs.append(
        f"Median student growth percentile (SGP) in {latest}-{(latest + 1) % 100:02d}: how a student's score "
        "compares with district students who had the same prior scores (50 = typical growth). "
        f"Norm group: the whole district, {len(model.fits_)} grade and subject models."
    )
    first = "grade" if scope.kind == "school" else "school"
    labels = (
        [f"grade {int(g)}" for g in pub["grade_level"]]
        if scope.kind == "school"
        else [scope.schools.get(str(s), str(s)) for s in pub["school_id"]]
    )
    table = pd.DataFrame(
        {
            first: labels,
            "subject": pub["subject"].astype(str),
            "students": [fmt_count(v) for v in pub["n"]],
            "median SGP": [fmt_value(v, 0) for v in pub["median_sgp"]],
            "mean SGP": [fmt_value(v, 1) for v in pub["mean_sgp"]],
        }
    )
    section.tables.append(PublishedTable("Median growth percentile", table, ("students",)))
    chart_labels = [f"{a}, {b}" for a, b in zip(labels, pub["subject"].astype(str), strict=True)]
    section.charts.append(
        _chart(
            charts.value_bars(
                chart_labels, numeric(pub["median_sgp"]), "Median growth percentile", "median SGP", 50.0
            )
        )
    )
    return section


# -- value-added -----------------------------------------------------------------------------


def value_added_section(vam_frame: pd.DataFrame | None, scope: Scope, min_n: int) -> Section:
    """School value-added with intervals (and, for a school, its teachers, unnamed)."""
    from edsight.stats.vam import value_added_tables

    section = Section("value_added", "Value-added")
    if vam_frame is None or vam_frame.empty:
        section.unavailable = "No test scores linked to teachers and schools (value-added needs them)."
        return section
    years = sorted(int(y) for y in vam_frame["school_year"].dropna().unique())
    if len(years) < 2:
        section.unavailable = (
            f"Value-added needs test scores from at least two school years; the warehouse has {len(years)}."
        )
        return section
    try:
        tables = value_added_tables(vam_frame)
    except InvalidInput as exc:
        section.unavailable = f"Value-added could not be estimated: {exc}"
        return section
    school = tables["school"]
    school = school[school["school_id"].isin(list(scope.schools))].reset_index(drop=True)
    if school.empty:
        section.unavailable = (
            f"No value-added estimates for {_what(scope)} (its grades have no prior-year test)."
        )
        return section
    cols = ("effect", "se", "lower", "upper", "reliability", "raw_mean")
    pub = publish(school, min_n=min_n, by="subject", value_cols=cols)
    section.paragraphs.append(
        "Value-added: the school's average contribution to its students' scores, adjusted for their "
        "prior scores in both subjects, in student standard deviations, shrunken toward the district "
        "average, with 95% intervals (an interval that crosses 0 cannot be told apart from average). "
        f"Fitted on {', '.join(map(str, years))} across the district."
    )
    table = pd.DataFrame(
        {
            "school": [scope.schools.get(str(s), str(s)) for s in pub["school_id"]],
            "subject": pub["subject"].astype(str),
            **_estimate_columns(pub),
        }
    )
    section.tables.append(PublishedTable("School value-added", table, ("students",)))
    labels = [f"{a}, {b}" for a, b in zip(table["school"], table["subject"], strict=True)]
    _interval_chart(section, labels, pub, "School value-added (95% interval)")
    if scope.kind == "school":
        _teacher_table(section, tables["teacher"], scope, min_n)
    return section


def _estimate_columns(pub: pd.DataFrame) -> dict[str, list[str]]:
    """The formatted n, estimate, interval and reliability of published value-added rows."""
    return {
        "students": [fmt_count(v) for v in pub["n"]],
        "effect": [fmt_value(v) for v in pub["effect"]],
        "95% interval": [fmt_interval(a, b) for a, b in zip(pub["lower"], pub["upper"], strict=True)],
        "reliability": [fmt_value(v) for v in pub["reliability"]],
    }


def _interval_chart(section: Section, labels: list[str], pub: pd.DataFrame, title: str) -> None:
    """Estimates with their intervals, when any estimate survived suppression."""
    if np.isfinite(numeric(pub["effect"])).any():
        section.charts.append(
            _chart(
                charts.estimate_intervals(
                    labels,
                    numeric(pub["effect"]),
                    numeric(pub["lower"]),
                    numeric(pub["upper"]),
                    title,
                    "student standard deviations",
                )
            )
        )


def _teacher_table(section: Section, teachers: pd.DataFrame, scope: Scope, min_n: int) -> None:
    """Teachers of the school, labelled by rank within subject: a report names no person."""
    mine = teachers[teachers["school_id"].isin(list(scope.schools))]
    if mine.empty:
        section.paragraphs.append("No teacher value-added estimates for this school.")
        return
    mine = mine.sort_values(["subject", "effect"], ascending=[True, False]).reset_index(drop=True)
    mine = mine.drop(columns=["teacher_id"])
    mine["teacher"] = [f"teacher {i + 1}" for i in mine.groupby("subject").cumcount()]
    pub = publish(
        mine, min_n=min_n, by="subject", value_cols=("effect", "se", "lower", "upper", "reliability")
    )
    table = pd.DataFrame(
        {
            "subject": pub["subject"].astype(str),
            "teacher": pub["teacher"],
            **_estimate_columns(pub),
        }
    )
    section.tables.append(
        PublishedTable(
            "Teacher value-added (multi-year, unnamed; ranked within subject)",
            table,
            ("students",),
            note="Teachers are not named in a report; staff with access see names in the application.",
        )
    )
    labels = [f"{a}, {b}" for a, b in zip(table["subject"], table["teacher"], strict=True)]
    _interval_chart(section, labels, pub, "Teacher value-added (95% interval)")


# -- trends ----------------------------------------------------------------------------------


def _series(
    frame: pd.DataFrame, label_cols: Sequence[str], value: str = "observed"
) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, g in frame.groupby(list(label_cols), sort=True):
        parts = key if isinstance(key, tuple) else (key,)
        out[", ".join(str(p) for p in parts)] = {
            "year": g["school_year"].to_numpy(float),
            "observed": numeric(g[value]),
            "fitted": numeric(g["fitted"]),
            "pi_low": numeric(g["pi_low"]),
            "pi_high": numeric(g["pi_high"]),
            "forecast": g["is_forecast"].to_numpy(bool),
        }
    return out


def _trend_table(
    pub: pd.DataFrame, label_cols: Sequence[str], digits: int, percent: bool = False
) -> pd.DataFrame:
    def val(v: object) -> str:
        if percent:
            return fmt_rate(v)
        return fmt_value(v, digits)

    rows = []
    for r in pub.itertuples(index=False):
        row = {c: str(getattr(r, c)) for c in label_cols}
        year = int(r.school_year)  # type: ignore[arg-type]
        row["year"] = f"{year}-{(year + 1) % 100:02d}" + (" (forecast)" if r.is_forecast else "")
        row["students"] = fmt_count(r.n) if not r.is_forecast else ""
        row["observed"] = "" if r.is_forecast else val(r.observed)
        row["trend"] = val(r.fitted)
        row["95% prediction interval"] = (
            (
                f"[{fmt_rate(r.pi_low)}, {fmt_rate(r.pi_high)}]"
                if percent
                else fmt_interval(r.pi_low, r.pi_high, digits)
            )
            if r.is_forecast
            else ""
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _publishable_years(data: pd.DataFrame, min_n: int) -> pd.DataFrame:
    """Scores of the subject-years whose count survives suppression: hidden years stay out of
    every fit, so a trend line cannot give them away."""
    yearly = (
        data.dropna(subset=["scale_score"])
        .groupby(["subject", "school_year"])
        .size()
        .rename("n")
        .reset_index()
    )
    pub = publish(yearly, min_n=min_n, by="subject")
    keep = pub.loc[~pub["suppressed"].astype(bool), ["subject", "school_year"]]
    return data.merge(keep, on=["subject", "school_year"], how="inner")


def trends_section(frame: pd.DataFrame | None, scope: Scope, min_n: int, horizon: int = 1) -> Section:
    """Mean score and proficiency by year with a linear forecast; gap trends by subgroup."""
    from edsight.stats.trends import gap_trends, linear_trend, mean_score_trends

    section = Section("trends", "Trends")
    data = in_scope(frame, scope) if frame is not None else pd.DataFrame()
    if data.empty:
        section.unavailable = NO_SCORES.format(what=_what(scope))
        return section
    years = sorted(int(y) for y in data["school_year"].dropna().unique())
    section.paragraphs.append(
        f"School years {years[0]}-{years[-1]}: a straight-line trend per subject with a forecast for the "
        f"next {horizon} year(s) and its 95% prediction interval"
        + (" (intervals need at least three years)." if len(years) < 3 else ".")
    )
    if len(years) < 2:
        section.paragraphs.append("A trend needs at least two school years of scores; only one is stored.")
    values = ("observed", "fitted", "ci_low", "ci_high", "pi_low", "pi_high", "observed_se", "fitted_se")
    data = _publishable_years(data, min_n)
    if data.empty:
        section.paragraphs.append("Every subject and year has too few tested students to report.")
        return section
    means = mean_score_trends(data, by=["subject"], horizon=horizon)
    mpub = publish(means, min_n=min_n, by="subject", value_cols=values)
    section.tables.append(
        PublishedTable("Mean scale score by year", _trend_table(mpub, ["subject"], 1), ("students",))
    )
    section.charts.append(
        _chart(charts.trend_lines(_series(mpub, ["subject"]), "Mean scale score", "scale score"))
    )

    if "perf_level" in data.columns and data["perf_level"].notna().any():
        scored = data.dropna(subset=["perf_level"])
        yearly = (
            scored.assign(_prof=(scored["perf_level"] >= 3).astype(float))
            .groupby(["subject", "school_year"], as_index=False)
            .agg(n=("_prof", "size"), proficient=("_prof", "mean"))
        )
        yearly["w"] = yearly["n"].astype(float)
        prof = linear_trend(
            yearly, value="proficient", weight="w", by=["subject"], horizon=horizon, count="n"
        )
        bounds = ["fitted", "ci_low", "ci_high", "pi_low", "pi_high"]
        prof[bounds] = prof[bounds].clip(0.0, 1.0)  # a share stays within 0-100%
        ppub = publish(prof, min_n=min_n, by="subject", value_cols=values)
        section.tables.append(
            PublishedTable(
                "Share proficient by year", _trend_table(ppub, ["subject"], 2, percent=True), ("students",)
            )
        )
        section.charts.append(
            _chart(
                charts.trend_lines(
                    _series(ppub, ["subject"]), "Share proficient", "% proficient", percent=True
                )
            )
        )

    gaps = all_gaps(data, ["subject", "school_year"]) if len(years) >= 2 else pd.DataFrame()
    if not gaps.empty:
        pub = publishable_gaps(gaps, ["subject", "school_year"], min_n)
        # Only years whose gap can be published enter the fit, so a hidden year cannot be
        # recovered from the line.
        pub = pub[pub["visible"]]
        trend = gap_trends(pub, value="hedges_g", se="hedges_g_se", horizon=horizon) if not pub.empty else pub
        if not trend.empty:
            trend = trend.assign(
                focal=[
                    group_label(str(s), f) for s, f in zip(trend["subgroup"], trend["focal"], strict=True)
                ],
                subgroup=trend["subgroup"].map(lambda s: words(str(s))),
            )
            # The fit used published years only; its counts are those years' n (both groups).
            gpub = publish(
                trend.reset_index(drop=True),
                min_n=min_n,
                by=["subgroup", "focal", "subject"],
                value_cols=values,
            )
            table = _trend_table(gpub, ["subgroup", "focal", "subject"], 2)
            section.tables.append(
                PublishedTable(
                    "Gap trends (Hedges' g, focal minus reference)",
                    table.drop(columns=["students"]),
                    (),
                    note="Years where either group is too small to report are left out of the trend.",
                )
            )
            chosen = gpub[gpub["subgroup"] == words(TREND_CHART_SUBGROUP)]
            if not chosen.empty:
                section.charts.append(
                    _chart(
                        charts.trend_lines(
                            _series(chosen, ["subject"]),
                            f"Gap trend: {words(TREND_CHART_SUBGROUP)} (Hedges' g)",
                            "standard deviations",
                        )
                    )
                )
    return section
