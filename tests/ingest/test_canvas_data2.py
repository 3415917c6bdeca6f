"""Canvas Data 2 exports: mapping, incremental U/D exports, idempotency, hostile JSON lines,
and a load killed with SIGKILL then run again."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.ingest._assessments_prep import MAX_LINE_BYTES, read_jsonl
from edsight.ingest.canvas_data2 import ingest_canvas_data2
from edsight.ingest.ids import edsight_id
from edsight.store.warehouse import LoadResult, Warehouse

DATA = Path(__file__).parent.parent / "data" / "canvas_data2"
SNAPSHOT, INCREMENTAL, DELETE = DATA / "snapshot", DATA / "incremental", DATA / "delete_assignment"


def pid(user: int) -> str:
    return edsight_id("canvas", "person", user)


def aid(assignment: int) -> str:
    return edsight_id("canvas", "assignment", assignment)


SECTION = edsight_id("canvas", "section", 101)
# Canvas user 7001 is a student the SIS rostered already: her pseudonym carries her SIS number.
ADA_ID = "sis-1001"
ADA = {
    "person_id": ADA_ID,
    "role": "student",
    "given_name": "Ada",
    "local_id": "S1001",
    "directory_opt_out": "false",
}


@pytest.fixture
def courses(warehouse: Warehouse, make_batch: Callable[..., Path]) -> Warehouse:
    """A warehouse with Canvas course 101 (as the Canvas API connector stores it) and one SIS student."""
    course = edsight_id("canvas", "course", 101)
    warehouse.load_directory(
        make_batch(
            "courses",
            organization=[{"org_id": "u1", "name": "State University", "org_type": "institution"}],
            term=[
                {
                    "term_id": "sp24",
                    "name": "Spring 2024",
                    "term_type": "term",
                    "school_year": 2023,
                    "start_date": "2024-01-08",
                    "end_date": "2024-05-10",
                }
            ],
            course=[{"course_id": course, "title": "Biology 101"}],
            section=[{"section_id": SECTION, "course_id": course, "term_id": "sp24", "school_id": "u1"}],
            person=[ADA],
        )
    )
    return warehouse


def rows(wh: Warehouse, sql: str) -> list[tuple[object, ...]]:
    with wh.connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def activity(wh: Warehouse) -> dict[tuple[str, datetime], tuple[int, int]]:
    found = rows(wh, "SELECT person_id, period_start, page_views, participations FROM lms_activity")
    return {(str(p), t): (int(v), int(a)) for p, t, v, a in found}  # type: ignore[misc]


def submissions(wh: Warehouse) -> dict[tuple[str, str], tuple[object, ...]]:
    found = rows(
        wh,
        "SELECT assignment_id, person_id, late, missing, excused, seconds_late, score, workflow_state "
        "FROM submission",
    )
    return {(str(r[0]), str(r[1])): r[2:] for r in found}


def reconciles(result: LoadResult) -> None:
    for report in [*result.source_tables.values(), *result.tables.values()]:
        assert report.rows_read == report.rows_valid + report.rows_quarantined, report.table


def test_snapshot_maps_to_canonical_tables(courses: Warehouse) -> None:
    result = ingest_canvas_data2(courses, SNAPSHOT)
    # 7001 is found by her SIS number (pseudonyms -> person.local_id) and keeps her SIS record;
    # 7002 and 7003 are created from their enrollments (7002 with the SIS number edsight learnt);
    # the test student (7099) is not created.
    people = "SELECT person_id, role, given_name, local_id FROM person ORDER BY ALL"
    assert rows(courses, people) == sorted(
        [
            (ADA_ID, "student", "Ada", "S1001"),
            (pid(7002), "student", None, "S1002"),
            (pid(7003), "teacher", None, None),
        ]
    )
    linked = "SELECT source_id, edsight_id FROM id_map WHERE entity = 'person' ORDER BY 1"
    assert rows(courses, linked) == [("7001", ADA_ID), ("7002", pid(7002)), ("7003", pid(7003))]
    assert sorted(rows(courses, "SELECT person_id, role, start_date FROM enrollment")) == sorted(
        [
            (ADA_ID, "student", datetime(2024, 1, 8).date()),
            (pid(7002), "student", datetime(2024, 1, 6).date()),  # no start_at: created_at
            (pid(7003), "teacher", datetime(2024, 1, 2).date()),
        ]
    )
    assert sorted(
        rows(courses, "SELECT assignment_id, title, assignment_type, points_possible FROM assignment")
    ) == sorted(
        [(aid(501), "Essay 1", "assignment", 10.0), (aid(502), "Quiz 1", "quiz", 5.0)]
    )  # 503's course is unknown (quarantined); 504 is deleted in Canvas
    assert submissions(courses) == {
        (aid(501), ADA_ID): (False, False, False, None, 9.0, "graded"),
        (aid(501), pid(7002)): (True, False, False, 36060, 7.5, "graded"),  # 10 h 1 min after the due date
        (aid(502), ADA_ID): (False, True, False, None, None, "unsubmitted"),  # due date passed
        (aid(502), pid(7002)): (False, False, True, None, None, "unsubmitted"),  # excused: not missing
    }
    ten, eleven = datetime(2024, 2, 5, 10), datetime(2024, 2, 5, 11)
    # 7001: GET, GET, POST at 10h and a GET at 11h; 7002: a PUT (its masqueraded GET is not counted).
    assert activity(courses) == {
        (ADA_ID, ten): (3, 1),
        (ADA_ID, eleven): (1, 0),
        (pid(7002), ten): (1, 1),
    }
    assert rows(courses, "SELECT count(*) FROM event_log WHERE source = 'canvas_data2'") == [(7,)]
    assert result.skipped == [
        "web_logs: 1 requests outside a course, 1 made while masquerading, not counted as course activity",
        "enrollments: 1 test-student (StudentViewEnrollment) rows not stored",
    ]
    reasons = [r[0] for r in rows(courses, "SELECT reason FROM quarantine ORDER BY source_file, row_number")]
    assert reasons == [
        "part-00000.json [assignments]: row 3, column 'value.context_id': this Canvas course is not in the "
        "warehouse; load the course first (Canvas API connector or a canonical section)",
        "part-00000.json [enrollments]: row 5, column 'value.course_id': this Canvas course is not in the "
        "warehouse; load the course first (Canvas API connector or a canonical section)",
        "part-00000.json [submissions]: row 5, column 'value.user_id': this Canvas user is not in the "
        "warehouse nor enrolled in this export",
        "part-00000.json [web_logs]: row 8, column 'value.course_id': this Canvas course is not in the "
        "warehouse; load the course first (Canvas API connector or a canonical section)",
    ]
    assert {t: r.rows_read for t, r in result.source_tables.items()} == {
        "pseudonyms": 4,
        "assignments": 4,
        "enrollments": 5,
        "submissions": 5,
        "web_logs": 8,
    }
    assert result.rows_read == 26
    assert result.unchanged == 0
    reconciles(result)
    assert rows(courses, "SELECT entity, cursor FROM sync_state ORDER BY 1") == [
        (t, "2024-02-20 00:00:00") for t in ("assignments", "enrollments", "submissions", "web_logs")
    ]


def test_incremental_export_applies_updates_and_deletions(courses: Warehouse) -> None:
    ingest_canvas_data2(courses, SNAPSHOT)
    result = ingest_canvas_data2(courses, INCREMENTAL)
    # Assignment 501 carries an older meta.ts than the cursor, and one web_logs request was
    # exported before: both are skipped as unchanged.
    assert result.unchanged == 2
    assert result.deleted == {"submission": 1, "enrollment": 2}
    assert ("Essay 1", 10.0) in rows(courses, "SELECT title, points_possible FROM assignment")
    subs = submissions(courses)
    assert (aid(501), pid(7002)) not in subs  # D row, found through id_map
    assert subs[(aid(502), ADA_ID)] == (True, False, False, 720060, 4.0, "graded")
    assert subs[(aid(505), pid(7005))] == (True, False, False, 3600, None, "submitted")  # late by policy
    # 9002 is deleted by its state, 9003 by a D row; 7005 is new (CSV part) and gets a person.
    assert sorted(rows(courses, "SELECT person_id, role FROM enrollment")) == sorted(
        [(ADA_ID, "student"), (pid(7005), "student")]
    )
    assert (pid(7005), "student") in rows(courses, "SELECT person_id, role FROM person")
    # The 10h bucket of 7001 had 3 views; one more request in that hour makes 4 (added, not replaced).
    counts = activity(courses)
    assert counts[(ADA_ID, datetime(2024, 2, 5, 10))] == (4, 1)
    assert counts[(pid(7005), datetime(2024, 2, 21, 9))] == (1, 1)
    assert rows(courses, "SELECT cursor FROM sync_state WHERE entity = 'submissions'") == [
        ("2024-02-22 00:00:00",)
    ]
    reconciles(result)

    deleted = ingest_canvas_data2(courses, DELETE)
    assert deleted.deleted == {"assignment": 1, "submission": 1}  # its submission goes with it
    assert all(a != aid(501) for a, _ in submissions(courses))


def test_reloads_change_nothing(courses: Warehouse) -> None:
    first = ingest_canvas_data2(courses, SNAPSHOT)
    ingest_canvas_data2(courses, INCREMENTAL)
    tables = ("person", "enrollment", "assignment", "submission", "lms_activity", "id_map", "event_log")
    before = {t: courses.checksum(t) for t in tables}
    # The same export again: every row is at or before the cursors, so nothing is restaged.
    repeat = ingest_canvas_data2(courses, INCREMENTAL)
    assert (repeat.unchanged, repeat.rows_stored, repeat.deleted) == (11, 0, {})
    # The snapshot again: every row is at or before the cursors and every counted request is in
    # event_log; only the request quarantined last time (unknown course) is tried, and fails, again.
    again = ingest_canvas_data2(courses, SNAPSHOT, force=True)
    assert again.batch_id != first.batch_id
    assert (again.unchanged, again.rows_stored, again.rows_quarantined) == (21, 0, 1)
    assert {t: courses.checksum(t) for t in tables} == before


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_hostile_json_lines_are_set_aside_and_the_rest_loads(courses: Warehouse, tmp_path: Path) -> None:
    good = _lines(SNAPSHOT / "canvas" / "enrollments" / "part-00000.json")[:3]
    wrong_type = json.loads(good[0])
    wrong_type["key"]["id"] = 9101
    wrong_type["value"]["user_id"] = "seven"
    nested = json.loads(good[1])
    nested["key"]["id"] = 9102
    nested["value"]["course_id"] = {"id": 101}
    lines = [
        good[0],
        "[" * 100_000 + "]" * 100_000,  # 2: nested too deeply for any parser limit
        '{"key": {"id": 9103}, "value": {"title": "' + "x" * (MAX_LINE_BYTES + 10) + '"}}',  # 3: huge
        "[1, 2, 3]",  # 4: not an object
        '"just a string"',  # 5
        json.dumps(wrong_type),  # 6: a string where an id belongs
        json.dumps(nested),  # 7: an object where an id belongs
        '{"key": "not an object", "meta": {"action": "U"}}',  # 8
        good[1],  # 9
        good[2],
        good[2],  # 11: the same key again
        '{"key": {"id": 9104}, "value": {"user_id": 7004, "cour',  # 12: truncated
    ]
    folder = tmp_path / "export" / "enrollments"
    folder.mkdir(parents=True)
    (folder / "part-0.json").write_bytes("\n".join(lines).encode() + b"\n\xff\xfe{}\n")  # 13: not UTF-8
    result = ingest_canvas_data2(courses, tmp_path / "export")
    assert result.source_tables["enrollments"].rows_read == 13
    assert result.source_tables["enrollments"].rows_valid == 3
    assert len(rows(courses, "SELECT * FROM enrollment")) == 3
    reasons = dict(rows(courses, "SELECT row_number, reason FROM quarantine"))
    assert reasons[2].endswith("JSON nested too deeply")
    assert reasons[3].endswith(
        f"line is {MAX_LINE_BYTES + 55:,} bytes, longer than the {MAX_LINE_BYTES:,}-byte limit"
    )
    assert reasons[4].endswith("line is a JSON array, expected an object")
    assert reasons[5].endswith("line is a JSON string, expected an object")
    assert reasons[6].endswith("column 'value.user_id': expected an integer")  # an id: never echoed
    assert reasons[7].endswith("""column 'value.course_id': expected an integer, got {"id": 101}""")
    assert reasons[8].endswith("'key' is not an object")
    assert reasons[11].endswith("duplicate key (key.id): same key as part-0.json [enrollments] row 10")
    assert "not valid JSON" in reasons[12]
    assert "not valid JSON" in reasons[13]
    reconciles(result)


def test_fast_and_line_by_line_parsing_agree(tmp_path: Path) -> None:
    from edsight.ingest._canvas_data2_tables import json_types

    source = SNAPSHOT / "canvas" / "submissions" / "part-00000.json"
    fast = read_jsonl(source, json_types("submissions"))
    # A blank line sends the file down the careful path; the rows must come out the same.
    slow_path = tmp_path / "part.json"
    slow_path.write_text("\n" + source.read_text())
    slow = read_jsonl(slow_path, json_types("submissions"))
    assert fast.malformed == []
    assert slow.malformed == []
    assert slow.data.column("__row").to_pylist() == [n + 1 for n in fast.data.column("__row").to_pylist()]
    assert fast.data.drop_columns(["__row"]).equals(slow.data.drop_columns(["__row"]))
    assert fast.data.column("value.excused").to_pylist()[:2] == ["false", None]
    assert fast.data.column("value.score").to_pylist()[:2] == ["9", "7.5"]


def test_csv_parts_missing_required_columns_are_quarantined_whole(courses: Warehouse, tmp_path: Path) -> None:
    folder = tmp_path / "export" / "enrollments"
    folder.mkdir(parents=True)
    (folder / "part-0.csv").write_text(
        "value.user_id,value.course_id,value.type,value.workflow_state,meta.action\n"
        "7001,101,StudentEnrollment,active,U\n7002,101,StudentEnrollment,active,U\n"
    )
    result = ingest_canvas_data2(courses, tmp_path / "export")
    assert result.source_tables["enrollments"].rows_quarantined == 2
    assert result.source_tables["enrollments"].problems == [
        "part-0.csv [enrollments]: missing required column(s) 'key.id'"
    ]
    assert rows(courses, "SELECT count(*) FROM enrollment") == [(0,)]


def test_truncated_gzip_and_empty_exports_are_input_errors(courses: Warehouse, tmp_path: Path) -> None:
    folder = tmp_path / "export" / "web_logs"
    folder.mkdir(parents=True)
    data = gzip.compress((SNAPSHOT / "canvas_logs" / "web_logs" / "part-00000.json").read_bytes())
    (folder / "part-0.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput, match=r"part-0.json.gz: truncated or corrupt gzip file"):
        ingest_canvas_data2(courses, tmp_path / "export")
    assert rows(courses, "SELECT count(*) FROM load_batch") == [(1,)]  # only the course fixture
    (tmp_path / "other" / "users").mkdir(parents=True)
    (tmp_path / "other" / "users" / "part-0.json").write_text("{}\n")
    with pytest.raises(InvalidInput, match="no Canvas Data 2 files of pseudonyms, assignments, submissions"):
        ingest_canvas_data2(courses, tmp_path / "other")


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from edsight.config import Settings
    from edsight.store.warehouse import Warehouse
    from edsight.ingest.canvas_data2 import ingest_canvas_data2

    def progress(step):
        if step == "applied lms_activity":  # everything written, nothing committed
            os.kill(os.getpid(), signal.SIGKILL)

    ingest_canvas_data2(Warehouse(Settings(home=Path(sys.argv[1]))), Path(sys.argv[2]), progress=progress)
    """
)


def test_killed_load_leaves_nothing_and_the_rerun_counts_once(courses: Warehouse, tmp_path: Path) -> None:
    reference_home = tmp_path / "reference"
    shutil.copytree(courses.settings.home, reference_home)
    reference = Warehouse(Settings(home=reference_home))
    ingest_canvas_data2(courses, SNAPSHOT)
    ingest_canvas_data2(reference, SNAPSHOT)
    tables = ("person", "enrollment", "submission", "lms_activity", "event_log", "sync_state", "load_batch")
    before = {t: courses.checksum(t) for t in tables if t not in ("sync_state", "load_batch")}

    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(courses.settings.home), str(INCREMENTAL)],
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert {t: courses.checksum(t) for t in before} == before  # the killed load left no trace

    rerun = ingest_canvas_data2(courses, INCREMENTAL)
    ingest_canvas_data2(reference, INCREMENTAL)
    assert not rerun.already_loaded
    assert rerun.unchanged == 2
    for table in ("person", "enrollment", "submission", "lms_activity"):
        assert courses.checksum(table) == reference.checksum(table), table
    ids = "SELECT event_id FROM event_log ORDER BY 1"
    assert rows(courses, ids) == rows(reference, ids)
    assert len(rows(courses, ids)) == 9
    assert activity(courses)[(ADA_ID, datetime(2024, 2, 5, 10))] == (4, 1)  # counted once
