"""Report sections from the early-warning data: risk bands and ABC indicators."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd

from edsight.ops import _report_charts as charts
from edsight.ops._report_data import (
    BANDS,
    ELEVATED_THRESHOLD,
    FLAG_THRESHOLD,
    Scope,
    abc_indicators,
    risk_bands,
)
from edsight.ops._report_model import (
    HIDDEN,
    Chart,
    PublishedTable,
    Section,
    fmt_count,
    fmt_rate,
    is_number,
    numeric,
    publish,
    words,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ABC_COLUMNS: dict[str, str] = {
    "attendance_lt90": "attendance < 90%",
    "attendance_lt80": "attendance < 80%",
    "chronic_absence": "chronically absent",
    "course_failure": "core course failure",
    "behavior": "behavior incident",
}


def _school_label(scope: Scope, school_id: str) -> str:
    return scope.schools.get(school_id, "other schools")


def risk_section(con: duckdb.DuckDBPyConnection, scope: Scope, min_n: int) -> tuple[Section, dict[str, Any]]:
    """Students per probability band (latest score per student and target) and the flagged share.

    Returns the section and the headline figures the narratives need, per school: enrolled
    students and flagged students (``None`` where suppressed).
    """
    section = Section("risk", "Risk overview")
    enrolled = _enrolled(con, scope)
    bands, scored_on = risk_bands(con, scope)
    headline: dict[str, Any] = {"schools": {}, "scored_on": scored_on}
    enrolled_pub = publish(enrolled, min_n=min_n, count_col="n")
    for row in enrolled_pub.itertuples(index=False):
        headline["schools"][row.school_id] = {"students": row.n, "flagged": None, "scored": False}
    if bands.empty:
        section.unavailable = "No early-warning scores are stored for these students as of this date."
        return section, headline

    # Complete grid (zero cells included): a band with no students is a published 0.
    targets = sorted(bands["target"].unique(), key=lambda t: (t != "any", t))
    grid = pd.MultiIndex.from_product(
        [sorted(bands["school_id"].unique()), targets, list(BANDS)], names=["school_id", "target", "band"]
    )
    full = bands.set_index(["school_id", "target", "band"])["n"].reindex(grid, fill_value=0).reset_index()
    # Per school and target the bands add up to the scored students (published); across
    # schools the district total per target and band is published too.
    margins = [["target", "band"]] if full["school_id"].nunique() > 1 else None
    pub = publish(full, min_n=min_n, by=["school_id", "target"], margins=margins)
    section.paragraphs.append(
        f"Latest score per student and target, as of {scope.as_of.isoformat()}"
        + (f" (scored {scored_on.isoformat()})" if isinstance(scored_on, date) else "")
        + f". Bands: high = probability {FLAG_THRESHOLD:.2f} or more (flagged), elevated = "
        f"{ELEVATED_THRESHOLD:.2f} to {FLAG_THRESHOLD:.2f}, low = below {ELEVATED_THRESHOLD:.2f}. "
        "Target 'any' counts each student once, at their highest probability."
    )
    totals = full.groupby(["school_id", "target"], as_index=False).agg(_total=("n", "sum"))
    wide = pub.pivot(index=["school_id", "target"], columns="band", values="n").reindex(columns=list(BANDS))
    wide = wide.reset_index().merge(totals, on=["school_id", "target"])
    rows: list[dict[str, Any]] = []
    for rec in wide.to_dict(orient="records"):
        total = int(rec["_total"])
        high = rec["high"]
        share = float(high) / total if is_number(high) and total >= min_n else np.nan
        rows.append(
            {
                "school": _school_label(scope, str(rec["school_id"])),
                "target": words(str(rec["target"])),
                "scored": fmt_count(total) if total >= min_n or total == 0 else HIDDEN,
                **{b: fmt_count(rec[b]) for b in BANDS},
                "flagged share": fmt_rate(share),
                "_school_id": rec["school_id"],
                "_target": rec["target"],
                **{f"_{b}": rec[b] for b in BANDS},
            }
        )
    table = pd.DataFrame(rows)
    for item in rows:
        if item["_target"] == "any" and item["_school_id"] in headline["schools"]:
            entry = headline["schools"][item["_school_id"]]
            entry["flagged"] = int(item["_high"]) if is_number(item["_high"]) else None
            entry["scored"] = True
    shown = table.drop(columns=[c for c in table.columns if c.startswith("_")])
    if scope.kind == "school":
        shown = shown.drop(columns=["school"])
    section.tables.append(
        PublishedTable("Students by probability band", shown, count_columns=("scored", *BANDS))
    )
    chart_rows = table[table["_target"] == "any"] if scope.kind == "district" else table
    labels = chart_rows["school"] if scope.kind == "district" else chart_rows["target"]
    counts_by_band = {b: numeric(chart_rows[f"_{b}"]) for b in BANDS}
    title = (
        "Students by probability band (all targets)"
        if scope.kind == "district"
        else "Students by probability band"
    )
    section.charts.append(_chart(charts.band_bars(labels.tolist(), counts_by_band, title)))
    return section, headline


def _chart(fig: Figure, description: str = "") -> Chart:
    return Chart(fig.axes[0].get_title(), fig, description)


def _enrolled(con: duckdb.DuckDBPyConnection, scope: Scope) -> pd.DataFrame:
    from edsight.ops._report_data import enrolled_counts

    frame = enrolled_counts(con, scope)
    base = pd.DataFrame({"school_id": list(scope.schools)})
    return base.merge(frame, on="school_id", how="left").fillna({"n": 0}).astype({"n": "int64"})


def attendance_section(
    con: duckdb.DuckDBPyConnection, scope: Scope, min_n: int
) -> tuple[Section, dict[str, float | None]]:
    """ABC indicators (attendance, behavior, course performance) and 9th-grade on-track, per school."""
    section = Section("abc", "Attendance, behavior and course performance")
    frame = abc_indicators(con, scope)
    chronic: dict[str, float | None] = {}
    if frame.empty:
        section.unavailable = (
            "No weekly K-12 features for this school year by this date "
            "(run `edsight features build`, or the warehouse holds no attendance data)."
        )
        return section, chronic
    rates = list(ABC_COLUMNS)
    pub = publish(frame, min_n=min_n, count_col="n", value_cols=(), rate_cols=rates)
    week = pd.Timestamp(frame["week_end"].max()).date().isoformat()
    section.paragraphs.append(
        f"Each student's latest complete week of the {scope.school_year} school year "
        f"(weeks ending up to {week}). Chronic absence: absent 10% or more of enrolled days so far."
    )
    rows = []
    for r in pub.itertuples(index=False):
        row = {"school": _school_label(scope, str(r.school_id)), "students": fmt_count(r.n)}
        for col, label in ABC_COLUMNS.items():
            row[label] = fmt_rate(getattr(r, col))
        rows.append(row)
        value = r.chronic_absence
        chronic[str(r.school_id)] = float(value) if is_number(value) else None  # type: ignore[arg-type]
    table = pd.DataFrame(rows)
    if scope.kind == "school":
        table = table.drop(columns=["school"])
    section.tables.append(
        PublishedTable("Early-warning indicators (share of students)", table, ("students",))
    )

    grade9 = frame[frame["n_grade9"] > 0][["school_id", "n_grade9", "on_track"]].rename(
        columns={"n_grade9": "n"}
    )
    if grade9.empty:
        section.paragraphs.append(
            "No 9th-grade on-track status yet (it is known once the year's last term ends)."
        )
    else:
        g9 = publish(grade9.reset_index(drop=True), min_n=min_n, rate_cols=("on_track",))
        t9 = pd.DataFrame(
            {
                "school": [_school_label(scope, str(s)) for s in g9["school_id"]],
                "9th graders": [fmt_count(v) for v in g9["n"]],
                "on track": [fmt_rate(v) for v in g9["on_track"]],
            }
        )
        if scope.kind == "school":
            t9 = t9.drop(columns=["school"])
        section.tables.append(PublishedTable("9th grade on track (Chicago definition)", t9, ("9th graders",)))

    if scope.kind == "school":
        first = pub.iloc[0]
        labels = list(ABC_COLUMNS.values())
        shares = [float(first[c]) if is_number(first[c]) else np.nan for c in ABC_COLUMNS]
        section.charts.append(_chart(charts.share_bars(labels, shares, "Early-warning indicators")))
    else:
        labels = [_school_label(scope, str(s)) for s in pub["school_id"]]
        section.charts.append(
            _chart(charts.share_bars(labels, numeric(pub["chronic_absence"]), "Chronic absence by school"))
        )
    return section, chronic
