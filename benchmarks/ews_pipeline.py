"""Train and score the warehouse early-warning pipeline on generated Canvas data.

    python benchmarks/ews_pipeline.py [--students 50000] [--seed 1] [--target will_dropout]

Generates a term, loads it, builds the weekly features and labels, then times:
``train_model`` (one target, default training weeks 2-12) against a logistic baseline fitted
in the same process, and ``score`` (every registered LMS model at one as-of date: model
load, predict, SHAP reason codes, transactional write) against predict-only on the same
rows. Targets: train 50K students < 2 min; features + scoring 50K < 30 s.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import date
from pathlib import Path

from edsight.config import Settings
from edsight.features.labels import store_labels
from edsight.features.weekly import store_features
from edsight.models._pipeline_data import scoring_frame
from edsight.models.pipeline import score, train_model
from edsight.models.registry import load_model
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas

AS_OF = date(2024, 10, 31)  # week 11 of the generated term (it starts 2024-08-15)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", default="will_dropout")
    parser.add_argument("--week", type=int, action="append", help="Training weeks (default: the pipeline's).")
    parser.add_argument("--skip-logistic", action="store_true", help="Do not time the logistic baseline.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        write_canvas(work / "canvas", args.students, seed=args.seed, fmt="parquet")
        wh = Warehouse(Settings(home=work / "home"))
        wh.init()
        wh.load_directory(work / "canvas")
        t1 = time.perf_counter()
        rows = store_features(wh, kinds=("lms",))
        t2 = time.perf_counter()
        store_labels(wh, kinds=("lms",))
        t3 = time.perf_counter()
        print(f"# {args.students:,} students; {rows['weekly_features_lms']:,} feature rows")
        print(f"generate+load      {t1 - t0:8.1f} s")
        print(f"features (all wk)  {t2 - t1:8.1f} s")
        print(f"labels             {t3 - t2:8.1f} s")

        start = time.perf_counter()
        record = train_model(wh, kind="lms", target=args.target, seed=args.seed, weeks=args.week)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        if not args.skip_logistic:
            train_model(
                wh,
                kind="lms",
                target=args.target,
                learner="logistic",
                name="baseline-logistic",
                weeks=args.week,
            )
        logistic_s = time.perf_counter() - start
        m = record.metadata["metrics"]
        print(f"train lightgbm     {train_s:8.1f} s  ({m['n_train']:,} rows, {m['n_positive']:,} positive)")
        if not args.skip_logistic:
            print(
                f"train logistic     {logistic_s:8.1f} s  "
                f"(ratio lightgbm/logistic {train_s / logistic_s:.2f})"
            )

        start = time.perf_counter()
        n = score(wh, as_of=AS_OF, kind="lms", models=[record.name])
        score_s = time.perf_counter() - start
        start = time.perf_counter()
        n_again = score(wh, as_of=AS_OF, kind="lms", models=[record.name])
        rescore_s = time.perf_counter() - start
        start = time.perf_counter()
        model, _ = load_model(record.name, home=wh.settings.home)
        with wh.connect(read_only=True) as con:
            frame = scoring_frame(con, "lms", AS_OF)
        current = frame[frame["is_current"].astype(bool)]
        model.predict_proba(current[model.feature_names_in_])
        predict_s = time.perf_counter() - start
        assert n == n_again == len(current)
        print(f"score (1 model)    {score_s:8.1f} s  ({n:,} rows; rescore {rescore_s:.1f} s)")
        print(f"read+predict only  {predict_s:8.1f} s  (ratio score/predict-only {score_s / predict_s:.2f})")
        print(f"features+score     {t2 - t1 + score_s:8.1f} s  (target < 30 s at 50K)")
        print(f"peak RSS           {peak_rss_mib():8.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
