"""Risk-model timings: training on 50K synthetic rows, 5-fold cross-validation on UCI dropout.

    python benchmarks/models.py            # both cases, one LightGBM thread (the default)
    python benchmarks/models.py --rows 200000

Training includes isotonic calibration on 3 inner folds, i.e. four LightGBM fits of
300 trees; cross-validation is five such trainings plus the fairness table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "uci_dropout"
UCI = DATA / "predict_students_dropout_and_academic_success.csv"


def synthetic_students(n: int, seed: int = 0) -> pd.DataFrame:
    """Numeric, categorical and missing inputs with a known logistic outcome."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(20)})
    frame["school"] = rng.choice([f"s{i}" for i in range(30)], size=n)
    frame["grade"] = rng.integers(6, 13, size=n)
    frame.loc[rng.random(n) < 0.1, "x0"] = np.nan
    logit = frame["x0"].fillna(0) - 0.8 * frame["x1"] + 0.5 * frame["x2"] * frame["x3"] - 1.0
    frame["left"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def main() -> None:
    """Run the cases and print JSON."""
    from edsight.models.risk import cross_validate, fit_risk_model, read_table

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    out: list[dict[str, object]] = []
    frame = synthetic_students(args.rows)
    for learner in ("lightgbm", "logistic"):
        start = time.perf_counter()
        fit_risk_model(frame, target="left", positive=1, learner=learner, n_jobs=args.threads)  # type: ignore[arg-type]
        out.append(
            {"case": f"train {learner} {args.rows} rows", "seconds": round(time.perf_counter() - start, 2)}
        )
    uci = read_table(UCI)
    for learner in ("lightgbm", "logistic"):
        result = cross_validate(
            uci,
            target="Target",
            positive="Dropout",
            group_cols=["Gender", "Scholarship holder"],
            learner=learner,
            n_jobs=args.threads,  # type: ignore[arg-type]
        )
        out.append(
            {
                "case": f"5-fold CV {learner} UCI 4424 rows",
                "seconds": round(result["seconds"], 2),
                "auc": round(result["auc"], 4),
            }
        )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
