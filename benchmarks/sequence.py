"""GRU sequence model against logistic regression and LightGBM on generated Canvas data.

    python benchmarks/sequence.py [--students 3000] [--seed 1] [--folds 5]
                                  [--scale-students 50000] [--scale-epochs 2]

Generates a term (write_canvas -> Warehouse.load_directory -> store_features/store_labels),
runs :func:`edsight.models.compare.compare_models` on the same student-grouped folds for the
four targets at weeks 4, 8 and 12 and prints the Markdown table. Then it times one GRU fit on
every student-section (seconds per 10K student-sections, against one LightGBM fit on all
weeks' rows as the in-process baseline) and, with ``--scale-students``, times
``--scale-epochs`` epochs at that size and extrapolates a full fit from the epochs the
smaller fits ran (said so in the output). Peak RSS comes from ``resource``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from edsight.config import Settings
from edsight.features.labels import LMS_TARGETS, store_labels
from edsight.features.weekly import store_features
from edsight.models.compare import comparison_markdown, out_of_fold_predictions, summarise_comparison
from edsight.models.risk import RiskModel
from edsight.models.sequence import SequenceRiskModel
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas

KEYS = ["person_id", "section_id", "week"]


def peak_rss_mib() -> float:
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / scale / 1024


def prepare(work: Path, students: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    started = time.perf_counter()
    write_canvas(work / "canvas", students, seed=seed, fmt="parquet")
    wh = Warehouse(Settings(home=work / "home"))
    wh.init()
    wh.load_directory(work / "canvas")
    store_features(wh, kinds=("lms",))
    store_labels(wh, kinds=("lms",))
    with wh.connect(read_only=True) as con:
        features = con.sql("SELECT * FROM weekly_features_lms").df()
        labels = con.sql("SELECT * FROM labels_lms").df()
    return features, labels, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--students", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--weeks", type=int, nargs="+", default=[4, 8, 12])
    parser.add_argument("--targets", nargs="+", default=list(LMS_TARGETS))
    parser.add_argument("--scale-students", type=int, default=50_000, help="0 skips the scale run")
    parser.add_argument("--scale-epochs", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        features, labels, prep = prepare(Path(tmp) / "small", args.students, args.seed)
        pairs = features.groupby(["person_id", "section_id"]).ngroups
        print(
            f"# {args.students:,} students, {pairs:,} student-sections, "
            f"{len(features):,} student-section-weeks; prepared in {prep:.1f} s"
        )
        started = time.perf_counter()
        predictions, timings = out_of_fold_predictions(
            features, labels, targets=args.targets, weeks=args.weeks, folds=args.folds, seed=args.seed
        )
        summary = summarise_comparison(predictions, timings)
        elapsed = time.perf_counter() - started
        print(f"# comparison ({args.folds}-fold, grouped by student) ran in {elapsed:.0f} s\n")
        print(comparison_markdown(summary))
        per_learner = timings.groupby("learner")["fit_seconds"].sum()
        print(
            "fit seconds over all targets, weeks and folds: "
            + ", ".join(f"{k} {v:.1f}" for k, v in per_learner.items())
        )

        # One GRU fit on every student-section vs one LightGBM fit on all weeks' rows (baseline).
        target = args.targets[0]
        start = time.perf_counter()
        gru = SequenceRiskModel(seed=args.seed).fit(features, labels, target=target)
        gru_s = time.perf_counter() - start
        log = gru.training_log_
        rows = features.merge(labels[[*KEYS, target]], on=KEYS)
        start = time.perf_counter()
        RiskModel(learner="lightgbm", seed=args.seed).fit(
            rows[gru.feature_names_in_], rows[target].astype(int), groups=rows["person_id"]
        )
        lgb_s = time.perf_counter() - start
        per_epoch = log["seconds"] / log["epochs_run"]
        print(
            f"\n# GRU fit on {pairs:,} student-sections ({target}): {gru_s:.1f} s, "
            f"{log['epochs_run']} epochs (best {log['best_epoch'] + 1}), {per_epoch:.2f} s/epoch\n"
            f"#   = {gru_s / pairs * 10_000:.1f} s per 10K student-sections per fit, "
            f"{per_epoch / pairs * 10_000:.2f} s per 10K student-sections per epoch\n"
            f"#   LightGBM (isotonic, 3 inner folds) on the {len(rows):,} labelled rows: {lgb_s:.1f} s; "
            f"GRU/LightGBM = {gru_s / lgb_s:.2f}\n"
            f"# peak RSS {peak_rss_mib():,.0f} MiB"
        )
        typical_epochs = log["epochs_run"]
        del features, labels, predictions, rows

        if args.scale_students:
            big, big_labels, prep = prepare(Path(tmp) / "big", args.scale_students, args.seed)
            big_pairs = big.groupby(["person_id", "section_id"]).ngroups
            start = time.perf_counter()
            model = SequenceRiskModel(seed=args.seed, epochs=args.scale_epochs).fit(
                big, big_labels, target=target
            )
            seconds = time.perf_counter() - start
            big_epoch = model.training_log_["seconds"] / model.training_log_["epochs_run"]
            overhead = seconds - model.training_log_["seconds"]
            print(
                f"\n# scale: {args.scale_students:,} students, {big_pairs:,} student-sections, "
                f"{len(big):,} rows; prepared in {prep:.0f} s\n"
                f"#   measured: {args.scale_epochs} epochs in {model.training_log_['seconds']:.0f} s "
                f"({big_epoch:.1f} s/epoch) + {overhead:.0f} s data preparation and calibration\n"
                f"#   extrapolated full fit ({typical_epochs} epochs as at {args.students:,} students): "
                f"{big_epoch * typical_epochs + overhead:.0f} s on CPU (an estimate, not a measurement)\n"
                f"# peak RSS {peak_rss_mib():,.0f} MiB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
