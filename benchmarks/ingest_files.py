"""SIS file connectors' throughput: a generated district as OneRoster 1.1 CSV, then its attendance.

    python benchmarks/ingest_files.py                    # 50,000 students, 20 schools, 1 year
    python benchmarks/ingest_files.py --students 5000 --version 1.2

Generates a district (not timed), writes it as a OneRoster zip and as attendance and
discipline files, and times each ingest into a fresh warehouse: a first load, then a
re-sent copy of the same content in new bytes (every row unchanged: the incremental
path). Rows/s counts the source rows read (stored + quarantined + unchanged).
Prints one JSON line per step.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from edsight.config import Settings
from edsight.ingest.attendance import (
    ingest_attendance,
    ingest_discipline,
    write_attendance_csv,
    write_discipline_csv,
)
from edsight.ingest.oneroster import ingest_oneroster, write_oneroster
from edsight.store.warehouse import LoadResult, Warehouse
from edsight.synth.district import generate_district


def _zip(folder: Path, out: Path, compression: int) -> Path:
    with zipfile.ZipFile(out, "w", compression) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
    return out


def _timed(step: str, run: Callable[[], LoadResult], **extra: object) -> LoadResult:
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "step": step,
                "seconds": round(seconds, 3),
                "rows_read": result.rows_read,
                "rows_per_s": round(result.rows_read / seconds),
                "stored": result.rows_stored,
                "quarantined": result.rows_quarantined,
                "unchanged": result.unchanged,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                **extra,
            }
        ),
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=50_000)
    parser.add_argument("--schools", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--version", choices=("1.1", "1.2"), default="1.1")
    args = parser.parse_args()
    print(
        f"# python {sys.version.split()[0]}; district {args.students} students, "
        f"{args.schools} schools, 1 year; OneRoster {args.version}"
    )
    started = time.perf_counter()
    district = generate_district(args.students, n_years=1, n_schools=args.schools, seed=args.seed)
    print(f"# generated in {time.perf_counter() - started:.1f}s (not timed below)", flush=True)
    with tempfile.TemporaryDirectory(prefix="edsight-bench-") as tmp:
        work = Path(tmp)
        folder = write_oneroster(district.tables, work / "export", version=args.version)
        first = _zip(folder, work / "roster.zip", zipfile.ZIP_DEFLATED)
        again = _zip(folder, work / "roster-again.zip", zipfile.ZIP_STORED)
        attendance = work / "attendance.csv"
        write_attendance_csv(district.tables, attendance)
        attendance_again = work / "attendance-again.csv"
        # Same rows, new bytes (Windows line ends): a nightly re-send with nothing new.
        attendance_again.write_bytes(attendance.read_bytes().replace(b"\n", b"\r\n"))
        discipline = work / "discipline.csv"
        write_discipline_csv(district.tables, discipline)

        wh = Warehouse(Settings(home=work / "home"))
        wh.init()
        _timed("oneroster bulk, first load", lambda: ingest_oneroster(wh, first), version=args.version)
        _timed("oneroster bulk, re-sent unchanged", lambda: ingest_oneroster(wh, again), version=args.version)
        _timed("attendance, first load", lambda: ingest_attendance(wh, attendance))
        _timed("attendance, re-sent unchanged", lambda: ingest_attendance(wh, attendance_again))
        _timed("discipline, first load", lambda: ingest_discipline(wh, discipline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
