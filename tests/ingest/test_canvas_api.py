"""Canvas API connector against the emulator on loopback: round trip, faults, incremental runs, crashes."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from edsight.config import Settings
from edsight.errors import InvalidInput, SourceError, WarehouseError
from edsight.ingest._canvas_api_http import CanvasHttp, describe, parse_links
from edsight.ingest.canvas_api import CanvasLoadResult, HttpPolicy, ingest_canvas_api
from edsight.schema import CANONICAL
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import TERM_START, generate_canvas, write_canvas
from edsight.testing.canvas_emulator import (
    USER_ID_OFFSET,
    CanvasData,
    CanvasEmulator,
    Faults,
    Throttle,
)

N = 100
SEED = 3
TOKEN = "tok-7c1e44d0a9b2f36e"  # distinctive, so a leak is easy to find
FAST = HttpPolicy(attempts=4, throttle_attempts=400, base_delay_s=0.001, max_delay_s=0.02, timeout_s=10)
ONE_COURSE = [101]


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return generate_canvas(N, SEED)


class Ticks:
    """A clock that moves a fixed step each time it is read, so throttling does not depend on speed."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            self.now += self.step
            return self.now


def emulator(tables: dict[str, pd.DataFrame], **options: Any) -> CanvasEmulator:
    return CanvasEmulator(CanvasData(tables, seed=SEED), tokens={TOKEN}, seed=SEED, **options)


@pytest.fixture
def served(tables: dict[str, pd.DataFrame]) -> Iterator[tuple[CanvasEmulator, str]]:
    emu = emulator(tables)
    with emu.serve() as url:
        yield emu, url


@pytest.fixture(scope="module")
def clean_course(tables: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What a fault-free ingest of course 101 stores (the reference for runs with faults)."""
    wh = new_warehouse(tmp_path_factory.mktemp("clean"), "home")
    with emulator(tables).serve() as url:
        ingest(wh, url, course_ids=ONE_COURSE)
    return content(wh)


def ingest(wh: Warehouse, url: str, **options: Any) -> CanvasLoadResult:
    options.setdefault("policy", FAST)
    return ingest_canvas_api(wh, url, token=options.pop("token", TOKEN), **options)


def new_warehouse(tmp_path: Path, name: str) -> Warehouse:
    wh = Warehouse(Settings(home=tmp_path / name))
    wh.init()
    return wh


def content(wh: Warehouse) -> dict[str, str]:
    """Checksums of the canonical tables (the data, not the bookkeeping)."""
    return {t: wh.checksum(t) for t in CANONICAL}


def stored_nothing(wh: Warehouse) -> bool:
    counts = wh.counts()
    return all(counts[t] == 0 for t in [*CANONICAL, "load_batch", "sync_state"])


def rows(wh: Warehouse, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with wh.connect(read_only=True) as con:
        return sorted(con.execute(sql, list(params)).fetchall())


# -- the round trip ---------------------------------------------------------------------------

# What a warehouse holds, keyed by source ids: the seed loader maps seed ids under system
# "canvas"; the API connector maps Canvas's SIS ids (which carry the seed ids) under "canvas_sis".
_PERSON = "JOIN id_map pm ON pm.edsight_id = x.person_id AND pm.entity = 'person' AND pm.source_system = ?"
_COURSE = (
    "JOIN section s ON s.section_id = x.section_id JOIN id_map cm ON cm.edsight_id = s.course_id "
    "AND cm.entity = 'course' AND cm.source_system = ?"
)
_ASSIGNMENT = (
    "JOIN id_map am ON am.edsight_id = x.assignment_id AND am.entity = 'assignment' AND am.source_system = ?"
)
VIEWS: dict[str, tuple[str, int]] = {
    "students": (
        "SELECT pm.source_id FROM person x " + _PERSON + " WHERE x.role = 'student'",
        1,
    ),
    "courses": (
        "SELECT cm.source_id, x.title FROM course x JOIN id_map cm ON cm.edsight_id = x.course_id "
        "AND cm.entity = 'course' AND cm.source_system = ?",
        1,
    ),
    "sections": (
        "SELECT cm.source_id, x.term_id IS NOT NULL FROM section x JOIN id_map cm "
        "ON cm.edsight_id = x.course_id AND cm.entity = 'course' AND cm.source_system = ?",
        1,
    ),
    "enrollments": (
        "SELECT pm.source_id, cm.source_id, x.role, x.start_date, x.end_date FROM enrollment x "
        + _PERSON
        + " "
        + _COURSE
        + " WHERE x.role = 'student'",
        2,
    ),
    "assignments": (
        "SELECT am.source_id, cm.source_id, x.assignment_type, x.due_at, x.points_possible FROM assignment x "
        + _ASSIGNMENT
        + " "
        + _COURSE,
        2,
    ),
    "submissions": (
        "SELECT pm.source_id, am.source_id, x.submitted_at, x.late, x.missing, x.score, x.attempt "
        "FROM submission x " + _ASSIGNMENT + " " + _PERSON,
        2,
    ),
    "weekly_activity": (
        "SELECT pm.source_id, cm.source_id, CAST(floor(date_diff('second', "
        f"TIMESTAMP '{TERM_START} 00:00:00', x.period_start) / 604800) AS INTEGER) AS week, "
        "sum(x.page_views), sum(x.participations) FROM lms_activity x " + _PERSON + " " + _COURSE + " "
        "GROUP BY ALL HAVING sum(x.page_views) > 0 OR sum(x.participations) > 0",
        2,
    ),
}


def by_source_ids(wh: Warehouse, system: str) -> dict[str, list[tuple[Any, ...]]]:
    return {name: rows(wh, sql, *([system] * n)) for name, (sql, n) in VIEWS.items()}


@pytest.fixture(scope="module")
def from_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[Any, ...]]]:
    """The generated semester loaded from its seed files, keyed by seed ids."""
    folder = tmp_path_factory.mktemp("seed")
    write_canvas(folder / "files", N, seed=SEED)
    wh = new_warehouse(folder, "home")
    wh.load_directory(folder / "files")
    return by_source_ids(wh, "canvas")


@pytest.mark.parametrize(
    "trouble",
    [
        {},
        # Throttling, 5xx answers and dropped connections, all at once: the result must not change.
        {
            "throttle": Throttle(capacity=12, leak_per_s=1.0, up_front=0),
            "clock": Ticks(0.8),
            "faults": Faults(error_rate=0.05, drop_rate=0.05),
        },
    ],
    ids=["clean", "throttled-5xx-drops"],
)
def test_round_trip_over_http_equals_the_generated_data(
    tables: dict[str, pd.DataFrame],
    tmp_path: Path,
    from_files: dict[str, list[tuple[Any, ...]]],
    trouble: dict[str, Any],
) -> None:
    over_http = new_warehouse(tmp_path, "api")
    # Canvas writing local times with an offset must not move anything either.
    emu = emulator(tables, utc_offset_minutes=-360, **trouble)
    # Ten attempts: with 10 % of answers failing, four failures in a row would be a matter of time.
    policy = HttpPolicy(
        attempts=10, throttle_attempts=400, base_delay_s=0.001, max_delay_s=0.02, timeout_s=10
    )
    with emu.serve() as url:
        result = ingest(over_http, url, concurrency=6, policy=policy)
    assert result.rows_quarantined == 0, result.problems
    got = by_source_ids(over_http, "canvas_sis")
    for name in VIEWS:
        assert got[name] == from_files[name], name
    assert len(got["students"]) == N
    assert len(got["submissions"]) == len(tables["submissions"])
    assert sum(r[3] for r in got["weekly_activity"]) == int(tables["canvas_analytics"]["page_views"].sum())
    # Counts reconcile: every fetched row was validated, and each table's rows add up.
    assert result.rows_read == result.rows_fetched == sum(r.rows_read for r in result.source_tables.values())
    for report in [*result.source_tables.values(), *result.tables.values()]:
        assert report.rows_read == report.rows_valid + report.rows_quarantined
    if trouble:
        assert {"error", "drop", "throttled"} <= {r.fault for r in emu.log}
        throttled = [r for r in emu.log if r.fault == "throttled"]
        assert {r.status for r in throttled} == {403}
        assert result.throttled == len(throttled) > 0
        assert result.retries > 0
        assert result.requests > result.pages
    else:
        assert result.requests == result.pages  # one request per page


# -- incremental and since ---------------------------------------------------------------------


def test_second_run_stores_nothing_and_a_third_only_what_changed(
    served: tuple[CanvasEmulator, str], warehouse: Warehouse
) -> None:
    emu, url = served
    first = ingest(warehouse, url, course_ids=ONE_COURSE)
    before = content(warehouse)
    emu.reset_counters()
    second = ingest(warehouse, url, course_ids=ONE_COURSE)
    assert second.rows_stored == 0
    assert second.rows_quarantined == 0
    assert second.unchanged == second.rows_fetched == second.rows_read > 0
    assert (
        second.activity_skipped == first.tables["enrollment"].rows_valid - 1
    )  # the students, not the teacher
    assert not emu.requests_to("/activity")
    submissions = emu.requests_to("/students/submissions")
    assert len(submissions) == 2
    assert all("_since=" in r.query for r in submissions)
    # The course, its five small lists, and the two submission lists.
    assert second.requests == 8 < first.requests
    assert content(warehouse) == before
    assert warehouse.counts()["load_batch"] == 2

    target = next(s for s in emu.data.submissions[101] if s["score"] is not None and s["score"] < 20)
    user = target["user_id"]
    emu.data.regrade(101, target["assignment_id"], user, score=25.0, at=datetime(2025, 1, 6, 9, 30))
    emu.data.add_activity(101, user, datetime(2024, 9, 3, 10), views=7, participations=1)
    emu.reset_counters()
    third = ingest(warehouse, url, course_ids=ONE_COURSE)
    assert [r.path for r in emu.requests_to("/activity")] == [
        f"/api/v1/courses/101/analytics/users/{user}/activity"
    ]
    stored = {t: r.rows_valid for t, r in third.tables.items() if r.rows_valid}
    assert stored == {"submission": 1, "lms_activity": 1, "course_grade": 1}
    person = (
        "(SELECT edsight_id FROM id_map WHERE source_system = 'canvas' AND entity = 'person' "
        f"AND source_id = '{user}')"
    )
    assert rows(warehouse, f"SELECT score FROM submission WHERE person_id = {person} AND score = 25.0") == [
        (25.0,)
    ]
    hour = rows(
        warehouse,
        f"SELECT page_views, participations FROM lms_activity WHERE person_id = {person} "
        "AND period_start = TIMESTAMP '2024-09-03 10:00:00'",
    )
    assert len(hour) == 1
    assert hour[0][0] >= 7
    assert hour[0][1] >= 1


def test_since_overrides_the_cursor(served: tuple[CanvasEmulator, str], warehouse: Warehouse) -> None:
    emu, url = served
    since = datetime(2024, 10, 20, 6, 0, tzinfo=UTC)
    result = ingest(warehouse, url, course_ids=ONE_COURSE, since=since)
    assert result.rows_quarantined == 0, result.problems
    queries = [r.query for r in emu.requests_to("/students/submissions")]
    assert any("submitted_since=2024-10-20T06%3A00%3A00Z" in q for q in queries)
    assert any("graded_since=2024-10-20T06%3A00%3A00Z" in q for q in queries)
    naive = since.replace(tzinfo=None)
    assert rows(warehouse, "SELECT min(period_start) >= ? FROM lms_activity", naive) == [(True,)]
    due = {a["id"]: a["due_at"] for a in emu.data.assignments[101]}
    expected = {
        (s["assignment_id"], s["user_id"])
        for s in emu.data.submissions[101]
        if (s["submitted_at"] and s["submitted_at"] > naive)
        or (s["graded_at"] and s["graded_at"] > naive)
        or due[s["assignment_id"]] > naive
    }
    assert 0 < warehouse.counts()["submission"] == len(expected) < len(emu.data.submissions[101])


def test_course_ids_and_analytics_switch(tables: dict[str, pd.DataFrame], warehouse: Warehouse) -> None:
    emu = emulator(tables, analytics=False)
    with emu.serve() as url:
        with pytest.raises(SourceError, match="Analytics API enabled"):
            ingest(warehouse, url, course_ids=[102, 104])
        assert stored_nothing(warehouse)
        result = ingest(warehouse, url, course_ids=[102, 104], analytics=False)
    assert rows(warehouse, "SELECT count(*) FROM course") == [(2,)]
    assert warehouse.counts()["lms_activity"] == 0
    assert result.rows_stored > 0
    assert result.rows_quarantined == 0


# -- HTTP faults ------------------------------------------------------------------------------


def test_401_with_www_authenticate_means_expired_or_revoked(
    served: tuple[CanvasEmulator, str], warehouse: Warehouse, caplog: pytest.LogCaptureFixture
) -> None:
    _, url = served
    caplog.set_level(logging.DEBUG)
    with pytest.raises(
        SourceError, match=r"rejected the token .*\(401\): it has expired or been revoked"
    ) as err:
        ingest(warehouse, url, token="tok-wrong-5f0e9a")
    assert "tok-wrong-5f0e9a" not in str(err.value)
    assert "tok-wrong-5f0e9a" not in caplog.text
    assert stored_nothing(warehouse)


def test_a_listed_course_the_token_may_not_read_is_skipped(warehouse: Warehouse) -> None:
    emu = emulator(generate_canvas(12, SEED), unreadable_courses={103})
    with emu.serve() as url:
        result = ingest(warehouse, url)
        assert result.skipped[0].startswith(
            "course 103: Canvas rejected the token on GET /api/v1/courses/103/"
        )
        assert result.rows_quarantined == 0
        assert rows(warehouse, "SELECT count(*) FROM course") == [(7,)]
        # Asked for by id, the same course is an error.
        with pytest.raises(SourceError, match=r"\(401\): the token's user may not read this"):
            ingest(warehouse, url, course_ids=[103])


def test_401_without_www_authenticate_means_no_permission(
    tables: dict[str, pd.DataFrame], warehouse: Warehouse
) -> None:
    emu = CanvasEmulator(CanvasData(tables, seed=SEED), tokens={TOKEN}, unauthorized_tokens={"tok-observer"})
    with emu.serve() as url, pytest.raises(SourceError, match=r"\(401\): the token's user may not read this"):
        ingest(warehouse, url, token="tok-observer")
    assert stored_nothing(warehouse)


def test_404_names_the_resource(served: tuple[CanvasEmulator, str], warehouse: Warehouse) -> None:
    _, url = served
    with pytest.raises(SourceError, match=r"Canvas has no /api/v1/courses/999 \(404 Not Found\)"):
        ingest(warehouse, url, course_ids=[101, 999])
    assert stored_nothing(warehouse)


def test_500s_are_retried_until_they_pass(
    tables: dict[str, pd.DataFrame],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    clean_course: dict[str, str],
) -> None:
    retried = new_warehouse(tmp_path, "retried")
    emu = emulator(tables, faults=Faults(error_on={1, 2, 3, 9}, error_status=503))
    caplog.set_level(logging.DEBUG)
    with emu.serve() as url:
        result = ingest(retried, url, course_ids=ONE_COURSE)
    assert result.retries == 4
    assert result.requests == result.pages + 4
    assert content(retried) == clean_course
    assert "answered 503; retrying" in caplog.text
    assert TOKEN not in caplog.text
    # Student ids (in activity paths) appear in DEBUG records at most.
    above_debug = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    assert any("/analytics/users/:id/activity" in m for m in above_debug)
    assert not any(re.search(rf"/users/{str(USER_ID_OFFSET)[0]}\d+", m) for m in above_debug)


def test_500_forever_stops_cleanly_then_the_rerun_resumes(
    tables: dict[str, pd.DataFrame], warehouse: Warehouse
) -> None:
    emu = emulator(tables, faults=Faults(error_paths=(r"/students/submissions$",)))
    with emu.serve() as url:
        with pytest.raises(
            SourceError,
            match=r"kept failing on GET /api/v1/courses/101/students/submissions: "
            r"Canvas answered 500 \(gave up after 4 attempts\)",
        ):
            ingest(warehouse, url, course_ids=ONE_COURSE)
        assert stored_nothing(warehouse)
        emu.faults = Faults()
        emu.reset_counters()
        result = ingest(warehouse, url, course_ids=ONE_COURSE)
    assert result.resumed_pages > 0
    assert result.requests == result.pages - result.resumed_pages
    assert not emu.requests_to("/enrollments")
    assert not emu.requests_to("/sections")
    assert result.rows_quarantined == 0
    assert warehouse.counts()["submission"] == len(emu.data.submissions[101])


def test_connection_dropped_mid_pagination_is_retried(
    tables: dict[str, pd.DataFrame], tmp_path: Path, clean_course: dict[str, str]
) -> None:
    dropped = new_warehouse(tmp_path, "dropped")
    emu = emulator(
        tables,
        faults=Faults(transient={r"/enrollments\?.*page=3": "drop", r"/submissions\?.*page=2": "drop"}),
    )
    with emu.serve() as url:
        result = ingest(dropped, url, course_ids=ONE_COURSE, per_page=10)
    drops = [r for r in emu.log if r.fault == "drop"]
    assert len(drops) == 2
    assert all("page=" in r.query for r in drops)
    assert result.retries == 2
    assert content(dropped) == clean_course


def test_a_pagination_loop_is_detected(tables: dict[str, pd.DataFrame], warehouse: Warehouse) -> None:
    emu = emulator(tables, faults=Faults(loop_paths=(r"/enrollments$",)))
    with emu.serve() as url, pytest.raises(SourceError, match="next link repeats a page already read"):
        ingest(warehouse, url, course_ids=ONE_COURSE)
    assert len(emu.requests_to("/enrollments")) == 2
    assert stored_nothing(warehouse)


def test_throttled_for_good_gives_up_with_advice(
    tables: dict[str, pd.DataFrame], warehouse: Warehouse
) -> None:
    emu = emulator(tables, throttle=Throttle(capacity=1, leak_per_s=0, up_front=5))
    policy = HttpPolicy(throttle_attempts=3, base_delay_s=0.001, max_delay_s=0.002)
    with emu.serve() as url, pytest.raises(SourceError, match=r"kept throttling .*try a lower concurrency"):
        ingest(warehouse, url, policy=policy)
    assert stored_nothing(warehouse)


# -- hostile answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "policy", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, FAST, "nested too deeply"),
        (b'{"errors": "not a list"}', FAST, "expected a JSON list, got an object"),
        (b'[{"id": 101, "name": "cut sh', FAST, r"not valid JSON \(gave up after 4 attempts\)"),
        (
            b'[{"id": 1, "name": "' + b"x" * 50_000 + b'"}]',
            HttpPolicy(max_page_bytes=20_000),
            "larger than 20,000",
        ),
    ],
)
def test_hostile_bodies_stop_the_run_and_store_nothing(
    tables: dict[str, pd.DataFrame], warehouse: Warehouse, body: bytes, policy: HttpPolicy, message: str
) -> None:
    emu = emulator(tables, faults=Faults(bodies={r"/api/v1/courses/101/sections$": body}))
    with emu.serve() as url, pytest.raises(SourceError, match=message):
        ingest(warehouse, url, course_ids=ONE_COURSE, policy=policy)
    assert stored_nothing(warehouse)


def test_hostile_rows_are_quarantined_with_their_reason(
    served: tuple[CanvasEmulator, str], warehouse: Warehouse
) -> None:
    emu, url = served
    students = emu.data.student_ids(101)
    emu.data.users[students[0]]["name"] = "x" * 20_000
    emu.data.users[students[1]]["sis_user_id"] = {"nested": [[[[["deep"]]]]]}
    subs = emu.data.submissions[101]
    subs[0]["score"] = "abc"
    subs[1]["user_id"] = "not-a-number"
    subs[2]["attempt"] = 2.5
    emu.data.assignments[101][0]["points_possible"] = float("inf")
    gone = students[3]
    del emu.data._pairs[(101, gone)]  # Canvas answers 404 for this student's activity now
    result = ingest(warehouse, url, course_ids=ONE_COURSE)
    assert result.skipped == ["activity of a student of course 101: not found (404)"]
    reasons = [r[0] for r in rows(warehouse, "SELECT reason FROM quarantine")]
    joined = "\n".join(reasons)
    assert "users: row" in joined
    assert "20,000 characters long" in joined
    assert "'sis_user_id': expected a single value, got an object" in joined
    assert "submissions: row 1, column 'score': expected a number, got abc" in joined
    assert "column 'user_id': expected an integer, got not-a-number" in joined
    assert "column 'attempt': expected an integer" in joined
    assert "column 'points_possible': expected a finite number" in joined
    # The two students whose user rows were rejected take their rows with them, nothing else does.
    assert result.rows_quarantined == len(reasons) > 6
    stored_students = rows(warehouse, "SELECT count(*) FROM person WHERE role = 'student'")[0][0]
    assert stored_students == len(students) - 2
    for report in [*result.source_tables.values(), *result.tables.values()]:
        assert report.rows_read == report.rows_valid + report.rows_quarantined


# -- crashes --------------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from edsight.config import Settings
    from edsight.ingest.canvas_api import HttpPolicy, ingest_canvas_api
    from edsight.store.warehouse import Warehouse

    def progress(message):
        if message == "commit" and os.environ.get("DIE_AT_COMMIT"):
            os.kill(os.getpid(), signal.SIGKILL)

    ingest_canvas_api(
        Warehouse(Settings(home=sys.argv[1])), sys.argv[2], token=os.environ["CANVAS_TOKEN"],
        course_ids=[101], concurrency=2, policy=HttpPolicy(timeout_s=10), progress=progress,
    )
    """
)


def _child(home: Path, url: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(home), url],
        env={**os.environ, "CANVAS_TOKEN": TOKEN, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _checkpoint_lines(home: Path) -> int:
    files = list((home / "spool").glob("canvas-api/*/checkpoint.jsonl"))
    return sum(f.read_text().count("\n") for f in files)


def test_kill_9_mid_fetch_then_rerun_resumes_and_stores_once(
    tables: dict[str, pd.DataFrame], tmp_path: Path, clean_course: dict[str, str]
) -> None:
    wh = new_warehouse(tmp_path, "crashed")
    emu = emulator(tables, faults=Faults(delay_s=0.05))
    with emu.serve() as url:
        child = _child(wh.settings.home, url)
        deadline = time.monotonic() + 60
        while _checkpoint_lines(wh.settings.home) < 15:
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(WarehouseError, match="another Canvas API run for this source is in progress"):
            ingest(wh, url, course_ids=ONE_COURSE)
        child.send_signal(signal.SIGKILL)
        child.wait()
        done = _checkpoint_lines(wh.settings.home)
        assert stored_nothing(wh)
        emu.faults = Faults()
        emu.reset_counters()
        result = ingest(wh, url, course_ids=ONE_COURSE)
    assert result.resumed_pages >= done >= 15
    assert result.requests == result.pages - result.resumed_pages
    assert content(wh) == clean_course
    assert wh.counts()["load_batch"] == 1
    assert not list((wh.settings.home / "spool").glob("canvas-api/*"))


def test_kill_9_at_commit_then_rerun_loads_from_the_spool(
    served: tuple[CanvasEmulator, str], tmp_path: Path
) -> None:
    emu, url = served
    wh = new_warehouse(tmp_path, "wh")
    child = _child(wh.settings.home, url, DIE_AT_COMMIT="1")
    assert child.wait(timeout=120) == -signal.SIGKILL
    assert stored_nothing(wh)
    fetched = len(emu.log)
    result = ingest(wh, url, course_ids=ONE_COURSE)
    assert len(emu.log) == fetched
    assert result.requests == 0
    assert result.resumed_pages == result.pages > 0
    assert result.rows_stored > 0
    assert wh.counts()["load_batch"] == 1


def test_a_run_that_committed_is_not_loaded_twice(
    served: tuple[CanvasEmulator, str], warehouse: Warehouse
) -> None:
    _, url = served
    spool = warehouse.settings.home / "spool"
    kept = warehouse.settings.home.parent / "kept"

    def keep_spool(message: str) -> None:
        if message == "commit":  # the moment before COMMIT: as if the process died right after it
            shutil.copytree(spool, kept)

    first = ingest(warehouse, url, course_ids=ONE_COURSE, progress=keep_spool)
    shutil.copytree(kept, spool, dirs_exist_ok=True)
    before = content(warehouse)
    again = ingest(warehouse, url, course_ids=ONE_COURSE)
    assert again.already_loaded
    assert again.batch_id == first.batch_id
    assert again.requests == 0
    assert content(warehouse) == before
    assert warehouse.counts()["load_batch"] == 1


# -- small pieces ---------------------------------------------------------------------------------


def test_link_headers_are_parsed_case_insensitively_and_urls_kept_opaque() -> None:
    header = (
        '<https://c.example/api/v1/x?page=bookmark:WzEwXQ&per_page=100>; REL="Next", '
        '<https://c.example/api/v1/x?page=1>; rel=first,<https://c.example/api/v1/x?page=9>; rel="last prev"'
    )
    links = parse_links(header)
    assert links["next"] == "https://c.example/api/v1/x?page=bookmark:WzEwXQ&per_page=100"
    assert links["first"].endswith("page=1")
    assert links["last"] == links["prev"]
    assert parse_links(None) == {}
    assert parse_links("garbage") == {}


def test_links_to_another_host_are_refused_and_paths_are_masked() -> None:
    async def build() -> None:
        async with CanvasHttp(
            "https://canvas.example.edu/api/v1/", TOKEN, policy=FAST, concurrency=1
        ) as http:
            assert http.url("/api/v1/courses?page=2") == "https://canvas.example.edu/api/v1/courses?page=2"
            with pytest.raises(SourceError, match="another host"):
                http.url("https://evil.example/api/v1/courses?page=2")

    asyncio.run(build())
    assert describe("https://c.example/api/v1/courses/5/analytics/users/1042/activity?x=1") == (
        "/api/v1/courses/5/analytics/users/:id/activity"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"per_page": 500}, "per_page must be between 1 and 100"),
        ({"concurrency": 0}, "concurrency must be at least 1"),
        ({"course_ids": [1, -2]}, "course_ids must be positive"),
        ({"token": " "}, "token is empty"),
        ({"token": "abc\r\nX-Evil: 1"}, "whitespace or control characters"),
    ],
)
def test_bad_arguments_are_invalid_input(warehouse: Warehouse, options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as err:
        ingest(warehouse, "http://127.0.0.1:9", **options)
    assert "X-Evil" not in str(err.value)


def test_a_base_url_must_be_http(warehouse: Warehouse) -> None:
    with pytest.raises(InvalidInput, match="not a Canvas base URL"):
        ingest(warehouse, "canvas.example.edu")
