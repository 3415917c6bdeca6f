"""The routes of the Canvas emulator: Canvas JSON, paginated like Canvas.

Private to :mod:`edsight.testing.canvas_emulator`. Requests reach these routes through
the gate of :mod:`edsight.testing._canvas_emulator_gate` (log, faults, auth, throttle).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edsight.testing._canvas_emulator_gate import Gate

if TYPE_CHECKING:
    from edsight.testing.canvas_emulator import CanvasEmulator

DEFAULT_PER_PAGE = 10
_NOT_FOUND = {"errors": [{"message": "The specified resource does not exist."}]}


# -- JSON -------------------------------------------------------------------------------


def _json_default(offset: timedelta) -> Callable[[Any], Any]:
    tz_suffix = "Z" if not offset else _offset_text(offset)

    def encode(value: Any) -> Any:
        if isinstance(value, datetime):
            return (value + offset).strftime("%Y-%m-%dT%H:%M:%S") + tz_suffix
        raise TypeError(f"cannot encode {type(value).__name__}")

    return encode


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _encode(emulator: CanvasEmulator, payload: Any) -> bytes:
    offset = timedelta(minutes=emulator.utc_offset_minutes)
    if isinstance(payload, dict) and isinstance(payload.get("page_views"), dict):
        payload = dict(
            payload, page_views={_json_default(offset)(k): v for k, v in payload["page_views"].items()}
        )
    return json.dumps(payload, default=_json_default(offset), separators=(",", ":")).encode()


def _respond(
    emulator: CanvasEmulator, payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(_encode(emulator, payload), status, headers=headers, media_type="application/json")


# -- pagination ---------------------------------------------------------------------------


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


def _paginate(emulator: CanvasEmulator, request: Request, items: Sequence[Any]) -> Response:
    per_page = min(max(_int_param(request, "per_page", DEFAULT_PER_PAGE), 1), emulator.max_per_page)
    page = max(_int_param(request, "page", 1), 1)
    last = max(1, -(-len(items) // per_page))
    chunk = list(items[(page - 1) * per_page : page * per_page])
    # Canvas repeats the request's own parameters in every link, except an access_token.
    kept = [
        (k, v)
        for k, v in parse_qsl(request.url.query, keep_blank_values=True)
        if k not in {"page", "per_page", "access_token"}
    ]
    base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"

    def link(n: int, rel: str) -> str:
        return f'<{base}?{urlencode([*kept, ("page", str(n)), ("per_page", str(per_page))])}>; rel="{rel}"'

    links = [link(page, "current")]
    if page < last:
        links.append(link(page + 1, "next"))
    if page > 1:
        links.append(link(page - 1, "prev"))
    links += [link(1, "first"), link(last, "last")]
    return _respond(emulator, chunk, headers={"Link": ",".join(links)})


# -- routes ---------------------------------------------------------------------------------


def _path_int(request: Request, name: str) -> int | None:
    raw = request.path_params.get(name, "")
    return int(raw) if str(raw).isdigit() else None


def _since(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    when = datetime.fromisoformat(raw)
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def build_routes(emulator: CanvasEmulator) -> list[Route]:
    """The Canvas endpoints the emulator serves."""
    data = emulator.data

    def course_or_none(request: Request) -> dict[str, Any] | None:
        course_id = _path_int(request, "course_id")
        return data.course(course_id) if course_id is not None else None

    def includes(request: Request) -> set[str]:
        return set(request.query_params.getlist("include[]"))

    async def account(request: Request) -> Response:
        if _path_int(request, "account_id") != data.account["id"]:
            return _respond(emulator, _NOT_FOUND, 404)
        return _respond(emulator, data.account)

    async def courses(request: Request) -> Response:
        if "account_id" in request.path_params and _path_int(request, "account_id") != data.account["id"]:
            return _respond(emulator, _NOT_FOUND, 404)
        wanted = includes(request)
        return _paginate(emulator, request, [data.course_json(c, wanted) for c in data.courses])

    async def course(request: Request) -> Response:
        found = course_or_none(request)
        if found is None:
            return _respond(emulator, _NOT_FOUND, 404)
        return _respond(emulator, data.course_json(found, includes(request)))

    async def sections(request: Request) -> Response:
        found = course_or_none(request)
        if found is None:
            return _respond(emulator, _NOT_FOUND, 404)
        return _paginate(emulator, request, data.sections[found["id"]])

    async def users(request: Request) -> Response:
        found = course_or_none(request)
        if found is None:
            return _respond(emulator, _NOT_FOUND, 404)
        kinds = {f"{t.capitalize()}Enrollment" for t in request.query_params.getlist("enrollment_type[]")}
        seen: dict[int, dict[str, Any]] = {}
        for e in data.enrollments[found["id"]]:
            if (not kinds or e["type"] in kinds) and e["user_id"] not in seen:
                seen[e["user_id"]] = data.users[e["user_id"]]
        ordered = sorted(seen.values(), key=lambda u: (u["sortable_name"], u["id"]))
        return _paginate(emulator, request, ordered)

    async def enrollments(request: Request) -> Response:
        found = course_or_none(request)
        if found is None:
            return _respond(emulator, _NOT_FOUND, 404)
        kinds = set(request.query_params.getlist("type[]"))
        states = set(request.query_params.getlist("state[]")) or {"active", "invited"}
        rows = [
            e
            for e in data.enrollments[found["id"]]
            if (not kinds or e["type"] in kinds) and e["enrollment_state"] in states
        ]
        return _paginate(emulator, request, _Lazy(rows, data.enrollment_json))

    async def assignments(request: Request) -> Response:
        found = course_or_none(request)
        if found is None:
            return _respond(emulator, _NOT_FOUND, 404)
        return _paginate(emulator, request, data.assignments[found["id"]])

    async def submissions(request: Request) -> Response:
        found = course_or_none(request)
        if found is None:
            return _respond(emulator, _NOT_FOUND, 404)
        students = request.query_params.getlist("student_ids[]")
        if not students:
            return _respond(emulator, {"errors": [{"message": "student_ids is required"}]}, 400)
        if "all" not in students and len(students) > emulator.max_per_page:
            return _respond(emulator, {"errors": [{"message": "too many students"}]}, 400)
        try:
            submitted_since = _since(request, "submitted_since")
            graded_since = _since(request, "graded_since")
        except ValueError:
            return _respond(emulator, {"errors": {"submitted_since": "Invalid datetime"}}, 400)
        key = (
            found["id"],
            tuple(sorted(students)),
            tuple(sorted(request.query_params.getlist("assignment_ids[]"))),
            submitted_since,
            graded_since,
            data.version,
        )
        rows = emulator.cached(
            key,
            lambda: _filter_submissions(
                data.submissions[found["id"]], request, submitted_since, graded_since
            ),
        )
        return _paginate(emulator, request, rows)

    async def summaries(request: Request) -> Response:
        found = course_or_none(request)
        if found is None or not emulator.analytics:
            return _respond(emulator, _NOT_FOUND, 404)
        rows = emulator.cached(("summaries", found["id"], data.version), lambda: data.summaries(found["id"]))
        return _paginate(emulator, request, rows)

    async def activity(request: Request) -> Response:
        found = course_or_none(request)
        user_id = _path_int(request, "user_id")
        body = data.activity(found["id"], user_id) if found is not None and user_id is not None else None
        if body is None or not emulator.analytics:
            return _respond(emulator, _NOT_FOUND, 404)
        return _respond(emulator, body)

    c = "/api/v1/courses/{course_id}"
    return [
        Route("/api/v1/accounts/{account_id}", account),
        Route("/api/v1/accounts/{account_id}/courses", courses),
        Route("/api/v1/courses", courses),
        Route(c, course),
        Route(c + "/sections", sections),
        Route(c + "/users", users),
        Route(c + "/search_users", users),
        Route(c + "/enrollments", enrollments),
        Route(c + "/assignments", assignments),
        Route(c + "/students/submissions", submissions),
        Route(c + "/analytics/student_summaries", summaries),
        Route(c + "/analytics/users/{user_id}/activity", activity),
    ]


def _filter_submissions(
    rows: Iterable[dict[str, Any]],
    request: Request,
    submitted_since: datetime | None,
    graded_since: datetime | None,
) -> list[dict[str, Any]]:
    students = request.query_params.getlist("student_ids[]")
    wanted_students = None if "all" in students else {int(s) for s in students if s.isdigit()}
    assignment_ids = {int(a) for a in request.query_params.getlist("assignment_ids[]") if a.isdigit()}
    out = []
    for s in rows:
        if wanted_students is not None and s["user_id"] not in wanted_students:
            continue
        if assignment_ids and s["assignment_id"] not in assignment_ids:
            continue
        # Canvas compares strictly, and a null timestamp never passes the filter.
        if submitted_since is not None and not (s["submitted_at"] and s["submitted_at"] > submitted_since):
            continue
        if graded_since is not None and not (s["graded_at"] and s["graded_at"] > graded_since):
            continue
        out.append(s)
    return out


class _Lazy(Sequence[Any]):
    """A sequence that renders its items only when a page asks for them."""

    def __init__(self, items: Sequence[Any], render: Callable[[Any], Any]) -> None:
        self._items = items
        self._render = render

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self._render(x) for x in self._items[index]]
        return self._render(self._items[index])


def build_app(emulator: CanvasEmulator) -> Gate:
    """The emulator's ASGI application."""
    return Gate(emulator, Starlette(routes=build_routes(emulator)))
