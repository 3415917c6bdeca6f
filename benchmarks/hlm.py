"""Hierarchical linear model fits: seconds and peak RSS, each case in a fresh process.

    python benchmarks/hlm.py            # Hsb82, sleepstudy, 3-level growth (7,200 rows), crossed, 1M rows
    python benchmarks/hlm.py --quick    # everything but the 1M-row growth model
    python benchmarks/hlm.py --case growth1m

Seconds are the median of warm fits (the first fit in a process also pays imports), wall
clock and CPU time of this process (CPU time is the steadier figure on a shared machine);
the 1M case is fitted once. The baseline, run in the same process, is the general
factorisation (``solver="general"``, the only one before the nested path): the whole fit
for the small nested cases, the cost of one criterion evaluation for the 1M case (a whole
general fit there took 515 s). lme4 for comparison (issue 5): Hsb82 about 0.15 s,
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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from edsight.stats.mixed import LmmResult

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data" / "multilevel"
GROWTH = "score ~ time + (1 + time | school/student)"
CASES = {
    "hsb82": ("mAch ~ meanses*cses + sector*cses + (1 + cses | school)", 5),
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", 5),
    "growth7k": (GROWTH, 3),
    "crossed": ("score ~ time + (1 + time | student) + (1 | teacher)", 3),
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
    if case == "crossed":
        frame = simulate_growth(40, 36, 5)  # each score also gets one of 60 teachers' effects
        rng = np.random.default_rng(2)
        frame["teacher"] = rng.integers(0, 60, len(frame))
        frame["score"] += rng.normal(0, 2.0, 60)[frame["teacher"]]
        return frame
    return simulate_growth(500, 400, 5)  # 1,000,000 rows, 200,000 students, 500 schools


def _timed(fit: Callable[[], LmmResult], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``repeats`` calls."""
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fit()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def _evaluation_seconds(result: LmmResult, solver: str, repeats: int) -> float:
    """CPU seconds of one criterion evaluation at the fitted theta with the given solver."""
    from edsight.stats._mixed_formula import model_matrix
    from edsight.stats.mixed import _blocks, pls_problem

    x, _ = model_matrix(result.spec.fixed, result.data, result.coding)
    y = result.data[result.spec.response].to_numpy(dtype=float)
    blocks, _ = _blocks(result.data, result.spec, result.coding)
    problem = pls_problem(blocks, x, y, reml=result.reml, solver=solver)
    started = time.process_time()
    for _ in range(repeats):
        problem.objective(result.theta)
    return (time.process_time() - started) / repeats


def run_case(case: str) -> dict[str, object]:
    """Fit one case in this process and report, with the general factorisation as baseline."""
    from edsight.stats.mixed import fit_lmm

    formula, repeats = CASES[case]
    data = load(case)
    started = time.perf_counter()
    first = fit_lmm(data, formula)
    first_s = time.perf_counter() - started
    out: dict[str, object] = {"case": case, "rows": len(data), "solver": "auto"}
    if repeats > 1:
        wall, cpu = _timed(lambda: fit_lmm(data, formula), repeats - 1)
        out.update(seconds=round(wall, 3), cpu_seconds=round(cpu, 3))
    else:
        out.update(seconds=round(first.seconds, 3))
    out.update(
        first_fit_seconds=round(first_s, 3),
        evaluations=first.evaluations,
        reml_crit=round(first.criterion, 4),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    if case == "growth1m":
        nested_eval = _evaluation_seconds(first, "auto", 5)
        general_eval = _evaluation_seconds(first, "general", 2)
        out.update(
            eval_cpu_seconds=round(nested_eval, 4),
            baseline_eval_cpu_seconds=round(general_eval, 3),
            eval_speedup=round(general_eval / nested_eval, 1),
        )
    elif case != "crossed":  # crossed designs take the general path already
        base_wall, base_cpu = _timed(lambda: fit_lmm(data, formula, solver="general"), max(repeats - 1, 1))
        base = fit_lmm(data, formula, solver="general")
        out.update(
            baseline_seconds=round(base_wall, 3),
            baseline_cpu_seconds=round(base_cpu, 3),
            baseline_evaluations=base.evaluations,
            speedup_cpu=round(base_cpu / float(out["cpu_seconds"]), 1),  # type: ignore[arg-type]
        )
    return out


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
