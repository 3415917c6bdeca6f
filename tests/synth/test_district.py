"""Tests for the synthetic K-12 district generator (edsight.synth.district)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edsight import schema as canonical
from edsight.synth.district import (
    DISTRICT_TABLES,
    TRUTH_TABLES,
    DistrictData,
    generate_district,
    write_district,
)

START = 2021
S, D, I8, I16, F, B = pa.string(), pa.date32(), pa.int8(), pa.int16(), pa.float64(), pa.bool_()

# The canonical schema, restated independently of the implementation.
EXPECTED: dict[str, list[tuple[str, pa.DataType]]] = {
    "organization": [
        ("org_id", S), ("name", S), ("org_type", S), ("parent_org_id", S),
        ("school_level", S), ("grade_low", I8), ("grade_high", I8),
    ],
    "term": [
        ("term_id", S), ("name", S), ("term_type", S), ("school_year", I16),
        ("start_date", D), ("end_date", D), ("parent_term_id", S),
    ],
    "calendar": [("org_id", S), ("school_year", I16), ("date", D)],
    "person": [
        ("person_id", S), ("role", S), ("given_name", S), ("family_name", S),
        ("birth_date", D), ("local_id", S), ("state_id", S), ("directory_opt_out", B),
    ],
    "student_demographics": [
        ("person_id", S), ("sex", S), ("race_ethnicity", S),
        ("economically_disadvantaged", B), ("english_learner", B), ("disability", B),
    ],
    "school_enrollment": [
        ("person_id", S), ("school_id", S), ("school_year", I16), ("grade_level", I8),
        ("entry_date", D), ("exit_date", D), ("exit_type", S),
    ],
    "course": [
        ("course_id", S), ("title", S), ("subject", S), ("grade_low", I8),
        ("grade_high", I8), ("credits", F),
    ],
    "section": [("section_id", S), ("course_id", S), ("term_id", S), ("school_id", S)],
    "enrollment": [
        ("section_id", S), ("person_id", S), ("role", S), ("start_date", D), ("end_date", D),
    ],
    "attendance": [("person_id", S), ("school_id", S), ("date", D), ("status", S)],
    "discipline": [
        ("incident_id", S), ("person_id", S), ("school_id", S), ("date", D), ("severity", S),
    ],
    "course_grade": [
        ("person_id", S), ("section_id", S), ("term_id", S), ("numeric_grade", F),
        ("letter_grade", S), ("credits_attempted", F), ("credits_earned", F),
    ],
    "assessment_result": [
        ("person_id", S), ("assessment", S), ("subject", S), ("school_year", I16),
        ("grade_level", I8), ("test_date", D), ("scale_score", F), ("sem", F),
        ("perf_level", I8), ("percentile", F),
    ],
    "student_outcome": [
        ("person_id", S), ("cohort_year", I16), ("outcome", S), ("outcome_date", D),
    ],
}  # fmt: skip
KEYS: dict[str, list[str]] = {
    "organization": ["org_id"],
    "term": ["term_id"],
    "calendar": ["org_id", "school_year", "date"],
    "person": ["person_id"],
    "student_demographics": ["person_id"],
    "school_enrollment": ["person_id", "school_id", "school_year", "entry_date"],
    "course": ["course_id"],
    "section": ["section_id"],
    "enrollment": ["section_id", "person_id", "role"],
    "attendance": ["person_id", "date"],
    "discipline": ["incident_id"],
    "course_grade": ["person_id", "section_id"],
    "assessment_result": ["person_id", "assessment", "subject", "school_year"],
    "student_outcome": ["person_id"],
}
ENUMS: dict[tuple[str, str], set[str]] = {
    ("organization", "org_type"): {"district", "school"},
    ("term", "term_type"): {"school_year", "semester"},
    ("person", "role"): {"student", "teacher"},
    ("student_demographics", "sex"): {"F", "M"},
    ("student_demographics", "race_ethnicity"): {
        "hispanic", "white", "black", "asian", "multiracial", "american_indian",
        "pacific_islander",
    },
    ("school_enrollment", "exit_type"): {
        "promoted", "retained", "transferred_out", "moved_within_district", "graduated",
        "dropped_out",
    },
    ("course", "subject"): {"math", "ela", "science", "social_studies", "elective", "homeroom"},
    ("enrollment", "role"): {"student", "teacher"},
    ("attendance", "status"): {"absent_excused", "absent_unexcused", "tardy"},
    ("discipline", "severity"): {"minor", "major", "state_offense"},
    ("course_grade", "letter_grade"): {"A", "B", "C", "D", "F"},
    ("assessment_result", "subject"): {"math", "reading"},
    ("student_outcome", "outcome"): {
        "graduated", "dropped_out", "transferred_out", "still_enrolled",
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def district() -> DistrictData:
    """Four years, enough students for stable rates."""
    return generate_district(4000, n_years=4, n_schools=10, seed=11, start_year=START)


@pytest.fixture(scope="module")
def big() -> DistrictData:
    """Two years, about 1,000+ tested students per school for ground-truth recovery."""
    return generate_district(20000, n_years=2, n_schools=10, seed=3, start_year=START)


def _year(s: pd.Series) -> pd.Series:
    return s.astype("int64")


def _z(scores: pd.DataFrame) -> pd.Series:
    norm = 2420 + 40 * (scores["grade_level"].astype("int64") - 3)
    return (scores["scale_score"].astype("float64") - norm) / 85.0


def _spearman(a: pd.Series, b: pd.Series) -> float:
    return float(a.rank().corr(b.rank()))


def _gains(data: DistrictData) -> pd.DataFrame:
    """Same-student consecutive-year score gains with the single school of the later year."""
    a = data.tables["assessment_result"]
    a = a.assign(
        school_year=_year(a["school_year"]),
        grade_level=_year(a["grade_level"]),
        scale_score=a["scale_score"].astype("float64"),
    )[["person_id", "subject", "school_year", "grade_level", "scale_score"]]
    prev = a.assign(school_year=a["school_year"] + 1)
    g = a.merge(prev, on=["person_id", "subject", "school_year"], suffixes=("", "_prev"))
    g = g[g["grade_level"] == g["grade_level_prev"] + 1]
    g = g.assign(gain=g["scale_score"] - g["scale_score_prev"])
    se = data.tables["school_enrollment"]
    se = se.assign(school_year=_year(se["school_year"]))
    one = se.groupby(["person_id", "school_year"])["school_id"].agg(["first", "size"]).reset_index()
    one = one[one["size"] == 1].rename(columns={"first": "school_id"})
    return g.merge(one[["person_id", "school_year", "school_id"]], on=["person_id", "school_year"])


# --------------------------------------------------------------------------- structure
def test_table_names() -> None:
    assert tuple(EXPECTED) == DISTRICT_TABLES
    assert TRUTH_TABLES == ("school_effects", "teacher_effects", "student_truth")


def test_columns_types_and_enums(district: DistrictData) -> None:
    assert set(district.tables) == set(DISTRICT_TABLES)
    for name, cols in EXPECTED.items():
        df = district.tables[name]
        assert list(df.columns) == [c for c, _ in cols], name
        schema = pa.Table.from_pandas(df, preserve_index=False).schema
        for col, typ in cols:
            assert schema.field(col).type == typ, (name, col)
        assert len(df) > 0, name
    for (name, col), allowed in ENUMS.items():
        values = set(district.tables[name][col].dropna().unique())
        assert values <= allowed, (name, col, values - allowed)
    truth_cols = {
        "school_effects": ["school_id", "subject", "effect"],
        "teacher_effects": ["teacher_id", "subject", "school_year", "effect", "persistent_effect"],
        "student_truth": ["person_id", "subject", "true_status", "true_growth"],
    }
    for name, names in truth_cols.items():
        assert list(district.truth[name].columns) == names


def test_matches_canonical_schema_module(district: DistrictData) -> None:
    schema = canonical
    arrow = {"string": S, "int8": I8, "int16": I16, "float64": F, "bool": B, "date": D}
    for name in DISTRICT_TABLES:
        table = schema.CANONICAL[name]
        assert list(table.column_names) == [c for c, _ in EXPECTED[name]], name
        written = pa.Table.from_pandas(district.tables[name], preserve_index=False)
        df = district.tables[name]
        for col in table.columns:
            assert written.schema.field(col.name).type == arrow[col.dtype], (name, col.name)
            values = df[col.name]
            if not col.nullable:
                assert not values.isna().any(), (name, col.name)
            if col.allowed is not None:
                assert set(values.dropna().unique()) <= set(col.allowed), (name, col.name)
            if col.minimum is not None:
                assert (values.dropna().astype(float) >= col.minimum).all(), (name, col.name)
            if col.maximum is not None:
                assert (values.dropna().astype(float) <= col.maximum).all(), (name, col.name)
        assert not df.duplicated(list(table.primary_key)).any(), name


def test_nulls_only_where_allowed(district: DistrictData) -> None:
    nullable = {
        ("organization", "parent_org_id"), ("organization", "school_level"),
        ("organization", "grade_low"), ("organization", "grade_high"),
        ("term", "parent_term_id"), ("person", "birth_date"), ("person", "state_id"),
        ("school_enrollment", "exit_date"), ("school_enrollment", "exit_type"),
        ("enrollment", "end_date"), ("student_outcome", "outcome_date"),
    }  # fmt: skip
    for name, cols in EXPECTED.items():
        df = district.tables[name]
        for col, _ in cols:
            if (name, col) not in nullable:
                assert not df[col].isna().any(), (name, col)
    org = district.tables["organization"]
    assert org.loc[org["org_type"] == "district", "parent_org_id"].isna().all()
    people = district.tables["person"]
    students = people[people["role"] == "student"]
    assert students["birth_date"].notna().all()
    assert students["state_id"].notna().all()


def test_people(district: DistrictData) -> None:
    people = district.tables["person"]
    students = people[people["role"] == "student"]
    teachers = people[people["role"] == "teacher"]
    assert not students["local_id"].duplicated().any()
    assert not students["state_id"].duplicated().any()
    assert students["local_id"].str.fullmatch(r"\d{8}").all()
    assert teachers["birth_date"].isna().all()
    assert not teachers["directory_opt_out"].any()
    assert 0.01 <= students["directory_opt_out"].mean() <= 0.035
    assert 0.6 < len(teachers) / len(students) * 20 < 1.6  # ~1 teacher per 13-30 students
    # Year-1 students are on-time: age on 1 September is grade + 5.
    se = district.tables["school_enrollment"]
    first = se[_year(se["school_year"]) == START].drop_duplicates("person_id")
    x = first.merge(students, on="person_id")
    birth = pd.to_datetime(x["birth_date"].astype("datetime64[ms]"))
    age = (pd.Timestamp(f"{START}-09-01") - birth).dt.days / 365.25
    offset = age - x["grade_level"].astype(int)
    assert offset.between(4.9, 7.1).all()
    demo = district.tables["student_demographics"]
    assert 0.4 <= demo["economically_disadvantaged"].mean() <= 0.6
    assert 0.06 <= demo["english_learner"].mean() <= 0.14
    assert 0.10 <= demo["disability"].mean() <= 0.18
    share = demo["race_ethnicity"].value_counts(normalize=True)
    assert share.index[0] == "white"
    assert 0.2 <= share["hispanic"] <= 0.36


def test_deterministic_and_seed_sensitive() -> None:
    a = generate_district(600, n_years=2, n_schools=3, seed=5)
    b = generate_district(600, n_years=2, n_schools=3, seed=5)
    c = generate_district(600, n_years=2, n_schools=3, seed=6)
    for name in DISTRICT_TABLES:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    for name in TRUTH_TABLES:
        pd.testing.assert_frame_equal(a.truth[name], b.truth[name])
    assert json.dumps(a.truth_summary, sort_keys=True) == json.dumps(b.truth_summary, sort_keys=True)
    assert not a.tables["attendance"].equals(c.tables["attendance"])
    assert not a.truth["student_truth"].equals(c.truth["student_truth"])


# --------------------------------------------------------------------------- integrity
def test_primary_keys_unique(district: DistrictData) -> None:
    for name, key in KEYS.items():
        assert not district.tables[name].duplicated(key).any(), name
    assert not district.truth["school_effects"].duplicated(["school_id", "subject"]).any()
    te = district.truth["teacher_effects"]
    assert not te.duplicated(["teacher_id", "subject", "school_year"]).any()
    assert not district.truth["student_truth"].duplicated(["person_id", "subject"]).any()


def test_referential_integrity(district: DistrictData) -> None:
    t = district.tables
    people = set(t["person"]["person_id"])
    roles = t["person"].set_index("person_id")["role"]
    students = set(roles[roles == "student"].index)
    teachers = set(roles[roles == "teacher"].index)
    orgs = t["organization"]
    schools = set(orgs.loc[orgs["org_type"] == "school", "org_id"])
    district_ids = set(orgs.loc[orgs["org_type"] == "district", "org_id"])
    assert len(district_ids) == 1
    assert set(orgs["parent_org_id"].dropna()) <= district_ids
    assert set(t["calendar"]["org_id"]) == district_ids
    terms = set(t["term"]["term_id"])
    assert set(t["term"]["parent_term_id"].dropna()) <= terms
    sections = set(t["section"]["section_id"])
    assert set(t["section"]["course_id"]) <= set(t["course"]["course_id"])
    assert set(t["section"]["term_id"]) <= terms
    assert set(t["section"]["school_id"]) <= schools
    assert set(t["student_demographics"]["person_id"]) == students
    for name in ("school_enrollment", "attendance", "discipline"):
        assert set(t[name]["person_id"]) <= students, name
        assert set(t[name]["school_id"]) <= schools, name
    for name in ("course_grade", "assessment_result", "student_outcome"):
        assert set(t[name]["person_id"]) <= students, name
    enr = t["enrollment"]
    assert set(enr["section_id"]) <= sections
    assert set(enr.loc[enr["role"] == "student", "person_id"]) <= students
    assert set(enr.loc[enr["role"] == "teacher", "person_id"]) <= teachers
    assert (enr[enr["role"] == "teacher"].groupby("section_id").size() == 1).all()
    assert set(enr.loc[enr["role"] == "teacher", "section_id"]) == sections
    cg = t["course_grade"].merge(t["section"], on="section_id", suffixes=("", "_sec"))
    assert len(cg) == len(t["course_grade"])
    assert (cg["term_id"] == cg["term_id_sec"]).all()
    graded = t["course_grade"][["person_id", "section_id"]]
    assert len(graded.merge(enr[["person_id", "section_id"]])) == len(graded)
    truth = district.truth
    assert set(truth["school_effects"]["school_id"]) == schools
    assert set(truth["teacher_effects"]["teacher_id"]) <= teachers
    assert set(truth["student_truth"]["person_id"]) == students
    assert people == students | teachers


def test_schools_and_levels(district: DistrictData) -> None:
    orgs = district.tables["organization"]
    schools = orgs[orgs["org_type"] == "school"]
    assert schools["school_level"].value_counts().to_dict() == {
        "elementary": 6,
        "middle": 2,
        "high": 2,
    }
    spans = schools.groupby("school_level")[["grade_low", "grade_high"]].first().astype(int)
    assert spans.to_dict("index") == {
        "elementary": {"grade_low": 0, "grade_high": 5},
        "middle": {"grade_low": 6, "grade_high": 8},
        "high": {"grade_low": 9, "grade_high": 12},
    }
    se = district.tables["school_enrollment"].merge(
        schools[["org_id", "grade_low", "grade_high"]], left_on="school_id", right_on="org_id"
    )
    g = se["grade_level"].astype(int)
    assert ((g >= se["grade_low"].astype(int)) & (g <= se["grade_high"].astype(int))).all()


def test_calendar_and_terms(district: DistrictData) -> None:
    cal = district.tables["calendar"]
    dates = pd.to_datetime(cal["date"].astype("datetime64[ms]"))
    assert (dates.dt.day_of_week < 5).all()
    per_year = cal.groupby(_year(cal["school_year"])).size()
    assert per_year.index.tolist() == [2021, 2022, 2023, 2024]
    assert per_year.between(170, 185).all()
    first = dates.groupby(_year(cal["school_year"])).min()
    assert (first.dt.month == 8).all()
    assert (first.dt.year == first.index).all()
    term = district.tables["term"]
    assert (term["start_date"] <= term["end_date"]).all()
    sem = term[term["term_type"] == "semester"].merge(
        term[["term_id", "start_date", "end_date"]],
        left_on="parent_term_id",
        right_on="term_id",
        suffixes=("", "_year"),
    )
    assert (sem["start_date"] >= sem["start_date_year"]).all()
    assert (sem["end_date"] <= sem["end_date_year"]).all()


# --------------------------------------------------------------------------- progression
def test_grade_progression(district: DistrictData) -> None:
    se = district.tables["school_enrollment"]
    se = se.assign(school_year=_year(se["school_year"]), grade=_year(se["grade_level"]))
    last = se["school_year"].max()
    end = se[se["exit_type"].isin(["promoted", "retained", "graduated"])]
    firsts = se.groupby(["person_id", "school_year"])["grade"].first().rename("next_grade")
    nxt = firsts.reset_index().assign(school_year=lambda x: x["school_year"] - 1)
    checked = end[end["school_year"] < last].merge(nxt, on=["person_id", "school_year"], how="left")
    promoted = checked[checked["exit_type"] == "promoted"]
    assert promoted["next_grade"].notna().all()
    assert (promoted["next_grade"] == promoted["grade"] + 1).all()
    retained = checked[checked["exit_type"] == "retained"]
    assert len(retained) > 0
    assert (retained["next_grade"] == retained["grade"]).all()
    graduated = checked[checked["exit_type"] == "graduated"]
    assert len(graduated) > 0
    assert (graduated["grade"] == 12).all()
    assert graduated["next_grade"].isna().all()
    # Nobody returns after graduating, dropping out or transferring out.
    gone = se[se["exit_type"].isin(["graduated", "dropped_out", "transferred_out"])]
    later = gone[["person_id", "exit_date"]].merge(se, on="person_id", suffixes=("_gone", ""))
    assert not (later["entry_date"] > later["exit_date_gone"]).any()
    # Retention ~1-3% overall, concentrated in K-3 and 9.
    ended = se[se["exit_type"].isin(["promoted", "retained"]) & (se["grade"] < 12)]
    rate = (ended["exit_type"] == "retained").mean()
    assert 0.01 <= rate <= 0.03
    by_grade = ended.groupby("grade")["exit_type"].apply(lambda s: (s == "retained").mean())
    assert by_grade[[0, 1, 2, 3, 9]].mean() > by_grade[[4, 5, 6, 7, 8]].mean()


def test_in_year_moves_and_windows(district: DistrictData) -> None:
    se = district.tables["school_enrollment"]
    assert (se["entry_date"] <= se["exit_date"]).all()
    moved = se[se["exit_type"] == "moved_within_district"]
    assert len(moved) > 0
    nxt = moved.merge(se, on=["person_id", "school_year"], suffixes=("", "_new"))
    nxt = nxt[nxt["entry_date_new"] > nxt["exit_date"]]
    assert nxt["person_id"].nunique() == moved["person_id"].nunique()
    assert (nxt["school_id_new"] != nxt["school_id"]).all()
    assert (nxt["grade_level_new"] == nxt["grade_level"]).all()


def test_population_roughly_stable(district: DistrictData) -> None:
    fall = [y["fall_enrollment"] for y in district.truth_summary["realized"]["by_year"]]
    assert fall[0] == 4000
    assert all(abs(f - 4000) / 4000 < 0.05 for f in fall)
    se = district.tables["school_enrollment"]
    kinder = se[se["grade_level"].astype(int) == 0].groupby(_year(se["school_year"])).size()
    assert (kinder > 250).all()


# --------------------------------------------------------------------------- attendance
def _enrolled_days(district: DistrictData) -> pd.DataFrame:
    """Enrolled instructional days per (student, school, enrollment row)."""
    cal = district.tables["calendar"][["school_year", "date"]]
    se = district.tables["school_enrollment"]
    x = se.merge(cal, on="school_year")
    return x[(x["date"] >= x["entry_date"]) & (x["date"] <= x["exit_date"])]


def test_attendance_only_on_enrolled_instructional_days(district: DistrictData) -> None:
    att = district.tables["attendance"]
    days = _enrolled_days(district)[["person_id", "school_id", "date"]]
    hit = att.merge(days, on=["person_id", "school_id", "date"], how="left", indicator=True)
    assert (hit["_merge"] == "both").all()
    cal_dates = set(district.tables["calendar"]["date"])
    assert set(district.tables["discipline"]["date"]) <= cal_dates
    disc = district.tables["discipline"].merge(days, on=["person_id", "school_id", "date"])
    assert len(disc) == len(district.tables["discipline"])
    absent = att[att["status"] != "tardy"][["person_id", "date"]]
    assert len(disc.merge(absent, on=["person_id", "date"])) == 0


def test_chronic_absence_rate(district: DistrictData) -> None:
    days = _enrolled_days(district)
    enrolled = days.groupby(["person_id", "school_year"]).size().rename("days")
    att = district.tables["attendance"]
    att = att[att["status"] != "tardy"].merge(district.tables["calendar"][["school_year", "date"]], on="date")
    absences = att.groupby(["person_id", "school_year"]).size().rename("absent")
    py = pd.concat([enrolled, absences], axis=1).fillna(0)
    py = py[py["days"] >= 10]
    chronic = (py["absent"] >= 0.10 * py["days"]).groupby(level="school_year").mean()
    assert chronic.between(0.11, 0.19).all(), chronic
    assert 0.035 <= py["absent"].sum() / py["days"].sum() <= 0.08
    realised = district.truth_summary["realized"]["chronic_absence_rate"]
    assert abs(realised - chronic.mean()) < 0.01
    # High schoolers miss more school than elementary students.
    se = district.tables["school_enrollment"]
    level = se.groupby(["person_id", "school_year"])["grade_level"].first().astype(int)
    rate = (py["absent"] / py["days"]).rename("rate").to_frame().join(level)
    assert rate[rate["grade_level"] >= 9]["rate"].mean() > rate[rate["grade_level"] <= 5]["rate"].mean()


# --------------------------------------------------------------------------- outcomes
def test_graduation_rate(district: DistrictData) -> None:
    out = district.tables["student_outcome"]
    cohort = out[_year(out["cohort_year"]) == START + 3]
    assert len(cohort) > 200
    stayers = cohort[cohort["outcome"] != "transferred_out"]
    end_of_year = pd.Timestamp(f"{START + 4}-07-01").date()
    grads = stayers[(stayers["outcome"] == "graduated") & (stayers["outcome_date"] < end_of_year)]
    rate = len(grads) / len(stayers)
    assert 0.82 <= rate <= 0.92, rate
    assert district.truth_summary["realized"]["four_year_graduation_rate"] == pytest.approx(rate, abs=1e-3)
    assert out.loc[out["outcome"] == "still_enrolled", "outcome_date"].isna().all()
    assert out.loc[out["outcome"] != "still_enrolled", "outcome_date"].notna().all()


def test_outcomes_match_enrollment_exits(district: DistrictData) -> None:
    out = district.tables["student_outcome"]
    se = district.tables["school_enrollment"]
    last = se.sort_values(["person_id", "entry_date"]).groupby("person_id").tail(1)
    x = out.merge(last, on="person_id")
    assert len(x) == len(out)
    grads = x[x["outcome"] == "graduated"]
    assert (grads["exit_type"] == "graduated").all()
    assert (grads["grade_level"] == 12).all()
    assert (grads["outcome_date"] == grads["exit_date"]).all()
    drops = x[x["outcome"] == "dropped_out"]
    assert len(drops) > 0
    assert (drops["exit_type"] == "dropped_out").all()
    assert (drops["grade_level"].astype(int) >= 9).all()
    assert (x.loc[x["outcome"] == "transferred_out", "exit_type"] == "transferred_out").all()
    # Every student who reached grade 9 in the window has exactly one outcome row.
    hs = set(se.loc[se["grade_level"].astype(int) >= 9, "person_id"])
    assert set(out["person_id"]) == hs


def test_dropouts_have_early_warning_signal(district: DistrictData) -> None:
    # Rates, not counts: dropouts leave part-way through a year.
    days = _enrolled_days(district)
    days = days[days["grade_level"].astype(int) >= 9]
    enrolled = days.groupby("person_id").size()
    att = district.tables["attendance"]
    att = att[att["status"] != "tardy"].merge(days[["person_id", "date"]], on=["person_id", "date"])
    absence_rate = (att.groupby("person_id").size().reindex(enrolled.index).fillna(0)) / enrolled
    se = district.tables["school_enrollment"]
    dropped = set(se.loc[se["exit_type"] == "dropped_out", "person_id"])
    flag = absence_rate.index.isin(list(dropped))
    assert flag.sum() > 30
    assert absence_rate[flag].mean() > 1.5 * absence_rate[~flag].mean()
    cg = district.tables["course_grade"]
    cg = cg[cg["credits_attempted"] > 0]
    f_share = (cg["letter_grade"] == "F").groupby(cg["person_id"]).mean()
    f_flag = f_share.index.isin(list(dropped))
    assert f_share[f_flag].mean() > 2 * f_share[~f_flag].mean()
    ed = district.tables["student_demographics"].set_index("person_id")["economically_disadvantaged"]
    ed = ed.reindex(absence_rate.index).astype(bool)
    assert ed[flag].mean() > ed[~flag].mean()


def test_ninth_grade_on_track(district: DistrictData) -> None:
    t = district.tables
    out = t["student_outcome"]
    se = t["school_enrollment"]
    nine = se[se["grade_level"].astype(int) == 9][["person_id", "school_year"]].drop_duplicates()
    nine = nine.merge(out[["person_id", "cohort_year"]], on="person_id")
    first = nine[_year(nine["cohort_year"]) == _year(nine["school_year"]) + 3]
    cg = t["course_grade"].merge(t["section"][["section_id", "course_id"]], on="section_id")
    cg = cg.merge(t["course"][["course_id", "subject"]], on="course_id")
    cg = cg.assign(school_year=cg["term_id"].str.slice(2, 6).astype(int))
    cg = cg.merge(first.assign(school_year=_year(first["school_year"])), on=["person_id", "school_year"])
    assert (cg["credits_attempted"] == 0.5).all()
    per = cg.groupby(["person_id", "school_year"]).agg(
        credits=("credits_earned", "sum"),
        terms=("term_id", "nunique"),
        core_f=(
            "letter_grade",
            lambda s: int(((s == "F") & cg.loc[s.index, "subject"].ne("elective")).sum()),
        ),
    )
    per = per[per["terms"] == 2]
    on_track = ((per["credits"] >= 5.0) & (per["core_f"] <= 1)).mean()
    assert 0.72 <= on_track <= 0.88, on_track
    grades = t["course_grade"]
    hs_f = (grades.loc[grades["credits_attempted"] > 0, "letter_grade"] == "F").mean()
    assert 0.04 <= hs_f <= 0.15
    ok = grades["numeric_grade"].between(0, 100)
    assert ok.all()
    letter = pd.cut(
        grades["numeric_grade"].astype(float),
        [-1, 59.999, 69.999, 79.999, 89.999, 101],
        labels=["F", "D", "C", "B", "A"],
    ).astype(str)
    assert (letter == grades["letter_grade"].astype(str)).all()
    earned = np.where(grades["letter_grade"] == "F", 0.0, grades["credits_attempted"])
    assert np.allclose(grades["credits_earned"].astype(float), earned)


# --------------------------------------------------------------------------- assessments
def test_assessment_scale_and_levels(district: DistrictData) -> None:
    a = district.tables["assessment_result"]
    assert set(a["grade_level"].astype(int)) == {3, 4, 5, 6, 7, 8, 10}
    assert (a["assessment"] == "state_test").all()
    means = a.groupby(a["grade_level"].astype(int))["scale_score"].mean()
    assert abs(means[3] - 2420) < 25
    slope = np.polyfit(means.index.to_numpy(), means.to_numpy(dtype=float), 1)[0]
    assert 30 < slope < 50
    sd = a.groupby(a["grade_level"].astype(int))["scale_score"].std()
    assert sd.between(70, 105).all()
    z = _z(a).abs()
    assert np.corrcoef(z, a["sem"].astype(float))[0, 1] > 0.5
    assert a["sem"].between(15, 90).all()
    cuts = district.truth_summary["cut_scores"]
    expected = []
    for g, s in zip(a["grade_level"].astype(int), a["scale_score"].astype(float), strict=True):
        expected.append(1 + sum(s >= c for c in cuts[str(g)]))
    assert (np.asarray(expected) == a["perf_level"].astype(int).to_numpy()).all()
    proficient = (a["perf_level"].astype(int) >= 3).mean()
    assert 0.40 <= proficient <= 0.56
    dates = pd.to_datetime(a["test_date"].astype("datetime64[ms]"))
    assert dates.dt.month.isin([4, 5]).all()


def test_subgroup_gaps_match_truth(big: DistrictData) -> None:
    a = big.tables["assessment_result"]
    a = a[_year(a["school_year"]) == START].assign(z=_z(a))
    demo = big.tables["student_demographics"]
    x = a.merge(demo, on="person_id")
    model = big.truth_summary["model"]
    gaps, growth, race_gaps = model["status_gaps"], model["growth_gaps"], model["race_status_gaps"]
    races = [r for r in race_gaps if r != "white"]
    truth = big.truth["student_truth"]
    for k, subject in enumerate(("math", "reading")):
        s = x[x["subject"] == subject]
        cols = [s[c].astype(float) for c in ("economically_disadvantaged", "english_learner")]
        cols.append(s["disability"].astype(float))
        cols += [(s["race_ethnicity"] == r).astype(float) for r in races]
        design = np.column_stack([np.ones(len(s)), *cols])
        coef = np.linalg.lstsq(design, s["z"].to_numpy(dtype=float), rcond=None)[0]
        # Partial gaps after one year: status gap plus one year of growth gap.
        for j, group in enumerate(("economically_disadvantaged", "english_learner", "disability")):
            expected = gaps[group][k] + growth[group][k]
            assert coef[1 + j] == pytest.approx(expected, abs=0.1), (subject, group, coef[1 + j])
        for r in ("hispanic", "black"):
            got = coef[4 + races.index(r)]
            assert got == pytest.approx(race_gaps[r][k], abs=0.12), (subject, r, got)
        # Marginal gap: observed vs the mean true status difference of the same students.
        tt = s.merge(truth[truth["subject"] == subject], on=["person_id", "subject"])
        ed = tt["economically_disadvantaged"].astype(bool)
        observed = tt.loc[ed, "z"].mean() - tt.loc[~ed, "z"].mean()
        true = (
            tt.loc[ed, "true_status"].astype(float).mean() - tt.loc[~ed, "true_status"].astype(float).mean()
        )
        assert observed < -0.3
        assert true < -0.3
        assert observed == pytest.approx(true, abs=0.08)


# --------------------------------------------------------------------------- ground truth
def test_truth_sizes(district: DistrictData) -> None:
    model = district.truth_summary["model"]
    te = district.truth["teacher_effects"]
    persistent = te.drop_duplicates(["teacher_id", "subject"])["persistent_effect"].astype(float)
    assert 0.1 <= persistent.std() <= 0.2
    assert model["teacher_effect_sd"] == 0.15
    drift = (te["effect"] - te["persistent_effect"]).astype(float)
    assert 0.02 < drift.std() < 0.12
    se = district.truth["school_effects"]["effect"].astype(float)
    assert 0.02 < se.std() < 0.2
    # Elementary homeroom teachers carry both subjects; middle/high math and ELA one each.
    t = district.tables
    enr = t["enrollment"][t["enrollment"]["role"] == "teacher"]
    link = enr.merge(t["section"], on="section_id").merge(
        t["organization"], left_on="school_id", right_on="org_id"
    )
    level = link.groupby("person_id")["school_level"].first()
    subjects = te.groupby("teacher_id")["subject"].nunique()
    elem = subjects[level.reindex(subjects.index) == "elementary"]
    assert len(elem) > 0
    assert (elem == 2).all()
    other = subjects[level.reindex(subjects.index) != "elementary"]
    assert len(other) > 0
    assert (other == 1).all()
    st = district.truth["student_truth"]
    assert 0.8 < st["true_status"].astype(float).std() < 1.2
    assert 0.03 < st["true_growth"].astype(float).std() < 0.12


def test_school_effects_recovered_by_mean_gains(big: DistrictData) -> None:
    g = _gains(big)
    per = g.groupby(["school_id", "subject"])["gain"].agg(["mean", "size"]).reset_index()
    assert per["size"].min() >= 100
    per = per.merge(big.truth["school_effects"], on=["school_id", "subject"])
    assert len(per) >= 12  # elementary and middle schools, both subjects
    rho = _spearman(per["mean"], per["effect"].astype(float))
    assert rho >= 0.7, rho


def test_teacher_effects_recovered_by_mean_gains(big: DistrictData) -> None:
    t = big.tables
    sections = t["section"].merge(t["course"][["course_id", "subject"]], on="course_id")
    sections = sections[sections["subject"].isin(["math", "ela"])].assign(
        subject=lambda x: x["subject"].map({"math": "math", "ela": "reading"}),
        school_year=lambda x: x["term_id"].str.slice(2, 6).astype(int),
    )
    enr = t["enrollment"]
    teacher = enr[enr["role"] == "teacher"][["section_id", "person_id"]].rename(
        columns={"person_id": "teacher_id"}
    )
    links = (
        enr[enr["role"] == "student"][["section_id", "person_id"]]
        .merge(sections[["section_id", "subject", "school_year"]], on="section_id")
        .merge(teacher, on="section_id")
        .drop_duplicates(["person_id", "subject", "school_year", "teacher_id"])
        .drop_duplicates(["person_id", "subject", "school_year"], keep=False)
    )
    g = _gains(big).merge(links, on=["person_id", "subject", "school_year"])
    per = g.groupby(["teacher_id", "subject", "school_year"])["gain"].agg(["mean", "size"])
    per = per[per["size"] >= 10].reset_index()
    te = big.truth["teacher_effects"]
    per = per.merge(
        te.assign(school_year=_year(te["school_year"])), on=["teacher_id", "subject", "school_year"]
    )
    assert len(per) > 100
    r = np.corrcoef(per["mean"], per["effect"].astype(float))[0, 1]
    assert r > 0.5, r


def test_truth_summary(district: DistrictData) -> None:
    s = district.truth_summary
    json.dumps(s, allow_nan=False)
    assert s["seed"] == 11
    assert s["n_students"] == 4000
    assert s["n_years"] == 4
    assert s["school_counts"] == {"elementary": 6, "middle": 2, "high": 2}
    r = s["realized"]
    assert 0.11 <= r["chronic_absence_rate"] <= 0.19
    assert 0.72 <= r["ninth_grade_on_track_rate"] <= 0.88
    assert 0.01 <= r["retention_rate"] <= 0.03
    assert len(r["by_year"]) == 4
    for key in ("status_gaps", "growth_gaps", "school_effect_sd", "teacher_drift_ar"):
        assert key in s["model"]


# --------------------------------------------------------------------------- API
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_students": 1000, "n_schools": 2}, "n_schools"),
        ({"n_students": 1000, "n_schools": 0}, "n_schools"),
        ({"n_students": 10}, "n_students"),
        ({"n_students": 1000, "n_schools": 60}, "too small"),
        ({"n_students": 1000, "n_years": 0}, "n_years"),
        ({"n_students": 1000, "seed": -1}, "seed"),
        ({"n_students": 1000, "start_year": 1800}, "start_year"),
        ({"n_students": 1000.5}, "integer"),
        ({"n_students": True}, "integer"),
        ({"n_students": "1000"}, "integer"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_district(**kwargs)  # type: ignore[arg-type]


def test_write_district_bad_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fmt"):
        write_district(tmp_path, 500, n_schools=3, fmt="json")  # type: ignore[arg-type]


def test_write_parquet_matches_generate(tmp_path: Path) -> None:
    messages: list[str] = []
    rows = write_district(tmp_path, 700, n_years=2, n_schools=4, seed=9, progress=messages.append)
    data = generate_district(700, n_years=2, n_schools=4, seed=9)
    assert messages
    for name in DISTRICT_TABLES:
        tab = pq.read_table(tmp_path / f"{name}.parquet")
        assert tab.schema.names == [c for c, _ in EXPECTED[name]]
        assert [f.type for f in tab.schema] == [t for _, t in EXPECTED[name]]
        nullable = [c.nullable for c in canonical.CANONICAL[name].columns]
        assert [f.nullable for f in tab.schema] == nullable, name
        assert rows[name] == tab.num_rows == len(data.tables[name])
        got = tab.to_pandas(types_mapper=pd.ArrowDtype)
        pd.testing.assert_frame_equal(got, data.tables[name])
    for name in TRUTH_TABLES:
        tab = pq.read_table(tmp_path / "ground_truth" / f"{name}.parquet")
        pd.testing.assert_frame_equal(tab.to_pandas(types_mapper=pd.ArrowDtype), data.truth[name])
    summary = json.loads((tmp_path / "ground_truth" / "ground_truth.json").read_text())
    assert summary == json.loads(json.dumps(data.truth_summary))
    # Byte-identical on a rerun.
    again = tmp_path / "again"
    write_district(again, 700, n_years=2, n_schools=4, seed=9)
    for name in ("attendance", "person", "assessment_result"):
        a = (tmp_path / f"{name}.parquet").read_bytes()
        assert a == (again / f"{name}.parquet").read_bytes()


def test_write_csv(tmp_path: Path) -> None:
    rows = write_district(tmp_path, 400, n_years=1, n_schools=3, seed=2, fmt="csv")
    for name in DISTRICT_TABLES:
        path = tmp_path / f"{name}.csv"
        header = path.read_text().splitlines()[0]
        assert header.replace('"', "").split(",") == [c for c, _ in EXPECTED[name]]
        assert sum(1 for _ in path.open()) - 1 == rows[name]
    assert (tmp_path / "ground_truth" / "student_truth.csv").exists()
    assert (tmp_path / "ground_truth" / "ground_truth.json").exists()


def test_state_percentiles_are_ranks_within_subject_and_grade() -> None:
    from edsight.synth.district import generate_district

    a = generate_district(3000, n_years=1, n_schools=4, seed=21).tables["assessment_result"]
    pct = a["percentile"].astype(float)
    assert pct.between(1, 99).all()
    for _, group in a.assign(p=pct).groupby(["subject", "grade_level"]):
        assert abs(group["p"].mean() - 50) < 3  # ranks are uniform within each group
        ordered = group.sort_values("scale_score")["p"].to_numpy()
        assert (np.diff(ordered) >= 0).all()  # monotone in the score
