"""Look-ahead labels: the seed's LMS rules (equal to the generator's) and K-12 outcomes."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.features.labels import (
    LMS_TARGETS,
    build_labels,
    lms_labels_from_features,
    lms_labels_sql,
    store_labels,
)
from edsight.features.weekly import build_lms_features, store_features
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import generate_canvas, label_training_rows, write_canvas
from edsight.synth.district import write_district


@pytest.fixture(scope="module")
def canvas(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    root = tmp_path_factory.mktemp("canvas")
    write_canvas(root / "files", 200, seed=5)
    wh = Warehouse(Settings(home=root / "home"))
    wh.init()
    wh.load_directory(root / "files")
    return wh


def with_seed_keys(wh: Warehouse, frame: pd.DataFrame) -> pd.DataFrame:
    with wh.connect(read_only=True) as con:
        ids = con.sql("SELECT entity, source_id, edsight_id FROM id_map").df()
    person = ids[ids.entity == "person"].set_index("edsight_id").source_id
    section = ids[ids.entity == "section"].set_index("edsight_id").source_id
    out = frame.assign(
        student_id=frame.person_id.map(person).astype("int64"), course_id=frame.section_id.map(section)
    )
    return out.rename(columns={"week": "prediction_week"})


def test_lms_labels_equal_generator_training_data(canvas: Warehouse) -> None:
    seed = generate_canvas(200, seed=5)["training_data"]
    ours = with_seed_keys(canvas, build_labels(canvas))
    assert (ours.horizon_weeks == 4).all()
    assert ours.prediction_week.max() == 12
    m = seed.merge(
        ours,
        on=["student_id", "course_id", "prediction_week"],
        suffixes=("_seed", ""),
        validate="1:1",
        how="outer",
        indicator=True,
    )
    assert (m["_merge"] == "both").all(), m["_merge"].value_counts()
    for name in LMS_TARGETS:
        np.testing.assert_array_equal(m[name].to_numpy(bool), m[f"{name}_seed"].to_numpy(bool), err_msg=name)
        assert 0 < m[name].sum() < len(m), name  # every target has both classes here


def test_other_horizons_match_label_training_rows(canvas: Warehouse) -> None:
    analytics = generate_canvas(200, seed=5)["canvas_analytics"]
    for h in (1, 6):
        expected = label_training_rows(analytics, horizon=h)
        ours = with_seed_keys(canvas, build_labels(canvas, horizon=h))
        m = expected.merge(
            ours, on=["student_id", "course_id", "prediction_week"], suffixes=("_seed", ""), validate="1:1"
        )
        assert len(m) == len(expected) == len(ours)
        for name in LMS_TARGETS:
            assert (m[name] == m[f"{name}_seed"]).all(), (h, name)


def test_labels_need_every_future_week_and_validate_input() -> None:
    f = pd.DataFrame(
        {
            "person_id": ["p"] * 5,
            "section_id": ["s"] * 5,
            "week": [1, 2, 3, 5, 6],
            "current_grade": [None, 0.5, 0.3, None, 0.2],
            "page_views": [1, 2, 3, 4, 5],
            "participations": [0, 0, 0, 9, 9],
            "assignments_missing": [0, 3, 3, 3, 3],
        }
    )
    out = lms_labels_from_features(f, horizon=1)
    assert out.week.tolist() == [1, 2, 5]  # week 3 lacks week 4; week 6 is last
    assert out.will_fail_academically.tolist() == [True, True, True]
    assert out.will_dropout.tolist() == [False, True, False]  # 5 page views is not < 5
    assert out.will_disengage.tolist() == [True, True, False]
    assert out.will_miss_assignments.tolist() == [True, True, True]
    two = lms_labels_from_features(f, horizon=2)
    assert two.week.tolist() == [1]
    with pytest.raises(InvalidInput):
        lms_labels_from_features(f, horizon=0)
    with pytest.raises(InvalidInput):
        lms_labels_from_features(f.drop(columns="page_views"))
    with pytest.raises(InvalidInput):
        lms_labels_from_features(pd.concat([f, f]))


def test_store_labels_is_idempotent(canvas: Warehouse) -> None:
    store_features(canvas, kinds=("lms",))
    first = store_labels(canvas, kinds=("lms",))
    again = store_labels(canvas, kinds=("lms",))
    assert first == again
    assert first["labels_lms"] == len(build_labels(canvas))
    stored = canvas.frames(["labels_lms"])["labels_lms"]
    assert stored.will_dropout.sum() == build_labels(canvas).will_dropout.sum()


def test_labels_from_the_stored_table_equal_the_frame_definition(canvas: Warehouse) -> None:
    """The SQL over weekly_features_lms gives the labels of lms_labels_from_features."""
    store_features(canvas, kinds=("lms",))
    features = build_lms_features(canvas)
    for h in (1, 4, 7):
        expected = lms_labels_from_features(features, horizon=h)
        stored = build_labels(canvas, horizon=h, stored=True)
        rebuilt = build_labels(canvas, horizon=h)
        pd.testing.assert_frame_equal(stored, expected, check_dtype=False)
        pd.testing.assert_frame_equal(rebuilt, expected, check_dtype=False)
        assert list(stored.dtypes) == list(rebuilt.dtypes)
    # gaps and null grades: the same edge cases as the frame definition, now in SQL
    con = duckdb.connect()
    frame = pd.DataFrame(
        {
            "person_id": ["p"] * 6 + ["q"] * 3,
            "section_id": ["s"] * 9,
            "week": [1, 2, 3, 5, 6, 7, 1, 2, 3],
            "current_grade": [None, 0.5, 0.3, None, 0.2, None, 0.6, 0.6, 0.6],
            "page_views": [1, 2, 3, 4, 5, 50, 0, 0, 0],
            "participations": [0, 0, 0, 9, 9, 0, 0, 0, 0],
            "assignments_missing": [0, 3, 3, 3, 3, 0, 9, 9, 9],
        }
    )
    con.execute("CREATE TABLE f AS SELECT * FROM frame")
    for h in (1, 2):
        got = con.sql(lms_labels_sql(h, "f") + " ORDER BY ALL").df()
        pd.testing.assert_frame_equal(got, lms_labels_from_features(frame, horizon=h), check_dtype=False)
    with pytest.raises(InvalidInput):
        lms_labels_sql(0)


# --- K-12 -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    root = tmp_path_factory.mktemp("district")
    write_district(root / "files", 400, n_years=3, n_schools=3, seed=5)
    wh = Warehouse(Settings(home=root / "home"))
    wh.init()
    wh.load_directory(root / "files")
    return wh


def test_k12_labels_follow_outcomes(district: Warehouse) -> None:
    labels = build_labels(district, kind="k12")
    frames = district.frames(["student_outcome", "school_enrollment"])
    outcome = frames["student_outcome"].set_index("person_id")
    assert not labels.person_id.map(outcome.outcome).eq("transferred_out").any()
    assert labels.duplicated(["person_id", "school_year"]).sum() == 0
    # the last year has no second year to observe
    last = labels.school_year.max()
    assert labels.loc[labels.school_year == last, "dropout_2y"].isna().all()
    assert labels.loc[labels.school_year < last, "dropout_2y"].notna().all()
    # recompute dropout_1y by hand: dropped out with a date inside that school year
    terms = district.frames(["term"])["term"]
    ends = terms[terms.term_type == "school_year"].set_index("school_year").end_date
    row = labels.join(outcome.drop(columns="cohort_year"), on="person_id")
    exp = (row.outcome == "dropped_out") & (
        pd.to_datetime(row.outcome_date) <= row.school_year.map(ends).map(pd.Timestamp)
    )
    assert (row.dropout_1y.astype(bool) == exp).all()
    assert exp.sum() > 0, (exp.sum(), row.dropout_1y.sum())
    both = row[row.dropout_2y.notna()]
    assert (both.dropout_2y.astype(bool) >= both.dropout_1y.astype(bool)).all()
    assert both.dropout_2y.sum() > both.dropout_1y.sum()
    # non-graduation is only defined once the cohort is due to graduate in the window
    due = row.cohort_year <= row.school_year
    assert row.non_graduation_1y.notna().eq(due).all()
    assert row.loc[due & (row.outcome == "graduated"), "non_graduation_1y"].eq(False).mean() > 0.5
    grads = row[due & (row.outcome == "still_enrolled")]
    assert grads.non_graduation_1y.astype(bool).all()
    with pytest.raises(InvalidInput):
        build_labels(district, kind="sis")  # type: ignore[arg-type]
    counts = store_labels(district, kinds=("k12",))
    assert counts == {"labels_k12": len(labels)}
