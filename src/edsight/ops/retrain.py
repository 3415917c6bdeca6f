"""Scheduled retraining with a champion/challenger gate, and drift of the scores.

When the production model (the champion: the latest version of the target's registry name)
is older than ``every_days``, a challenger is trained on outcomes observed up to a cutoff
``holdout_days`` before today and both are compared on the outcomes observed after the
cutoff that neither has seen. The challenger wins when it is not worse: AUC no more than
``tolerance`` lower, Brier score no more than ``tolerance`` higher, and the largest gap in
false-positive rates between groups of any protected attribute (groups of at least 10) no
more than ``fairness_tolerance`` wider. Only then is the model refitted on everything observed
by today and saved as the next version, which scoring picks up. Every decision is returned
with its figures (the daily run stores them in ``ops_run``).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from edsight.models.evaluate import brier_score, roc_auc
from edsight.models.registry import list_models, load_model
from edsight.ops.monitor import drift_report
from edsight.store.warehouse import Warehouse

__all__ = ["champion_challenger", "retrain_if_due", "score_drift"]

log = logging.getLogger(__name__)

HOLDOUT_DAYS = {"lms": 28, "k12": 365}
MIN_GROUP = 10


def _fpr_gap(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, protected: tuple[str, ...]) -> float:
    """Largest difference in false-positive rate between groups, flagging the top 10 %."""
    threshold = np.quantile(p, 0.9) if len(p) else 1.0
    flagged = p >= threshold
    gaps = [0.0]
    for col in protected:
        if col not in frame.columns:
            continue
        rates = []
        for _, idx in frame.groupby(col, observed=True).indices.items():
            negatives = y[idx] == 0
            if negatives.sum() >= MIN_GROUP:
                rates.append(float(flagged[idx][negatives].mean()))
        if len(rates) > 1:
            gaps.append(max(rates) - min(rates))
    return max(gaps)


def _versions(warehouse: Warehouse, name: str) -> pd.DataFrame:
    models = list_models(warehouse.settings.home)
    if models.empty:
        return models
    return models[models["name"] == name]


def champion_challenger(
    champion: Any,
    challenger: Any,
    frame: pd.DataFrame,
    inputs: list[str],
    protected: tuple[str, ...],
    *,
    tolerance: float = 0.01,
    fairness_tolerance: float = 0.05,
) -> dict[str, Any]:
    """Compare two fitted models on the same held-out rows; ``promote`` says if the challenger may go."""
    y = frame["y"].to_numpy(np.int64)
    figures: dict[str, Any] = {"n": len(frame), "n_positive": int(y.sum())}
    for label, model in (("champion", champion), ("challenger", challenger)):
        p = model.predict_proba(frame[inputs])[:, 1]
        figures[label] = {
            "auc": roc_auc(y, p),
            "brier": brier_score(y, p),
            "fpr_gap": _fpr_gap(frame.reset_index(drop=True), y, p, protected),
        }
    ch, cc = figures["champion"], figures["challenger"]
    reasons = []
    if cc["auc"] < ch["auc"] - tolerance:
        reasons.append("lower AUC")
    if cc["brier"] > ch["brier"] + tolerance:
        reasons.append("worse calibration (Brier)")
    if cc["fpr_gap"] > ch["fpr_gap"] + fairness_tolerance:
        reasons.append("wider false-positive gap between groups")
    figures["promote"] = not reasons
    figures["why_not"] = reasons
    return figures


def retrain_if_due(
    warehouse: Warehouse,
    *,
    kind: str,
    target: str,
    today: date,
    every_days: int = 28,
    holdout_days: int | None = None,
    tolerance: float = 0.01,
) -> dict[str, Any]:
    """Train the first model, or run the champion/challenger gate when the champion is due."""
    from edsight.errors import InvalidInput
    from edsight.models._pipeline_data import PROTECTED, check_kind, check_weeks, model_frame
    from edsight.models.pipeline import default_model_name, train_model

    k = check_kind(kind)
    name = default_model_name(k, target)
    versions = _versions(warehouse, name)
    outcome: dict[str, Any] = {"model": name, "target": target}
    try:
        if versions.empty:
            record = train_model(warehouse, kind=k, target=target, train_until=today)
            return {**outcome, "action": "trained", "version": record.version}
        created = pd.to_datetime(versions["created_at"]).max().date()
        if (today - created).days < every_days:
            return {**outcome, "action": "not due", "champion_trained": created.isoformat()}
        cutoff = today - timedelta(days=holdout_days or HOLDOUT_DAYS[k])
        with warehouse.connect(read_only=True) as con:
            mf = model_frame(con, k, target, horizon=4, weeks=check_weeks(None, k), train_until=today)
        champion, record = load_model(name, home=warehouse.settings.home)
        seen = pd.Timestamp(record.metadata["training_window"]["outcomes_observed_by"])
        unseen = mf.frame[(mf.frame["observed_at"] > pd.Timestamp(cutoff)) & (mf.frame["observed_at"] > seen)]
        if unseen.empty or unseen["y"].nunique() < 2:
            return {
                **outcome,
                "action": "kept",
                "reason": "no unseen recent outcomes of both kinds to compare on",
            }
        chal_record = train_model(
            warehouse, kind=k, target=target, train_until=cutoff, name=f"{name}-challenger"
        )
        challenger, _ = load_model(
            chal_record.name, home=warehouse.settings.home, version=chal_record.version
        )
        figures = champion_challenger(champion, challenger, unseen, mf.inputs, PROTECTED, tolerance=tolerance)
        if not figures["promote"]:
            return {**outcome, "action": "kept", "comparison": figures}
        promoted = train_model(warehouse, kind=k, target=target, train_until=today)
        return {**outcome, "action": "promoted", "version": promoted.version, "comparison": figures}
    except InvalidInput as exc:
        # Too little data so far (early in a term): nothing to train yet, not a failure.
        return {**outcome, "action": "waiting", "reason": str(exc)}


def score_drift(warehouse: Warehouse, today: date) -> dict[str, Any] | None:
    """PSI of today's probabilities against the previous scoring date's, per target."""
    with warehouse.connect(read_only=True) as con:
        dates = con.execute(
            "SELECT DISTINCT as_of FROM risk_score WHERE as_of <= ? ORDER BY as_of DESC LIMIT 2", [today]
        ).fetchall()
        if len(dates) < 2:
            return None
        frame = con.execute(
            "SELECT as_of, target, probability FROM risk_score WHERE as_of IN (?, ?)",
            [dates[0][0], dates[1][0]],
        ).df()
    out: dict[str, Any] = {"current": str(dates[0][0]), "reference": str(dates[1][0]), "targets": {}}
    for target, rows in frame.groupby("target"):
        ref = rows[rows["as_of"] == rows["as_of"].min()][["probability"]]
        cur = rows[rows["as_of"] == rows["as_of"].max()][["probability"]]
        report = drift_report(ref, cur, ["probability"])
        out["targets"][str(target)] = {"psi": float(report["psi"][0]), "level": str(report["level"][0])}
    return out
