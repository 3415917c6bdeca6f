"""Live events from the spool into the warehouse: mapping of each event type, both
formats, dedupe, hourly increments, quarantine of unknown references, crashes at the
worst moments, and counts that reconcile. Real spool files, real DuckDB files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import Rows, kill_when_marked

from edsight.config import Settings
from edsight.errors import InvalidInput, WarehouseError
from edsight.ingest._events_formats import (
    CALIPER_EVENTS,
    EVENT_NAMES,
    IgnoredEvent,
    canvas_event_id,
    canvas_local_id,
    normalise,
    split_payload,
)
from edsight.ingest._events_spool import EventSpool, split_lines
from edsight.ingest.events import default_spool_dir, ingest_events, spool_line
from edsight.store.warehouse import LoadResult, Warehouse

DATA = Path(__file__).parents[1] / "data" / "events"
RECEIVED = datetime(2024, 9, 12, 12, 0, tzinfo=UTC)
TIMESTAMP_WANTED = "expected a timestamp (YYYY-MM-DD HH:MM:SS), got yesterday"
Event = dict[str, Any]

WORLD: dict[str, Rows] = {
    "organization": [{"org_id": "s1", "name": "Lakeside High", "org_type": "school"}],
    "term": [
        {
            "term_id": "t1",
            "name": "2024-25",
            "term_type": "school_year",
            "school_year": 2024,
            "start_date": "2024-08-01",
            "end_date": "2025-06-30",
        }
    ],
    "course": [{"course_id": "c-alg", "title": "Algebra I"}, {"course_id": "c-bio", "title": "Biology"}],
    "section": [
        {"section_id": "sec-alg", "course_id": "c-alg", "term_id": "t1", "school_id": "s1"},
        {"section_id": "sec-bio-1", "course_id": "c-bio", "term_id": "t1", "school_id": "s1"},
        {"section_id": "sec-bio-2", "course_id": "c-bio", "term_id": "t1", "school_id": "s1"},
    ],
    "person": [
        {"person_id": f"p{i}", "role": "student", "local_id": f"S-100{i}", "directory_opt_out": "false"}
        for i in range(1, 5)
    ],
    "enrollment": [
        {"section_id": "sec-alg", "person_id": p, "role": "student", "start_date": "2024-08-26"}
        for p in ("p1", "p2", "p3")
    ]
    + [
        {"section_id": "sec-bio-2", "person_id": "p1", "role": "student", "start_date": "2024-08-26"},
        {"section_id": "sec-bio-1", "person_id": "p2", "role": "student", "start_date": "2024-08-26"},
        # p2 left Biology before the login below: the login is not attributed there.
        {
            "section_id": "sec-bio-2",
            "person_id": "p2",
            "role": "student",
            "start_date": "2024-08-26",
            "end_date": "2024-09-01",
        },
    ],
    "assignment": [
        {
            "assignment_id": "asg-1",
            "section_id": "sec-alg",
            "title": "Linear equations",
            "due_at": "2024-09-10 23:59:00",
            "points_possible": 10,
        },
        {"assignment_id": "asg-2", "section_id": "sec-alg", "title": "Reading log", "points_possible": 5},
    ],
    # Canvas course 101 is a section by the course-as-section convention; course 202 is
    # a course whose student's own section is found through the enrollment.
    "id_map": [
        {"source_system": "canvas", "entity": "person", "source_id": "11", "edsight_id": "p1"},
        {"source_system": "canvas", "entity": "person", "source_id": "12", "edsight_id": "p2"},
        {"source_system": "canvas", "entity": "section", "source_id": "101", "edsight_id": "sec-alg"},
        {"source_system": "canvas", "entity": "course", "source_id": "202", "edsight_id": "c-bio"},
        {"source_system": "canvas", "entity": "assignment", "source_id": "501", "edsight_id": "asg-1"},
        {"source_system": "canvas", "entity": "assignment", "source_id": "502", "edsight_id": "asg-2"},
    ],
}


@pytest.fixture
def world(warehouse: Warehouse, make_batch: Callable[..., Path]) -> Warehouse:
    result = warehouse.load_directory(make_batch("world", **WORLD))
    assert result.rows_quarantined == 0, result.problems
    return warehouse


# -- event builders (Canvas format; the Caliper fixtures cover the other format) ----------


def _md(name: str, user: str | None, at: str, course: str | None = None, **extra: Any) -> Event:
    md: Event = {"event_name": name, "event_time": at, "request_id": str(uuid.uuid4()), "producer": "canvas"}
    if user is not None:
        md["user_id"] = user
    if course is not None:
        md.update(context_type="Course", context_id=course, context_role="StudentEnrollment")
    md.update(extra)
    return md


def view(user: str = "11", at: str = "2024-09-09T14:05:00Z", course: str = "101", **body: Any) -> Event:
    return {
        "metadata": _md("asset_accessed", user, at, course),
        "body": {
            "asset_type": "wiki_page",
            "asset_id": "77",
            "role": "StudentEnrollment",
            "level": None,
            **body,
        },
    }


def login(user: str, at: str, course: str | None = None) -> Event:
    return {"metadata": _md("logged_in", user, at, course), "body": {"redirect_url": None}}


def submitted(user: str, assignment: str, at: str, attempt: int = 1, **body: Any) -> Event:
    return {
        "metadata": _md("submission_created", user, at),
        "body": {
            "submission_id": f"44{attempt}",
            "assignment_id": assignment,
            "user_id": user,
            "submitted_at": at,
            "attempt": attempt,
            "workflow_state": "submitted",
            **body,
        },
    }


def graded(user: str, assignment: str, score: float | None, at: str) -> Event:
    return {
        "metadata": _md("grade_change", "900", at, "101", context_role="TeacherEnrollment"),
        "body": {"assignment_id": assignment, "student_id": user, "user_id": user, "score": score},
    }


def fixture(name: str) -> list[tuple[str, Event]]:
    return split_payload(json.loads((DATA / name).read_text()))


def spool(wh: Warehouse, events: list[Event] | list[tuple[str, Event]]) -> EventSpool:
    """Append events the way the endpoint does (Canvas format unless a format is given)."""
    pairs = [e if isinstance(e, tuple) else ("canvas", e) for e in events]
    target = EventSpool(default_spool_dir(wh.settings))
    target.append([spool_line(fmt, event, RECEIVED) for fmt, event in pairs])
    return target


def rows(wh: Warehouse, sql: str) -> list[tuple[Any, ...]]:
    with wh.connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def activity(wh: Warehouse) -> list[tuple[Any, ...]]:
    return rows(
        wh,
        "SELECT person_id, section_id, strftime(period_start, '%Y-%m-%d %H'), period, page_views, "
        "participations, strftime(last_activity_at, '%Y-%m-%d %H:%M:%S.%g') FROM lms_activity ORDER BY ALL",
    )


def submissions(wh: Warehouse) -> list[tuple[Any, ...]]:
    return rows(
        wh,
        "SELECT assignment_id, person_id, strftime(submitted_at, '%Y-%m-%d %H:%M:%S'), late, missing, "
        "excused, seconds_late, score, attempt, workflow_state FROM submission ORDER BY ALL",
    )


def applied(result: LoadResult) -> int:
    return result.source_tables["live_event"].rows_valid if result.source_tables else 0


def quarantined(wh: Warehouse) -> list[tuple[Any, ...]]:
    return rows(
        wh,
        "SELECT source_file, row_number, column_name, reason FROM quarantine "
        "WHERE table_name = 'live_event' ORDER BY source_file, row_number",
    )


def spool_files(wh: Warehouse, sub: str = "") -> list[Path]:
    folder = default_spool_dir(wh.settings) / sub
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


# -- mapping ---------------------------------------------------------------------------------

EXPECTED_ACTIVITY = [
    # two page views by p1 in Algebra (Canvas course 101), 14:00 UTC; the second was sent as 09:40-05:00
    ("p1", "sec-alg", "2024-09-09 14", "hour", 2, 0, "2024-09-09 14:40:30.500"),
    # p2's login (no course context) lands in each section p2 is enrolled in that day
    ("p2", "sec-alg", "2024-09-09 15", "hour", 0, 0, "2024-09-09 15:10:00.000"),
    ("p2", "sec-bio-1", "2024-09-09 15", "hour", 0, 0, "2024-09-09 15:10:00.000"),
]
# submitted 61 minutes after the due time; graded later
EXPECTED_SUBMISSION = [("asg-1", "p1", "2024-09-11 01:00:00", True, False, False, 3660, 8.5, 1, "graded")]


def test_each_canvas_event_type_maps_to_its_rows(world: Warehouse) -> None:
    spool(world, fixture("canvas_events.json"))
    result = ingest_events(world)
    assert (applied(result), result.rows_quarantined, result.unchanged) == (5, 0, 0)
    assert activity(world) == EXPECTED_ACTIVITY
    assert submissions(world) == EXPECTED_SUBMISSION
    logged = rows(world, "SELECT source, event_name, count(*) FROM event_log GROUP BY ALL ORDER BY ALL")
    assert logged == [
        ("canvas", "asset_accessed", 2),
        ("canvas", "grade_change", 1),
        ("canvas", "logged_in", 1),
        ("canvas", "submission_created", 1),
    ]


def test_caliper_events_map_to_the_same_rows_as_canvas_events(world: Warehouse) -> None:
    spool(world, fixture("caliper_envelope.json"))
    result = ingest_events(world)
    # The sixth event (MessageEvent) is of a type edsight does not use: counted, named, not stored.
    assert (applied(result), result.rows_quarantined, result.unchanged) == (5, 0, 1)
    assert result.skipped == ["1 event(s) not used: MessageEvent/Posted: event type not used"]
    assert activity(world) == EXPECTED_ACTIVITY
    # Caliper carries no `late` flag: it is derived from the due time, to the same result.
    assert submissions(world) == EXPECTED_SUBMISSION
    assert rows(world, "SELECT DISTINCT source FROM event_log") == [("caliper",)]
    assert rows(world, "SELECT min(event_id) FROM event_log") == [
        ("urn:uuid:4f6b2c1e-8a3d-4e5f-9b0c-1d2e3f4a5b6c",)
    ]


def test_events_are_what_the_next_scoring_run_reads(world: Warehouse) -> None:
    """The weekly features read lms_activity and submission: after an ingest they include the events."""
    weekly = (
        "SELECT person_id, date_trunc('week', period_start) AS week, sum(page_views), "
        "max(last_activity_at) FROM lms_activity GROUP BY ALL ORDER BY ALL"
    )
    assert rows(world, weekly) == []
    spool(world, [view(at=f"2024-09-{d:02d}T10:{m:02d}:00Z") for d in (9, 10, 16) for m in (1, 2)])
    spool(world, [submitted("11", "502", "2024-09-16T12:00:00Z")])
    ingest_events(world)
    assert [(r[0], str(r[1].date()), r[2], str(r[3])) for r in rows(world, weekly)] == [
        ("p1", "2024-09-09", 4, "2024-09-10 10:02:00"),
        ("p1", "2024-09-16", 2, "2024-09-16 10:02:00"),
    ]
    # asg-2 has no due time: the submission is on time, not missing, not yet scored.
    assert submissions(world) == [
        ("asg-2", "p1", "2024-09-16 12:00:00", False, False, False, 0, None, 1, "submitted")
    ]


def test_participations_count_submit_and_participate_levels(world: Warehouse) -> None:
    spool(
        world,
        [
            view(at="2024-09-09T14:01:00Z", level="participate"),
            view(at="2024-09-09T14:02:00Z", level="submit"),
            view(at="2024-09-09T14:03:00Z"),
            # course 202 is a course: the view lands in p1's own section of it
            view(at="2024-09-09T14:04:00Z", course="202", level="participate"),
        ],
    )
    ingest_events(world)
    assert [r[:6] for r in activity(world)] == [
        ("p1", "sec-alg", "2024-09-09 14", "hour", 3, 2),
        ("p1", "sec-bio-2", "2024-09-09 14", "hour", 1, 1),
    ]


def test_a_login_in_a_course_lands_in_that_section_only(world: Warehouse) -> None:
    spool(world, [login("11", "2024-09-09T07:30:00Z", course="202"), login("11", "2024-09-09T08:30:00Z")])
    ingest_events(world)
    assert [r[1:5] for r in activity(world)] == [
        ("sec-alg", "2024-09-09 08", "hour", 0),  # no course: every section of the day
        ("sec-bio-2", "2024-09-09 07", "hour", 0),  # course 202: p1's section of it only
        ("sec-bio-2", "2024-09-09 08", "hour", 0),
    ]


def test_events_without_a_student_course_use_are_counted_not_stored(world: Warehouse) -> None:
    teacher_view = view()
    teacher_view["body"]["role"] = "TeacherEnrollment"
    masquerade = view(at="2024-09-09T14:09:00Z")
    masquerade["metadata"]["real_user_id"] = "21070000000000900"
    outside = view(at="2024-09-09T14:10:00Z")
    outside["metadata"].update(context_type="Group", context_id="5")
    anonymous = view(user=None, at="2024-09-09T14:11:00Z")
    other = {"metadata": _md("enrollment_created", "11", "2024-09-09T14:12:00Z"), "body": {}}
    spool(world, [teacher_view, masquerade, outside, anonymous, other, view(at="2024-09-09T14:30:00Z")])
    result = ingest_events(world)
    assert (result.rows_read, applied(result), result.unchanged) == (6, 1, 5)
    assert sorted(result.skipped) == [
        "1 event(s) not used: activity of a user acting as someone else (masquerade)",
        "1 event(s) not used: asset_accessed: page views in a role other than student",
        "1 event(s) not used: asset_accessed: page views outside a course",
        "1 event(s) not used: asset_accessed: page views without a user",
        "1 event(s) not used: enrollment_created: event type not used",
    ]
    assert [r[4] for r in activity(world)] == [1]


# -- ids -----------------------------------------------------------------------------------------


def test_canvas_ids_in_every_form_reduce_to_the_local_id() -> None:
    assert canvas_local_id("21070000000000144") == "144"
    assert canvas_local_id(21070000000000144) == "144"
    assert canvas_local_id("urn:instructure:canvas:course:21070000000000565") == "565"
    assert canvas_local_id("2107~144") == "144"
    assert canvas_local_id("144") == "144"
    assert canvas_local_id("sis-abc") == "sis-abc"
    assert canvas_local_id("9" * 5000) == "9" * 200  # not an id; no int() of a huge string
    assert canvas_local_id(None) is None


def test_canvas_event_ids_are_stable_and_distinguish_events() -> None:
    event = view()
    same = json.loads(json.dumps(event))
    assert canvas_event_id(event["metadata"], event["body"]) == canvas_event_id(
        same["metadata"], same["body"]
    )
    other_asset = json.loads(json.dumps(event))
    other_asset["body"]["asset_id"] = "78"
    other_time = json.loads(json.dumps(event))
    other_time["metadata"]["event_time"] = "2024-09-09T14:05:00.001Z"
    ids = {canvas_event_id(e["metadata"], e["body"]) for e in (event, other_asset, other_time)}
    assert len(ids) == 3
    # Fields dropped before spooling (IPs, free text) do not take part in the id.
    slimmed = json.loads(
        spool_line("canvas", {**event, "metadata": {**event["metadata"], "client_ip": "x"}}, RECEIVED)
    )
    assert normalise("canvas", slimmed["event"])["event_id"] == canvas_event_id(
        event["metadata"], event["body"]
    )


def test_a_user_found_by_sis_id_is_linked_in_id_map(world: Warehouse) -> None:
    event = view(user="13")
    event["metadata"]["user_sis_id"] = "S-1003"  # p3 has no canvas id_map entry yet
    spool(world, [event])
    result = ingest_events(world)
    assert applied(result) == 1
    assert activity(world)[0][:2] == ("p3", "sec-alg")
    assert rows(world, "SELECT edsight_id FROM id_map WHERE entity = 'person' AND source_id = '13'") == [
        ("p3",)
    ]
    # The next event of that user resolves through id_map, with no SIS id at all.
    spool(world, [view(user="13", at="2024-09-09T14:50:00Z")])
    assert applied(ingest_events(world)) == 1
    assert activity(world)[0][4] == 2


def test_a_user_found_through_the_canvas_api_sis_mapping(
    world: Warehouse, make_batch: Callable[..., Path]
) -> None:
    # The Canvas API connector maps SIS user ids under system canvas_sis.
    link = [{"source_system": "canvas_sis", "entity": "person", "source_id": "SIS-4", "edsight_id": "p4"}]
    world.load_directory(make_batch("sis", id_map=link))
    event = view(user="14")
    event["metadata"]["user_sis_id"] = "SIS-4"
    spool(world, [event])
    assert applied(ingest_events(world)) == 1
    assert activity(world)[0][:2] == ("p4", "sec-alg")
    assert rows(
        world, "SELECT edsight_id FROM id_map WHERE source_system = 'canvas' AND source_id = '14'"
    ) == [("p4",)]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_KEYS = st.sampled_from(
    ["metadata", "body", "data", "type", "action", "actor", "object", "group", "generated", "id", "eventTime"]
)
_FIELDS = st.sampled_from(
    ["user_id", "context_type", "context_id", "event_time", "real_user_id", "user_sis_id", "role", "level",
     "assignment_id", "student_id", "score", "attempt", "late", "submitted_at", "id", "type", "extensions",
     "assignee", "assignable", "count", "roles", "scoreGiven", "dateCreated"]
)  # fmt: skip
_PART = st.dictionaries(_FIELDS, _JSON | st.just("Course") | st.just("Person"), max_size=6)
_CANVAS = st.builds(
    lambda name, md, body: {"metadata": {**md, "event_name": name}, "body": body},
    st.sampled_from([*EVENT_NAMES, "other"]),
    _PART,
    _PART | st.none(),
)
_CALIPER = st.builds(
    lambda kind, parts: {**parts, "type": kind[0], "action": kind[1]},
    st.sampled_from([*CALIPER_EVENTS, ("X", "Y")]),
    st.fixed_dictionaries(
        {}, optional={k: _PART for k in ("actor", "object", "group", "generated", "membership")}
    ),
)
_ANY = st.dictionaries(_KEYS, _JSON, max_size=6) | _CANVAS | _CALIPER


@given(
    _ANY | st.lists(_ANY, max_size=3) | st.builds(lambda data: {"data": data}, st.lists(_CALIPER, max_size=3))
)
@settings(max_examples=300, deadline=None)
def test_any_json_either_fails_with_a_reason_or_normalises(doc: object) -> None:
    """Hostile shapes never crash the parser: InvalidInput, IgnoredEvent or a row of text."""
    try:
        events = split_payload(doc)
    except InvalidInput as exc:
        events, reason = [], str(exc)
    else:
        reason = "accepted"
    assert reason  # a refusal always says why
    for fmt, event in events:
        try:
            row = normalise(fmt, event)
        except IgnoredEvent:
            continue
        assert all(v is None or isinstance(v, str) for v in row.values())
        assert row["event_name"] in EVENT_NAMES
        spool_line(fmt, event, RECEIVED)


# -- dedupe and increments ----------------------------------------------------------------


def test_the_same_event_twice_in_one_load_is_applied_once(world: Warehouse) -> None:
    event = view()
    spool(world, [event, event, view(at="2024-09-09T14:20:00Z")])
    result = ingest_events(world)
    assert (result.rows_read, applied(result), result.unchanged) == (3, 2, 1)
    assert result.skipped == ["1 event(s) already applied (a repeated delivery, or re-read after a crash)"]
    assert activity(world)[0][4] == 2
    assert rows(world, "SELECT count(*), count(DISTINCT event_id) FROM event_log") == [(2, 2)]


def test_a_redelivered_batch_in_a_later_load_changes_nothing(world: Warehouse) -> None:
    events = fixture("canvas_events.json")
    spool(world, events)
    ingest_events(world)
    before = {t: world.checksum(t) for t in ("lms_activity", "submission", "event_log")}
    spool(world, events)  # Canvas delivered them again
    again = ingest_events(world)
    assert (again.rows_read, applied(again), again.unchanged, again.rows_stored) == (5, 0, 5, 0)
    assert {t: world.checksum(t) for t in before} == before


def test_hourly_counts_are_added_to_what_is_stored(world: Warehouse, make_batch: Callable[..., Path]) -> None:
    stored = {
        "person_id": "p1",
        "section_id": "sec-alg",
        "period_start": "2024-09-09 14:00:00",
        "period": "hour",
        "page_views": 10,
        "participations": 4,
        "last_activity_at": "2024-09-09 14:59:00",
    }
    world.load_directory(make_batch("stored", lms_activity=[stored]))
    spool(world, [view(at="2024-09-09T14:05:00Z", level="participate"), view(at="2024-09-09T14:06:00Z")])
    ingest_events(world)
    spool(world, [view(at="2024-09-09T14:07:00Z"), view(at="2024-09-09T15:00:00Z")])
    ingest_events(world)
    assert activity(world) == [
        ("p1", "sec-alg", "2024-09-09 14", "hour", 13, 5, "2024-09-09 14:59:00.000"),
        ("p1", "sec-alg", "2024-09-09 15", "hour", 1, 0, "2024-09-09 15:00:00.000"),
    ]


def test_the_newest_grade_wins_whatever_the_order_in_the_spool(world: Warehouse) -> None:
    spool(
        world,
        [
            graded("11", "501", 9.0, "2024-09-12T10:00:00Z"),
            graded("11", "501", 6.0, "2024-09-12T09:00:00Z"),  # older, delivered later
            submitted("11", "501", "2024-09-10T20:00:00Z", late=False),
        ],
    )
    ingest_events(world)
    assert submissions(world) == [
        ("asg-1", "p1", "2024-09-10 20:00:00", False, False, False, 0, 9.0, 1, "graded")
    ]
    # A resubmission keeps the grade until it is regraded ...
    spool(world, [submitted("11", "501", "2024-09-13T08:00:00Z", attempt=2, late=True)])
    ingest_events(world)
    late_by = 2 * 86400 + 8 * 3600 + 60  # due 09-10 23:59, submitted 09-13 08:00
    expected = [("asg-1", "p1", "2024-09-13 08:00:00", True, False, False, late_by, 9.0, 2, "submitted")]
    assert submissions(world) == expected
    # ... and a first attempt delivered late never replaces the stored second attempt.
    spool(world, [submitted("11", "501", "2024-09-10T21:00:00Z", attempt=1)])
    ingest_events(world)
    assert submissions(world) == expected


# -- bad input ----------------------------------------------------------------------------------


def test_unknown_users_courses_and_assignments_are_kept_in_quarantine(
    world: Warehouse, make_batch: Callable[..., Path]
) -> None:
    spool(
        world,
        [
            view(user="99"),  # not rostered yet
            view(course="999"),
            submitted("11", "999", "2024-09-10T20:00:00Z"),
            view(at="2024-09-09T14:30:00Z"),
        ],
    )
    result = ingest_events(world)
    assert (applied(result), result.rows_quarantined) == (1, 3)
    got = quarantined(world)
    assert [(r[1], r[2]) for r in got] == [(1, "user_id"), (2, "course_id"), (3, "assignment_id")]
    assert "Canvas user is not in the roster yet" in got[0][3]
    assert got[1][3].endswith("(course 999)")
    assert got[2][3].endswith("(assignment 999)")
    assert got[0][3].startswith(got[0][0] + ": row 1, column 'user_id': ")
    assert "99" not in got[0][3].split(", column ")[1]  # a student id is never echoed in a reason
    # Not applied, so not in event_log: once the roster has the user, re-ingesting done/ applies them.
    assert rows(world, "SELECT count(*) FROM event_log") == [(1,)]
    # The cursor says how current the applied events are (quarantined ones do not count).
    assert rows(world, "SELECT source, entity, cursor FROM sync_state") == [
        ("events", "live_event", "2024-09-09 14:30:00")
    ]
    roster = [{"source_system": "canvas", "entity": "person", "source_id": "99", "edsight_id": "p4"}]
    enrol = [{"section_id": "sec-alg", "person_id": "p4", "role": "student", "start_date": "2024-08-26"}]
    world.load_directory(make_batch("roster", id_map=roster, enrollment=enrol))
    retry = ingest_events(world, default_spool_dir(world.settings) / "done")
    assert (applied(retry), retry.unchanged, retry.rows_quarantined) == (1, 1, 2)
    assert [r[:5] for r in activity(world)] == [
        ("p1", "sec-alg", "2024-09-09 14", "hour", 1),
        ("p4", "sec-alg", "2024-09-09 14", "hour", 1),
    ]


def test_bad_lines_are_quarantined_with_file_line_and_column(world: Warehouse) -> None:
    folder = default_spool_dir(world.settings)
    folder.mkdir(parents=True)
    good = json.dumps(view()).encode()
    lines = [
        good,
        b"{not json",
        b"[" * 5000 + b"]" * 5000,
        json.dumps({"metadata": "x"}).encode(),
        json.dumps(view(at="yesterday")).encode(),
        json.dumps(submitted("11", "501", "2024-09-10T20:00:00Z", attempt=-1)).encode(),
        json.dumps(graded("11", "501", "lots", "2024-09-12T10:00:00Z")).encode(),  # type: ignore[arg-type]
        json.dumps({"metadata": _md("logged_in", None, "2024-09-09T10:00:00Z"), "body": {}}).encode(),
        json.dumps({"a": "b" * 2_000_000}).encode(),
        '{"metadata": {"event_name": "caf\u00e9"}}'.encode("latin-1"),
    ]
    # A bare export line (no spool wrapper) is read too; the last line is torn.
    (folder / "export.jsonl").write_bytes(b"\n".join(lines) + b"\n" + good[:40])
    result = ingest_events(world)
    assert (result.rows_read, applied(result), result.rows_quarantined) == (10, 1, 9)
    reasons = {r[1]: (r[2], r[3]) for r in quarantined(world)}
    assert reasons[2] == (None, "export.jsonl: row 2, not valid JSON")
    assert reasons[3] == (None, "export.jsonl: row 3, JSON nested too deeply")
    assert reasons[4] == (None, "export.jsonl: row 4, metadata must be an object")
    assert reasons[5] == ("event_time", "export.jsonl: row 5, column 'event_time': " + TIMESTAMP_WANTED)
    assert reasons[6] == ("attempt", "export.jsonl: row 6, column 'attempt': expected a value >= 0, got -1")
    assert reasons[7] == ("score", "export.jsonl: row 7, column 'score': expected a number, got lots")
    assert reasons[8] == ("user_id", "export.jsonl: row 8, column 'user_id': required value is missing")
    assert reasons[9][1] == "export.jsonl: row 9, a string is longer than 1048576 characters"
    assert reasons[10][1] == "export.jsonl: row 10, not UTF-8 text (JSON lines are UTF-8)"
    assert result.skipped == [
        "export.jsonl: an incomplete last line (an interrupted write, never acknowledged)"
    ]


def test_counts_reconcile(world: Warehouse) -> None:
    event = view()
    folder = default_spool_dir(world.settings)
    target = spool(world, [event, event, view(user="99"), view(user="11", course="999")])
    target.append([b"oops\n", spool_line("canvas", {"metadata": _md("quiz_submitted", "11", "x")}, RECEIVED)])
    spool(world, [event, submitted("11", "501", "2024-09-10T20:00:00Z")])
    lines = sum(len(split_lines(p.read_bytes())[0]) for p in folder.glob("*.jsonl"))
    result = ingest_events(world)
    assert lines == 8
    assert result.rows_read == lines
    assert result.rows_read == applied(result) + result.rows_quarantined + result.unchanged
    assert (applied(result), result.rows_quarantined, result.unchanged) == (2, 3, 3)
    batch = rows(world, "SELECT rows_read, rows_quarantined FROM load_batch ORDER BY loaded_at DESC LIMIT 1")
    assert batch == [(8, 3)]


# -- crashes, locks, batches ---------------------------------------------------------------------

_INGEST_AND_DIE = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from edsight.config import Settings
    from edsight.ingest.events import ingest_events
    from edsight.store.warehouse import Warehouse

    home, kill_at = sys.argv[1:3]

    def progress(step):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    ingest_events(Warehouse(Settings(home=Path(home))), progress=progress)
    """
)


def _ingest_and_die(wh: Warehouse, kill_at: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _INGEST_AND_DIE, str(wh.settings.home), kill_at],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL


def test_a_crash_between_commit_and_spool_move_is_harmless(world: Warehouse) -> None:
    spool(world, fixture("canvas_events.json"))
    _ingest_and_die(world, "moving spool files to done")
    # Committed, but the file is still claimed: the next run reads it again.
    assert activity(world) == EXPECTED_ACTIVITY
    assert (len(spool_files(world, "claimed")), len(spool_files(world, "done"))) == (1, 0)
    state = {t: world.checksum(t) for t in ("lms_activity", "submission", "event_log")}
    result = ingest_events(world)
    assert (result.rows_read, applied(result), result.unchanged) == (5, 0, 5)
    assert {t: world.checksum(t) for t in state} == state
    assert (len(spool_files(world, "claimed")), len(spool_files(world, "done"))) == (0, 1)


def test_a_crash_before_commit_loses_nothing_and_applies_once(world: Warehouse) -> None:
    spool(world, fixture("canvas_events.json"))
    _ingest_and_die(world, "commit")
    assert activity(world) == []
    assert rows(world, "SELECT count(*) FROM event_log") == [(0,)]
    spool(world, [view(at="2024-09-09T14:59:00Z")])  # more events arrive meanwhile
    result = ingest_events(world)
    assert applied(result) == 6
    assert activity(world)[0][4] == 3
    assert submissions(world) == EXPECTED_SUBMISSION


def test_a_second_ingest_at_the_same_time_is_refused(world: Warehouse) -> None:
    target = spool(world, [view()])
    with target.ingest_lock(), pytest.raises(WarehouseError, match="another events ingest is running"):
        ingest_events(world)
    assert applied(ingest_events(world)) == 1


def test_a_batch_limit_leaves_files_for_the_next_run(world: Warehouse) -> None:
    folder = default_spool_dir(world.settings)
    folder.mkdir(parents=True)
    for i in range(3):
        line = spool_line("canvas", view(at=f"2024-09-09T14:0{i}:00Z"), RECEIVED)
        (folder / f"events-20240909T140{i}-p1-0000.jsonl").write_bytes(line)
    first = ingest_events(world, max_batch_bytes=1)
    assert applied(first) == 1
    assert first.skipped == ["2 spool file(s) left for the next run (batch limit 1 bytes)"]
    assert applied(ingest_events(world)) == 2
    assert activity(world)[0][4] == 3
    with pytest.raises(InvalidInput):
        ingest_events(world, max_batch_bytes=0)


def test_an_empty_spool_loads_nothing(world: Warehouse) -> None:
    result = ingest_events(world)
    assert (result.rows_read, result.rows_stored, result.already_loaded) == (0, 0, False)


def test_a_missing_folder_or_warehouse_is_a_clear_error(world: Warehouse, settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="not a folder of event files"):
        ingest_events(world, world.settings.home / "nowhere")
    elsewhere = Warehouse(Settings(home=settings.home.parent / "uninitialised"))
    spool(elsewhere, [view()])
    with pytest.raises(WarehouseError, match="run `edsight init` first"):
        ingest_events(elsewhere)
    assert len(spool_files(elsewhere)) == 1  # not claimed: ready for when the warehouse exists


# -- the spool itself ----------------------------------------------------------------------------


def test_a_torn_tail_is_cut_before_the_next_append(tmp_path: Path) -> None:
    target = EventSpool(tmp_path / "spool")
    path = target.append([b'{"n":1}\n'])
    with path.open("ab") as fh:
        fh.write(b'{"n":2, "half')  # what a writer killed mid-write leaves
    assert split_lines(path.read_bytes()) == ([(1, b'{"n":1}')], True)
    assert target.append([b'{"n":3}\n']) == path
    assert path.read_bytes() == b'{"n":1}\n{"n":3}\n'
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError, match="newline"):
        target.append([b"no newline"])


def test_a_full_segment_rolls_over(tmp_path: Path) -> None:
    target = EventSpool(tmp_path / "spool", segment_bytes=20)
    paths = [target.append([b'{"n":%d}\n' % i]) for i in range(5)]
    assert len(set(paths)) == 3
    assert sum(p.stat().st_size for p in set(paths)) == 5 * 8


def test_claiming_while_writers_append_never_loses_or_repeats_a_line(tmp_path: Path) -> None:
    target = EventSpool(tmp_path / "spool", segment_bytes=4096)
    writers, per_writer = 4, 150
    lines: list[bytes] = []

    def write(w: int) -> None:
        for i in range(per_writer):
            EventSpool(target.directory, segment_bytes=4096).append([b'{"w":%d,"i":%d}\n' % (w, i)])

    def ingest_once() -> None:
        # Like an ingest: what a claimed file holds when read is all it will ever hold.
        claimed = target.claim()
        for path in claimed:
            got, torn = split_lines(path.read_bytes())
            assert not torn
            lines.extend(line for _, line in got)
        target.finish(claimed)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        ingest_once()
    for t in threads:
        t.join()
    ingest_once()
    assert len(lines) == len(set(lines)) == writers * per_writer
    done = sum(len(split_lines(p.read_bytes())[0]) for p in target.done_dir.glob("*.jsonl"))
    assert done == writers * per_writer


_APPEND_FOREVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edsight.ingest._events_spool import EventSpool
    spool = EventSpool(Path(sys.argv[1]))
    i = 0
    while True:
        spool.append([b'{"i":%d,"pad":"%s"}\\n' % (i, b"x" * 5000) for _ in range(50)])
        i += 1
        if i == 20:
            Path(sys.argv[2]).write_text("ready")
    """
)


def test_killing_a_writer_never_leaves_a_line_that_reads_as_an_event(tmp_path: Path) -> None:
    folder, ready = tmp_path / "spool", tmp_path / "ready"
    kill_when_marked(_APPEND_FOREVER, str(folder), str(ready), marker=ready)
    files = list(folder.glob("*.jsonl"))
    assert files
    for path in files:
        for _, line in split_lines(path.read_bytes())[0]:
            assert json.loads(line)["pad"] == "x" * 5000
