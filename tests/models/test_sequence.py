"""GRU sequence model: held-out skill, causality, calibration, safe save/load and bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.features.labels import store_labels
from edsight.features.weekly import store_features
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas

torch = pytest.importorskip("torch")

from edsight.models import _sequence_data as data  # noqa: E402
from edsight.models import sequence as seq  # noqa: E402
from edsight.models.sequence import (  # noqa: E402
    SequenceRiskModel,
    load_sequence_model,
    save_sequence_model,
)

Frames = tuple[pd.DataFrame, pd.DataFrame]
KEYS = ["person_id", "section_id", "week"]
EASY = "will_fail_academically"


@pytest.fixture(scope="module")
def lms(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    root = tmp_path_factory.mktemp("canvas")
    write_canvas(root / "files", 150, seed=11)
    wh = Warehouse(Settings(home=root / "home"))
    wh.init()
    wh.load_directory(root / "files")
    store_features(wh, kinds=("lms",))
    store_labels(wh, kinds=("lms",))
    with wh.connect(read_only=True) as con:
        features = con.sql("SELECT * FROM weekly_features_lms").df()
        labels = con.sql("SELECT * FROM labels_lms").df()
    return features, labels


@pytest.fixture(scope="module")
def split(lms: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    features, _ = lms
    people = np.sort(features["person_id"].unique())
    test = np.random.default_rng(3).choice(people, size=len(people) // 4, replace=False)
    held = features["person_id"].isin(test)
    return features[~held], features[held]


@pytest.fixture(scope="module")
def fitted(
    lms: tuple[pd.DataFrame, pd.DataFrame], split: tuple[pd.DataFrame, pd.DataFrame]
) -> SequenceRiskModel:
    return SequenceRiskModel(seed=0).fit(split[0], lms[1], target=EASY)


def test_held_out_auc_and_calibrated_range(
    fitted: SequenceRiskModel,
    lms: tuple[pd.DataFrame, pd.DataFrame],
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    test = split[1]
    proba = fitted.predict_proba(test)
    assert proba.shape == (len(test), 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    p = proba[:, 1]
    assert p.min() >= 0.0
    assert p.max() <= 1.0
    scored = test[KEYS].assign(p=p).merge(lms[1][[*KEYS, EASY]], on=KEYS)
    assert len(scored) > 500
    assert roc_auc_score(scored[EASY], scored["p"]) > 0.6
    # Isotonic calibration maps onto the held-out outcome rates: a step function of few levels.
    assert fitted.calibrator_["kind"] == "isotonic"
    assert len(np.unique(p)) < len(p) / 5
    log = fitted.training_log_
    assert log["n_held_out_sequences"] > 0
    assert log["best_epoch"] < log["epochs_run"]
    # Standardisation statistics come from the training rows.
    col = "page_views"
    i = fitted.scaler_.columns.index(col)
    assert fitted.scaler_.mean[i] == pytest.approx(split[0][col].mean())
    assert "current_grade__missing" in fitted.input_names_
    assert fitted.input_names_[-1] == "present"


def test_scores_do_not_depend_on_row_order(
    fitted: SequenceRiskModel, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    test = split[1].head(400)
    shuffled = test.sample(frac=1.0, random_state=1)
    a = fitted.predict_frame(test).set_index(KEYS)["probability"]
    b = fitted.predict_frame(shuffled).set_index(KEYS)["probability"]
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(week=st.integers(min_value=1, max_value=15), salt=st.integers(min_value=0, max_value=2**31 - 1))
def test_score_at_week_w_ignores_later_weeks(
    fitted: SequenceRiskModel, split: tuple[pd.DataFrame, pd.DataFrame], week: int, salt: int
) -> None:
    test = split[1].head(320).reset_index(drop=True)
    before = fitted._raw(test)
    rng = np.random.default_rng(salt)
    cols = fitted.feature_names_in_
    values = test[cols].to_numpy(dtype=float, na_value=np.nan)
    later = (test["week"] > week).to_numpy()
    noisy = values * rng.uniform(-3, 3, size=len(cols)) + rng.normal(0.0, 50.0, size=values.shape)
    noisy[rng.random(values.shape) < 0.2] = np.nan
    values[later] = noisy[later]
    changed = test.copy()
    changed[cols] = values
    after = fitted._raw(changed)
    early = ~later
    assert np.array_equal(before[early], after[early])
    # Cutting the future off (the live situation at week w) gives the same scores up to float
    # rounding: the padded width changes, and with it the order of some sums.
    cut = fitted._raw(test[early])
    np.testing.assert_allclose(before[early], cut, rtol=0, atol=1e-6)
    if later.any():
        assert not np.array_equal(before[~early], after[~early])


def test_save_load_round_trip_and_tamper_checks(
    fitted: SequenceRiskModel, split: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    test = split[1]
    folder = save_sequence_model(fitted, tmp_path / "gru")
    meta = json.loads((folder / seq.METADATA_FILE).read_text())
    assert meta["kind"] == "sequence_gru"
    assert meta["target"] == EASY
    assert meta["features"] == fitted.feature_names_in_
    loaded = load_sequence_model(folder)
    assert np.array_equal(loaded.predict_proba(test), fitted.predict_proba(test))
    assert loaded.params() == fitted.params()

    weights = folder / seq.WEIGHTS_FILE
    original = weights.read_bytes()
    weights.write_bytes(original[:-8] + b"\x00" * 8)
    with pytest.raises(InvalidInput, match="does not match its recorded checksum"):
        load_sequence_model(folder)

    # A weights file that pickles an arbitrary object is refused even with a valid checksum.
    torch.save({"gru.weight_ih_l0": Path("/etc/passwd")}, weights)
    meta["artifacts"][seq.WEIGHTS_FILE] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (folder / seq.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(InvalidInput, match="is not a tensor-only weights file"):
        load_sequence_model(folder)

    with pytest.raises(InvalidInput, match=r"metadata\.json is missing"):
        load_sequence_model(tmp_path / "nowhere")


def test_seeded_fit_is_deterministic_with_array_labels_and_platt(
    lms: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    features, labels = lms
    small = features[features["person_id"].isin(np.sort(features["person_id"].unique())[:60])]
    y = small[KEYS].merge(labels[[*KEYS, "will_disengage"]], on=KEYS, how="left")["will_disengage"]
    kwargs = {"epochs": 3, "hidden_size": 8, "calibration": "sigmoid", "seed": 4}
    a = SequenceRiskModel(**kwargs).fit(small, y.to_numpy())  # type: ignore[arg-type]
    b = SequenceRiskModel(**kwargs).fit(small, y.to_numpy())  # type: ignore[arg-type]
    assert a.target_ == "outcome"
    assert a.calibrator_["kind"] == "sigmoid"
    assert np.array_equal(a.predict_proba(small), b.predict_proba(small))
    c = SequenceRiskModel(**{**kwargs, "seed": 5}).fit(small, y.to_numpy())  # type: ignore[arg-type]
    assert not np.array_equal(a.predict_proba(small), c.predict_proba(small))


def test_bad_input_is_named(
    fitted: SequenceRiskModel,
    lms: tuple[pd.DataFrame, pd.DataFrame],
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    features, labels = lms
    small = features.head(200)
    with pytest.raises(InvalidInput) as err:
        SequenceRiskModel().fit(small.drop(columns=["week"]), labels, target=EASY)
    assert str(err.value) == data.ERR_KEYS.format(["week"])
    with pytest.raises(InvalidInput, match=r"unknown target 'will_graduate'; the labels frame has"):
        SequenceRiskModel().fit(small, labels, target="will_graduate")
    with pytest.raises(InvalidInput) as err:
        SequenceRiskModel().fit(small, labels)
    assert str(err.value) == seq.ERR_TARGET_NEEDED
    with pytest.raises(InvalidInput, match="labels lack the key columns"):
        SequenceRiskModel().fit(small, labels.drop(columns=["section_id"]), target=EASY)
    with pytest.raises(InvalidInput, match="y has 3 values but features have 200 rows"):
        SequenceRiskModel().fit(small, [0, 1, 0])
    with pytest.raises(InvalidInput, match="must hold only 0/1"):
        SequenceRiskModel().fit(small, np.full(len(small), 2.0))
    with pytest.raises(InvalidInput, match="hidden_size must be a positive integer, got 0"):
        SequenceRiskModel(hidden_size=0).fit(small, labels, target=EASY)
    with pytest.raises(InvalidInput, match="calibration must be one of"):
        SequenceRiskModel(calibration="beta").fit(small, labels, target=EASY)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"device '(cuda:7|tpu)' is not usable here"):
        SequenceRiskModel(device="cuda:7" if not torch.cuda.is_available() else "tpu").fit(
            small, labels, target=EASY
        )
    dup = pd.concat([small, small.head(1)])
    with pytest.raises(InvalidInput, match="1 duplicate"):
        SequenceRiskModel().fit(dup, labels, target=EASY)
    early = small.assign(week=small["week"].astype(int) - 1)
    with pytest.raises(InvalidInput, match="week must be a whole number from 1 to max_weeks=60; found 0"):
        fitted.predict_proba(early)
    with pytest.raises(InvalidInput, match="features lack the model's input columns: current_grade"):
        fitted.predict_proba(split[1].drop(columns=["current_grade"]))
    with pytest.raises(InvalidInput) as err:
        SequenceRiskModel().predict_proba(small)
    assert str(err.value) == seq.ERR_NOT_FITTED
