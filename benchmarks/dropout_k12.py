"""District dropout 1 and 2 years ahead, validated by time, against the school-level baseline.

    python benchmarks/dropout_k12.py [--students 20000] [--years 5] [--schools 20] [--seed 1]

Generates a district, loads it, builds the weekly K-12 features and labels, then runs
``evaluate_model`` for ``dropout_1y`` and ``dropout_2y``: trained on earlier school years
(outcomes observed before the test year starts), tested on the last year with observed
outcomes, at week 10 (about the end of the first quarter). Prints AUC, PR-AUC,
precision@10% and the gain over each school's historical dropout rate (computed on the
training years only), lead time, timings and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from edsight.config import Settings
from edsight.features.labels import store_labels
from edsight.features.weekly import store_features
from edsight.models.pipeline import evaluate_model
from edsight.store.warehouse import Warehouse
from edsight.synth.district import write_district


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20_000)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--schools", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        write_district(
            work / "district", args.students, n_years=args.years, n_schools=args.schools, seed=args.seed
        )
        wh = Warehouse(Settings(home=work / "home"))
        wh.init()
        wh.load_directory(work / "district")
        t1 = time.perf_counter()
        store_features(wh, kinds=("k12",))
        store_labels(wh, kinds=("k12",))
        t2 = time.perf_counter()
        result = evaluate_model(wh, kind="k12", target=["dropout_1y", "dropout_2y"], seed=args.seed)
        t3 = time.perf_counter()
        print(
            f"# {args.students:,} students x {args.years} years, {args.schools} schools; "
            f"generate+load {t1 - t0:.1f} s, features+labels {t2 - t1:.1f} s, evaluate {t3 - t2:.1f} s"
        )
        print(
            f"{'target':<11} {'train years':<22} {'test':>5} {'n':>6} {'pos':>4} {'AUC':>6} {'base':>6} "
            f"{'PR-AUC':>6} {'base':>6} {'P@10%':>6} {'base':>6} {'lead wk (median, flagged/reached)'}"
        )
        for target, r in result["targets"].items():
            s, b, lead = r["split"], r["baseline"], r["lead_time"]

            def f(v: float | None) -> str:
                return "   n/a" if v is None else f"{v:6.3f}"

            median = "n/a" if lead["median_weeks"] is None else f"{lead['median_weeks']:.1f}"
            print(
                f"{target:<11} {','.join(map(str, s['train_periods'])):<22} {s['test_periods'][-1]:>5} "
                f"{r['n']:>6} {r['n_positive']:>4} {f(r['auc'])} {f(b['auc'])} {f(r['pr_auc'])} "
                f"{f(b['pr_auc'])} {f(r['top_k']['10pct']['precision'])} {f(b['precision_at_10pct'])} "
                f"{median} ({lead['n_flagged_before']}/{lead['n_reached']})"
            )
            print(
                f"{'':<11} gain over the school baseline: AUC {r['gain']['auc']:+.3f}, "
                f"precision@10% {r['gain']['precision_at_10pct']:+.3f}"
            )
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
