"""The Canvas emulator speaks Canvas: pagination, auth, throttling, faults, data, and canvasapi reads it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pytest
from canvasapi import Canvas
from canvasapi.exceptions import Forbidden, InvalidAccessToken, Unauthorized

from edsight.synth.canvas import TERM_START, generate_canvas
from edsight.testing.canvas_emulator import (
    COURSE_ID_BASE,
    USER_ID_OFFSET,
    CanvasData,
    CanvasEmulator,
    Faults,
    Throttle,
)

N = 40
SEED = 5
TOKEN = "emu-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return generate_canvas(N, SEED)


@pytest.fixture(scope="module")
def data(tables: dict[str, pd.DataFrame]) -> CanvasData:
    return CanvasData(tables, seed=SEED)


@pytest.fixture
def served(data: CanvasData) -> Iterator[tuple[CanvasEmulator, httpx.Client]]:
    emu = CanvasEmulator(data, tokens={TOKEN}, seed=SEED)
    with emu.serve() as url, httpx.Client(base_url=url, headers=AUTH) as client:
        yield emu, client


def follow(client: httpx.Client, path: str, params: dict[str, Any] | None = None) -> tuple[list[Any], int]:
    """Every item of a paginated list, following rel="next"; and how many pages it took."""
    items: list[Any] = []
    response = client.get(path, params=params)
    pages = 1
    while True:
        assert response.status_code == 200, response.text
        items += response.json()
        nxt = response.links.get("next")
        if not nxt:
            return items, pages
        response = client.get(nxt["url"])
        pages += 1


# -- protocol ----------------------------------------------------------------------------------


def test_pagination_honours_per_page_up_to_100_and_links_every_page(
    served: tuple[CanvasEmulator, httpx.Client], data: CanvasData
) -> None:
    _, client = served
    path = f"/api/v1/courses/{COURSE_ID_BASE + 1}/students/submissions"
    everything = data.submissions[COURSE_ID_BASE + 1]
    items, pages = follow(client, path, {"student_ids[]": "all", "per_page": 7})
    assert [s["id"] for s in items] == [s["id"] for s in everything]
    assert pages == -(-len(everything) // 7)
    big = client.get(path, params={"student_ids[]": "all", "per_page": 1000})
    assert len(big.json()) == min(100, len(everything))
    assert len(client.get("/api/v1/courses").json()) == 8 == len(follow(client, "/api/v1/courses")[0]) + 0
    assert len(client.get("/api/v1/courses", params={"per_page": 3}).json()) == 3
    links = client.get(path, params={"student_ids[]": "all", "per_page": 7, "page": 2}).links
    assert set(links) == {"current", "next", "prev", "first", "last"}
    assert "student_ids%5B%5D=all" in links["next"]["url"]
    assert "page=3" in links["next"]["url"]


def test_access_token_is_accepted_in_the_query_but_not_copied_into_links(
    served: tuple[CanvasEmulator, httpx.Client],
) -> None:
    _, client = served
    url = str(client.base_url).rstrip("/") + "/api/v1/courses"
    response = httpx.get(url, params={"access_token": TOKEN, "per_page": 2})
    assert response.status_code == 200
    assert TOKEN not in response.headers["link"]


def test_bad_tokens_get_401_with_or_without_www_authenticate(data: CanvasData) -> None:
    emu = CanvasEmulator(data, tokens={TOKEN}, unauthorized_tokens={"observer"})
    with emu.serve() as url:
        missing = httpx.get(f"{url}/api/v1/courses")
        wrong = httpx.get(f"{url}/api/v1/courses", headers={"Authorization": "Bearer nope"})
        observer = httpx.get(f"{url}/api/v1/courses", headers={"Authorization": "Bearer observer"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json() == {"errors": [{"message": "Invalid access token."}]}
    assert observer.status_code == 401
    assert "www-authenticate" not in observer.headers


def test_the_bucket_throttles_with_403_and_refills_over_time(data: CanvasData) -> None:
    now = [0.0]
    emu = CanvasEmulator(
        data,
        tokens={TOKEN, "other"},
        throttle=Throttle(capacity=5, leak_per_s=2, cost=1, up_front=1),
        clock=lambda: now[0],
    )
    with emu.serve() as url, httpx.Client(base_url=url, headers=AUTH) as client:
        answers = [client.get("/api/v1/courses/101") for _ in range(7)]
        assert [a.status_code for a in answers] == [200] * 5 + [403] * 2
        assert answers[-1].text == "403 Forbidden (Rate Limit Exceeded)\n"
        assert float(answers[0].headers["x-rate-limit-remaining"]) == 4.0
        assert float(answers[4].headers["x-request-cost"]) == 1.0
        assert float(answers[-1].headers["x-rate-limit-remaining"]) == 0.0
        # The quota is per token.
        assert client.get("/api/v1/courses/101", headers={"Authorization": "Bearer other"}).status_code == 200
        now[0] += 1.0  # two units leak away
        assert [client.get("/api/v1/courses/101").status_code for _ in range(3)] == [200, 200, 403]
    assert [r.fault for r in emu.log].count("throttled") == 3


def test_faults_are_injected_by_request_number_rate_path_and_once(data: CanvasData) -> None:
    emu = CanvasEmulator(
        data,
        tokens={TOKEN},
        faults=Faults(error_on={2}, error_status=502, drop_on={4}, transient={r"sections": "error"}),
    )
    with emu.serve() as url, httpx.Client(base_url=url, headers=AUTH) as client:
        assert client.get("/api/v1/courses/101").status_code == 200
        assert client.get("/api/v1/courses/101").status_code == 502
        assert client.get("/api/v1/courses/101/sections").status_code == 502  # the transient one
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/api/v1/courses/101/assignments")
        assert client.get("/api/v1/courses/101/sections").status_code == 200
        emu.faults = Faults(error_paths=(r"/assignments$",), bodies={r"/sections$": b"[[[["})
        assert client.get("/api/v1/courses/101/assignments").status_code == 500
        assert client.get("/api/v1/courses/101/assignments").status_code == 500
        assert client.get("/api/v1/courses/101/sections").content == b"[[[["
    assert [r.fault for r in emu.log] == [None, "error", "error", "drop", None, "error", "error", "body"]
    assert [r.number for r in emu.log] == list(range(1, 9))


def test_random_faults_follow_the_seed(data: CanvasData) -> None:
    def pattern() -> list[int]:
        emu = CanvasEmulator(data, tokens={TOKEN}, faults=Faults(error_rate=0.3), seed=11)
        with emu.serve() as url, httpx.Client(base_url=url, headers=AUTH) as client:
            return [client.get("/api/v1/courses/101").status_code for _ in range(30)]

    first = pattern()
    assert first == pattern()
    assert 3 <= first.count(500) <= 20


def test_serve_stops_cleanly_and_frees_the_port(data: CanvasData) -> None:
    emu = CanvasEmulator(data, tokens={TOKEN})
    with emu.serve() as url:
        port = int(url.rsplit(":", 1)[1])
        assert httpx.get(f"{url}/api/v1/courses/101", headers=AUTH).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/v1/courses/101", headers=AUTH, timeout=2)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_command_line_serves_until_stopped() -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "edsight.testing.canvas_emulator", "--students", "12", "--token", TOKEN],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().split()[1]
        assert httpx.get(f"{url}/api/v1/courses", headers=AUTH).status_code == 200
    finally:
        child.terminate()
        child.wait(timeout=10)


# -- data ----------------------------------------------------------------------------------------


def test_objects_carry_seed_ids_as_sis_ids(data: CanvasData, tables: dict[str, pd.DataFrame]) -> None:
    assert [c["sis_course_id"] for c in data.courses] == list(tables["courses"]["course_id"])
    students = {u["sis_user_id"]: uid for uid, u in data.users.items() if uid >= USER_ID_OFFSET}
    assert students == {str(s): USER_ID_OFFSET + s for s in tables["students"]["student_id"]}
    assignments = [a["sis_assignment_id"] for c in data.courses for a in data.assignments[c["id"]]]
    assert sorted(assignments) == sorted(tables["assignments"]["assignment_id"])
    assert sum(len(v) for v in data.submissions.values()) == len(tables["submissions"])
    enrolled = sum(len(data.student_ids(c["id"])) for c in data.courses)
    assert enrolled == len(tables["submissions"][["student_id", "course_id"]].drop_duplicates())


def test_submission_fields_follow_the_seed(data: CanvasData, tables: dict[str, pd.DataFrame]) -> None:
    canvas_id = {a["sis_assignment_id"]: a["id"] for c in data.assignments.values() for a in c}
    by_key = {(s["user_id"], s["assignment_id"]): s for c in data.submissions.values() for s in c}
    for row in tables["submissions"].sample(60, random_state=1).itertuples(index=False):
        s = by_key[(USER_ID_OFFSET + row.student_id, canvas_id[row.assignment_id])]
        submitted = not pd.isna(row.submission_date)
        assert s["missing"] is (not submitted)
        assert s["late"] is bool(row.was_late)
        assert s["workflow_state"] == ("graded" if submitted else "unsubmitted")
        if submitted:
            assert s["submitted_at"] == row.submission_date.to_pydatetime()
            assert s["score"] == row.score_earned
            assert s["attempt"] == row.attempt_count
            assert s["seconds_late"] == max(
                0, int((s["submitted_at"] - s["cached_due_date"]).total_seconds())
            )
            assert s["graded_at"] > s["submitted_at"]
        else:
            assert s["score"] is None
            assert s["submitted_at"] is None


def test_hourly_page_views_add_up_to_the_weekly_seed_values(
    data: CanvasData, tables: dict[str, pd.DataFrame]
) -> None:
    start = datetime(TERM_START.year, TERM_START.month, TERM_START.day)
    analytics = tables["canvas_analytics"]
    course_ids = {c["sis_course_id"]: c["id"] for c in data.courses}
    pairs = analytics[["student_id", "course_id"]].drop_duplicates().head(25)
    for pair in pairs.itertuples(index=False):
        course, user = course_ids[pair.course_id], USER_ID_OFFSET + int(pair.student_id)
        activity = data.activity(course, user)
        assert activity is not None
        weekly_views = [0] * 16
        weekly_parts = [0] * 16
        for hour, views in activity["page_views"].items():
            assert hour.minute == 0
            assert hour.second == 0
            weekly_views[(hour - start) // timedelta(weeks=1)] += views
        for event in activity["participations"]:
            weekly_parts[(event["created_at"] - start) // timedelta(weeks=1)] += 1
        seed = analytics[
            (analytics["student_id"] == pair.student_id) & (analytics["course_id"] == pair.course_id)
        ]
        assert weekly_views == list(seed.sort_values("week")["page_views"])
        assert weekly_parts == list(seed.sort_values("week")["participations"])
        # Spread over several hours, not dumped into one.
        busy = [w for w in seed["page_views"] if w >= 10]
        assert not busy or len(activity["page_views"]) > len(busy)
    again = CanvasData(tables, seed=SEED)
    assert again.activity(101, data.student_ids(101)[0]) == data.activity(101, data.student_ids(101)[0])


def test_student_summaries_agree_with_activity_and_submissions(
    served: tuple[CanvasEmulator, httpx.Client], data: CanvasData
) -> None:
    _, client = served
    summaries, _ = follow(client, "/api/v1/courses/102/analytics/student_summaries", {"per_page": 5})
    assert {s["id"] for s in summaries} == set(data.student_ids(102))
    for s in summaries[:10]:
        activity = client.get(f"/api/v1/courses/102/analytics/users/{s['id']}/activity").json()
        assert s["page_views"] == sum(activity["page_views"].values())
        assert s["participations"] == len(activity["participations"])
        assert s["tardiness_breakdown"]["total"] == len(data.assignments[102])
        assert 0 <= s["page_views_level"] <= 3
        assert s["max_page_views"] >= s["page_views"]


def test_submission_filters_match_canvas(
    served: tuple[CanvasEmulator, httpx.Client], data: CanvasData
) -> None:
    _, client = served
    path = "/api/v1/courses/101/students/submissions"
    everything = data.submissions[101]
    cut = sorted(s["submitted_at"] for s in everything if s["submitted_at"])[len(everything) // 3]
    since, _ = follow(client, path, {"student_ids[]": "all", "submitted_since": cut.isoformat() + "Z"})
    assert {s["id"] for s in since} == {
        s["id"] for s in everything if s["submitted_at"] and s["submitted_at"] > cut
    }
    graded, _ = follow(client, path, {"student_ids[]": "all", "graded_since": "2024-11-01T00:00:00-06:00"})
    assert graded
    assert all(
        datetime.fromisoformat(s["graded_at"]) > datetime.fromisoformat("2024-11-01T06:00:00+00:00")
        for s in graded
    )
    one = data.student_ids(101)[0]
    mine, _ = follow(
        client, path, {"student_ids[]": [str(one)], "assignment_ids[]": [str(everything[0]["assignment_id"])]}
    )
    assert [(s["user_id"], s["assignment_id"]) for s in mine] == [(one, everything[0]["assignment_id"])]
    too_many = client.get(path, params={"student_ids[]": [str(i) for i in range(101)]})
    assert too_many.status_code == 400
    assert client.get(path).status_code == 400  # student_ids is required


def test_mutations_show_in_answers(data: CanvasData, tables: dict[str, pd.DataFrame]) -> None:
    fresh = CanvasData(tables, seed=SEED)
    emu = CanvasEmulator(fresh, tokens={TOKEN})
    user = fresh.student_ids(103)[0]
    target = next(s for s in fresh.submissions[103] if s["user_id"] == user and s["score"] is not None)
    with emu.serve() as url, httpx.Client(base_url=url, headers=AUTH) as client:
        before = client.get(f"/api/v1/courses/103/analytics/users/{user}/activity").json()
        fresh.regrade(103, target["assignment_id"], user, score=1.5, at=datetime(2025, 2, 1))
        fresh.add_activity(103, user, datetime(2024, 9, 2, 14, 25), views=4, participations=2)
        after = client.get(f"/api/v1/courses/103/analytics/users/{user}/activity").json()
        regraded, _ = follow(
            client,
            "/api/v1/courses/103/students/submissions",
            {"student_ids[]": "all", "graded_since": "2025-01-01"},
        )
    assert sum(after["page_views"].values()) == sum(before["page_views"].values()) + 4
    assert len(after["participations"]) == len(before["participations"]) + 2
    assert [(s["user_id"], s["score"], s["graded_at"]) for s in regraded] == [
        (user, 1.5, "2025-02-01T00:00:00Z")
    ]


def test_times_are_written_in_the_configured_offset(data: CanvasData) -> None:
    emu = CanvasEmulator(data, tokens={TOKEN}, utc_offset_minutes=-360)
    with emu.serve() as url:
        course = httpx.get(f"{url}/api/v1/courses/101", params={"include[]": "term"}, headers=AUTH).json()
    assert course["term"]["start_at"] == f"{(TERM_START - timedelta(days=1)).isoformat()}T18:00:00-06:00"


# -- canvasapi ---------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Canvas may respond unexpectedly:UserWarning")
def test_canvasapi_reads_the_emulator(served: tuple[CanvasEmulator, httpx.Client], data: CanvasData) -> None:
    _, client = served
    canvas = Canvas(str(client.base_url).rstrip("/"), TOKEN)
    course = canvas.get_course(101)
    assert course.name == data.courses[0]["name"]
    assert course.sis_course_id == data.courses[0]["sis_course_id"]
    students = data.student_ids(101)
    users = list(course.get_users(enrollment_type=["student"]))
    assert sorted(u.id for u in users) == sorted(students)
    enrollments = list(course.get_enrollments(type=["StudentEnrollment"]))
    assert len(enrollments) == len(students)
    assert all(isinstance(e.grades["current_score"], float | None) for e in enrollments)
    assignments = list(course.get_assignments())
    assert [a.id for a in assignments] == [a["id"] for a in data.assignments[101]]
    submissions = list(course.get_multiple_submissions(student_ids=["all"]))
    assert len(submissions) == len(data.submissions[101])
    assert {s.workflow_state for s in submissions} <= {"graded", "unsubmitted"}
    summaries = list(course.get_course_level_student_summary_data())
    assert {s.id for s in summaries} == set(students)
    activity = course.get_user_in_a_course_level_participation_data(students[0])
    assert sum(activity["page_views"].values()) == next(
        s.page_views for s in summaries if s.id == students[0]
    )


@pytest.mark.filterwarnings("ignore:Canvas may respond unexpectedly:UserWarning")
def test_canvasapi_sees_canvas_errors(data: CanvasData) -> None:
    emu = CanvasEmulator(
        data,
        tokens={TOKEN},
        unauthorized_tokens={"observer"},
        throttle=Throttle(capacity=1, leak_per_s=0, up_front=5),
    )
    with emu.serve() as url:
        with pytest.raises(InvalidAccessToken):
            Canvas(url, "expired").get_course(101)
        with pytest.raises(Unauthorized):
            Canvas(url, "observer").get_course(101)
        # canvasapi 3.6 keeps RateLimitExceeded for 429; Canvas's 403 surfaces as Forbidden.
        with pytest.raises(Forbidden, match="Rate Limit Exceeded"):
            Canvas(url, TOKEN).get_course(101)


def test_json_of_an_answer_is_plain_canvas(served: tuple[CanvasEmulator, httpx.Client]) -> None:
    _, client = served
    enrollment = client.get("/api/v1/courses/101/enrollments", params={"type[]": "StudentEnrollment"}).json()[
        0
    ]
    expected = {"id", "course_id", "course_section_id", "user_id", "sis_user_id", "type", "enrollment_state"}
    assert expected <= set(enrollment)
    assert {"current_score", "final_score"} <= set(enrollment["grades"])
    assert {"last_activity_at", "total_activity_time"} <= set(enrollment)
    assert json.loads(json.dumps(enrollment)) == enrollment
