"""Benchmark the synthetic Canvas generator against a naive, row-at-a-time seed baseline.

Each measurement runs in a fresh subprocess, so peak RSS (``ru_maxrss``) belongs to that run
alone. Usage::

    python benchmarks/generate_canvas.py                       # 2,000 and 1,000,000, parquet
    python benchmarks/generate_canvas.py --students 2000 --format csv
    python benchmarks/generate_canvas.py --no-baseline

The baseline re-implements the seed notebook's algorithm the way it was written -- Python
loops over rows with pandas look-ups inside -- and is timed at 200 students next to this
package's generator at the same size and format (CSV, as the seed wrote CSV).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_SIZES = (2_000, 1_000_000)
BASELINE_STUDENTS = 200


# --- naive seed baseline (per-row Python loops, as in the seed notebook) --------------------
def _naive_semester(n_students: int, seed: int, out_dir: Path) -> None:
    """The seed's algorithm, one Python iteration per row, pandas look-ups in the loops."""
    rng = np.random.default_rng(seed)
    start = datetime(2024, 8, 15)
    courses = pd.DataFrame(
        [
            ("CS101", "Intro to Programming", "Computer Science", 0.7, "high"),
            ("MATH200", "Calculus II", "Mathematics", 0.8, "high"),
            ("ENG110", "Composition I", "English", 0.4, "medium"),
            ("HIST150", "World History", "History", 0.3, "medium"),
            ("CHEM201", "Organic Chemistry", "Chemistry", 0.9, "high"),
            ("PSYC100", "Intro Psychology", "Psychology", 0.2, "low"),
            ("ECON200", "Microeconomics", "Economics", 0.6, "medium"),
            ("ART120", "Digital Design", "Art", 0.4, "medium"),
        ],
        columns=["course_id", "name", "subject", "difficulty", "workload"],
    )

    people = []
    for sid in range(n_students):
        people.append(
            {
                "student_id": sid,
                "enrollment_date": start + timedelta(days=int(rng.integers(0, 15))),
                "academic_ability": float(np.clip(rng.normal(0.6, 0.25), 0.1, 1.0)),
                "time_management": float(rng.beta(2, 3)),
                "persistence": float(rng.uniform(0.3, 1.0)),
                "external_commitments": str(rng.choice(["low", "medium", "high"], p=[0.3, 0.5, 0.2])),
            }
        )
    students = pd.DataFrame(people)

    rows = []
    counter = 1
    points_by_type = {
        "assignment": [100, 150, 200, 250],
        "quiz": [50, 75, 100],
        "discussion_topic": [25, 50, 75],
    }
    for _, course in courses.iterrows():
        for week in range(2, 17, 2):
            kind = str(rng.choice(["assignment", "quiz", "discussion_topic"], p=[0.6, 0.3, 0.1]))
            rows.append(
                {
                    "assignment_id": f"assignment_{counter}",
                    "course_id": course["course_id"],
                    "assignment_type": kind,
                    "due_date": start + timedelta(weeks=week),
                    "due_week": week,
                    "points_possible": int(rng.choice(points_by_type[kind])),
                    "difficulty": float(np.clip(course["difficulty"] + rng.normal(0, 0.1), 0.1, 1.0)),
                }
            )
            counter += 1
    assignments = pd.DataFrame(rows)

    enrolled: dict[int, list[str]] = {}
    all_courses = list(courses["course_id"])
    for sid in students["student_id"]:
        k = int(rng.choice([3, 4, 5], p=[0.2, 0.6, 0.2]))
        enrolled[int(sid)] = list(rng.choice(all_courses, size=k, replace=False))

    subs = []
    for _, a in assignments.iterrows():
        for sid in [s for s, cs in enrolled.items() if a["course_id"] in cs]:
            person = students[students["student_id"] == sid].iloc[0]
            row: dict[str, Any] = {
                "student_id": sid,
                "assignment_id": a["assignment_id"],
                "course_id": a["course_id"],
                "due_date": a["due_date"],
                "points_possible": a["points_possible"],
                "assignment_type": a["assignment_type"],
            }
            if rng.random() < 0.85 - 0.2 * a["difficulty"]:
                tm = person["time_management"]
                late, days_late = False, 0
                if tm > 0.7:
                    when = a["due_date"] - timedelta(
                        days=int(rng.choice([1, 2, 3, 4, 5], p=[0.4, 0.3, 0.2, 0.07, 0.03]))
                    )
                elif tm > 0.4:
                    late = bool(rng.random() < 0.3)
                    if late:
                        days_late = int(rng.choice([1, 2, 3, 4], p=[0.5, 0.3, 0.15, 0.05]))
                        when = a["due_date"] + timedelta(days=days_late)
                    else:
                        when = a["due_date"] - timedelta(hours=int(rng.integers(1, 48)))
                else:
                    late = bool(rng.random() < 0.6)
                    if late:
                        days_late = int(rng.choice([1, 2, 3, 5, 7], p=[0.3, 0.25, 0.2, 0.15, 0.1]))
                        when = a["due_date"] + timedelta(days=days_late)
                    else:
                        when = a["due_date"] - timedelta(hours=int(rng.integers(1, 24)))
                base = person["academic_ability"] - a["difficulty"] + 0.3 - min(0.3, 0.1 * days_late)
                score = float(np.clip(rng.normal(base, 0.15), 0, 1)) * a["points_possible"]
                tries = 1
                if a["assignment_type"] == "quiz" and score < 0.6 * a["points_possible"]:
                    tries = int(rng.integers(2, 4))
                row.update(
                    submission_date=when,
                    was_late=late,
                    days_late=days_late,
                    score_earned=score,
                    grade_percentage=score / a["points_possible"],
                    attempt_count=tries,
                )
            else:
                row.update(
                    submission_date=None,
                    was_late=False,
                    days_late=0,
                    score_earned=0.0,
                    grade_percentage=0.0,
                    attempt_count=0,
                )
            subs.append(row)
    submissions = pd.DataFrame(subs)

    weekly = []
    for sid, courses_taken in enrolled.items():
        person = students[students["student_id"] == sid].iloc[0]
        for cid in courses_taken:
            mine = submissions[(submissions["student_id"] == sid) & (submissions["course_id"] == cid)]
            grade, momentum = 0.7, person["persistence"]
            for week in range(1, 17):
                week_start = start + timedelta(weeks=week - 1)
                week_end = week_start + timedelta(days=7)
                in_week = mine[
                    (mine["submission_date"] >= week_start) & (mine["submission_date"] <= week_end)
                ]
                graded = mine[mine["score_earned"] > 0]
                if len(graded) > 0:
                    grade = graded["grade_percentage"].mean()
                rec: dict[str, Any] = {
                    "student_id": sid,
                    "course_id": cid,
                    "week": week,
                    "current_grade": grade,
                    "assignments_missing": int((mine["score_earned"] == 0).sum()),
                    "late_submission_rate": float(mine["was_late"].mean()),
                }
                if rng.random() < 0.15:
                    rec.update(last_login=None, page_views=0, participations=0, discussion_posts=0)
                    rec.update(assignments_submitted_week=0, quiz_attempts=0, is_missing_week=True)
                    momentum *= 0.9
                else:
                    base = momentum * person["academic_ability"]
                    views = max(0, int(rng.normal(base * 40, 15)))
                    rec.update(
                        last_login=week_end - timedelta(days=int(rng.integers(0, 7))) if views > 0 else None,
                        page_views=views,
                        participations=max(0, int(rng.normal(base * 8, 3))),
                        discussion_posts=int(rng.poisson(base * 2)),
                        assignments_submitted_week=int((in_week["score_earned"] > 0).sum()),
                        quiz_attempts=int((in_week["assignment_type"] == "quiz").sum()),
                        is_missing_week=False,
                    )
                    if grade > 0.7:
                        momentum = min(1.0, momentum + 0.02)
                    elif grade < 0.5:
                        momentum = max(0.2, momentum - 0.05)
                weekly.append(rec)
    analytics = pd.DataFrame(weekly)

    labelled = []
    for _, group in analytics.groupby(["student_id", "course_id"]):
        group = group.sort_values("week").reset_index(drop=True)
        for i in range(len(group) - 4):
            future = group.iloc[i + 1 : i + 5]
            lab = {str(k): v for k, v in group.iloc[i].to_dict().items()}
            g, pv = future["current_grade"].mean(), future["page_views"].mean()
            lab.update(
                prediction_week=rec["week"],
                will_fail_academically=g < 0.6,
                will_disengage=pv < 10 and future["participations"].mean() < 2,
                will_miss_assignments=future["assignments_missing"].mean() > 2,
                will_dropout=g < 0.4 and pv < 5,
            )
            labelled.append(lab)
    training = pd.DataFrame(labelled)

    for name, frame in {
        "courses": courses,
        "students": students,
        "assignments": assignments,
        "submissions": submissions,
        "canvas_analytics": analytics,
        "training_data": training,
    }.items():
        frame.to_csv(out_dir / f"{name}.csv", index=False)


# --- one measurement (child process) --------------------------------------------------------
def _child(kind: str, students: int, fmt: str, seed: int) -> None:
    with tempfile.TemporaryDirectory(prefix="edsight-bench-") as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        if kind == "naive":
            _naive_semester(students, seed, out)
            rows: dict[str, int] = {}
        else:
            from edsight.synth.canvas import write_canvas

            rows = write_canvas(out, students, seed=seed, fmt=fmt)  # type: ignore[arg-type]
        seconds = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in out.iterdir())
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = {
        "kind": kind,
        "students": students,
        "format": fmt,
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "bytes": size,
        "rows": rows,
    }
    print(json.dumps(result))


def _measure(kind: str, students: int, fmt: str, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, "--students", str(students), "--format", fmt]
    cmd += ["--seed", str(seed)]
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--students", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--format", choices=("csv", "parquet"), default="parquet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive seed baseline")
    parser.add_argument("--child", choices=("edsight", "naive"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.students[0], args.format, args.seed)
        return 0

    print(f"cpus: {os.cpu_count()}  python: {sys.version.split()[0]}  numpy: {np.__version__}")
    for n in args.students:
        r = _measure("edsight", n, args.format, args.seed)
        total_rows = sum(r["rows"].values())
        print(
            f"edsight  {n:>9,} students  {args.format:<7}  {r['seconds']:8.2f} s  "
            f"peak RSS {r['peak_rss_mb']:8.1f} MiB  {total_rows:>12,} rows  "
            f"{r['bytes'] / 2**20:9.1f} MiB on disk"
        )
    if not args.no_baseline:
        n = BASELINE_STUDENTS
        ours = _measure("edsight", n, "csv", args.seed)
        naive = _measure("naive", n, "csv", args.seed)
        ratio = naive["seconds"] / max(ours["seconds"], 1e-9)
        print(
            f"baseline {n:>9,} students  csv      naive seed loop {naive['seconds']:.2f} s "
            f"(peak RSS {naive['peak_rss_mb']:.1f} MiB) vs edsight {ours['seconds']:.3f} s "
            f"-> {ratio:,.0f}x faster"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
