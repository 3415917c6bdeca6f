"""The daily early-warning path at state scale: features + scoring for 1,000,000 Canvas students.

    python benchmarks/ews_scale.py [--students 50000] [--replicate 20] [--seed 1]

Generates and loads ``--students`` Canvas students, copies them ``--replicate - 1`` times under
new ids (the shape of generating students x replicate, without a 40-minute load), builds the
features and labels and trains one model on them, replicates, then times what
a daily run does: ``store_features`` (all weeks) and ``score`` (latest week of every
student-section, reasons for the top 10 % and every probability >= 0.5). Prints seconds, CPU
seconds and each stage's peak RSS (DuckDB's memory included; its limit is 4 GB by default).
Targets: features + scoring for 1M students < 5 min and < 8 GB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from edsight.config import Settings
from edsight.features.labels import store_labels
from edsight.features.weekly import store_features
from edsight.models.pipeline import score, train_model
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas

sys.path.insert(0, str(Path(__file__).parent))
from features import replicate, stage

AS_OF = date(2024, 10, 31)  # week 11 of the generated term


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=50_000)
    parser.add_argument("--replicate", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    total = args.students * args.replicate
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wh = Warehouse(Settings(home=work / "home"))
        started = time.perf_counter()
        write_canvas(work / "canvas", args.students, seed=args.seed, fmt="parquet")
        wh.init()
        wh.load_directory(work / "canvas")
        stage(
            f"features + labels ({args.students:,})",
            lambda: {**store_features(wh, kinds=("lms",)), **store_labels(wh, kinds=("lms",))},
        )
        # The model is trained on the generated students (training at 50K: benchmarks/ews_pipeline.py);
        # the copies then make the state-scale warehouse the daily run scores.
        stage("train", lambda: {"version": train_model(wh, kind="lms", target="will_dropout").version})
        if args.replicate > 1:
            stage("replicate", lambda: replicate(wh, args.replicate) or {"copies": args.replicate})
        print(f"# {total:,} students (set up in {time.perf_counter() - started:.0f} s)", flush=True)
        features_s = stage("daily: store_features", lambda: store_features(wh, kinds=("lms",), as_of=AS_OF))
        score_s = stage("daily: score", lambda: {"rows": score(wh, as_of=AS_OF, kind="lms")})
        print(f"features + score            {features_s + score_s:8.1f} s  (target < 300 s at 1M)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
