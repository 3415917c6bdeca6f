"""DuckDB vs Spark (local mode) on the same lake: K-12 features, aggregates, scoring.

    .venv/bin/python benchmarks/engines.py --students 50000 [--years 1] [--schools 20]
        [--root /tmp/edsight-engines] [--engines duckdb,spark] [--spark-master local[*]]

Generates a synthetic district (kept under ``--root`` and reused), loads it into a warehouse,
exports the Parquet lake, then runs each step on each engine and prints wall seconds, the
Python process's peak RSS while each engine ran and, for Spark, the JVM's peak RSS (the JVM
is a child process, outside Python's RSS; both sampled every 0.2 s with psutil). The last
column is the ratio to DuckDB's time on the same step. Both engines' outputs are compared
(keys identical, numbers within 1e-9) so a fast wrong answer cannot pass.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from edsight.config import Settings
from edsight.features._weekly_k12 import K12_SQL
from edsight.models._risk_model import RiskModel
from edsight.models.distributed import score_distributed
from edsight.models.registry import save_model
from edsight.store.aggregates import AGGREGATES, aggregate
from edsight.store.engine import DuckDBEngine, Engine, SparkEngine, result_differences
from edsight.store.lake import export_lake
from edsight.store.warehouse import Warehouse
from edsight.synth.district import write_district

FEATURES = [
    "attendance_rate",
    "attendance_rate_4w",
    "incidents_4w",
    "tardies",
    "grade_level",
    "prior_math_scale_score",
]


class PeakMemory:
    """Peak RSS of this process and of its java children, sampled in a thread."""

    def __init__(self) -> None:
        self.jvm = 0
        self.python = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                try:
                    if "java" in child.name():
                        total += child.memory_info().rss
                except psutil.Error:
                    continue
            self.jvm = max(self.jvm, total)
            with contextlib.suppress(psutil.Error):
                self.python = max(self.python, me.memory_info().rss)
            self._stop.wait(0.2)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def python_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(root: Path, students: int, years: int, schools: int) -> Warehouse:
    home = root / f"home-{students}-{years}"
    wh = Warehouse(Settings(home=home))
    if (home / "lake").is_dir():
        return wh
    files = root / f"files-{students}-{years}"
    t = time.perf_counter()
    write_district(files, students, n_years=years, n_schools=schools, seed=1)
    wh.init()
    wh.load_directory(files)
    export_lake(wh, wh.settings.lake_path, partitioned=True)
    print(f"prepared {students} students x {years} years in {time.perf_counter() - t:.1f} s")
    return wh


def run_steps(engine: Engine, home: Path, model_home: Path) -> dict[str, tuple[float, Any]]:
    """Each step's seconds and its output (Arrow)."""
    out: dict[str, tuple[float, Any]] = {}

    def step(name: str, fn: Callable[[], Any]) -> None:
        t = time.perf_counter()
        value = fn()
        out[name] = (time.perf_counter() - t, value)
        rows = value.num_rows if hasattr(value, "num_rows") else value
        print(f"  {engine.name:<7} {name:<22} {out[name][0]:8.1f} s  rows={rows}", flush=True)

    step("register lake", lambda: len(engine.register_lake(home / "lake")))
    step("k12 features", lambda: engine.create_table("weekly_features_k12", K12_SQL, {"as_of": None}))
    step("abc_indicators", lambda: engine.to_arrow(aggregate(engine, "abc_indicators")))
    step("scale_scores", lambda: engine.to_arrow(aggregate(engine, "scale_scores")))
    keep = ["person_id", "school_year", "week", "school_id"]
    step(
        "scoring",
        lambda: engine.to_arrow(
            score_distributed(
                engine,
                engine.sql("SELECT * FROM weekly_features_k12"),
                model="bench",
                home=model_home,
                keep=keep,
            )
        ),
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--students", type=int, default=50_000)
    parser.add_argument("--years", type=int, default=1)
    parser.add_argument("--schools", type=int, default=20)
    parser.add_argument("--root", type=Path, default=Path("/tmp/edsight-engines"))
    parser.add_argument("--engines", default="duckdb,spark")
    parser.add_argument("--spark-master", default="local[*]")
    parser.add_argument("--driver-memory", default="4g", help="Spark driver heap (local mode: all of Spark)")
    args = parser.parse_args()
    wh = prepare(args.root, args.students, args.years, args.schools)
    home = wh.settings.home
    model_home = args.root / "models"
    if not (model_home / "models" / "bench").is_dir():
        with DuckDBEngine() as duck:
            duck.register_lake(home / "lake")
            duck.create_table("k12", K12_SQL, {"as_of": None})
            sample = duck.to_pandas(duck.sql("SELECT * FROM k12 USING SAMPLE 50000 ROWS (reservoir, 1)"))
        model = RiskModel(n_estimators=100, n_jobs=1).fit(
            sample[FEATURES], (sample["f_count"] > 0).astype(int)
        )
        save_model(model, name="bench", home=model_home)
    results: dict[str, dict[str, tuple[float, Any]]] = {}
    memory: dict[str, tuple[float, float]] = {}
    for name in args.engines.split(","):
        with PeakMemory() as peak:
            if name == "duckdb":
                engine: Engine = DuckDBEngine()
            else:
                t = time.perf_counter()
                engine = SparkEngine(args.spark_master, driver_memory=args.driver_memory)
                print(f"  spark   session start          {time.perf_counter() - t:8.1f} s")
            with engine:
                results[name] = run_steps(engine, home, model_home)
        memory[name] = (peak.python / 2**20, peak.jvm / 2**20)
    base = results.get("duckdb")
    print(f"\n{args.students} students x {args.years} year(s), {psutil.cpu_count()} cores")
    print(f"{'step':<22}" + "".join(f"{n:>12}" for n in results) + "  ratio to duckdb")
    for step in next(iter(results.values())):
        secs = [results[n][step][0] for n in results]
        ratio = (
            "  ".join(f"{results[n][step][0] / base[step][0]:.1f}x" for n in results if n != "duckdb")
            if base
            else ""
        )
        print(f"{step:<22}" + "".join(f"{s:>11.1f}s" for s in secs) + f"  {ratio}")
    for n, (py, jvm) in memory.items():
        print(f"peak memory {n:<8} python {py:8.0f} MB   jvm {jvm:8.0f} MB  (sampled while this engine ran)")
    print(f"python peak over the whole run (incl. data preparation): {python_peak_mb():.0f} MB")
    if base and "spark" in results:
        keys = {"k12 features": None, "abc_indicators": AGGREGATES["abc_indicators"].keys}
        keys["scale_scores"] = AGGREGATES["scale_scores"].keys
        keys["scoring"] = ("person_id", "school_year", "week")
        for step, k in keys.items():
            if k is None:
                continue
            diff = result_differences(base[step][1], results["spark"][step][1], k)
            print(f"agreement {step:<16} {diff or 'identical within 1e-9'}")


if __name__ == "__main__":
    main()
