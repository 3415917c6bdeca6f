"""Hierarchical linear model fits: seconds and peak RSS, each case in a fresh process.

    python benchmarks/hlm.py            # Hsb82, sleepstudy, 7,200-row 3-level growth, 1M-row growth
    python benchmarks/hlm.py --quick    # everything but the 1M-row growth model
    python benchmarks/hlm.py --case growth1m

Seconds are the median of warm fits (the first fit in a process also pays imports);
the 1M case is fitted once. lme4 for comparison (issue 5): Hsb82 about 0.15 s,
7,230-row 3-level growth about 0.3-0.4 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data" / "multilevel"
GROWTH = "score ~ time + (1 + time | school/student)"
CASES = {
    "hsb82": ("mAch ~ meanses*cses + sector*cses + (1 + cses | school)", 5),
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", 5),
    "growth7k": (GROWTH, 3),
    "growth1m": (GROWTH, 1),
}


def simulate_growth(n_schools: int, per_school: int, n_times: int, seed: int = 1) -> pd.DataFrame:
    """Time within student within school with correlated intercepts and slopes at both levels."""
    rng = np.random.default_rng(seed)
    n_students = n_schools * per_school
    u = rng.multivariate_normal([0, 0], [[4.0, 0.5], [0.5, 0.25]], n_schools)
    v = rng.multivariate_normal([0, 0], [[25.0, 1.5], [1.5, 1.0]], n_students)
    student = np.repeat(np.arange(n_students), n_times)
    t = np.tile(np.arange(n_times, dtype=float), n_students)
    school = student // per_school
    y = 200 + 5 * t + u[school, 0] + u[school, 1] * t + v[student, 0] + v[student, 1] * t
    y += rng.normal(0, 3.0, len(t))
    return pd.DataFrame({"score": y, "time": t, "student": student, "school": school})


def load(case: str) -> pd.DataFrame:
    """The data of one case."""
    if case == "hsb82":
        return pd.read_csv(DATA / "Hsb82.csv")
    if case == "sleepstudy":
        frame = pd.read_csv(DATA / "sleepstudy.csv")
        frame["Subject"] = frame["Subject"].astype(str)
        return frame
    if case == "growth7k":
        return simulate_growth(40, 36, 5)  # 7,200 rows, 1,440 students, 40 schools
    return simulate_growth(500, 400, 5)  # 1,000,000 rows, 200,000 students, 500 schools


def run_case(case: str) -> dict[str, object]:
    """Fit one case in this process and report."""
    from edsight.stats.mixed import fit_lmm

    formula, repeats = CASES[case]
    data = load(case)
    started = time.perf_counter()
    first = fit_lmm(data, formula)
    first_s = time.perf_counter() - started
    warm = [fit_lmm(data, formula).seconds for _ in range(repeats - 1)] if repeats > 1 else [first.seconds]
    return {
        "case": case,
        "rows": len(data),
        "seconds": round(statistics.median(warm), 3),
        "first_fit_seconds": round(first_s, 3),
        "evaluations": first.evaluations,
        "reml_crit": round(first.criterion, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1M-row case")
    parser.add_argument("--case", choices=sorted(CASES), help="run one case in this process")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)), flush=True)
        return 0
    cases = [c for c in CASES if not (args.quick and c == "growth1m")]
    status = 0
    for case in cases:
        done = subprocess.run([sys.executable, __file__, "--case", case], check=False)
        status |= done.returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main())
