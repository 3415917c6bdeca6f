"""Why a student was flagged: SHAP values per feature, plain-language reason codes, global importance.

``shap_values`` explains the risk model's *raw margin* (log-odds before calibration). The
calibrators are monotone (isotonic is non-decreasing, Platt has a positive slope on a model
that ranks better than chance), so a feature that raises the margin raises the calibrated
probability too; the probabilities reported elsewhere stay the calibrated ones.

* LightGBM: LightGBM's own ``predict(pred_contrib=True)``, i.e. exact TreeSHAP with
  path-dependent perturbation (Lundberg et al. 2020). ``shap.TreeExplainer`` on a LightGBM
  booster calls this very method (shap 0.51, ``explainers/_tree.py``), so the values are
  identical (tested); calling it directly keeps categorical splits native and spares the
  scoring run shap's multi-second import.
* Logistic: ``shap.LinearExplainer`` with independent (interventional) masking around the
  mean of a background frame (the training rows when given, else the scored rows), i.e.
  ``coef * (x - mean)`` on the encoded columns.

Encoded columns (one-hot levels, missing indicators) are summed back to the column they came
from, so every value belongs to an *original* feature and ``base_value + sum = raw margin``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from edsight.errors import InvalidInput
from edsight.models._explain_catalogue import CATALOGUE, IDENTIFIERS, OTHER_CODE, render_other
from edsight.models._risk_encode import FeatureEncoder
from edsight.models._risk_model import RiskModel

log = logging.getLogger(__name__)

__all__ = [
    "BASE_VALUE",
    "CATALOGUE",
    "OTHER_CODE",
    "catalogue_table",
    "global_importance",
    "raw_margin",
    "reason_codes",
    "reason_table",
    "shap_values",
]

#: Column of :func:`shap_values` output holding the expected raw margin (log-odds).
BASE_VALUE = "base_value"

ERR_NOT_FITTED = "explanations need a fitted RiskModel (call fit or load_model first)"
ERR_COLUMNS = "the frame to explain lacks the model's input columns: {0}"
ERR_BASE_NAME = f"a model input is named {BASE_VALUE!r}, which clashes with the base-value column"
ERR_LENGTH = "shap_frame has {0} rows but feature_frame has {1}; they must describe the same rows in order"
ERR_NO_SHAP = "shap_frame has no feature columns (expected the output of shap_values)"
ERR_TOP = "top must be at least 1, got {0}"

# Keys that identify one student's series of weeks, in order of preference.
_SERIES_KEYS: tuple[tuple[str, ...], ...] = (("person_id", "section_id"), ("person_id", "school_year"))
_ID_COLUMNS: tuple[str, ...] = ("person_id", "section_id", "school_year", "week")


def _check_model(model: RiskModel, X: pd.DataFrame) -> list[str]:
    if not hasattr(model, "state_"):
        raise InvalidInput(ERR_NOT_FITTED)
    features = list(model.feature_names_in_)
    if BASE_VALUE in features:
        raise InvalidInput(ERR_BASE_NAME)
    missing = [c for c in features if c not in X.columns]
    if missing:
        raise InvalidInput(ERR_COLUMNS.format(", ".join(missing[:10])))
    return features


def _source_matrix(encoder: FeatureEncoder) -> NDArray[np.float64]:
    """0/1 matrix (encoded columns x original columns): which encoded column came from which input."""
    sources: list[int] = []
    for i, column in enumerate(encoder.columns_):
        if column in encoder.numeric_:
            width = 2 if encoder.mode == "onehot" and encoder.numeric_[column]["has_missing"] else 1
        else:
            width = len(encoder.categorical_[column]) + 1 if encoder.mode == "onehot" else 1
        sources.extend([i] * width)
    if len(sources) != len(encoder.feature_names_out_):
        raise InvalidInput("encoder state is inconsistent: encoded width differs from its column names")
    out = np.zeros((len(sources), len(encoder.columns_)))
    out[np.arange(len(sources)), sources] = 1.0
    return out


def raw_margin(model: RiskModel, X: pd.DataFrame) -> NDArray[np.float64]:
    """The model's uncalibrated log-odds for each row (what SHAP values add up to)."""
    features = _check_model(model, X)
    state = model.state_
    matrix = state["encoder"].transform(X[features])
    if "booster" in state:
        return np.asarray(state["booster"].predict(matrix, raw_score=True), dtype=float)
    return np.asarray(matrix @ state["coef"] + state["intercept"], dtype=float)


def shap_values(model: RiskModel, X: pd.DataFrame, *, background: pd.DataFrame | None = None) -> pd.DataFrame:
    """SHAP values of the raw margin per original input column, plus :data:`BASE_VALUE`.

    Indexed like ``X``; one column per model input (in the model's order) and the base value
    (the same on every row). ``background`` only matters for logistic models: the rows whose
    mean is the reference point (pass the training frame; default ``X``).
    """
    features = _check_model(model, X)
    state = model.state_
    encoder: FeatureEncoder = state["encoder"]
    matrix = encoder.transform(X[features])
    if "booster" in state:
        contrib = np.asarray(state["booster"].predict(matrix, pred_contrib=True), dtype=float)
        phi, base = contrib[:, :-1], contrib[:, -1]
    else:
        import shap  # heavy import, only for the linear model

        ref = matrix if background is None else encoder.transform(background[features])
        mean = ref.mean(axis=0)
        cov = np.cov(ref, rowvar=False) if ref.shape[0] > 1 else np.zeros((ref.shape[1], ref.shape[1]))
        masker = shap.maskers.Independent({"mean": mean, "cov": np.atleast_2d(cov)})
        explainer = shap.LinearExplainer((state["coef"], state["intercept"]), masker)
        phi = np.asarray(explainer.shap_values(matrix), dtype=float).reshape(matrix.shape)
        base = np.full(matrix.shape[0], float(np.asarray(explainer.expected_value).ravel()[0]))
    per_feature = phi @ _source_matrix(encoder)
    out = pd.DataFrame(per_feature, index=X.index, columns=features)
    out[BASE_VALUE] = base
    log.debug("explained %d rows over %d inputs", len(out), len(features))
    return out


def _feature_columns(shap_frame: pd.DataFrame) -> list[str]:
    cols = [str(c) for c in shap_frame.columns if c != BASE_VALUE]
    if not cols:
        raise InvalidInput(ERR_NO_SHAP)
    return cols


def global_importance(shap_frame: pd.DataFrame) -> pd.DataFrame:
    """Mean |SHAP| per feature, largest first: ``feature, mean_abs_shap, mean_shap, share, rank``."""
    cols = _feature_columns(shap_frame)
    values = shap_frame[cols].to_numpy(dtype=float)
    mean_abs = np.abs(values).mean(axis=0) if len(values) else np.zeros(len(cols))
    out = pd.DataFrame(
        {
            "feature": cols,
            "mean_abs_shap": mean_abs,
            "mean_shap": values.mean(axis=0) if len(values) else np.zeros(len(cols)),
        }
    )
    total = float(out["mean_abs_shap"].sum())
    out["share"] = out["mean_abs_shap"] / total if total > 0 else 0.0
    out = out.sort_values(["mean_abs_shap", "feature"], ascending=[False, True], kind="stable")
    out["rank"] = np.arange(1, len(out) + 1)
    return out.reset_index(drop=True)


def _primary_code(feature: str) -> str:
    template = CATALOGUE.get(feature)
    return template.codes[0] if template else f"{OTHER_CODE}:{feature}"


def _select(shap_frame: pd.DataFrame, top: int, min_shap: float) -> pd.DataFrame:
    """(row, rank, feature, shap) of the largest risk-raising values, one per primary code."""
    cols = [c for c in _feature_columns(shap_frame) if c not in IDENTIFIERS]
    values = shap_frame[cols].to_numpy(dtype=float)
    # Stable sort: ties keep the model's column order, so the result is deterministic.
    order = np.argsort(-values, axis=1, kind="stable")
    ranked = np.take_along_axis(values, order, axis=1)
    rows, pos = np.nonzero(ranked > min_shap)
    picked = order[rows, pos]
    long = pd.DataFrame(
        {
            "row": rows,
            "feature": np.asarray(cols, dtype=object)[picked],
            "shap": ranked[rows, pos],
        }
    )
    long["family"] = long["feature"].map(_primary_code)
    long = long.drop_duplicates(["row", "family"], keep="first")
    long["rank"] = long.groupby("row").cumcount() + 1
    return long[long["rank"] <= top].drop(columns="family").reset_index(drop=True)


def _series_keys(frame: pd.DataFrame) -> list[str] | None:
    for keys in _SERIES_KEYS:
        if all(k in frame.columns for k in keys) and "week" in frame.columns:
            return list(keys)
    return None


def _with_lags(ctx: pd.DataFrame, history: pd.DataFrame, needs: dict[int, list[str]]) -> pd.DataFrame:
    """Add ``"<feature>@-<k>"``: the same student's value ``k`` weeks earlier (NaN when unknown)."""
    keys = _series_keys(ctx)
    if keys is None or _series_keys(history) != keys:
        return ctx
    out = ctx
    for lag, features in sorted(needs.items()):
        present = [f for f in features if f in history.columns]
        if not present:
            continue
        earlier = history[[*keys, "week", *present]].drop_duplicates([*keys, "week"], keep="last")
        earlier = earlier.assign(week=earlier["week"].astype("int64") + lag).rename(
            columns={f: f"{f}@-{lag}" for f in present}
        )
        left = out.assign(week=out["week"].astype("int64"))
        merged = left.merge(earlier, on=[*keys, "week"], how="left", validate="m:1")
        merged.index = out.index
        merged["week"] = out["week"]
        out = merged
    return out


def _json_value(value: Any) -> Any:
    """JSON-native form of a feature value (numpy scalars to Python, NaN/NA to None)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        # six decimals: stored reasons should not carry float noise such as 0.33920000000000006
        return None if math.isnan(f) else round(f, 6)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value if isinstance(value, int | str) else str(value)


def reason_table(
    shap_frame: pd.DataFrame,
    feature_frame: pd.DataFrame,
    *,
    top: int = 3,
    history: pd.DataFrame | None = None,
    min_shap: float = 0.0,
) -> pd.DataFrame:
    """Long form of :func:`reason_codes`: one row per reason.

    Columns: ``row`` (position in the frames), the identifiers found in ``feature_frame``
    (``person_id, section_id, school_year, week``), ``rank, feature, code, text, value, shap``.
    """
    if top < 1:
        raise InvalidInput(ERR_TOP.format(top))
    if len(shap_frame) != len(feature_frame):
        raise InvalidInput(ERR_LENGTH.format(len(shap_frame), len(feature_frame)))
    chosen = _select(shap_frame, top, min_shap)
    ids = [c for c in _ID_COLUMNS if c in feature_frame.columns]
    if chosen.empty:
        return pd.DataFrame(columns=["row", *ids, "rank", "feature", "code", "text", "value", "shap"])
    ctx = feature_frame.iloc[chosen["row"].to_numpy()].reset_index(drop=True)
    needs: dict[int, list[str]] = {}
    for feature in chosen["feature"].unique():
        template = CATALOGUE.get(str(feature))
        for lag in template.lags if template else ():
            needs.setdefault(lag, []).append(str(feature))
    if needs:
        ctx = _with_lags(ctx, feature_frame if history is None else history, needs)
    texts = pd.Series(index=chosen.index, dtype=object)
    codes = pd.Series(index=chosen.index, dtype=object)
    values = pd.Series(index=chosen.index, dtype=object)
    for feature, idx in chosen.groupby("feature", sort=True).groups.items():
        name = str(feature)
        part = ctx.loc[idx]
        template = CATALOGUE.get(name)
        if template is not None:
            text, code = template.render(part, name)
        else:
            typical = pd.to_numeric(feature_frame[name], errors="coerce") if name in feature_frame else None
            median = float(typical.median()) if typical is not None and typical.notna().any() else None
            text, code = render_other(part, name, median)
        texts.loc[idx] = text.to_numpy()
        codes.loc[idx] = code.to_numpy()
        raw = part[name] if name in part.columns else pd.Series(None, index=idx, dtype=object)
        values.loc[idx] = [_json_value(v) for v in raw.astype(object)]
    out = chosen[["row"]].copy()
    for key in ids:
        out[key] = ctx[key].to_numpy()
    out["rank"] = chosen["rank"].to_numpy()
    out["feature"] = chosen["feature"].to_numpy()
    out["code"] = codes.to_numpy()
    out["text"] = texts.to_numpy()
    out["value"] = values.to_numpy()
    out["shap"] = chosen["shap"].to_numpy()
    return out.sort_values(["row", "rank"], kind="stable").reset_index(drop=True)


def reason_codes(
    shap_frame: pd.DataFrame,
    feature_frame: pd.DataFrame,
    *,
    top: int = 3,
    history: pd.DataFrame | None = None,
    min_shap: float = 0.0,
) -> list[list[dict[str, Any]]]:
    """Up to ``top`` reasons per row, the features that pushed risk *up* the most, in plain language.

    ``shap_frame`` is :func:`shap_values` output and ``feature_frame`` the rows it explains, in
    the same order (all their columns are available to the texts, inputs or not). Each reason is
    ``{"code", "feature", "text", "value", "shap"}`` -- the JSON of ``risk_score.reasons``.
    Only features with SHAP above ``min_shap`` appear, largest first (ties in model column
    order), at most one per primary code so related features do not crowd out other reasons.
    ``history`` holds earlier weeks of the same students (weekly feature rows) for texts that
    compare with the past ("2 new in the last 2 weeks"); by default ``feature_frame`` itself.
    """
    table = reason_table(shap_frame, feature_frame, top=top, history=history, min_shap=min_shap)
    out: list[list[dict[str, Any]]] = [[] for _ in range(len(shap_frame))]
    for row, feature, code, text, value, shap in zip(
        table["row"],
        table["feature"],
        table["code"],
        table["text"],
        table["value"],
        table["shap"],
        strict=True,
    ):
        out[int(row)].append(
            {"code": code, "feature": feature, "text": text, "value": value, "shap": round(float(shap), 6)}
        )
    return out


def catalogue_table(features: Sequence[str] | None = None) -> pd.DataFrame:
    """The reason-code catalogue as a table: ``feature, codes, says`` (for docs and ops mapping)."""
    names = list(CATALOGUE) if features is None else [f for f in features if f in CATALOGUE]
    return pd.DataFrame(
        {
            "feature": names,
            "codes": [", ".join(CATALOGUE[n].codes) for n in names],
            "says": [CATALOGUE[n].says for n in names],
        }
    )
