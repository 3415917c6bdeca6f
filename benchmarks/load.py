"""Validated load throughput: generated files -> a fresh warehouse, each size in a fresh process.

    python benchmarks/load.py                       # district 50,000 and 1,000,000 x 1 year
    python benchmarks/load.py --students 50000 --canvas 20000

Prints seconds, rows per second and peak RSS of the load alone (generation runs
first, in its own process, and is not timed here).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(kind: str, n: int, work: Path) -> None:
    from edsight.config import Settings
    from edsight.store.warehouse import Warehouse

    wh = Warehouse(Settings(home=work / "home"))
    wh.init()
    started = time.perf_counter()
    result = wh.load_directory(work / kind)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "kind": kind,
                "students": n,
                "seconds": seconds,
                "rows": result.rows_read,
                "quarantined": result.rows_quarantined,
                "peak_mb": peak_mb,
            }
        )
    )


def _generate(kind: str, n: int, work: Path) -> None:
    code = (
        "from pathlib import Path; import sys\n"
        "from edsight.synth.district import write_district\n"
        "from edsight.synth.canvas import write_canvas\n"
        f"out = Path({str(work / kind)!r})\n"
        + (
            f"write_district(out, {n}, n_years=1, n_schools=20, seed=1)\n"
            if kind == "district"
            else f"write_canvas(out, {n}, seed=1, fmt='parquet')\n"
        )
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, nargs="*", default=[50_000, 1_000_000])
    parser.add_argument("--canvas", type=int, nargs="*", default=[20_000])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, n, work = args.child
        _child(kind, int(n), Path(work))
        return 0
    print(f"# python {sys.version.split()[0]}, load = read + validate + apply in one transaction")
    runs = [("district", n) for n in args.students] + [("canvas", n) for n in args.canvas]
    for kind, n in runs:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            _generate(kind, n, work)
            out = subprocess.run(
                [sys.executable, __file__, "--child", kind, str(n), str(work)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(
                f"{kind:<9} {n:>10,} students  {r['rows']:>12,} rows  {r['seconds']:7.1f} s  "
                f"{r['rows'] / r['seconds']:>12,.0f} rows/s  peak RSS {r['peak_mb']:7.0f} MB  "
                f"quarantined {r['quarantined']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
