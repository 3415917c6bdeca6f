"""Train / evaluate / score over the warehouse on generated Canvas courses and a generated district."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.features.labels import store_labels
from edsight.features.weekly import store_features
from edsight.models._pipeline_data import PROTECTED, ModelFrame
from edsight.models._pipeline_eval import lead_time, school_baseline, time_splits
from edsight.models.pipeline import evaluate_model, score, train_model
from edsight.models.registry import load_model
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas
from edsight.synth.district import write_district

AS_OF = date(2024, 10, 5)  # the generated Canvas term starts 2024-08-15: week 7 is the last complete


def _warehouse(root: Path) -> Warehouse:
    wh = Warehouse(Settings(home=root / "home"))
    wh.init()
    wh.load_directory(root / "files")
    return wh


@pytest.fixture(scope="module")
def canvas(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    root = tmp_path_factory.mktemp("canvas")
    write_canvas(root / "files", 120, seed=11)
    wh = _warehouse(root)
    store_features(wh, kinds=("lms",))
    store_labels(wh, kinds=("lms",))
    return wh


@pytest.fixture(scope="module")
def district(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    root = tmp_path_factory.mktemp("district")
    write_district(root / "files", 2000, n_years=5, n_schools=10, seed=1)
    wh = _warehouse(root)
    store_features(wh, kinds=("k12",))
    store_labels(wh, kinds=("k12",))
    return wh


def _risk_rows(wh: Warehouse) -> pd.DataFrame:
    with wh.connect(read_only=True) as con:
        return con.sql("SELECT * FROM risk_score ORDER BY model_id, person_id, section_id").df()


def test_train_then_score_writes_probabilities_and_rescoring_is_idempotent(canvas: Warehouse) -> None:
    record = train_model(canvas, kind="lms", target="will_dropout", horizon=4, name="t-dropout")
    assert (record.path / "metadata.json").is_file()
    assert (record.path / "MODEL_CARD.md").is_file()
    meta = record.metadata
    assert meta["extra"]["kind"] == "lms"
    assert meta["extra"]["target"] == "will_dropout"
    assert meta["data_sha256"]
    assert meta["metrics"]["n_positive"] > 0
    n = score(canvas, as_of=AS_OF, kind="lms", models=["t-dropout"])
    with canvas.connect(read_only=True) as con:
        pairs = con.execute(
            "SELECT count(DISTINCT (person_id, section_id)) FROM weekly_features_lms"
        ).fetchone()
    assert pairs is not None
    assert n == pairs[0]
    first = _risk_rows(canvas)
    assert len(first) == n
    assert first["probability"].between(0, 1).all()
    assert (first["model_id"] == "t-dropout:1").all()
    assert (first["target"] == "will_dropout").all()
    assert (pd.to_datetime(first["as_of"]).dt.date == AS_OF).all()
    # Reasons for the rows anyone acts on: the top 10 % and every probability >= 0.5.
    explained = first[first["reasons"].notna()]
    cut = min(0.5, float(first["probability"].quantile(0.9)))
    assert set(explained.index) == set(first.index[first["probability"] >= cut])
    assert 0 < len(explained) < len(first)
    reasons = [json.loads(r) for r in explained["reasons"]]
    assert all(len(r) <= 3 for r in reasons)
    assert any(len(r) == 3 for r in reasons)
    assert {"code", "feature", "text"} <= set(reasons[0][0])
    assert not {r["feature"] for rs in reasons for r in rs} & set(PROTECTED)
    with canvas.connect(read_only=True) as con:
        latest = con.execute("SELECT count(*), count(DISTINCT model_id) FROM risk_score_latest").fetchall()
    assert latest == [(n, 1)]

    assert score(canvas, as_of=AS_OF, kind="lms", models=["t-dropout"]) == n
    again = _risk_rows(canvas)
    pd.testing.assert_frame_equal(first, again)

    # A new version scores next to the old one; the old rows stay as they were.
    train_model(canvas, kind="lms", target="will_dropout", horizon=4, name="t-dropout", seed=1)
    assert score(canvas, as_of=AS_OF, kind="lms", models=["t-dropout"]) == n
    both = _risk_rows(canvas)
    assert both["model_id"].value_counts().to_dict() == {"t-dropout:1": n, "t-dropout:2": n}
    pd.testing.assert_frame_equal(both[both["model_id"] == "t-dropout:1"].reset_index(drop=True), first)


def test_train_until_uses_only_outcomes_observed_by_then(canvas: Warehouse) -> None:
    until = date(2024, 10, 20)
    full = train_model(canvas, kind="lms", target="will_disengage", name="t-full", weeks=[2, 4, 6, 8])
    early = train_model(
        canvas, kind="lms", target="will_disengage", name="t-early", weeks=[2, 4, 6, 8], train_until=until
    )
    window = early.metadata["training_window"]
    assert window["train_until"] == until.isoformat()
    assert date.fromisoformat(window["outcomes_observed_by"]) <= until
    assert early.metadata["metrics"]["n_train"] < full.metadata["metrics"]["n_train"]
    assert early.metadata["data_sha256"] != full.metadata["data_sha256"]


def test_lms_single_term_evaluation_holds_out_students_and_reports_weeks(canvas: Warehouse) -> None:
    result = evaluate_model(canvas, kind="lms", target="will_fail_academically", folds=3)
    r = result["targets"]["will_fail_academically"]
    assert r["split"]["method"].startswith("StratifiedGroupKFold by person_id")
    assert set(r["by_week"]) >= {"4", "8", "12"}
    assert r["n"] == sum(r["by_week"][w]["n"] for w in ("4", "8", "12"))
    assert 0.7 < r["auc"] <= 1.0
    assert r["baseline"]["auc"] is not None
    assert r["gain"]["auc"] == pytest.approx(r["auc"] - r["baseline"]["auc"])
    assert {"5pct", "10pct", "20pct"} == set(r["top_k"])
    assert r["lead_time"]["n_reached"] > 0
    assert r["fairness"] == {}  # the Canvas generator records no demographics


@pytest.mark.slow
def test_k12_dropout_by_time_beats_chance_and_never_trains_on_test_years(district: Warehouse) -> None:
    result = evaluate_model(district, kind="k12", target=["dropout_1y", "dropout_2y"])
    for target in ("dropout_1y", "dropout_2y"):
        r = result["targets"][target]
        split = r["split"]
        assert split["method"].startswith("time")
        assert max(split["train_periods"]) < min(split["test_periods"])
        assert split["train_observed_until"] < split["test_start"]
        assert r["auc"] > 0.6, (target, r["auc"])
        assert r["n_positive"] > 0
        assert r["baseline"]["auc"] is not None
        assert {
            "sex",
            "race_ethnicity",
            "economically_disadvantaged",
            "english_learner",
            "disability",
        } <= set(r["fairness"])
        assert r["lead_time"]["n_reached"] > 0
    # Two-year outcomes of a year are seen only after the next year ends: one fewer training year.
    one, two = (result["targets"][t]["split"] for t in ("dropout_1y", "dropout_2y"))
    assert one["test_periods"] == [2025]
    assert one["train_periods"] == [2021, 2022, 2023, 2024]
    assert two["test_periods"] == [2024]
    assert two["train_periods"] == [2021, 2022]


@pytest.mark.slow
def test_k12_train_score_and_protected_attributes_are_never_inputs(district: Warehouse) -> None:
    record = train_model(district, kind="k12", target="dropout_1y", train_until=date(2024, 6, 30))
    model, _ = load_model(record.name, home=district.settings.home)
    assert not set(model.feature_names_in_) & {*PROTECTED, "person_id", "school_id", "school_year"}
    assert record.metadata["training_window"]["outcomes_observed_by"] <= "2024-06-30"
    n = score(district, as_of=date(2025, 11, 15), kind="k12")
    rows = _risk_rows(district)
    assert n == len(rows) > 100
    assert rows["section_id"].isna().all()
    assert rows["probability"].between(0, 1).all()
    assert rows["person_id"].is_unique


def test_time_split_excludes_outcomes_observed_after_the_test_year_starts() -> None:
    years = np.repeat([2020, 2021, 2022, 2023], 4)
    frame = pd.DataFrame(
        {
            "person_id": [f"p{i}" for i in range(16)],
            "school_year": years,
            "week": 10.0,
            "year_start": pd.to_datetime([f"{y}-08-20" for y in years]),
            # A two-year label of year Y is observed when year Y+1 ends.
            "observed_at": pd.to_datetime([f"{y + 2}-05-30" for y in years]),
            "y": [0, 1, 0, 0] * 4,
        }
    )
    (split,) = time_splits(ModelFrame("k12", "dropout_2y", frame, ["week"], 2))
    assert split.info["test_periods"] == [2023]
    # 2021's label is known in May 2023, before 2023 starts; 2022's only in May 2024.
    assert sorted(frame.iloc[split.train]["school_year"].unique()) == [2020, 2021]
    assert split.info["train_periods"] == [2020, 2021]


def test_time_split_by_term_and_its_errors() -> None:
    frame = pd.DataFrame(
        {
            "person_id": ["a", "b", "c", "d"] * 2,
            "term_id": ["T1"] * 4 + ["T2"] * 4,
            "term_start": pd.to_datetime(["2024-01-10"] * 4 + ["2024-08-20"] * 4),
            "observed_at": pd.to_datetime(["2024-03-01", "2024-04-01", "2024-05-01", "2024-09-01"] * 2),
            "week": 4.0,
            "y": [1, 0, 0, 1, 0, 1, 0, 0],
        }
    )
    (split,) = time_splits(ModelFrame("lms", "will_dropout", frame, ["week"], 4))
    assert split.info["test_periods"] == ["T2"]
    assert list(split.train) == [0, 1, 2]
    with pytest.raises(InvalidInput, match="only one outcome class"):
        time_splits(ModelFrame("lms", "will_dropout", frame.assign(y=[0, 0, 0, 1, 1, 0, 0, 0]), ["week"], 4))


def test_school_baseline_is_the_training_rate_of_the_school() -> None:
    train = pd.DataFrame({"school_id": ["A", "A", "A", "A", "B", "B"], "y": [1, 1, 0, 0, 0, 0]})
    test = pd.DataFrame({"school_id": ["B", "A", "C"], "y": [1, 1, 1]})
    np.testing.assert_allclose(school_baseline(train, test, "school_id"), [0.0, 0.5, 2 / 6])
    # Test outcomes never enter the baseline.
    np.testing.assert_allclose(
        school_baseline(train, test.assign(y=0), "school_id"), school_baseline(train, test, "school_id")
    )


def test_lead_time_counts_weeks_from_first_flag_to_the_outcome() -> None:
    k12 = pd.DataFrame(
        {
            "person_id": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
            "school_year": 2024,
            "week": [2, 4, 6] * 3,
            "week_end": pd.to_datetime(["2024-09-09", "2024-09-23", "2024-10-07"] * 3),
            "outcome_at": pd.to_datetime(["2024-10-21"] * 3 + ["2024-09-16"] * 3 + [None] * 3),
            "y": [1] * 6 + [0] * 3,
            # a: flagged from week 4 (4 weeks before); b: flagged only after it dropped out.
            "probability": [0.1, 0.8, 0.9, 0.1, 0.2, 0.9, 0.95, 0.95, 0.95],
        }
    )
    out = lead_time(k12, "k12", threshold=0.5)
    assert (out["n_reached"], out["n_flagged_before"]) == (2, 1)
    assert out["median_weeks"] == pytest.approx(4.0)
    lms = pd.DataFrame(
        {
            "person_id": ["a"] * 4,
            "section_id": "s",
            "week": [1, 2, 3, 4],
            "y": [0, 0, 1, 1],
            "probability": [0.1, 0.7, 0.9, 0.9],
        }
    )
    out = lead_time(lms, "lms", threshold=0.5)
    assert (out["n_reached"], out["n_flagged_before"], out["max_weeks"]) == (1, 1, 1.0)


def test_bad_input_is_named(canvas: Warehouse, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown target 'dropout_1y' for kind 'lms'"):
        train_model(canvas, kind="lms", target="dropout_1y")
    with pytest.raises(InvalidInput, match="unknown kind"):
        evaluate_model(canvas, kind="college")
    empty = Warehouse(Settings(home=tmp_path / "empty"))
    empty.init()
    with pytest.raises(InvalidInput, match="edsight features build"):
        train_model(empty, kind="k12", target="dropout_1y")
    with pytest.raises(InvalidInput, match="no trained k12 models"):
        score(canvas, as_of=AS_OF, kind="k12")


def test_training_rows_are_capped_by_whole_students(canvas: Warehouse) -> None:
    record = train_model(canvas, kind="lms", target="will_dropout", name="t-capped", max_rows=1500)
    metrics = record.metadata["metrics"]
    assert metrics["n_available"] > 1500
    assert 0 < metrics["n_train"] <= 1500


def test_scoring_in_student_shares_gives_the_same_probabilities(
    canvas: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edsight.models import _pipeline_score

    train_model(canvas, kind="lms", target="will_dropout", name="t-shares")
    whole = score(canvas, as_of=AS_OF, kind="lms", models=["t-shares"])
    one = _risk_rows(canvas)
    one = one[one["model_id"] == "t-shares:1"].sort_values(["person_id", "section_id"]).reset_index(drop=True)
    monkeypatch.setattr(_pipeline_score, "SCORE_BATCH_FEATURE_ROWS", 500)  # many shares
    assert score(canvas, as_of=AS_OF, kind="lms", models=["t-shares"]) == whole
    many = _risk_rows(canvas)
    many = (
        many[many["model_id"] == "t-shares:1"].sort_values(["person_id", "section_id"]).reset_index(drop=True)
    )
    pd.testing.assert_series_equal(one["probability"], many["probability"])
    assert (one["person_id"] == many["person_id"]).all()
