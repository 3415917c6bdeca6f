"""Bounded load test of the dashboard and API on loopback.

Builds (or reuses) a generated district of ``--students`` students with weekly features and
risk scores, creates ``--users`` accounts over real relationships (teachers, counselors,
principals, district administrators, state analysts), serves the app with uvicorn in a
child process on a free loopback port, and drives it with ``--users`` concurrent httpx
clients, each walking its role's pages and API calls, until ``--requests`` requests or
``--seconds`` seconds, whichever comes first. Prints p50/p95/max per route and overall,
the error rate, peak RSS of the server, the load average, and the p95 ratio of the cached
mode against the uncached baseline (scopes and aggregates recomputed per request; both
served and measured by this run).

    .venv/bin/python benchmarks/web_load.py --students 50000 --users 20 --requests 4000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np
import psutil
import pyotp

from edsight.config import Settings
from edsight.features.weekly import store_features
from edsight.governance.identity import GovernanceStore, Grant
from edsight.models._pipeline_score import _refresh_latest as refresh_latest
from edsight.store.warehouse import Warehouse
from edsight.synth.district import write_district

PASSWORD = "bench-load-password-2024"
RISK_SQL = """
INSERT INTO risk_score (person_id, section_id, as_of, target, probability, model_id, reasons)
SELECT person_id, NULL, week_end, 'will_dropout',
       1 / (1 + exp(-(-2.2 + 6 * (1 - coalesce(attendance_rate, 1)) + 0.9 * f_count + 0.4 * incidents_4w))),
       'bench-k12-1',
       to_json(list_filter([CASE WHEN coalesce(attendance_rate, 1) < 0.9 THEN 'attendance_below_90' END,
                            CASE WHEN f_count > 0 THEN 'course_failure' END], lambda x: x IS NOT NULL))
FROM weekly_features_k12 WHERE week % 4 = 0
"""


def build(home: Path, students: int, schools: int, seed: int) -> Settings:
    settings = Settings(home=home, argon2_time_cost=1, argon2_memory_kib=1024)
    if settings.warehouse_path.exists():
        print(f"reusing {settings.warehouse_path}")
        return settings
    t0 = time.perf_counter()
    write_district(home / "source", students, n_years=2, n_schools=schools, seed=seed)
    print(f"generated {students:,} students in {time.perf_counter() - t0:.1f} s")
    warehouse = Warehouse(settings)
    warehouse.init()
    t0 = time.perf_counter()
    warehouse.load_directory(home / "source")
    print(f"loaded in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    counts = store_features(warehouse, kinds=("k12",))
    print(f"features {counts} in {time.perf_counter() - t0:.1f} s")
    with warehouse.connect() as con:
        con.execute(RISK_SQL)
        refresh_latest(con)  # what every scoring run maintains: one row per student/section/target
        n = con.execute("SELECT count(*) FROM risk_score").fetchall()[0][0]
    print(f"risk scores: {n:,} rows")
    return settings


def make_users(settings: Settings, n_users: int) -> list[tuple[str, str, str | None, str]]:
    """``(username, session token, target, role)`` for a mix of roles over real warehouse ids."""
    store = GovernanceStore(settings)
    with Warehouse(settings).connect(read_only=True) as con:
        teachers = [
            r[0]
            for r in con.execute(
                "SELECT person_id FROM enrollment WHERE role = 'teacher' "
                "GROUP BY 1 ORDER BY count(*) DESC LIMIT 40"
            ).fetchall()
        ]
        schools = [
            r[0]
            for r in con.execute(
                "SELECT org_id FROM organization WHERE org_type = 'school' ORDER BY org_id"
            ).fetchall()
        ]
        district = con.execute(
            "SELECT org_id FROM organization WHERE org_type = 'district' LIMIT 1"
        ).fetchall()[0][0]
        caseload = [
            r[0]
            for r in con.execute(
                "SELECT person_id FROM school_enrollment WHERE school_id = ? LIMIT 300", [schools[0]]
            ).fetchall()
        ]
    plan = (
        ["teacher"] * 8
        + ["counselor"] * 4
        + ["principal"] * 4
        + ["district_admin"] * 2
        + ["state_analyst"] * 2
    )
    users = []
    for i in range(n_users):
        role = plan[i % len(plan)]
        target = {
            "teacher": teachers[i % len(teachers)],
            "principal": schools[i % len(schools)],
            "district_admin": district,
        }.get(role)
        username = f"bench-{role}-{i}-{os.getpid()}"
        secret = pyotp.random_base32(32)
        account = store.create_account(username, PASSWORD, [Grant(role, target)], totp_secret=secret)
        if role == "counselor":
            store.set_caseload(account, caseload[(i * 25) % 250 : (i * 25) % 250 + 25])
        # One login per account for the whole run (a TOTP code is accepted once).
        token = store.login(username, PASSWORD, totp=pyotp.TOTP(secret).now(), client="bench")
        users.append((username, token, target, role))
    store.close()
    return users


def routes(role: str, target: str | None, sample: dict[str, list[str]]) -> list[tuple[str, str]]:
    """``(route label, path)`` a user of ``role`` cycles through."""
    if role == "teacher":
        sections = sample.get(f"sections:{target}", [])[:3]
        return [
            ("/sections", "/sections"),
            ("/api/v1/students", "/api/v1/students?limit=50"),
            *[("/sections/{id}", f"/sections/{s}") for s in sections],
            ("/caseload", "/caseload"),
            ("/alerts", "/alerts"),
        ]
    if role == "counselor":
        return [
            ("/caseload", "/caseload"),
            ("/interventions", "/interventions"),
            ("/api/v1/students", "/api/v1/students?limit=50"),
        ]
    if role == "principal":
        return [
            ("/schools/{id}", f"/schools/{target}"),
            ("/caseload", "/caseload"),
            ("/api/v1/students", "/api/v1/students?limit=50&offset=100"),
        ]
    if role == "district_admin":
        return [
            ("/district", "/district"),
            ("/api/v1/schools", "/api/v1/schools"),
            ("/api/v1/students", "/api/v1/students?limit=50"),
        ]
    return [("/state", "/state"), ("/api/v1/trends", "/api/v1/trends")]


def serve(settings: Settings, mode: str) -> tuple[subprocess.Popen[bytes], str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    code = (
        "import sys, uvicorn\n"
        "from edsight.config import Settings\n"
        "from edsight.web.app import create_app\n"
        f"s = Settings(home={str(settings.home)!r}, argon2_time_cost=1, argon2_memory_kib=1024)\n"
        f"uvicorn.run(create_app(s, caching={mode == 'cached'!r}), host='127.0.0.1', port={port}, "
        "log_level='warning')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


async def drive(
    url: str,
    users: list[tuple[str, str, str | None, str]],
    sample: dict[str, list[str]],
    max_requests: int,
    seconds: float,
    think: float = 0.0,
) -> tuple[dict[str, list[float]], int, int, float]:
    latencies: dict[str, list[float]] = defaultdict(list)
    errors = 0
    done = 0
    stop = time.monotonic() + seconds

    async def user(username: str, token: str, target: str | None, role: str) -> None:
        nonlocal errors, done
        # Think time between a user's requests: exponential with mean `think` (0: closed loop,
        # each user asks again the moment an answer arrives — the worst case).
        pause = np.random.default_rng(zlib.crc32(username.encode()))
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            plan = routes(role, target, sample)
            i = 0
            while done < max_requests and time.monotonic() < stop:
                label, path = plan[i % len(plan)]
                i += 1
                done += 1
                t0 = time.perf_counter()
                try:
                    response = await client.get(path)
                    ok = response.status_code == 200
                except httpx.HTTPError:  # a timeout counts as an error at the client's limit
                    ok = False
                latencies[label].append(time.perf_counter() - t0)
                if not ok:
                    errors += 1
                if think > 0:
                    await asyncio.sleep(float(pause.exponential(think)))

    t0 = time.perf_counter()
    await asyncio.gather(*(user(*u) for u in users))
    return latencies, errors, done, time.perf_counter() - t0


def report(
    mode: str, latencies: dict[str, list[float]], errors: int, done: int, wall: float, rss: float
) -> float:
    print(
        f"\n== mode {mode}: {done:,} requests in {wall:.1f} s ({done / wall:.0f} req/s), "
        f"errors {errors} ({errors / max(done, 1):.2%}), server peak RSS {rss / 2**20:.0f} MiB"
    )
    print(f"{'route':<28}{'n':>7}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    for label in sorted(latencies):
        a = np.array(latencies[label]) * 1000
        print(
            f"{label:<28}{len(a):>7}{np.percentile(a, 50):>10.1f}"
            f"{np.percentile(a, 95):>10.1f}{a.max():>10.1f}"
        )
    everything = np.concatenate([np.array(v) for v in latencies.values()]) * 1000
    p95 = float(np.percentile(everything, 95))
    print(
        f"{'ALL':<28}{len(everything):>7}{np.percentile(everything, 50):>10.1f}"
        f"{p95:>10.1f}{everything.max():>10.1f}"
    )
    return p95


def loadavg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=50_000)
    parser.add_argument("--schools", type=int, default=60)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--requests", type=int, default=4000, help="stop after this many requests (per mode)")
    parser.add_argument("--seconds", type=float, default=120, help="stop after this long (per mode)")
    parser.add_argument("--home", type=Path, default=Path("tmp/bench-web"))
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--think", type=float, default=0.0, help="mean think time between a user's requests, seconds"
    )
    parser.add_argument(
        "--modes",
        default="uncached,cached",
        help="uncached: scopes and aggregates recomputed per request; cached: per-process caches "
        "keyed on the warehouse version. The first mode is the baseline",
    )
    args = parser.parse_args()
    settings = build(args.home, args.students, args.schools, args.seed)
    users = make_users(settings, args.users)
    with Warehouse(settings).connect(read_only=True) as con:
        sample = {}
        for _, _, target, role in users:
            if role == "teacher":
                sample[f"sections:{target}"] = [
                    r[0]
                    for r in con.execute(
                        "SELECT section_id FROM enrollment WHERE role = 'teacher' AND person_id = ? "
                        "ORDER BY 1 DESC",
                        [target],
                    ).fetchall()
                ]
    p95s = {}
    print(
        f"machine: {os.cpu_count()} CPUs, load average before: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    for mode in args.modes.split(","):
        proc, url = serve(settings, mode)
        try:
            # Warm-up, not counted: one user of each role walks its pages once (the statistics
            # computed at startup, per-version caches, DuckDB catalog).
            first = list({u[3]: u for u in reversed(users)}.values())
            warm = asyncio.run(drive(url, first, sample, 6 * len(first), 300))
            print(f"warm-up ({mode}): {warm[2]} requests in {warm[3]:.1f} s, errors {warm[1]}")
            latencies, errors, done, wall = asyncio.run(
                drive(url, users, sample, args.requests, args.seconds, args.think)
            )
            rss = psutil.Process(proc.pid).memory_info().rss
            print(
                "load average (1, 5, 15 min) after the run: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
            )
        finally:
            proc.terminate()
            proc.wait(10)
        p95s[mode] = report(mode, latencies, errors, done, wall, rss)
    modes = list(p95s)
    for mode in modes[1:]:
        print(f"\np95 ratio {mode} / {modes[0]} (baseline): {p95s[mode] / p95s[modes[0]]:.2f}")


if __name__ == "__main__":
    main()
