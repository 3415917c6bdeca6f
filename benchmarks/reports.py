"""Time the school and district reports on a generated district (default 50,000 students).

python benchmarks/reports.py [--students 50000] [--years 3] [--schools 30] [--root DIR]

Prints seconds per step, peak RSS and, as the baseline measured in the same process, the
time to read the report's input tables from the warehouse (the ratio says what the
statistics and rendering add on top of reading the data). Risk scores are inserted by a
rule on the features (no model is trained here).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import date
from pathlib import Path

from edsight.config import Settings
from edsight.features.weekly import store_features
from edsight.ops._report_data import pick_assessment, score_tables, vam_tables
from edsight.ops.reports import build_district_report, build_school_report, write_report
from edsight.store.warehouse import Warehouse
from edsight.synth.district import write_district


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(label: str, fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    print(f"{label:<34} {seconds:8.1f} s   peak RSS {_rss_mb():7.0f} MB", flush=True)
    return out, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=50_000)
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--schools", type=int, default=30)
    parser.add_argument("--root", type=Path, default=None)
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="edsight-reports-"))
    wh = Warehouse(Settings(home=root / "home"))
    if not wh.path.exists():
        _timed(
            "generate",
            lambda: write_district(root / "files", args.students, args.years, args.schools, seed=3),
        )
        wh.init()
        _timed("load", lambda: wh.load_directory(root / "files"))
        _timed("features (k12)", lambda: store_features(wh, kinds=("k12",)))
        with wh.connect() as con:
            con.execute(
                """INSERT INTO risk_score SELECT person_id, NULL, week_end, 'dropout_1y',
                   least(0.99, greatest(0.01, 0.05 + 2.5 * (1 - coalesce(attendance_rate, 1))
                                               + 0.15 * core_f_count)), 'bench-rule:1', NULL
                   FROM weekly_features_k12 WHERE grade_level >= 9
                   QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY week_end DESC) = 1"""
            )

    def read_inputs() -> None:
        with wh.connect(read_only=True) as con:
            assessment = pick_assessment(con, date.today())
            assert assessment is not None
            vam_tables(con, score_tables(con, assessment, date.today())["assessment_result"])

    _, baseline = _timed("baseline: read the input tables", read_inputs)
    district, d_build = _timed("district report: build", lambda: build_district_report(wh))
    _, _d_html = _timed("district report: HTML", lambda: write_report(district, root / "district.html"))
    _, _d_pdf = _timed("district report: PDF", lambda: write_report(district, root / "district.pdf"))
    school, s_build = _timed("school report: build", lambda: build_school_report(wh, "SCH001"))
    _timed("school report: HTML", lambda: write_report(school, root / "school.html"))
    _timed("school report: PDF", lambda: write_report(school, root / "school.pdf"))
    print(f"district build / baseline read: {d_build / baseline:.1f}x; school: {s_build / baseline:.1f}x")
    print(
        "unavailable sections:", {s.key: s.unavailable for s in district.sections if s.unavailable} or "none"
    )
    print(f"files under {root}")


if __name__ == "__main__":
    main()
