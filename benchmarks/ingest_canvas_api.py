"""Canvas API ingest throughput against the emulator on loopback.

    python benchmarks/ingest_canvas_api.py                          # 500 and 2,000 students
    python benchmarks/ingest_canvas_api.py --students 200 --concurrency 4 8

For each size, the emulator serves ``generate_canvas(N, seed)`` from its own process
(so client and server do not share an interpreter), and a fresh client process ingests
it into a fresh warehouse twice: a full run, then an incremental run with nothing
changed. Prints one JSON line per run: seconds, requests, pages, rows fetched and
stored, rows/s and requests/s, and the client's peak RSS. Rows are the Canvas rows
fetched (courses, users, enrollments, assignments, submissions, hourly activity, ...).
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
from pathlib import Path

TOKEN = "benchmark-token"


def _client(url: str, home: Path, students: int, concurrency: int) -> None:
    from edsight.config import Settings
    from edsight.ingest.canvas_api import ingest_canvas_api
    from edsight.store.warehouse import Warehouse

    wh = Warehouse(Settings(home=home))
    wh.init()
    for run in ("full", "incremental"):
        started = time.perf_counter()
        result = ingest_canvas_api(wh, url, token=TOKEN, concurrency=concurrency)
        seconds = time.perf_counter() - started
        print(
            json.dumps(
                {
                    "students": students,
                    "run": run,
                    "concurrency": concurrency,
                    "seconds": round(seconds, 2),
                    "requests": result.requests,
                    "pages": result.pages,
                    "rows_fetched": result.rows_fetched,
                    "rows_stored": result.rows_stored,
                    "rows_unchanged": result.unchanged,
                    "rows_per_s": round(result.rows_fetched / seconds),
                    "requests_per_s": round(result.requests / seconds),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                }
            ),
            flush=True,
        )


def _measure(students: int, concurrency: int, seed: int) -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edsight.testing.canvas_emulator",
            "--students",
            str(students),
            "--seed",
            str(seed),
            "--token",
            TOKEN,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[1]
        with tempfile.TemporaryDirectory() as work:
            subprocess.run(
                [sys.executable, __file__, "--child", url, work, str(students), str(concurrency)],
                check=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, work, students, concurrency = sys.argv[2:6]
        _client(url, Path(work) / "home", int(students), int(concurrency))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--students", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for students in args.students:
        for concurrency in args.concurrency:
            _measure(students, concurrency, args.seed)


if __name__ == "__main__":
    main()
