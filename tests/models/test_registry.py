"""Registry: round trip without pickle, versioning, and clear errors on tampered or missing files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edsight.errors import InvalidInput
from edsight.models.registry import data_hash, list_models, load_model, save_model
from edsight.models.risk import fit_risk_model


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    school = rng.choice(["a", "b", "c"], size=n)
    y = rng.random(n) < 1 / (1 + np.exp(-(2 * x + (school == "b"))))
    x[:20] = np.nan
    return pd.DataFrame(
        {"x": x, "school": school, "sex": rng.choice(["F", "M"], n), "y": np.where(y, "left", "stayed")}
    )


@pytest.mark.parametrize("learner", ["lightgbm", "logistic"])
def test_round_trip_gives_identical_probabilities(tmp_path: Path, learner: str) -> None:
    frame = _frame()
    model = fit_risk_model(
        frame,
        target="y",
        positive="left",
        group_cols=["sex"],
        learner=learner,
        model_params={"n_estimators": 40} if learner == "lightgbm" else None,
    )
    rec = save_model(
        model,
        name="dropout",
        home=tmp_path,
        metrics={"auc": 0.8},
        training_window={"start": "2023-08-01", "end": "2024-06-30"},
        data_sha256=data_hash(frame),
    )
    assert rec.version == "1"
    files = {p.name for p in rec.path.iterdir()}
    assert files == {"metadata.json", "model.txt" if learner == "lightgbm" else "coefficients.json"}
    loaded, meta = load_model("dropout", home=tmp_path)
    assert meta.metadata["features"] == ["x", "school"]  # protected column stayed out
    assert meta.metadata["data_sha256"] == data_hash(frame)
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame), rtol=1e-9, atol=1e-12)
    assert save_model(model, name="dropout", home=tmp_path).version == "2"
    assert list_models(tmp_path)["version"].tolist() == ["1", "2"]


def test_tampered_and_missing_files_fail_clearly(tmp_path: Path) -> None:
    frame = _frame()
    model = fit_risk_model(frame, target="y", positive="left", learner="logistic")
    rec = save_model(model, name="m", home=tmp_path)
    coef = rec.path / "coefficients.json"
    payload = json.loads(coef.read_text())
    payload["intercept"] += 1.0
    coef.write_text(json.dumps(payload))
    with pytest.raises(InvalidInput, match="checksum"):
        load_model("m", home=tmp_path)
    coef.unlink()
    with pytest.raises(InvalidInput, match="missing"):
        load_model("m", home=tmp_path)
    with pytest.raises(InvalidInput, match="no saved model"):
        load_model("other", home=tmp_path)
    with pytest.raises(InvalidInput, match="no version"):
        load_model("m", home=tmp_path, version=7)
    with pytest.raises(InvalidInput, match="model name"):
        save_model(model, name="../escape", home=tmp_path)
