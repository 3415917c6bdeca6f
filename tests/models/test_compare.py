"""Learner comparison: three learners, one set of student-grouped folds, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.features.labels import store_labels
from edsight.features.weekly import store_features
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas

pytest.importorskip("torch")

from edsight.models.compare import (
    COMPARED_LEARNERS,
    SUMMARY_COLUMNS,
    compare_models,
    comparison_folds,
    comparison_markdown,
    out_of_fold_predictions,
    read_lms_training_data,
    summarise_comparison,
)

TARGET = "will_fail_academically"
FAST = {
    "sequence_params": {"epochs": 20, "hidden_size": 16},
    "lightgbm_params": {"n_estimators": 60},
}


@pytest.fixture(scope="module")
def lms(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    root = tmp_path_factory.mktemp("canvas")
    write_canvas(root / "files", 120, seed=21)
    wh = Warehouse(Settings(home=root / "home"))
    wh.init()
    wh.load_directory(root / "files")
    store_features(wh, kinds=("lms",))
    store_labels(wh, kinds=("lms",))
    return read_lms_training_data(wh)


def test_reading_needs_built_tables(warehouse: Warehouse, lms: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    with pytest.raises(InvalidInput, match=r"weekly_features_lms table is missing or empty; run `edsight"):
        read_lms_training_data(warehouse)
    features, labels = lms
    assert len(features) > len(labels) > 0
    assert features[["person_id", "section_id", "week"]].equals(
        features[["person_id", "section_id", "week"]].sort_values(["person_id", "section_id", "week"])
    )


@pytest.fixture(scope="module")
def oof(lms: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    features, labels = lms
    return out_of_fold_predictions(
        features,
        labels,
        targets=[TARGET],
        weeks=(8, 4),
        folds=3,
        seed=2,
        **FAST,  # type: ignore[arg-type]
    )


def test_every_learner_is_scored_on_the_same_grouped_folds(
    lms: tuple[pd.DataFrame, pd.DataFrame], oof: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    predictions, timings = oof
    assert set(predictions["learner"]) == set(COMPARED_LEARNERS)
    assert sorted(predictions["week"].unique()) == [4, 8]
    folds = comparison_folds(lms[1], TARGET, folds=3, seed=2)
    assert sorted(folds.unique()) == [0, 1, 2]
    rows = {}
    for learner, part in predictions.groupby("learner"):
        # Each student sits in exactly one fold, the one comparison_folds dealt them.
        per_person = part.groupby("person_id")["fold"].nunique()
        assert per_person.max() == 1
        got = part.drop_duplicates("person_id").set_index("person_id")["fold"].sort_index()
        pd.testing.assert_series_equal(got, folds.loc[got.index], check_names=False)
        rows[learner] = part[["person_id", "section_id", "week", "fold", "y_true"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(rows["gru"], rows["logistic"])
    pd.testing.assert_frame_equal(rows["gru"], rows["lightgbm"])
    # All labelled rows of the chosen weeks are scored once per learner.
    labelled = lms[1][lms[1]["week"].isin([4, 8])]
    assert len(rows["gru"]) == len(labelled)
    assert predictions["probability"].between(0.0, 1.0).all()
    assert set(timings.loc[timings["learner"] == "gru", "week"]) == {-1}
    assert len(timings) == 3 * (1 + 2 + 2)
    assert (timings["fit_seconds"] > 0).all()


def test_summary_and_markdown(oof: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    summary = summarise_comparison(*oof)
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert len(summary) == 2 * 3
    assert summary["learner"].tolist() == list(COMPARED_LEARNERS) * 2
    for _, part in summary.groupby("week"):
        assert part["n"].nunique() == 1
        assert part["n_positive"].nunique() == 1
    # Current grade already ranks next month's failing grades well for every learner.
    assert (summary["auc"] > 0.8).all()
    assert summary["brier"].between(0.0, 0.25).all()
    gru = summary[summary["learner"] == "gru"]["fit_seconds"]
    assert gru.nunique() == 1
    text = comparison_markdown(summary)
    assert text.count("\n| will_fail_academically |") == 6
    assert text.count("**") == 2 * 2
    for learner in COMPARED_LEARNERS:
        assert f"| {learner} |" in text


def test_compare_models_is_the_seeded_summary(
    lms: tuple[pd.DataFrame, pd.DataFrame], oof: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    features, labels = lms
    alone = compare_models(
        features, labels, targets=[TARGET], weeks=[4], folds=3, seed=2, learners=["logistic"]
    )
    full = summarise_comparison(*oof)
    expected = full[(full["learner"] == "logistic") & (full["week"] == 4)].reset_index(drop=True)
    figures = [c for c in SUMMARY_COLUMNS if c != "fit_seconds"]
    pd.testing.assert_frame_equal(alone[figures], expected[figures])


def test_bad_input_is_named(lms: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    features, labels = lms
    with pytest.raises(InvalidInput, match=r"learners must be some of .*'svm'"):
        out_of_fold_predictions(features, labels, targets=[TARGET], learners=["svm"])
    with pytest.raises(InvalidInput, match=r"no labelled rows of target 'will_fail_academically' at week 15"):
        out_of_fold_predictions(features, labels, targets=[TARGET], weeks=(4, 15), learners=["logistic"])
    with pytest.raises(InvalidInput, match=r"weeks must be a non-empty list"):
        out_of_fold_predictions(features, labels, targets=[TARGET], weeks=())
    with pytest.raises(InvalidInput, match=r"unknown target 'will_graduate'"):
        out_of_fold_predictions(features, labels, targets=["will_graduate"])
    with pytest.raises(InvalidInput, match=r"folds must be at least 2 and at most"):
        comparison_folds(labels, TARGET, folds=1)
    many = int(labels.loc[labels[TARGET], "person_id"].nunique()) + 1
    with pytest.raises(InvalidInput, match=rf"\({many - 1}\), got {many}"):
        comparison_folds(labels, TARGET, folds=many)
    with pytest.raises(InvalidInput, match="features lack the key columns"):
        out_of_fold_predictions(features.drop(columns=["section_id"]), labels, targets=[TARGET])
    assert np.isin(COMPARED_LEARNERS, ["logistic", "lightgbm", "gru"]).all()
