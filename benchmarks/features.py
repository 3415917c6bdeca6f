"""Benchmark: weekly LMS (and K-12) features for N synthetic students; prints seconds and peak RSS.

.venv/bin/python benchmarks/features.py --students 50000 [--k12-students 50000]
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
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas
from edsight.synth.district import write_district


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--students", type=int, default=50_000)
    ap.add_argument("--k12-students", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_canvas(root / "canvas", args.students, seed=1, fmt="parquet")
        wh = Warehouse(Settings(home=root / "home"))
        wh.init()
        t = time.perf_counter()
        wh.load_directory(root / "canvas")
        print(f"load canvas {args.students}: {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        rows = store_features(wh, kinds=("lms",))
        print(f"lms features {rows}: {time.perf_counter() - t:.1f} s, peak RSS {peak_rss_mb():.0f} MB")
        t = time.perf_counter()
        rows = store_labels(wh, kinds=("lms",))
        print(f"lms labels {rows}: {time.perf_counter() - t:.1f} s, peak RSS {peak_rss_mb():.0f} MB")
        if args.k12_students:
            write_district(root / "k12", args.k12_students, n_years=1, n_schools=20, seed=1)
            wk = Warehouse(Settings(home=root / "home_k12"))
            wk.init()
            wk.load_directory(root / "k12")
            t = time.perf_counter()
            rows = store_features(wk, kinds=("k12",))
            print(f"k12 features {rows}: {time.perf_counter() - t:.1f} s, peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
