"""Benchmark the synthetic district generator (edsight.synth.district.write_district).

Each size runs in a fresh Python subprocess so that peak RSS (``ru_maxrss``) is measured
for that size alone. Example::

    python benchmarks/generate_district.py                     # 50,000 and 1,000,000 x 1 year
    python benchmarks/generate_district.py --students 200000 --years 2 --fmt csv
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(args: argparse.Namespace) -> None:
    """Generate one size and print a JSON line with the timings."""
    from edsight.synth.district import write_district

    with tempfile.TemporaryDirectory(prefix="edsight-district-") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        started = time.perf_counter()
        rows = write_district(
            out,
            args.students[0],
            n_years=args.years,
            n_schools=args.schools,
            seed=args.seed,
            fmt=args.fmt,
        )
        seconds = time.perf_counter() - started
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if sys.platform == "darwin":  # bytes on macOS
        peak_kb //= 1024
    print(
        json.dumps(
            {
                "students": args.students[0],
                "years": args.years,
                "schools": args.schools,
                "fmt": args.fmt,
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "output_mb": round(size_mb, 1),
                "rows": rows,
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, nargs="+", default=[50_000, 1_000_000], help="sizes to run")
    parser.add_argument("--years", type=int, default=1)
    parser.add_argument("--schools", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fmt", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--out", default=None, help="keep the output here (default: temp dir)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    print(f"# python {platform.python_version()} on {platform.machine()}, {_cpus()} CPUs")
    print(f"{'students':>10} {'years':>5} {'seconds':>8} {'peak RSS MB':>12} {'output MB':>10}")
    status = 0
    for n in args.students:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--students",
            str(n),
            "--years",
            str(args.years),
            "--schools",
            str(args.schools),
            "--seed",
            str(args.seed),
            "--fmt",
            args.fmt,
        ]
        if args.out:
            cmd += ["--out", str(Path(args.out) / f"district_{n}")]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{n:>10} FAILED\n{proc.stderr}", file=sys.stderr)
            status = 1
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{res['students']:>10,} {res['years']:>5} {res['seconds']:>8.1f} "
            f"{res['peak_rss_mb']:>12,.0f} {res['output_mb']:>10,.0f}"
        )
        print(f"           rows: {json.dumps(res['rows'])}")
    return status


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    raise SystemExit(main())
