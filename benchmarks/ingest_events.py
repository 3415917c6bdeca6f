"""Live-event throughput: the HTTP endpoint (loopback) and the spool -> warehouse ingest.

    python benchmarks/ingest_events.py                          # defaults below
    python benchmarks/ingest_events.py --http-events 20000 --batch 1 100 --senders 8 \\
        --ingest-events 200000 --students 2000

HTTP: a uvicorn server in its own process (one worker) serves POST /events/canvas;
``--senders`` threads post ``--http-events`` Canvas events in requests of ``--batch``
events each, with the shared secret. Every accepted request was fsync'd to the spool
before its 202, so the figure includes durability.

Ingest: a warehouse with ``--students`` rostered students (5 sections each, id_map
entries), and a spool of ``--ingest-events`` events (80% page views, 5% logins, 10%
submissions, 5% grade changes, 10% of them delivered twice); ``ingest_events`` loads it
in one batch: read, normalise, dedupe, validate, map, commit. A second run on an
empty spool shows the fixed cost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

SECRET = "benchmark-secret-" + "b" * 40

_SERVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import uvicorn
    from edsight.config import Settings
    from edsight.web.events import EventsConfig, create_events_app

    home, port, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    app = create_events_app(Settings(home=Path(home)), EventsConfig(secret=secret))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    """
)


def _canvas_view(user: int, course: int, at: datetime, n: int) -> dict[str, Any]:
    return {
        "metadata": {
            "event_name": "asset_accessed",
            "event_time": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "user_id": str(21070000000000000 + user),
            "user_sis_id": f"S-{user}",
            "context_type": "Course",
            "context_id": str(21070000000000000 + course),
            "context_role": "StudentEnrollment",
            "request_id": f"req-{n}",
            "client_ip": "203.0.113.9",
            "user_agent": "Mozilla/5.0 (benchmark)",
            "producer": "canvas",
        },
        "body": {
            "asset_type": "wiki_page",
            "asset_id": str(21070000000000000 + n % 500),
            "asset_name": "Notes",
            "category": "wiki",
            "role": "StudentEnrollment",
            "level": "participate" if n % 7 == 0 else None,
        },
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_http(n_events: int, batch: int, senders: int, work: Path) -> dict[str, Any]:
    """Events/s through POST /events/canvas on loopback."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(work / f"home-http-{batch}"), str(port), SECRET],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    url = f"http://127.0.0.1:{port}/events/canvas"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.05)
        start = datetime(2024, 9, 9, 8, tzinfo=UTC)
        bodies = [
            json.dumps(
                [
                    _canvas_view(i % 1000, 1 + i % 50, start + timedelta(seconds=i), i)
                    for i in range(r * batch, (r + 1) * batch)
                ]
            ).encode()
            for r in range(n_events // batch)
        ]
        latencies: list[float] = []
        lock = threading.Lock()

        def send(part: list[bytes]) -> None:
            headers = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
            mine: list[float] = []
            with httpx.Client(timeout=30) as client:
                for body in part:
                    t0 = time.perf_counter()
                    response = client.post(url, content=body, headers=headers)
                    mine.append(time.perf_counter() - t0)
                    if response.status_code != 202:
                        raise RuntimeError(f"{response.status_code}: {response.text}")
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=send, args=(bodies[s::senders],)) for s in range(senders)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait()
    if len(latencies) != len(bodies):
        raise RuntimeError("some requests failed")
    latencies.sort()
    return {
        "bench": "http",
        "events": len(bodies) * batch,
        "batch": batch,
        "senders": senders,
        "seconds": round(seconds, 3),
        "events_per_s": round(len(bodies) * batch / seconds),
        "requests_per_s": round(len(bodies) / seconds),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 2),
    }


def _world(folder: Path, students: int) -> None:
    folder.mkdir(parents=True)
    n_sections = max(5, students // 40)

    def write(name: str, header: str, rows: list[str]) -> None:
        (folder / f"{name}.csv").write_text(header + "\n" + "\n".join(rows) + "\n")

    write("organization", "org_id,name,org_type", ["s1,School,school"])
    write(
        "term",
        "term_id,name,term_type,school_year,start_date,end_date",
        ["t1,2024-25,school_year,2024,2024-08-01,2025-06-30"],
    )
    write("course", "course_id,title", [f"c{c},Course {c}" for c in range(n_sections)])
    write(
        "section", "section_id,course_id,term_id,school_id", [f"sec{c},c{c},t1,s1" for c in range(n_sections)]
    )
    write(
        "person",
        "person_id,role,local_id,directory_opt_out",
        [f"p{u},student,S-{u},false" for u in range(students)],
    )
    write(
        "enrollment",
        "section_id,person_id,role,start_date",
        [f"sec{(u + k * 7) % n_sections},p{u},student,2024-08-26" for u in range(students) for k in range(5)],
    )
    write(
        "assignment",
        "assignment_id,section_id,due_at,points_possible",
        [f"a{a},sec{a % n_sections},2024-09-20 23:59:00,10" for a in range(n_sections * 4)],
    )
    id_map = [f"canvas,person,{u},p{u}" for u in range(students)]
    id_map += [f"canvas,section,{c},sec{c}" for c in range(n_sections)]
    id_map += [f"canvas,assignment,{a},a{a}" for a in range(n_sections * 4)]
    write("id_map", "source_system,entity,source_id,edsight_id", id_map)


def _ingest_child(work: Path, n_events: int, students: int) -> dict[str, Any]:
    from edsight.config import Settings
    from edsight.ingest._events_spool import EventSpool
    from edsight.ingest.events import default_spool_dir, ingest_events, spool_line
    from edsight.store.warehouse import Warehouse

    warehouse = Warehouse(Settings(home=work / "home-ingest"))
    warehouse.init()
    _world(work / "world", students)
    warehouse.load_directory(work / "world")
    n_sections = max(5, students // 40)
    rng = random.Random(7)
    start = datetime(2024, 9, 9, 8, tzinfo=UTC)
    received = datetime.now(UTC)
    spool = EventSpool(default_spool_dir(warehouse.settings))
    chunk: list[bytes] = []
    for i in range(n_events):
        user = rng.randrange(students)
        section = (user + rng.randrange(5) * 7) % n_sections
        at = start + timedelta(seconds=rng.randrange(14 * 86400))
        kind = rng.random()
        event = _canvas_view(user, section, at, i)
        md = event["metadata"]
        if kind < 0.05:
            md["event_name"], event["body"] = "logged_in", {}
            del md["context_type"], md["context_id"]
        elif kind < 0.15:
            md["event_name"] = "submission_created"
            event["body"] = {
                "assignment_id": str(section + n_sections * rng.randrange(4)),
                "user_id": md["user_id"],
                "submitted_at": md["event_time"],
                "attempt": 1 + rng.randrange(3),
                "body": "x" * 200,
            }
        elif kind < 0.20:
            md["event_name"] = "grade_change"
            event["body"] = {
                "assignment_id": str(section + n_sections * rng.randrange(4)),
                "student_id": md["user_id"],
                "score": rng.randrange(11),
            }
        line = spool_line("canvas", event, received)
        chunk.append(line)
        if rng.random() < 0.10:
            chunk.append(line)  # delivered twice
        if len(chunk) >= 5000:
            spool.append(chunk)
            chunk = []
    if chunk:
        spool.append(chunk)
    lines = sum(1 for p in spool.pending() for _ in p.open("rb"))
    t0 = time.perf_counter()
    result = ingest_events(warehouse)
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    ingest_events(warehouse)
    empty_seconds = time.perf_counter() - t1
    report = result.source_tables["live_event"]
    return {
        "bench": "ingest",
        "lines": lines,
        "applied": report.rows_valid,
        "quarantined": result.rows_quarantined,
        "unchanged": result.unchanged,
        "rows_stored": result.rows_stored,
        "seconds": round(seconds, 3),
        "events_per_s": round(lines / seconds),
        "empty_run_seconds": round(empty_seconds, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, nargs="*", default=[1, 100])
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--ingest-events", type=int, default=200_000)
    parser.add_argument("--students", type=int, default=2_000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        work, n, students = args.child
        print(json.dumps(_ingest_child(Path(work), int(n), int(students))))
        return 0
    print(f"# python {sys.version.split()[0]}, {os.cpu_count()} cpus, loopback, fsync per request")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for batch in args.batch:
            n = args.http_events if batch > 1 else min(args.http_events, 5_000)
            print(json.dumps(bench_http(n, batch, args.senders, work)))
        if args.ingest_events:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(work), str(args.ingest_events), str(args.students)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            print(out.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
