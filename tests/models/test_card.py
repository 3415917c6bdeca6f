"""Model cards: generated from the saved model's metadata, with suppression in the fairness table."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edsight.errors import InvalidInput
from edsight.models.card import model_card, model_card_html, write_model_card
from edsight.models.explain import global_importance, shap_values
from edsight.models.fairness import fairness_report
from edsight.models.registry import ModelRecord, data_hash, load_model, save_model
from edsight.models.risk import cross_validate, fit_risk_model


def student_frame(n: int = 300, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "person_id": [f"p{i}" for i in range(n)],
            "attendance_rate": rng.uniform(0.6, 1.0, n),
            "core_f_count": rng.poisson(0.5, n),
            "gpa": rng.normal(2.8, 0.6, n),
            # 'gender' has a group of 6 students: it must be suppressed in the card
            "gender": np.where(np.arange(n) < 6, "X", rng.choice(["F", "M"], n)),
        }
    )
    logit = (
        -4 * (frame["attendance_rate"] - 0.85) * 5 + 0.8 * frame["core_f_count"] - 1.2 * (frame["gpa"] - 2.8)
    )
    frame["dropout_1y"] = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit + 1.5))).astype(int)
    return frame


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelRecord, dict, pd.DataFrame, pd.DataFrame]:
    frame = student_frame()
    common = {
        "target": "dropout_1y",
        "positive": 1,
        "id_col": "person_id",
        "group_cols": ["gender"],
        "learner": "lightgbm",
        "calibration": "none",
        "model_params": {"n_estimators": 30},
    }
    cv = cross_validate(frame, folds=3, **common)  # type: ignore[arg-type]
    model = fit_risk_model(frame, **common)  # type: ignore[arg-type]
    record = save_model(
        model,
        name="dropout-k12",
        home=tmp_path_factory.mktemp("home"),
        metrics=cv,
        training_window={"from": "2021-08-15", "to": "2024-06-10"},
        data_sha256=data_hash(frame),
        extra={"horizon_weeks": 52, "feature_table": "weekly_features_k12", "excluded_protected": ["gender"]},
    )
    report = fairness_report(
        frame["dropout_1y"],
        model.predict_proba(frame)[:, 1],
        frame[["gender"]],
        n_boot=0,
        intersections=False,
    )
    importance = global_importance(shap_values(model, frame))
    return record, cv, report, importance


def test_card_is_generated_from_metadata(saved: tuple[ModelRecord, dict, pd.DataFrame, pd.DataFrame]) -> None:
    record, cv, report, importance = saved
    card = model_card(record, metrics=cv, fairness=report, importance=importance)
    assert card.startswith("# Model card: dropout-k12 (version 1)")
    assert record.metadata["data_sha256"] in card
    assert len(record.metadata["data_sha256"]) == 64
    for feature in ("attendance_rate", "core_f_count", "gpa"):
        assert f"`{feature}`" in card
    features_line = card.split("## Features used (3)")[1].split("##")[0]
    assert "gender" not in features_line
    assert "EXCLUDED from the model's inputs by default" in card
    assert "Excluded from the inputs and used for the audit only: `gender`" in card
    assert "Wisconsin" in card
    assert "within the next 52 weeks" in card
    assert "dropped out by the end of the school year" in card
    assert "StratifiedGroupKFold" in card
    assert f"| AUC | {cv['auc']:.3f}" in card
    assert "2021-08-15" in card
    assert "2024-06-10" in card
    assert "Calibration (reliability" in card
    top = importance["feature"].iloc[0]
    assert re.search(rf"\| 1 \| `{top}` \|", card)


def test_suppressed_groups_show_no_n(saved: tuple[ModelRecord, dict, pd.DataFrame, pd.DataFrame]) -> None:
    record, cv, report, _ = saved
    assert report.loc[report["group"] == "X", "suppressed"].item()
    card = model_card(record, metrics=cv, fairness=report)
    rows = [line for line in card.splitlines() if line.startswith("| gender |")]
    x_row = next(r for r in rows if r.startswith("| gender | X |"))
    assert "suppressed (n < 10)" in x_row
    assert not re.search(r"\d", x_row.replace("n < 10", ""))
    # complementary suppression: the smallest shown group hides its n, so X's n cannot be derived
    shown = report[~report["suppressed"].astype(bool)]
    smallest = shown.loc[shown["n"].astype(int).idxmin()]
    small_row = next(r for r in rows if r.startswith(f"| gender | {smallest['group']} |"))
    assert "suppressed (complementary)" in small_row
    assert f"| {int(smallest['n'])} |" not in small_row
    # the by_group dict of cross_validate gives the same suppression
    from_cv = model_card(record, metrics=cv, fairness=cv["by_group"])
    assert "| gender | X | suppressed (n < 10) |" in from_cv
    # a group under the limit is suppressed even when the caller did not mark it
    unmarked = report.assign(suppressed=False, n=report["n"].fillna(6))
    assert "| gender | X | suppressed (n < 10) |" in model_card(record, metrics=cv, fairness=unmarked)


def test_card_from_plain_metadata_and_baseline_gain(
    saved: tuple[ModelRecord, dict, pd.DataFrame, pd.DataFrame],
) -> None:
    record, cv, _, _ = saved
    baseline = {"name": "school-level dropout rate", "auc": cv["auc"] - 0.01, "brier": cv["brier"] + 0.01}
    card = model_card(dict(record.metadata), metrics=None, comparison=baseline)
    assert "## Gain over the baseline: school-level dropout rate" in card
    assert "+0.010" in card
    assert "the simpler baseline may serve as well" in card
    assert "No fairness audit was supplied" in card
    with pytest.raises(InvalidInput, match="ModelRecord or a mapping"):
        model_card(42)  # type: ignore[arg-type]


def test_included_groups_are_called_out() -> None:
    meta = {
        "name": "m",
        "version": "2",
        "features": ["gpa", "gender"],
        "extra": {"include_groups": True, "excluded_protected": ["gender"]},
    }
    card = model_card(meta, metrics={"auc": 0.8})
    assert "This model INCLUDES the protected attributes `gender`" in card


def test_horizon_unit_and_importance_come_from_metadata_extra() -> None:
    meta = {
        "name": "k12",
        "version": "1",
        "features": ["attendance_rate"],
        "extra": {
            "target": "non_graduation",
            "horizon": 2,
            "horizon_unit": "school_years",
            "importance": [{"feature": "attendance_rate", "mean_abs_shap": 0.41, "share": 1.0}],
        },
    }
    card = model_card(meta, metrics={})
    assert "| horizon | 2 school years |" in card
    assert "| 1 | `attendance_rate` | 0.410 | 1.00 |" in card


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_card_is_escaped_and_written_next_to_the_model(
    saved: tuple[ModelRecord, dict, pd.DataFrame, pd.DataFrame],
) -> None:
    record, cv, report, importance = saved
    page = model_card_html(record, metrics=cv, fairness=report, importance=importance)
    parser = _Collector()
    parser.feed(page)
    assert {"h1", "h2", "table", "code", "ul"} <= set(parser.tags)
    assert record.metadata["data_sha256"] in "".join(parser.text)
    hostile = model_card_html({"name": "<script>alert(1)</script>", "features": ["a<b"]}, metrics={})
    assert "<script>" not in hostile
    assert "&lt;script&gt;" in hostile
    md, html_path = write_model_card(record, metrics=cv, fairness=report, importance=importance)
    assert md.parent == html_path.parent == record.path
    assert md.read_text(encoding="utf-8") == model_card(
        record, metrics=cv, fairness=report, importance=importance
    )
    # extra files next to the model do not disturb loading it
    load_model(record.name, home=Path(record.path).parents[2])
