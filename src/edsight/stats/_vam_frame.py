"""Build the value-added analysis frame from canonical tables.

One row per student, school year and tested subject: the spring score, the grade, and the
teacher and school that taught the student that subject for most of the year (its
``dosage``, the share of the year's instructional span spent with that teacher).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput

log = logging.getLogger(__name__)

#: Course subjects (canonical ``course.subject``) that link to an assessment subject.
COURSE_TO_TEST_SUBJECT: dict[str, str] = {
    "math": "math",
    "mathematics": "math",
    "ela": "reading",
    "english": "reading",
    "reading": "reading",
}

FRAME_COLUMNS: tuple[str, ...] = (
    "person_id",
    "school_year",
    "subject",
    "grade_level",
    "score",
    "teacher_id",
    "school_id",
    "dosage",
)

_NEEDED: dict[str, tuple[str, ...]] = {
    "assessment_result": (
        "person_id",
        "assessment",
        "subject",
        "school_year",
        "grade_level",
        "test_date",
        "scale_score",
    ),
    "section": ("section_id", "course_id", "term_id", "school_id"),
    "course": ("course_id", "subject"),
    "enrollment": ("section_id", "person_id", "role", "start_date", "end_date"),
    "term": ("term_id", "school_year", "end_date"),
}
#: Columns used when present: the score's reported standard error of measurement lets the
#: adjustment regression correct for measurement error in the prior scores.
_OPTIONAL: dict[str, tuple[str, ...]] = {"assessment_result": ("sem",)}


def _plain(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Select the needed columns with numpy-backed dtypes (Arrow strings are slow in groupby)."""
    missing = [c for c in _NEEDED[table] if c not in df.columns]
    if missing:
        raise InvalidInput(f"table {table}: missing column(s) {', '.join(missing)}")
    cols = [*_NEEDED[table], *(c for c in _OPTIONAL.get(table, ()) if c in df.columns)]
    out = df.loc[:, cols].copy()
    for col in out.columns:
        if col.endswith("_date"):
            out[col] = pd.to_datetime(out[col].astype("object"), errors="coerce")
        elif col in ("school_year", "grade_level", "scale_score", "sem"):
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
        else:
            out[col] = out[col].astype("object")
    return out


def vam_frame_from_tables(
    tables: Mapping[str, pd.DataFrame],
    *,
    assessment: str | None = "state_test",
    demographics: bool = True,
) -> pd.DataFrame:
    """Long student-year-subject scores with teacher and school links, from canonical tables.

    ``tables`` needs ``assessment_result, section, course, enrollment, term`` (and
    ``student_demographics`` when ``demographics``). The teacher of a student-year-subject
    is the one whose sections of that subject held the student for the most days; ties go
    to the lexicographically first teacher so the result is deterministic.
    """
    for name in _NEEDED:
        if name not in tables:
            raise InvalidInput(f"vam frame: table {name} is required")
    scores = _plain(tables["assessment_result"], "assessment_result")
    if assessment is not None:
        scores = scores[scores["assessment"] == assessment]
    scores = scores.dropna(subset=["scale_score", "school_year"])
    # A retest in the same year: the latest one is the score of record.
    scores = scores.sort_values("test_date").drop_duplicates(
        ["person_id", "subject", "school_year"], keep="last"
    )
    scores = scores.rename(columns={"scale_score": "score"})
    score_cols = ["person_id", "school_year", "subject", "grade_level", "score"]
    if "sem" in scores.columns and scores["sem"].notna().any():
        score_cols.append("sem")

    section = _plain(tables["section"], "section")
    course = _plain(tables["course"], "course")
    term = _plain(tables["term"], "term")
    enr = _plain(tables["enrollment"], "enrollment")

    course["test_subject"] = course["subject"].astype("string").str.lower().map(COURSE_TO_TEST_SUBJECT)
    sec = section.merge(course[["course_id", "test_subject"]], on="course_id", how="inner")
    sec = sec.dropna(subset=["test_subject"]).merge(
        term[["term_id", "school_year", "end_date"]].rename(columns={"end_date": "term_end"}),
        on="term_id",
        how="inner",
    )
    enr = enr[enr["section_id"].isin(sec["section_id"])]
    teachers = (
        enr[enr["role"] == "teacher"]
        .sort_values("person_id")
        .drop_duplicates("section_id")[["section_id", "person_id"]]
        .rename(columns={"person_id": "teacher_id"})
    )
    students = enr[enr["role"] == "student"].merge(sec, on="section_id", how="inner")
    students = students.merge(teachers, on="section_id", how="inner")
    end = students["end_date"].fillna(students["term_end"])
    students["days"] = (end - students["start_date"]).dt.days.clip(lower=0).astype("float64") + 1.0
    links: pd.DataFrame = (
        students.groupby(["person_id", "school_year", "test_subject", "teacher_id", "school_id"])["days"]
        .sum()
        .reset_index()
    )
    span = links.groupby(["school_year", "test_subject"])["days"].transform("max")
    links["dosage"] = (links["days"] / span).clip(upper=1.0)
    links = links.sort_values(
        ["person_id", "school_year", "test_subject", "days", "teacher_id"],
        ascending=[True, True, True, False, True],
    ).drop_duplicates(["person_id", "school_year", "test_subject"], keep="first")
    links = links.rename(columns={"test_subject": "subject"}).drop(columns="days")

    frame = scores[score_cols].merge(links, on=["person_id", "school_year", "subject"], how="left")
    if demographics and "student_demographics" in tables:
        demo = tables["student_demographics"].copy()
        keep = [
            c
            for c in ("economically_disadvantaged", "english_learner", "disability", "race_ethnicity", "sex")
            if c in demo.columns
        ]
        demo = demo.loc[:, ["person_id", *keep]]
        demo["person_id"] = demo["person_id"].astype("object")
        for c in keep:
            demo[c] = demo[c].astype("object")
        frame = frame.merge(demo, on="person_id", how="left")
    frame["school_year"] = frame["school_year"].astype("int64")
    frame = frame.sort_values(["subject", "school_year", "person_id"]).reset_index(drop=True)
    log.info(
        "vam frame: %d student-year-subject rows, %d linked to a teacher",
        len(frame),
        int(frame["teacher_id"].notna().sum()),
    )
    return frame


def vam_frame_from_warehouse(con: Any, **kwargs: Any) -> pd.DataFrame:
    """Same as :func:`vam_frame_from_tables`, reading the tables from a warehouse DuckDB connection."""
    names = [*_NEEDED, "student_demographics"]
    tables = {name: con.table(name).df() for name in names}
    return vam_frame_from_tables(tables, **kwargs)


def add_prior_scores(frame: pd.DataFrame, subjects: list[str], lags: int = 2) -> pd.DataFrame:
    """Attach ``prior_<subject>`` (previous school year's score, standardised within
    subject, year and grade) for every subject, matched on person and year - 1, and
    ``prior<k>_<subject>`` for year - k up to ``lags``: a second prior year averages out
    much of the measurement error of a single prior score.

    When ``frame`` has a ``sem`` column (the score's standard error of measurement), each
    prior also gets ``sem_<prior column>`` on the same standardised scale, which the
    adjustment regression uses to correct for measurement error in the priors.
    """
    has_sem = "sem" in frame.columns
    cols = ["person_id", "school_year", "subject", "grade_level", "score", *(["sem"] if has_sem else [])]
    z = frame[cols].copy()
    grp = z.groupby(["subject", "school_year", "grade_level"], dropna=False)["score"]
    sd = grp.transform("std").replace(0.0, np.nan)
    z["z"] = (z["score"] - grp.transform("mean")) / sd
    values = ["z"]
    if has_sem:
        z["zsem"] = pd.to_numeric(z["sem"], errors="coerce").astype("float64") / sd
        values.append("zsem")
    wide = z.pivot_table(
        index=["person_id", "school_year"], columns="subject", values=values, aggfunc="first"
    )
    out = frame
    for lag in range(1, lags + 1):
        names = [f"prior_{s}" if lag == 1 else f"prior{lag}_{s}" for s in subjects]
        w = pd.DataFrame(wide["z"]).reindex(columns=subjects)
        w.columns = names
        if has_sem:
            e = pd.DataFrame(wide["zsem"]).reindex(columns=subjects)
            e.columns = [f"sem_{n}" for n in names]
            w = w.join(e)
        w = w.reset_index()
        w["school_year"] = w["school_year"] + lag
        out = out.merge(w, on=["person_id", "school_year"], how="left")
    return out
