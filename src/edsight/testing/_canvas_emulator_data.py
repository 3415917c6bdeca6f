"""Canvas REST objects built from a synthetic semester (private to the Canvas emulator).

The seed-format tables of :func:`edsight.synth.canvas.generate_canvas` become Canvas
accounts, terms, courses, sections, users, enrollments, assignments, submissions,
Analytics student summaries and per-student hourly activity, with Canvas field names.
Seed ids travel as SIS ids (``sis_course_id``, ``sis_user_id``, ``sis_assignment_id``);
Canvas's own numeric ids are the seed's plus fixed offsets, so that a test can tell a
connector that links through SIS ids from one that happens to reuse numbers.

Objects are kept with naive UTC ``datetime`` values; the emulator formats them as ISO
8601 (``Z`` or a fixed UTC offset) when it answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import pandas as pd

from edsight.synth.canvas import N_WEEKS, TERM_START

ACCOUNT_ID: Final = 1
TERM_ID: Final = 1
COURSE_ID_BASE: Final = 100  # the k-th seed course (from 1) is Canvas course 100 + k
SECTION_ID_BASE: Final = 200
TEACHER_ID_BASE: Final = 10  # one teacher per course: users 11, 12, ...
USER_ID_OFFSET: Final = 1000  # Canvas user id = seed student_id + 1000
ASSIGNMENT_ID_BASE: Final = 5000  # seed "assignment_N" is Canvas assignment 5000 + N
ENROLLMENT_ID_BASE: Final = 100_000
SUBMISSION_ID_BASE: Final = 1_000_000
HOST: Final = "https://canvas.example.edu"
HOURS_PER_WEEK: Final = 7 * 24
# About one active hour per five page views: a student's views come in a few sessions.
VIEWS_PER_ACTIVE_HOUR: Final = 5

_GIVEN = ("Ada", "Ben", "Chloe", "Dev", "Elena", "Femi", "Grace", "Hugo", "Iris", "Jonas", "Kiri", "Luis")
_FAMILY = ("Okafor", "Nguyen", "Schmidt", "Garcia", "Kowalski", "Haddad", "Tanaka", "Moreau", "Silva")
_SUBMISSION_TYPES = {
    "assignment": ["online_upload"],
    "quiz": ["online_quiz"],
    "discussion_topic": ["discussion_topic"],
}
_TITLES = {"assignment": "Assignment", "quiz": "Quiz", "discussion_topic": "Discussion"}


def _ts(value: Any) -> datetime | None:
    """A naive datetime from a pandas/numpy timestamp, or None for a missing one."""
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).to_pydatetime()


def _rows(frame: pd.DataFrame) -> list[Any]:
    """The rows of ``frame`` as named tuples (typed loosely: columns vary by table)."""
    return list(frame.itertuples(index=False))


def _names(user_id: int) -> tuple[str, str]:
    return _GIVEN[user_id % len(_GIVEN)], _FAMILY[(user_id // len(_GIVEN)) % len(_FAMILY)]


def _user(user_id: int, sis_user_id: str, created_at: datetime, login: str) -> dict[str, Any]:
    given, family = _names(user_id)
    return {
        "id": user_id,
        "name": f"{given} {family}",
        "created_at": created_at,
        "sortable_name": f"{family}, {given}",
        "short_name": given,
        "first_name": given,
        "last_name": family,
        "sis_user_id": sis_user_id,
        "integration_id": None,
        "login_id": login,
    }


@dataclass
class _Pair:
    """A student's engagement in one course: weekly page views and participations."""

    views: np.ndarray  # shape (N_WEEKS,)
    participations: np.ndarray
    last_login: datetime | None = None
    extra_views: dict[datetime, int] = field(default_factory=dict)
    extra_participations: list[datetime] = field(default_factory=list)


class CanvasData:
    """All Canvas objects of one emulated instance, with the few mutations tests need."""

    def __init__(self, tables: Mapping[str, pd.DataFrame], *, seed: int = 0) -> None:
        self.seed = seed
        self.version = 0  # bumped by every mutation; caches key on it
        self.term_start = datetime(TERM_START.year, TERM_START.month, TERM_START.day)
        term_end = self.term_start + timedelta(weeks=N_WEEKS) - timedelta(seconds=1)
        self.account = {"id": ACCOUNT_ID, "name": "Edsight State University", "parent_account_id": None}
        self.term = {
            "id": TERM_ID,
            "name": f"Fall {self.term_start.year}",
            "start_at": self.term_start,
            "end_at": term_end,
            "workflow_state": "active",
            "sis_term_id": f"FA{self.term_start.year}",
        }
        self.courses: list[dict[str, Any]] = []
        self.sections: dict[int, list[dict[str, Any]]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.enrollments: dict[int, list[dict[str, Any]]] = {}
        self.assignments: dict[int, list[dict[str, Any]]] = {}
        self.submissions: dict[int, list[dict[str, Any]]] = {}
        self._submission: dict[tuple[int, int], dict[str, Any]] = {}
        self._pairs: dict[tuple[int, int], _Pair] = {}
        self._course_ids: dict[str, int] = {}
        self._build_courses(tables["courses"])
        self._build_assignments(tables["assignments"])
        self._build_students(tables["students"], tables["submissions"], tables["canvas_analytics"])
        self._build_submissions(tables["submissions"])
        self._build_activity(tables["canvas_analytics"])

    # -- building -------------------------------------------------------------------

    def _build_courses(self, courses: pd.DataFrame) -> None:
        for k, row in enumerate(_rows(courses), start=1):
            course_id = COURSE_ID_BASE + k
            self._course_ids[str(row.course_id)] = course_id
            self.courses.append(
                {
                    "id": course_id,
                    "sis_course_id": str(row.course_id),
                    "integration_id": None,
                    "name": str(row.name),
                    "course_code": str(row.course_id),
                    "workflow_state": "available",
                    "account_id": ACCOUNT_ID,
                    "root_account_id": ACCOUNT_ID,
                    "enrollment_term_id": TERM_ID,
                    "created_at": self.term_start - timedelta(days=30),
                    "start_at": self.term["start_at"],
                    "end_at": self.term["end_at"],
                    "time_zone": "UTC",
                    "default_view": "modules",
                    "is_public": False,
                    "hide_final_grades": False,
                    "apply_assignment_group_weights": False,
                    "restrict_enrollments_to_course_dates": False,
                }
            )
            self.sections[course_id] = [
                {
                    "id": SECTION_ID_BASE + k,
                    "course_id": course_id,
                    "name": f"{row.course_id} Section 01",
                    "start_at": None,
                    "end_at": None,
                    "sis_section_id": f"{row.course_id}-01",
                    "sis_course_id": str(row.course_id),
                    "integration_id": None,
                    "nonxlist_course_id": None,
                }
            ]
            teacher_id = TEACHER_ID_BASE + k
            self.users[teacher_id] = _user(
                teacher_id, f"T{k:03d}", self.term_start - timedelta(days=365), f"teacher{k}@example.edu"
            )
            self.enrollments[course_id] = [self._enrollment(ENROLLMENT_ID_BASE + k, course_id, teacher_id)]
            self.enrollments[course_id][0].update(
                type="TeacherEnrollment", role="TeacherEnrollment", role_id=4
            )
            self.assignments[course_id] = []
            self.submissions[course_id] = []

    def _enrollment(self, enrollment_id: int, course_id: int, user_id: int) -> dict[str, Any]:
        section = self.sections[course_id][0]
        user = self.users[user_id]
        return {
            "id": enrollment_id,
            "course_id": course_id,
            "course_section_id": section["id"],
            "sis_course_id": section["sis_course_id"],
            "sis_section_id": section["sis_section_id"],
            "course_integration_id": None,
            "user_id": user_id,
            "sis_user_id": user["sis_user_id"],
            "type": "StudentEnrollment",
            "role": "StudentEnrollment",
            "role_id": 3,
            "enrollment_state": "active",
            "created_at": user["created_at"],
            "updated_at": user["created_at"],
            "start_at": None,
            "end_at": None,
            "last_activity_at": None,
            "last_attended_at": None,
            "total_activity_time": 0,
            "limit_privileges_to_course_section": False,
            "root_account_id": ACCOUNT_ID,
            "associated_user_id": None,
            "html_url": f"{HOST}/courses/{course_id}/users/{user_id}",
        }

    def _build_assignments(self, assignments: pd.DataFrame) -> None:
        for position, row in enumerate(_rows(assignments), start=1):
            course_id = self._course_ids[str(row.course_id)]
            suffix = str(row.assignment_id).rsplit("_", 1)[-1]
            assignment_id = ASSIGNMENT_ID_BASE + (int(suffix) if suffix.isdigit() else position)
            kind = str(row.assignment_type)
            due = _ts(row.due_date)
            self.assignments[course_id].append(
                {
                    "id": assignment_id,
                    "name": f"{_TITLES.get(kind, 'Assignment')} {row.due_week}",
                    "description": None,
                    "created_at": self.term_start - timedelta(days=7),
                    "updated_at": self.term_start - timedelta(days=7),
                    "due_at": due,
                    "lock_at": None,
                    "unlock_at": None,
                    "has_overrides": False,
                    "course_id": course_id,
                    "html_url": f"{HOST}/courses/{course_id}/assignments/{assignment_id}",
                    "assignment_group_id": course_id * 10,
                    "points_possible": float(row.points_possible),
                    "grading_type": "points",
                    "submission_types": list(_SUBMISSION_TYPES.get(kind, ["online_upload"])),
                    "quiz_id": assignment_id + 50_000 if kind == "quiz" else None,
                    "published": True,
                    "muted": False,
                    "only_visible_to_overrides": False,
                    "workflow_state": "published",
                    "position": position,
                    "sis_assignment_id": str(row.assignment_id),
                    "integration_id": None,
                    "post_to_sis": False,
                    "needs_grading_count": 0,
                    "omit_from_final_grade": False,
                }
            )

    def _build_students(
        self, students: pd.DataFrame, submissions: pd.DataFrame, analytics: pd.DataFrame
    ) -> None:
        created: dict[int, datetime] = {}
        for sid, enrolled in zip(students["student_id"], students["enrollment_date"], strict=True):
            user_id = USER_ID_OFFSET + int(sid)
            when = _ts(enrolled) or self.term_start
            created[user_id] = when
            self.users[user_id] = _user(user_id, str(int(sid)), when, f"s{int(sid)}@example.edu")
        pairs = pd.concat(
            [submissions[["student_id", "course_id"]], analytics[["student_id", "course_id"]]]
        ).drop_duplicates()
        pairs = pairs.assign(canvas_course=pairs["course_id"].astype(str).map(self._course_ids))
        pairs = pairs.sort_values(["canvas_course", "student_id"])
        next_id = ENROLLMENT_ID_BASE + 1000
        for sid, course_id in zip(pairs["student_id"], pairs["canvas_course"], strict=True):
            user_id = USER_ID_OFFSET + int(sid)
            next_id += 1
            self.enrollments[int(course_id)].append(self._enrollment(next_id, int(course_id), user_id))

    def _build_submissions(self, submissions: pd.DataFrame) -> None:
        assignment_ids = {
            a["sis_assignment_id"]: (a["id"], a["course_id"], a["submission_types"][0])
            for course in self.assignments.values()
            for a in course
        }
        ordered = submissions.sort_values(["course_id", "assignment_id", "student_id"], kind="stable")
        for n, row in enumerate(_rows(ordered), start=1):
            assignment_id, course_id, submission_type = assignment_ids[str(row.assignment_id)]
            user_id = USER_ID_OFFSET + int(row.student_id)
            submitted = _ts(row.submission_date)
            due = _ts(row.due_date)
            late_s = int((submitted - due).total_seconds()) if submitted and due and submitted > due else 0
            # A deterministic grading delay of one to three days after the submission.
            graded = submitted + timedelta(hours=24 + (n * 7) % 48) if submitted else None
            record: dict[str, Any] = {
                "id": SUBMISSION_ID_BASE + n,
                "assignment_id": assignment_id,
                "user_id": user_id,
                "attempt": int(row.attempt_count) if submitted else None,
                "score": float(row.score_earned) if submitted else None,
                "grade": f"{float(row.score_earned):g}" if submitted else None,
                "entered_score": float(row.score_earned) if submitted else None,
                "submitted_at": submitted,
                "graded_at": graded,
                "posted_at": graded,
                "grader_id": TEACHER_ID_BASE + (course_id - COURSE_ID_BASE) if submitted else None,
                "late": bool(row.was_late),
                "missing": submitted is None,
                "excused": False,
                "seconds_late": late_s,
                "points_deducted": None,
                "late_policy_status": None,
                "workflow_state": "graded" if submitted else "unsubmitted",
                "submission_type": submission_type if submitted else None,
                "grade_matches_current_submission": True,
                "cached_due_date": due,
                "extra_attempts": None,
                "redo_request": False,
            }
            self.submissions[course_id].append(record)
            self._submission[(assignment_id, user_id)] = record

    def _build_activity(self, analytics: pd.DataFrame) -> None:
        for row in _rows(analytics):
            key = (self._course_ids[str(row.course_id)], USER_ID_OFFSET + int(row.student_id))
            pair = self._pairs.get(key)
            if pair is None:
                pair = self._pairs[key] = _Pair(np.zeros(N_WEEKS, np.int64), np.zeros(N_WEEKS, np.int64))
            week = int(row.week) - 1
            if 0 <= week < N_WEEKS:
                pair.views[week] = int(row.page_views)
                pair.participations[week] = int(row.participations)
            login = _ts(row.last_login)
            if login is not None and (pair.last_login is None or login > pair.last_login):
                pair.last_login = login
        for course_id, enrollments in self.enrollments.items():
            for e in enrollments:
                pair = self._pairs.get((course_id, e["user_id"]))
                if pair is not None:
                    e["last_activity_at"] = pair.last_login
                    # Canvas counts seconds of activity; about 45 s per page view here.
                    e["total_activity_time"] = int(pair.views.sum()) * 45

    # -- reading --------------------------------------------------------------------

    def course(self, course_id: int) -> dict[str, Any] | None:
        return next((c for c in self.courses if c["id"] == course_id), None)

    def course_json(self, course: dict[str, Any], include: set[str]) -> dict[str, Any]:
        out = dict(course)
        if "term" in include:
            out["term"] = {k: self.term[k] for k in ("id", "name", "start_at", "end_at")}
        if "account" in include:
            out["account"] = dict(self.account)
        if "total_students" in include:
            out["total_students"] = sum(
                1 for e in self.enrollments[course["id"]] if e["type"] == "StudentEnrollment"
            )
        return out

    def enrollment_json(self, enrollment: dict[str, Any]) -> dict[str, Any]:
        out = dict(enrollment)
        user = self.users[enrollment["user_id"]]
        out["user"] = {k: user[k] for k in ("id", "name", "sortable_name", "short_name", "sis_user_id")}
        out["user"]["login_id"] = user["login_id"]
        if enrollment["type"] == "StudentEnrollment":
            current, final = self._scores(enrollment["course_id"], enrollment["user_id"])
            out["grades"] = {
                "html_url": f"{HOST}/courses/{enrollment['course_id']}/grades/{enrollment['user_id']}",
                "current_score": current,
                "final_score": final,
                "current_grade": None,
                "final_grade": None,
                "unposted_current_score": current,
                "unposted_final_score": final,
            }
        return out

    def _scores(self, course_id: int, user_id: int) -> tuple[float | None, float | None]:
        graded_points = graded_score = all_points = 0.0
        for a in self.assignments[course_id]:
            s = self._submission.get((a["id"], user_id))
            if s is None:
                continue
            all_points += a["points_possible"]
            if isinstance(s["score"], int | float):  # tests plant hostile values; skip them
                graded_points += a["points_possible"]
                graded_score += s["score"]
        current = round(100 * graded_score / graded_points, 2) if graded_points else None
        final = round(100 * graded_score / all_points, 2) if all_points else None
        return current, final

    def student_ids(self, course_id: int) -> list[int]:
        return [e["user_id"] for e in self.enrollments[course_id] if e["type"] == "StudentEnrollment"]

    def activity(self, course_id: int, user_id: int) -> dict[str, Any] | None:
        """The Analytics user-in-course activity: hourly page views and participations."""
        pair = self._pairs.get((course_id, user_id))
        if pair is None:
            return None
        views: dict[datetime, int] = {}
        participations: list[datetime] = []
        rng = np.random.default_rng([self.seed, course_id, user_id])
        for week in range(N_WEEKS):
            start = self.term_start + timedelta(weeks=week)
            n_views, n_parts = int(pair.views[week]), int(pair.participations[week])
            hours = np.empty(0, np.int64)
            if n_views > 0:
                k = min(n_views, math.ceil(n_views / VIEWS_PER_ACTIVE_HOUR))
                hours = rng.choice(HOURS_PER_WEEK, size=k, replace=False)
                counts = 1 + rng.multinomial(n_views - k, np.full(k, 1.0 / k))
                for offset, count in zip(hours, counts, strict=True):
                    views[start + timedelta(hours=int(offset))] = int(count)
            if n_parts > 0:
                # Participations happen while the student is active, when there is activity.
                where = (
                    hours[rng.integers(0, len(hours), n_parts)]
                    if len(hours)
                    else rng.integers(0, HOURS_PER_WEEK, n_parts)
                )
                seconds = rng.integers(0, 3600, n_parts)
                participations += [
                    start + timedelta(hours=int(h), seconds=int(s))
                    for h, s in zip(where, seconds, strict=True)
                ]
        for hour, count in pair.extra_views.items():
            views[hour] = views.get(hour, 0) + count
        participations += pair.extra_participations
        url = f"{HOST}/courses/{course_id}/discussion_topics"
        return {
            "page_views": dict(sorted(views.items())),
            "participations": [{"created_at": t, "url": url} for t in sorted(participations)],
        }

    def summaries(self, course_id: int) -> list[dict[str, Any]]:
        """Analytics student summaries of a course, in order of the students' sortable names."""
        rows: list[dict[str, Any]] = []
        for user_id in self.student_ids(course_id):
            pair = self._pairs.get((course_id, user_id))
            views = int(pair.views.sum()) + sum(pair.extra_views.values()) if pair else 0
            parts = int(pair.participations.sum()) + len(pair.extra_participations) if pair else 0
            tardy = {"missing": 0, "late": 0, "on_time": 0, "floating": 0, "total": 0}
            for a in self.assignments[course_id]:
                s = self._submission.get((a["id"], user_id))
                if s is None:
                    continue
                tardy["total"] += 1
                if s["missing"]:
                    tardy["missing"] += 1
                elif s["late"]:
                    tardy["late"] += 1
                elif s["submitted_at"] is not None:
                    tardy["on_time"] += 1
                else:
                    tardy["floating"] += 1
            rows.append(
                {"id": user_id, "page_views": views, "participations": parts, "tardiness_breakdown": tardy}
            )
        max_views = max((r["page_views"] for r in rows), default=0)
        max_parts = max((r["participations"] for r in rows), default=0)
        for r in rows:
            r["max_page_views"] = max_views
            r["page_views_level"] = _level(r["page_views"], max_views)
            r["max_participations"] = max_parts
            r["participations_level"] = _level(r["participations"], max_parts)
        rows.sort(key=lambda r: (self.users[r["id"]]["sortable_name"], r["id"]))
        return rows

    # -- mutations (tests) ------------------------------------------------------------

    def regrade(
        self, course_id: int, assignment_id: int, user_id: int, *, score: float, at: datetime
    ) -> None:
        """Grade (or re-grade) one submission at ``at`` (naive UTC)."""
        record = self._submission[(assignment_id, user_id)]
        if self.course(course_id) is None or record not in self.submissions[course_id]:
            raise KeyError(f"no submission of user {user_id} for assignment {assignment_id} in {course_id}")
        record.update(score=score, entered_score=score, grade=f"{score:g}", graded_at=at, posted_at=at)
        record["workflow_state"] = "graded"
        self.version += 1

    def add_activity(
        self, course_id: int, user_id: int, hour: datetime, *, views: int, participations: int = 0
    ) -> None:
        """Record ``views`` more page views (and participations) in the hour starting at ``hour``."""
        pair = self._pairs[(course_id, user_id)]
        hour = hour.replace(minute=0, second=0, microsecond=0)
        pair.extra_views[hour] = pair.extra_views.get(hour, 0) + views
        pair.extra_participations += [hour + timedelta(minutes=7 + i) for i in range(participations)]
        self.version += 1


def _level(value: int, maximum: int) -> int:
    """Canvas's 0-3 activity level: 0 for none, else the third of the course maximum it falls in."""
    if value <= 0 or maximum <= 0:
        return 0
    return min(3, 1 + (3 * value) // (maximum + 1))
