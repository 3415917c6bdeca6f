"""Scoring registered models into ``risk_score``, feature importance and the model card file."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from edsight.errors import InvalidInput
from edsight.models._pipeline_data import Kind, scoring_frame
from edsight.models._risk_model import RiskModel
from edsight.models.card import write_model_card
from edsight.models.explain import global_importance, reason_codes, shap_values
from edsight.models.registry import ModelRecord, list_models, load_model
from edsight.schema import CANONICAL
from edsight.store.warehouse import Warehouse

log = logging.getLogger(__name__)

TOP_REASONS = 3

ERR_NO_MODELS = "no trained {0} models under {1}: run `edsight models train --kind {0} --target ...` first"
ERR_WRONG_KIND = "model {0!r} was trained on {1} data, not {2}"
ERR_MODEL_REF = "model reference {0!r}: expected NAME or NAME:VERSION"


def feature_importance(
    model: RiskModel, X: pd.DataFrame, *, sample: int = 5000, seed: int = 0
) -> pd.DataFrame:
    """Global importance (mean |SHAP| per input, :func:`~edsight.models.explain.global_importance`).

    Computed on at most ``sample`` rows of ``X`` (a fixed random subset): enough to rank inputs.
    """
    rows = X if len(X) <= sample else X.sample(sample, random_state=seed)
    return global_importance(shap_values(model, rows[model.feature_names_in_]))


def write_card(
    record: ModelRecord,
    metrics: Mapping[str, Any],
    importance: pd.DataFrame,
    held_out: Mapping[str, Any] | None,
) -> None:
    """``MODEL_CARD.md`` and ``model_card.html`` next to the saved model (documentation, not artifacts)."""
    comparison = None
    if held_out is not None:
        unit = str(held_out.get("baseline_unit", "school_id")).removesuffix("_id")
        comparison = {"name": f"{unit}-level historical rate", **dict(held_out["baseline"])}
    write_model_card(
        record,
        metrics=dict(metrics),
        fairness=None if held_out is None else dict(held_out["fairness"]),
        importance=importance,
        comparison=comparison,
    )


def _resolve(home: Any, kind: Kind, models: Sequence[str] | None) -> list[tuple[RiskModel, ModelRecord]]:
    if models:
        refs = []
        for ref in models:
            name, _, version = ref.partition(":")
            if not name or (version and not version.isdigit()):
                raise InvalidInput(ERR_MODEL_REF.format(ref))
            refs.append((name, version or None))
        loaded = [load_model(name, home=home, version=version) for name, version in refs]
        for _, record in loaded:
            trained_on = record.metadata.get("extra", {}).get("kind")
            if trained_on != kind:
                raise InvalidInput(ERR_WRONG_KIND.format(record.name, trained_on, kind))
        return loaded
    names = sorted(set(list_models(home)["name"]))
    chosen = []
    for name in names:
        model, record = load_model(name, home=home)
        if record.metadata.get("extra", {}).get("kind") == kind:
            chosen.append((model, record))
    if not chosen:
        raise InvalidInput(ERR_NO_MODELS.format(kind, f"{home}/models"))
    return chosen


def model_id(record: ModelRecord) -> str:
    """``name:version``: the ``risk_score.model_id`` of a saved model."""
    return f"{record.name}:{record.version}"


EXPLAIN_SHARE = 0.1
ALERT_PROBABILITY = 0.5


def _to_explain(probability: np.ndarray) -> np.ndarray:
    """Rows that get reason codes: the top share of the batch, and all high probabilities."""
    if len(probability) == 0:
        return np.zeros(0, dtype=bool)
    cut = min(ALERT_PROBABILITY, float(np.quantile(probability, 1 - EXPLAIN_SHARE)))
    return np.asarray(probability >= cut, dtype=bool)


def _scores(
    model: RiskModel, record: ModelRecord, current: pd.DataFrame, history: pd.DataFrame, as_of: date
) -> pd.DataFrame:
    X = current[model.feature_names_in_]
    probability = np.clip(model.predict_proba(X)[:, 1], 0.0, 1.0)
    # SHAP costs ~30x a prediction, so reasons are computed for the rows anyone acts on: the
    # top EXPLAIN_SHARE of today's scores and every score at or above ALERT_PROBABILITY.
    explain = _to_explain(probability)
    texts: list[str | None] = [None] * len(current)
    if explain.any():
        rows = current[explain]
        found = reason_codes(shap_values(model, X[explain]), rows, top=TOP_REASONS, history=history)
        for i, r in zip(np.flatnonzero(explain), found, strict=True):
            texts[i] = json.dumps(r, separators=(",", ":"))
    return pd.DataFrame(
        {
            "person_id": current["person_id"].to_numpy(),
            "section_id": current["section_id"].to_numpy(),
            "as_of": pd.Timestamp(as_of),
            "target": record.metadata["extra"]["target"],
            "probability": probability,
            "model_id": model_id(record),
            "reasons": texts,
        }
    )


def _refresh_latest(con: Any) -> None:
    """Rebuild ``risk_score_latest``: dashboards read one row per student, section and target."""
    con.execute(CANONICAL["risk_score_latest"].ddl())
    con.execute("DELETE FROM risk_score_latest")
    con.execute(
        """
        INSERT INTO risk_score_latest
        SELECT person_id, section_id, target, as_of, probability, model_id, reasons FROM risk_score
        QUALIFY row_number() OVER (
            PARTITION BY person_id, section_id, target ORDER BY as_of DESC, model_id DESC) = 1
        """
    )


SCORE_BATCH_FEATURE_ROWS = 8_000_000


def _parts(con: Any, kind: Kind) -> int:
    """How many student shares to score one after the other (memory stays bounded)."""
    table = "weekly_features_lms" if kind == "lms" else "weekly_features_k12"
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]  # noqa: S608 - a constant
    return max(1, -(-int(rows) // SCORE_BATCH_FEATURE_ROWS))


def write_scores(con: Any, rows: pd.DataFrame) -> None:
    """Insert score rows into ``risk_score`` (inside the caller's transaction)."""
    decl = CANONICAL["risk_score"]
    con.register("_pipeline_scores", rows[list(decl.column_names)])
    try:
        con.execute(
            "INSERT INTO risk_score SELECT person_id, section_id, CAST(as_of AS DATE), target, probability, "
            "model_id, reasons FROM _pipeline_scores"
        )
    finally:
        con.unregister("_pipeline_scores")


def score_models(warehouse: Warehouse, *, kind: Kind, as_of: date, models: Sequence[str] | None) -> int:
    """Score ``kind`` at ``as_of`` with ``models`` (default: latest of each trained for ``kind``).

    The rows of ``as_of`` and these models are replaced in one transaction (re-scoring gives the
    same table), student share by student share when the feature table is state-sized.
    """
    started = time.perf_counter()
    loaded = _resolve(warehouse.settings.home, kind, models)
    ids = [model_id(r) for _, r in loaded]
    written = 0
    with warehouse.connect() as con:
        con.execute(CANONICAL["risk_score"].ddl())
        parts = _parts(con, kind)
        con.execute("BEGIN")
        try:
            con.execute("DELETE FROM risk_score WHERE as_of = ? AND list_contains(?, model_id)", [as_of, ids])
            for part in range(parts):
                frame = scoring_frame(con, kind, as_of, part=part, parts=parts)
                current = frame[frame["is_current"].astype(bool)].reset_index(drop=True)
                for model, record in loaded:
                    if len(current):
                        rows = _scores(model, record, current, frame, as_of)
                        write_scores(con, rows)
                        written += len(rows)
                del frame, current
            _refresh_latest(con)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    if not written:
        log.warning("no %s feature week ended by %s in a running term or year: nothing scored", kind, as_of)
    log.info(
        "scored %d rows (%d models, %d student shares) at %s in %.2fs",
        written,
        len(loaded),
        parts,
        as_of,
        time.perf_counter() - started,
    )
    return written
