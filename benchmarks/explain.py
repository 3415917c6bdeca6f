"""Explanation timings on generated Canvas data: SHAP values and reason codes against scoring alone.

    python benchmarks/explain.py                 # 400 students, model on weeks <= 8, explain every week
    python benchmarks/explain.py --students 1000

Generates a Canvas term, loads it, builds the weekly features and labels, fits the default
LightGBM model for ``will_disengage`` on weeks 1-8, then times ``predict_proba`` (the baseline),
``shap_values`` and ``reason_codes`` on the week-8 rows and on all weeks. Prints JSON, including
the reasons of the three highest-scored students of week 8 (the example in docs/explain.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    """Run the benchmark and print JSON."""
    from edsight.config import Settings
    from edsight.features.labels import store_labels
    from edsight.features.weekly import store_features
    from edsight.models.explain import global_importance, reason_codes, shap_values
    from edsight.models.risk import fit_risk_model
    from edsight.store.warehouse import Warehouse
    from edsight.synth.canvas import write_canvas

    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_canvas(root / "files", args.students, seed=args.seed, fmt="csv")
        wh = Warehouse(Settings(home=root / "home"))
        wh.init()
        wh.load_directory(root / "files")
        store_features(wh, kinds=("lms",))
        store_labels(wh, kinds=("lms",))
        with wh.connect(read_only=True) as con:
            rows = con.sql(
                "SELECT * FROM weekly_features_lms JOIN labels_lms USING (person_id, section_id, week) "
                "WHERE section_id IN (SELECT edsight_id FROM id_map WHERE source_system = 'canvas' "
                "AND entity = 'section')"
            ).df()
            history = con.sql("SELECT * FROM weekly_features_lms").df()
    others = ["will_fail_academically", "will_miss_assignments", "will_dropout"]
    model = fit_risk_model(
        rows[rows["week"] <= 8],
        target="will_disengage",
        positive=True,
        id_col="person_id",
        drop=["section_id", "week", "week_start", "week_end", "horizon_weeks", *others],
    )
    out: dict[str, object] = {"students": args.students, "inputs": len(model.feature_names_in_)}
    for label, frame in (("week8", rows[rows["week"] == 8].reset_index(drop=True)), ("all_weeks", rows)):
        start = time.perf_counter()
        proba = model.predict_proba(frame)[:, 1]
        predict_s = time.perf_counter() - start
        start = time.perf_counter()
        sv = shap_values(model, frame)
        shap_s = time.perf_counter() - start
        start = time.perf_counter()
        reasons = reason_codes(sv, frame, history=history)
        reasons_s = time.perf_counter() - start
        out[label] = {
            "rows": len(frame),
            "predict_s": round(predict_s, 3),
            "shap_s": round(shap_s, 3),
            "reasons_s": round(reasons_s, 3),
            "shap_over_predict": round(shap_s / predict_s, 1),
        }
        if label == "week8":
            top = proba.argsort()[::-1][:3]
            out["examples"] = [{"probability": round(float(proba[i]), 3), "reasons": reasons[i]} for i in top]
            out["importance"] = global_importance(sv).head(8)[["feature", "mean_abs_shap"]].to_dict("records")
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
