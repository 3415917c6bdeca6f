"""Explanations: SHAP additivity and references, plain-language reason codes, importance, plots."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edsight.errors import InvalidInput
from edsight.models._explain_catalogue import IDENTIFIERS
from edsight.models.explain import (
    BASE_VALUE,
    CATALOGUE,
    OTHER_CODE,
    global_importance,
    raw_margin,
    reason_codes,
    reason_table,
    shap_values,
)
from edsight.models.explain_plots import plot_importance, plot_summary, plot_waterfall
from edsight.models.risk import RiskModel, fit_risk_model
from edsight.schema import CANONICAL

DOCS = Path(__file__).parents[2] / "docs" / "explain.md"


def lms_panel(n: int = 60, weeks: int = 8, seed: int = 0) -> pd.DataFrame:
    """Weekly LMS-like rows for ``n`` students; failing depends on grade, missing work and activity."""
    rng = np.random.default_rng(seed)
    size = n * weeks
    engaged = np.repeat(rng.uniform(0, 1, n), weeks)
    week = np.tile(np.arange(1, weeks + 1), n)
    due = 2 * week
    missing = rng.binomial(due, 0.5 * (1 - engaged))
    late = rng.binomial(due - missing, 0.2)
    grade = np.clip(0.4 + 0.5 * engaged + rng.normal(0, 0.06, size), 0, 1)
    grade[(week == 1) & (rng.uniform(size=size) < 0.3)] = np.nan  # no graded work yet
    frame = pd.DataFrame(
        {
            "person_id": np.repeat([f"p{i:03d}" for i in range(n)], weeks),
            "section_id": "s1",
            "week": week.astype("int16"),
            "page_views": rng.poisson(5 + 40 * engaged),
            "participations": rng.poisson(1 + 6 * engaged),
            "assignments_due": due,
            "assignments_missing": missing,
            "assignments_late": late,
            "current_grade": grade,
            "days_since_last_activity": rng.exponential(3 + 10 * (1 - engaged)),
            "program": rng.choice(["arts", "science", "trades", "rare"], size, p=[0.45, 0.35, 0.19, 0.01]),
            "gender": rng.choice(["F", "M"], size),
        }
    )
    frame["fail"] = (np.nan_to_num(grade, nan=0.6) + rng.normal(0, 0.05, size) < 0.62).astype(int)
    return frame


def fit(frame: pd.DataFrame, learner: str) -> RiskModel:
    return fit_risk_model(
        frame,
        target="fail",
        positive=1,
        id_col="person_id",
        group_cols=["gender"],
        drop=["section_id", "week"],
        learner=learner,  # type: ignore[arg-type]
        calibration="none",
        model_params={"n_estimators": 40} if learner == "lightgbm" else None,
    )


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return lms_panel()


@pytest.fixture(scope="module", params=["lightgbm", "logistic"])
def fitted(request: pytest.FixtureRequest, panel: pd.DataFrame) -> tuple[RiskModel, pd.DataFrame]:
    model = fit(panel, request.param)
    return model, shap_values(model, panel)


# -- SHAP values ---------------------------------------------------------------------------------


def test_base_plus_shap_is_the_raw_margin(
    fitted: tuple[RiskModel, pd.DataFrame], panel: pd.DataFrame
) -> None:
    model, sv = fitted
    assert list(sv.columns) == [*model.feature_names_in_, BASE_VALUE]
    assert "gender" not in sv.columns  # protected attribute stays out of the inputs
    margin = raw_margin(model, panel)
    np.testing.assert_allclose(sv.drop(columns=BASE_VALUE).sum(axis=1) + sv[BASE_VALUE], margin, atol=1e-9)
    # the margin is the model's own uncalibrated score on the log-odds scale
    np.testing.assert_allclose(1 / (1 + np.exp(-margin)), model._raw(model.state_, panel), atol=1e-9)
    assert sv[BASE_VALUE].nunique() == 1
    assert sv.index.equals(panel.index)


def test_logistic_one_hot_and_missing_indicator_sum_to_their_column(panel: pd.DataFrame) -> None:
    model = fit(panel, "logistic")
    sv = shap_values(model, panel)
    enc = model.state_["encoder"]
    names = enc.feature_names_out_
    assert "program=other" in names
    assert "current_grade__missing" in names
    # interventional linear SHAP by hand: coef * (x - mean), then summed by name prefix
    matrix = enc.transform(panel[model.feature_names_in_])
    phi = model.state_["coef"] * (matrix - matrix.mean(axis=0))
    onehot = [i for i, n in enumerate(names) if n.startswith("program=")]
    grade = [names.index("current_grade"), names.index("current_grade__missing")]
    np.testing.assert_allclose(sv["program"], phi[:, onehot].sum(axis=1), atol=1e-9)
    np.testing.assert_allclose(sv["current_grade"], phi[:, grade].sum(axis=1), atol=1e-9)
    expected_base = model.state_["intercept"] + matrix.mean(axis=0) @ model.state_["coef"]
    assert sv[BASE_VALUE].iloc[0] == pytest.approx(expected_base)


def test_logistic_background_moves_the_reference_point(panel: pd.DataFrame) -> None:
    model = fit(panel, "logistic")
    scored = panel[panel["week"] == 8]
    sv = shap_values(model, scored, background=panel)
    enc = model.state_["encoder"]
    mean = enc.transform(panel[model.feature_names_in_]).mean(axis=0)
    assert sv[BASE_VALUE].iloc[0] == pytest.approx(model.state_["intercept"] + mean @ model.state_["coef"])
    np.testing.assert_allclose(
        sv.drop(columns=BASE_VALUE).sum(axis=1) + sv[BASE_VALUE], raw_margin(model, scored), atol=1e-9
    )


@pytest.mark.filterwarnings("ignore:LightGBM binary classifier:UserWarning")
def test_lightgbm_values_equal_shap_tree_explainer(panel: pd.DataFrame) -> None:
    import shap

    model = fit(panel, "lightgbm")
    ours = shap_values(model, panel)
    matrix = model.state_["encoder"].transform(panel[model.feature_names_in_])
    explainer = shap.TreeExplainer(model.state_["booster"])
    reference = np.asarray(explainer.shap_values(matrix))
    np.testing.assert_allclose(ours.drop(columns=BASE_VALUE).to_numpy(), reference, atol=1e-9)
    assert ours[BASE_VALUE].iloc[0] == pytest.approx(float(np.ravel(explainer.expected_value)[0]))


def test_shap_values_reject_bad_input(panel: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput, match="fitted"):
        shap_values(RiskModel(), panel)
    model = fit(panel, "lightgbm")
    with pytest.raises(InvalidInput, match="current_grade"):
        shap_values(model, panel.drop(columns="current_grade"))


# -- reason codes --------------------------------------------------------------------------------


def _hand(features: pd.DataFrame, shap: dict[str, list[float]]) -> pd.DataFrame:
    sv = pd.DataFrame(shap, index=features.index)
    sv[BASE_VALUE] = -1.0
    return sv


def test_lms_reason_texts_quote_the_actual_values() -> None:
    features = pd.DataFrame(
        {
            "person_id": ["a", "a", "b", "c"],
            "section_id": "s1",
            "week": [4, 6, 6, 6],
            "assignments_missing": [1, 3, 0, 1],
            "assignments_due": [6, 10, 10, 10],
            "days_since_last_activity": [1.0, 12.2, 2.0, np.nan],
            "current_grade": [0.7, 0.54, np.nan, 0.9],
            "page_views": [30, 4, 12, 50],
            "page_views_vs_mean": [0.0, -20.0, 1.0, 3.0],
        }
    )
    sv = _hand(
        features,
        {
            "assignments_missing": [0.1, 0.9, -0.2, 0.01],
            "days_since_last_activity": [-0.1, 0.5, 0.0, 0.3],
            "current_grade": [0.0, 0.7, 0.4, -0.5],
            "page_views": [0.0, 0.2, 0.0, 0.0],
        },
    )
    reasons = reason_codes(sv, features, top=3)
    b = reasons[1]
    assert [r["text"] for r in b] == [
        "3 missing assignments so far (2 new in the last 2 weeks)",
        "current grade 54%",
        "no course activity for 12 days",
    ]
    assert [r["code"] for r in b] == ["MISSING_WORK", "GRADE_LOW", "INACTIVITY"]
    assert [r["value"] for r in b] == [3, 0.54, 12.2]
    assert reasons[2] == [
        {
            "code": "NO_GRADED_WORK",
            "feature": "current_grade",
            "text": "no graded work yet",
            "value": None,
            "shap": 0.4,
        }
    ]
    assert [r["text"] for r in reasons[3]] == [
        "no course activity recorded yet",
        "1 missing assignment so far",
    ]
    top4 = reason_codes(sv, features, top=4)[1]
    assert top4[-1]["text"] == "4 page views this week (average 24 a week before)"


def test_k12_reason_texts_and_attendance_drop() -> None:
    weeks = pd.DataFrame(
        {
            "person_id": ["k1", "k1", "k2"],
            "school_year": [2024, 2024, 2024],
            "week": [6, 10, 10],
            "attendance_rate": [0.95, 0.82, 0.97],
            "days_absent": [1, 8, 1],
            "days_enrolled": [25, 45, 45],
            "core_f_count": [0, 2, 1],
            "chronic_absence": [False, True, False],
            "on_track_grade9": [None, False, True],
            "credits_earned": [0.0, 3.5, 6.0],
        }
    )
    current = weeks[weeks["week"] == 10].reset_index(drop=True)
    sv = _hand(
        current,
        {
            "attendance_rate": [0.9, 0.2],
            "core_f_count": [0.5, 0.6],
            "chronic_absence": [0.3, -0.1],
            "on_track_grade9": [0.1, 0.05],
        },
    )
    reasons = reason_codes(sv, current, top=4, history=weeks)
    assert [(r["code"], r["text"]) for r in reasons[0]] == [
        ("ATTENDANCE_DROP", "attendance fell from 95% to 82% over 4 weeks"),
        ("COURSE_FAILURE", "2 core-course Fs this year"),
        ("CHRONIC_ABSENCE", "chronically absent: 8 of 45 days missed (10% or more)"),
        ("OFF_TRACK", "off track in 9th grade: 3.5 credits and 2 core-course Fs"),
    ]
    assert reasons[0][0]["value"] == 0.82
    assert reasons[0][2]["value"] is True
    # no earlier week for k2: its attendance reason has no trend and keeps the plain code
    assert reasons[1][:2] == [
        {
            "code": "COURSE_FAILURE",
            "feature": "core_f_count",
            "text": "1 core-course F this year",
            "value": 1,
            "shap": 0.6,
        },
        {
            "code": "ATTENDANCE_LOW",
            "feature": "attendance_rate",
            "text": "attendance 97% this year so far",
            "value": 0.97,
            "shap": 0.2,
        },
    ]


def test_unknown_features_use_the_generic_fallback() -> None:
    features = pd.DataFrame({"gpa_points": [3.5, 1.0, 2.0, 2.0], "track": ["x", "y", "z", None]})
    sv = _hand(features, {"gpa_points": [0.4, 0.4, 0.4, 0.0], "track": [0.1, 0.0, 0.0, 0.2]})
    reasons = reason_codes(sv, features)
    assert [r["text"] for r in reasons[0]] == ["gpa_points = 3.5 (higher than typical)", "track = x"]
    assert reasons[1][0]["text"] == "gpa_points = 1 (lower than typical)"
    assert reasons[2][0]["text"] == "gpa_points = 2 (typical)"
    assert reasons[3] == [
        {"code": OTHER_CODE, "feature": "track", "text": "track = not recorded", "value": None, "shap": 0.2}
    ]
    assert {r["code"] for rs in reasons for r in rs} == {OTHER_CODE}


def test_only_risk_raising_features_appear_largest_first(
    fitted: tuple[RiskModel, pd.DataFrame], panel: pd.DataFrame
) -> None:
    _, sv = fitted
    reasons = reason_codes(sv, panel, top=3)
    assert len(reasons) == len(panel)
    for i, row in enumerate(reasons):
        shaps = [r["shap"] for r in row]
        assert all(s > 0 for s in shaps)
        assert shaps == sorted(shaps, reverse=True)
        for r in row:
            assert r["shap"] == pytest.approx(sv[r["feature"]].iloc[i], abs=1e-6)
        positive = sv.drop(columns=BASE_VALUE).iloc[i]
        assert len(row) == min(3, int((positive > 0).sum()))
    # a row where everything lowers risk gets no reasons at all
    low = sv.copy()
    low.loc[:, model_cols(sv)] = -np.abs(low[model_cols(sv)])
    assert reason_codes(low.head(5), panel.head(5)) == [[], [], [], [], []]


def model_cols(sv: pd.DataFrame) -> list[str]:
    return [c for c in sv.columns if c != BASE_VALUE]


def test_order_is_deterministic_ties_follow_model_columns_and_one_reason_per_code() -> None:
    features = pd.DataFrame(
        {
            "assignments_missing": [2],
            "missing_rate": [0.5],
            "assignments_due": [4],
            "page_views": [3],
            "week": [3],
        }
    )
    sv = _hand(features, {"page_views": [0.3], "assignments_missing": [0.3], "missing_rate": [0.5]})
    first = reason_codes(sv, features)
    assert first == reason_codes(sv, features)
    # missing_rate and assignments_missing share MISSING_WORK: only the larger one is kept
    assert [r["feature"] for r in first[0]] == ["missing_rate", "page_views"]
    sv2 = _hand(features, {"page_views": [0.3], "assignments_missing": [0.3]})
    assert [r["feature"] for r in reason_codes(sv2, features)[0]] == ["page_views", "assignments_missing"]


def test_reason_rows_follow_their_rows_when_shuffled(
    fitted: tuple[RiskModel, pd.DataFrame], panel: pd.DataFrame
) -> None:
    _, sv = fitted
    order = np.random.default_rng(3).permutation(len(panel))
    original = reason_codes(sv, panel)
    shuffled = reason_codes(sv.iloc[order], panel.iloc[order])
    assert shuffled == [original[i] for i in order]


def test_reasons_fit_the_risk_score_json_column(
    fitted: tuple[RiskModel, pd.DataFrame], panel: pd.DataFrame
) -> None:
    reasons_column = {c.name: c for c in CANONICAL["risk_score"].columns}["reasons"]
    assert reasons_column.dtype == "json"
    assert reasons_column.nullable
    _, sv = fitted
    for row in reason_codes(sv, panel)[:50]:
        text = json.dumps(row, allow_nan=False)
        assert json.loads(text) == row
        for r in row:
            assert set(r) == {"code", "feature", "text", "value", "shap"}
            assert r["text"]
            assert "nan" not in r["text"]
            assert "unknown" not in r["text"]


def test_reason_table_keeps_identifiers(fitted: tuple[RiskModel, pd.DataFrame], panel: pd.DataFrame) -> None:
    _, sv = fitted
    table = reason_table(sv, panel, top=2)
    assert list(table.columns) == [
        "row",
        "person_id",
        "section_id",
        "week",
        "rank",
        "feature",
        "code",
        "text",
        "value",
        "shap",
    ]
    assert (table["person_id"].to_numpy() == panel["person_id"].to_numpy()[table["row"]]).all()
    assert table["rank"].max() <= 2
    with pytest.raises(InvalidInput, match="rows"):
        reason_table(sv.head(3), panel)
    with pytest.raises(InvalidInput, match="top"):
        reason_table(sv, panel, top=0)


def test_catalogue_covers_every_weekly_feature_column_and_renders_edge_values() -> None:
    for table in ("weekly_features_lms", "weekly_features_k12"):
        columns = {c.name for c in CANONICAL[table].columns}
        uncovered = columns - set(CATALOGUE) - IDENTIFIERS
        assert not uncovered, f"{table}: no reason template for {sorted(uncovered)}"
    ctx = pd.DataFrame({name: [np.nan, 0, 1, 7.25] for name in CATALOGUE})
    ctx["school_id"] = [None, "s1", "s2", "s3"]
    for name, template in CATALOGUE.items():
        text, code = template.render(ctx, name)
        assert len(text) == len(ctx) == len(code)
        assert all(isinstance(t, str) and t for t in text), name
        assert set(code) <= set(template.codes), name


def test_docs_list_every_code() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    for template in CATALOGUE.values():
        assert f"`{template.feature}`" in doc, template.feature
        for code in template.codes:
            assert code in doc, code


# -- importance and plots --------------------------------------------------------------------------


def test_global_importance_is_mean_abs_sorted(fitted: tuple[RiskModel, pd.DataFrame]) -> None:
    _, sv = fitted
    imp = global_importance(sv)
    assert BASE_VALUE not in set(imp["feature"])
    assert imp["mean_abs_shap"].is_monotonic_decreasing
    top = imp.iloc[0]
    assert top["mean_abs_shap"] == pytest.approx(sv[top["feature"]].abs().mean())
    assert imp["share"].sum() == pytest.approx(1.0)
    assert imp["feature"].iloc[0] == "current_grade"


def test_plots_write_png_and_svg(
    fitted: tuple[RiskModel, pd.DataFrame], panel: pd.DataFrame, tmp_path: Path
) -> None:
    _, sv = fitted
    png = plot_summary(sv, panel, tmp_path / "summary.png", max_features=6)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = plot_importance(global_importance(sv), tmp_path / "sub" / "importance.svg")
    assert ET.parse(svg).getroot().tag.endswith("svg")
    wf = plot_waterfall(sv, panel, tmp_path / "waterfall.svg", row=5, max_features=4)
    root = ET.parse(wf).getroot()
    assert root.tag.endswith("svg")
    assert wf.stat().st_size > 1000
    with pytest.raises(InvalidInput, match=r"png or \.svg"):
        plot_importance(sv, tmp_path / "bad.pdf")
    with pytest.raises(InvalidInput, match="outside"):
        plot_waterfall(sv, panel, tmp_path / "w.png", row=len(sv))
