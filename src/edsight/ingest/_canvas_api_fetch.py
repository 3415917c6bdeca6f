"""What to ask Canvas for, and asking: every list fetched page by page into the spool.

Private to :mod:`edsight.ingest.canvas_api`. The plan of a run depends only on the
pages already spooled and on a snapshot of the warehouse taken when the run started
(kept in the spool), so a resumed run asks the same questions and skips the pages it
already has.

Incremental runs (a course with a cursor in ``sync_state``, or ``since`` given):

* submissions: ``submitted_since`` and ``graded_since`` (Canvas filters each with a
  strict ``>``, and both together mean *and*, hence two lists), plus every student's
  row of assignments that fell due since the last sync (``missing`` changes with no
  timestamp), that are new, and of students new to the course;
* Analytics activity (one request per student, the bulk of all requests): only for
  students whose page views or participations in the course's student summary differ
  from the hourly totals already stored.

Everything else (courses, sections, users, enrollments, assignments, summaries) is
small and read whole every time; rows that did not change store nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb

from edsight.errors import SourceError
from edsight.ingest._canvas_api_http import CanvasHttp, NotFound, NotPermitted, describe
from edsight.ingest._canvas_api_spool import Spool
from edsight.ingest._canvas_api_tables import parse_utc

log = logging.getLogger("edsight.ingest.canvas_api")

Params = list[tuple[str, str]]
# Canvas compares timestamps strictly and clocks drift: ask again for a little of the past.
OVERLAP = timedelta(minutes=5)
DUE_OVERLAP = timedelta(days=1)
STUDENTS_PER_REQUEST = 100  # Canvas refuses more student_ids than its page size
ASSIGNMENTS_PER_REQUEST = 50
COURSE_INCLUDES: Params = [("include[]", "term"), ("include[]", "account"), ("include[]", "total_students")]
BASE_LISTS = ("sections", "users", "enrollments", "assignments")


@dataclass(frozen=True)
class FetchOptions:
    """What the caller asked for (part of the spool's identity)."""

    course_ids: tuple[int, ...] | None = None
    account_id: int | None = None
    since: datetime | None = None  # naive UTC
    per_page: int = 100
    analytics: bool = True


@dataclass
class CoursePlan:
    """The lists fetched for one course beyond its base lists."""

    submission_keys: list[str] = field(default_factory=list)
    activity_users: list[int] = field(default_factory=list)
    activity_skipped: int = 0  # students whose activity had not changed


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def take_snapshot(con: duckdb.DuckDBPyConnection, source: str, now: datetime) -> dict[str, Any]:
    """The warehouse state a run plans from: cursors, known students and assignments, activity totals."""
    cursors: dict[str, dict[str, Any]] = {}
    for entity, cursor in con.execute(
        "SELECT entity, cursor FROM sync_state WHERE source = ? AND starts_with(entity, 'course:')", [source]
    ).fetchall():
        try:
            value = json.loads(cursor)
        except ValueError:
            continue
        if isinstance(value, dict):
            cursors[entity.removeprefix("course:")] = value
    snapshot: dict[str, Any] = {
        "taken_at": now.isoformat(),
        "cursors": cursors,
        "students": {},
        "assignments": {},
        "activity": {},
    }
    if not cursors:
        return snapshot
    section = "JOIN main.id_map sec ON sec.source_system = 'canvas' AND sec.entity = 'section'"
    person = "JOIN main.id_map per ON per.source_system = 'canvas' AND per.entity = 'person'"
    for course, user in con.execute(
        "SELECT DISTINCT TRY_CAST(sec.source_id AS BIGINT), TRY_CAST(per.source_id AS BIGINT) "  # noqa: S608
        f"FROM main.enrollment e {section} AND sec.edsight_id = e.section_id "
        f"{person} AND per.edsight_id = e.person_id WHERE e.role = 'student'"
    ).fetchall():
        if course is not None and user is not None:
            snapshot["students"].setdefault(str(course), []).append(int(user))
    for course, assignment in con.execute(
        "SELECT DISTINCT TRY_CAST(sec.source_id AS BIGINT), TRY_CAST(asg.source_id AS BIGINT) "  # noqa: S608
        f"FROM main.assignment a {section} AND sec.edsight_id = a.section_id "
        "JOIN main.id_map asg ON asg.source_system = 'canvas' AND asg.entity = 'assignment' "
        "AND asg.edsight_id = a.assignment_id"
    ).fetchall():
        if course is not None and assignment is not None:
            snapshot["assignments"].setdefault(str(course), []).append(int(assignment))
    for course, user, views, parts in con.execute(
        "SELECT TRY_CAST(sec.source_id AS BIGINT), TRY_CAST(per.source_id AS BIGINT), "  # noqa: S608
        f"sum(a.page_views), sum(a.participations) FROM main.lms_activity a "
        f"{section} AND sec.edsight_id = a.section_id {person} AND per.edsight_id = a.person_id "
        "WHERE a.period = 'hour' GROUP BY ALL"
    ).fetchall():
        if course is not None and user is not None:
            snapshot["activity"].setdefault(str(course), {})[str(user)] = [int(views), int(parts)]
    return snapshot


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _chunks(values: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


class Fetcher:
    """Fetches one run's lists into its spool, ``concurrency`` requests at a time."""

    def __init__(
        self,
        http: CanvasHttp,
        spool: Spool,
        options: FetchOptions,
        snapshot: dict[str, Any],
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.http = http
        self.spool = spool
        self.options = options
        self.snapshot = snapshot
        self.progress = progress
        self.plans: dict[int, CoursePlan] = {}
        self.course_ids: list[int] = []
        self.unreadable: set[int] = set()  # listed courses whose data the token may not read
        self.skipped: list[str] = []
        self.resumed_pages = 0
        self._now = datetime.fromisoformat(snapshot["taken_at"])

    # -- reading what is spooled ---------------------------------------------------------

    def course_records(self) -> list[Any]:
        """The spooled course records, less the courses the token may not read."""
        if self.options.course_ids is not None:
            records = [r for cid in self.options.course_ids for r in self.spool.records(f"course/{cid}")]
        else:
            records = list(self.spool.records("courses"))
        return [r for r in records if not (isinstance(r, dict) and r.get("id") in self.unreadable)]

    def records(self, course_id: int, kind: str) -> Iterable[Any]:
        """Spooled records of one course's list ``kind`` (all its submission lists for 'submissions')."""
        if kind == "submissions":
            plan = self.plans.get(course_id, CoursePlan())
            return (r for key in plan.submission_keys for r in self.spool.records(key))
        return self.spool.records(f"course/{course_id}/{kind}")

    def activity(self, course_id: int) -> Iterator[tuple[int, Any]]:
        for user_id in self.plans.get(course_id, CoursePlan()).activity_users:
            for answer in self.spool.records(f"course/{course_id}/activity/{user_id}"):
                yield user_id, answer

    # -- fetching ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Fetch everything the plan asks for."""
        include = [*COURSE_INCLUDES, ("state[]", "available"), ("state[]", "completed")]
        if self.options.course_ids is not None:
            await _all(
                *(
                    self.fetch(f"course/{cid}", f"/api/v1/courses/{cid}", COURSE_INCLUDES, single=True)
                    for cid in self.options.course_ids
                )
            )
        elif self.options.account_id is not None:
            await self.fetch("courses", f"/api/v1/accounts/{self.options.account_id}/courses", include)
        else:
            await self.fetch("courses", "/api/v1/courses", include)
        seen: set[int] = set()
        for record in self.course_records():
            cid = _int(record.get("id")) if isinstance(record, dict) else None
            if cid is not None and cid not in seen:
                seen.add(cid)
                self.course_ids.append(cid)
        await _all(*(self._course(cid) for cid in self.course_ids))
        self.course_ids = [cid for cid in self.course_ids if cid not in self.unreadable]

    async def _course(self, cid: int) -> None:
        try:
            await self._course_lists(cid)
        except NotPermitted as exc:
            if self.options.course_ids is not None:
                raise  # a course asked for by id must be readable
            # The token's user sees this course (e.g. as a student) but may not read its roster.
            self.unreadable.add(cid)
            self.skipped.append(f"course {cid}: {exc}; skipped")
            log.warning("course %d: not readable with this token; skipped", cid)

    async def _course_lists(self, cid: int) -> None:
        base = f"/api/v1/courses/{cid}"
        lists = [
            self.fetch(f"course/{cid}/sections", f"{base}/sections", []),
            self.fetch(
                f"course/{cid}/users",
                f"{base}/users",
                [("enrollment_type[]", t) for t in ("student", "teacher", "ta")],
            ),
            self.fetch(
                f"course/{cid}/enrollments",
                f"{base}/enrollments",
                [("type[]", t) for t in ("StudentEnrollment", "TeacherEnrollment", "TaEnrollment")]
                + [("state[]", s) for s in ("active", "completed", "inactive")],
            ),
            self.fetch(f"course/{cid}/assignments", f"{base}/assignments", []),
        ]
        if self.options.analytics:
            lists.append(self.fetch(f"course/{cid}/summaries", f"{base}/analytics/student_summaries", []))
        await _all(*lists)
        plan = self._plan(cid)
        self.plans[cid] = plan
        requests = [
            self.fetch(key, f"{base}/students/submissions", params)
            for key, params in self._submission_lists(cid)
        ]
        requests += [
            self.fetch(
                f"course/{cid}/activity/{uid}", f"{base}/analytics/users/{uid}/activity", [], single=True
            )
            for uid in plan.activity_users
        ]
        await _all(*requests)

    async def fetch(self, key: str, path: str, params: Params, *, single: bool = False) -> None:
        """Fetch list ``key`` from where the spool left it, one page at a time."""
        done = self.spool.progress(key)
        if done is not None:
            self.resumed_pages += len(done.pages)
            if done.done:
                if single and "/activity" in path and done.pages[0]["rows"] == 0:
                    self.skipped.append(_gone(path))
                return
        url = done.next_url if done else path
        # A server whose next link points back at a page already read would loop forever.
        seen = {p["next"] for p in done.pages} if done else set()
        query: Params | None = (
            None if done else (params if single else [*params, ("per_page", str(self.options.per_page))])
        )
        while url is not None:
            try:
                page = await self.http.get(url, query)
            except NotFound:
                if not (single and "/activity" in path):
                    raise
                # The student left the course between the roster and this request.
                self.skipped.append(_gone(path))
                self.spool.write_page(key, [], None)
                return
            if single:
                if not isinstance(page.body, dict):
                    raise SourceError(
                        f"GET {describe(self.http.url(url))}: expected a JSON object, got {_kind(page.body)}"
                    )
                self.spool.write_page(key, [page.body], None)
                break
            if not isinstance(page.body, list):
                raise SourceError(
                    f"GET {describe(self.http.url(url))}: expected a JSON list, got {_kind(page.body)}"
                )
            if page.next_url is not None and (page.next_url in seen or page.next_url == url):
                raise SourceError(
                    f"GET {describe(self.http.url(url))}: the next link repeats a page already read"
                )
            seen.add(page.next_url)
            self.spool.write_page(key, page.body, page.next_url)
            url, query = page.next_url, None
            if self.progress and self.spool.pages_written % 100 == 0:
                self.progress(f"fetched {self.spool.pages_written} pages")

    # -- planning ------------------------------------------------------------------------------

    def _cursor(self, cid: int) -> dict[str, Any] | None:
        value = self.snapshot["cursors"].get(str(cid))
        return value if isinstance(value, dict) else None

    def _plan(self, cid: int) -> CoursePlan:
        plan = CoursePlan(submission_keys=[key for key, _ in self._submission_lists(cid)])
        students = sorted(
            {
                uid
                for e in self.spool.records(f"course/{cid}/enrollments")
                if isinstance(e, dict)
                and e.get("type") == "StudentEnrollment"
                and (uid := _int(e.get("user_id"))) is not None
            }
        )
        if not self.options.analytics:
            return plan
        known = self.snapshot["activity"].get(str(cid), {})
        gate = self.options.since is None and self._cursor(cid) is not None
        summaries = {
            uid: (s.get("page_views"), s.get("participations"))
            for s in self.spool.records(f"course/{cid}/summaries")
            if isinstance(s, dict) and (uid := _int(s.get("id"))) is not None
        }
        for uid in students:
            stored = known.get(str(uid))
            summary = summaries.get(uid)
            if gate and stored is not None and summary is not None and list(summary) == stored:
                plan.activity_skipped += 1
            else:
                plan.activity_users.append(uid)
        return plan

    def _submission_lists(self, cid: int) -> list[tuple[str, Params]]:
        prefix = f"course/{cid}/submissions"
        cursor = self._cursor(cid)
        since = self.options.since
        if since is None and cursor is None:
            return [(f"{prefix}/all", [("student_ids[]", "all")])]
        synced = parse_utc(cursor.get("synced")) if cursor else None
        lists: list[tuple[str, Params]] = []
        for field_name, param in (("submitted", "submitted_since"), ("graded", "graded_since")):
            mark = parse_utc((cursor or {}).get(field_name)) or synced
            mark = since or (mark - OVERLAP if mark else None)
            if mark is not None:
                lists.append((f"{prefix}/{field_name}", [("student_ids[]", "all"), (param, _iso(mark))]))
        window = since or ((synced - DUE_OVERLAP) if synced else None)
        assignments = [
            (aid, parse_utc(a.get("due_at")))
            for a in self.spool.records(f"course/{cid}/assignments")
            if isinstance(a, dict) and (aid := _int(a.get("id"))) is not None
        ]
        wanted = {
            aid
            for aid, due in assignments
            if window is not None and due is not None and window < due <= self._now
        }
        students: list[int] = []
        if cursor is not None:
            known_assignments = set(self.snapshot["assignments"].get(str(cid), []))
            wanted |= {aid for aid, _ in assignments if aid not in known_assignments}
            known_students = set(self.snapshot["students"].get(str(cid), []))
            students = sorted(
                {
                    uid
                    for e in self.spool.records(f"course/{cid}/enrollments")
                    if isinstance(e, dict)
                    and e.get("type") == "StudentEnrollment"
                    and (uid := _int(e.get("user_id"))) is not None
                    and uid not in known_students
                }
            )
        for n, chunk in enumerate(_chunks(sorted(wanted), ASSIGNMENTS_PER_REQUEST)):
            lists.append(
                (
                    f"{prefix}/assignments{n}",
                    [("student_ids[]", "all")] + [("assignment_ids[]", str(a)) for a in chunk],
                )
            )
        for n, chunk in enumerate(_chunks(students, STUDENTS_PER_REQUEST)):
            lists.append((f"{prefix}/students{n}", [("student_ids[]", str(s)) for s in chunk]))
        return lists

    def cursors(self, latest: dict[int, tuple[str | None, str | None]]) -> dict[int, dict[str, Any]]:
        """The new cursor of every course fetched: newest timestamps seen, and when this run started."""
        out: dict[int, dict[str, Any]] = {}
        for cid in self.course_ids:
            old = self._cursor(cid) or {}
            submitted, graded = latest.get(cid, (None, None))
            out[cid] = {
                "submitted": max(filter(None, [old.get("submitted"), submitted]), default=None),
                "graded": max(filter(None, [old.get("graded"), graded]), default=None),
                "synced": self.snapshot["taken_at"],
            }
        return out


async def _all(*coros: Coroutine[Any, Any, None]) -> None:
    """Await every coroutine; when one fails, cancel the others and wait for them, then raise."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _gone(activity_path: str) -> str:
    return f"activity of a student of course {activity_path.split('/')[4]}: not found (404)"


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else type(value).__name__
