"""Benchmark: weekly LMS features, labels and the daily latest-week build; seconds and peak RSS.

    .venv/bin/python benchmarks/features.py --students 50000
    .venv/bin/python benchmarks/features.py --students 50000 --replicate 20 --no-baseline  # 1M

Generates a Canvas semester (``write_canvas``, parquet), loads it (``Warehouse.load_directory``;
not timed) and times, in this process:

* ``features``: ``store_features(kinds=("lms",))`` (rebuild ``weekly_features_lms``);
* ``labels``: ``store_labels(kinds=("lms",))`` (SQL over the stored features);
* ``latest week``: ``build_lms_features(as_of=..., latest_only=True)`` at mid-term, the daily
  scoring path, returned as a DataFrame;
* with ``--baseline`` (default up to 100,000 students), the first implementation on the same
  warehouse: its window-function SQL (``_weekly_lms_reference``) for the features, and the
  labels computed by rebuilding those features into pandas, then the ratio old / new.

``--replicate K`` copies the loaded students K-1 times under new ids (same sections, same
records), which makes a K-times larger warehouse in a fraction of the time loading it takes.
``--home DIR`` keeps the warehouse there (reused when it already holds LMS data).
Peak RSS is the process's high-water mark during each stage (reset before it; Linux).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from edsight.config import Settings
from edsight.features._weekly_lms_reference import LMS_REFERENCE_SQL
from edsight.features.labels import lms_labels_from_features, store_labels
from edsight.features.weekly import build_lms_features, replace_table, store_features
from edsight.schema import CANONICAL
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import TERM_START, write_canvas


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage(name: str, fn: Callable[[], Any]) -> float:
    """Run ``fn``, print its seconds, CPU seconds and peak RSS, return the seconds."""
    _reset_peak()
    t, c = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    rows = result if isinstance(result, dict) else {"rows": len(result)}
    print(f"{name:<28} {wall:8.1f} s  cpu {cpu:7.1f} s  peak RSS {_peak_mb():7.0f} MB  {rows}", flush=True)
    return wall


def replicate(warehouse: Warehouse, copies: int) -> None:
    """Copy every student's records ``copies - 1`` times under new person ids."""
    with warehouse.connect() as con:
        for table in ("person", "enrollment", "submission", "lms_activity"):
            cols = CANONICAL[table].column_names
            select = ", ".join(
                "person_id || '~' || r.k AS person_id" if c == "person_id" else c for c in cols
            )
            con.execute(
                f"INSERT INTO {table} SELECT {select} FROM {table}, range(1, {copies}) r(k) "
                + ("WHERE role = 'student'" if table == "enrollment" else "")
            )


def old_features(warehouse: Warehouse) -> dict[str, int]:
    """The first implementation of store_features (one window-function query)."""
    with warehouse.connect() as con:
        rel = con.sql(LMS_REFERENCE_SQL, params={"as_of": None})
        return {"weekly_features_lms": replace_table(con, "weekly_features_lms", rel)}


def old_labels(warehouse: Warehouse) -> dict[str, int]:
    """The first implementation of store_labels: rebuild the features into pandas, then label."""
    with warehouse.connect() as con:
        features = con.sql(LMS_REFERENCE_SQL, params={"as_of": None}).df()
        features = features.sort_values(["person_id", "section_id", "week"], ignore_index=True)
        frame = lms_labels_from_features(features)
        return {"labels_lms": replace_table(con, "labels_lms", con.from_df(frame))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=50_000)
    ap.add_argument("--replicate", type=int, default=1, help="copies of the loaded students")
    ap.add_argument("--home", type=Path, help="data home to keep (and reuse) the warehouse in")
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "home"
        wh = Warehouse(Settings(home=home))
        wh.init()
        if wh.counts()["lms_activity"] == 0:
            t = time.perf_counter()
            write_canvas(Path(tmp) / "canvas", args.students, seed=1, fmt="parquet")
            wh.load_directory(Path(tmp) / "canvas")
            if args.replicate > 1:
                replicate(wh, args.replicate)
            print(f"generated and loaded in {time.perf_counter() - t:.0f} s (not part of the figures)")
        n = wh.counts()
        students = n["person"]
        print(
            f"{students:,} students, {n['enrollment']:,} enrolments, {n['submission']:,} submissions, "
            f"{n['lms_activity']:,} activity rows; DuckDB memory limit {wh.settings.duckdb_memory_limit}"
        )
        new = {
            "features": stage("features (store_features)", lambda: store_features(wh, kinds=("lms",))),
            "labels": stage("labels (store_labels)", lambda: store_labels(wh, kinds=("lms",))),
        }
        mid_term = TERM_START + timedelta(weeks=8)
        stage("latest week (as_of, latest)", lambda: build_lms_features(wh, as_of=mid_term, latest_only=True))
        if students <= 100_000:  # a DataFrame of every week: for districts, use store_features
            stage("all weeks to mid-term (as_of)", lambda: build_lms_features(wh, as_of=mid_term))
        baseline = args.baseline if args.baseline is not None else students <= 100_000
        if baseline:
            old = {
                "features": stage("old features (window SQL)", lambda: old_features(wh)),
                "labels": stage("old labels (rebuild + pandas)", lambda: old_labels(wh)),
            }
            for key in new:
                print(f"speed-up {key}: {old[key] / new[key]:.1f}x")
            total_old, total_new = sum(old.values()), sum(new.values())
            print(f"speed-up features + labels: {total_old / total_new:.1f}x")


if __name__ == "__main__":
    main()
