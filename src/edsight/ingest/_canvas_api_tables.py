"""Canvas API answers as source tables: declared, flattened, and numbered by row.

Private to :mod:`edsight.ingest.canvas_api`. The spooled records of each kind become
one :class:`RawTable` of text values (as a CSV would be), labelled by the Canvas table
(``submissions``) and numbered from 1 in the order fetched, course after course; the
batch validator then checks types, required values and keys and quarantines bad rows
with that label and row number (the record, kept with the reason, shows the course).
One table per kind, not per course: the validator takes one input per table. Things a
type check cannot see are caught here and become malformed rows with a reason: a record
that is not a JSON object, an object or list where a value belongs, a text value of
absurd length, a number that is not finite.

Each table is self-contained: a row carries the context it needs (course, term
dates), so that rows unchanged since the last sync can be left out of a batch
without breaking the mapping of the rows that remain. Entities that Canvas repeats
per course (accounts and terms inside courses, users in every course's roster) are
made distinct here.

Timestamps are converted to naive UTC, whatever offset Canvas wrote them in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from edsight.ingest._canvas_api_schema import (
    ASSIGNMENT_SPEC,
    COURSE_SPEC,
    ENROLLMENT_SPEC,
    MAX_TEXT,
    ROLE_OF_TYPE,
    SECTION_SPEC,
    SOURCE_TABLES,
    SUBMISSION_SPEC,
    USER_SPEC,
    Kind,
    Spec,
)
from edsight.ingest.files import ROW_COL, MalformedRow, RawTable
from edsight.schema import Table


class BadValue(ValueError):
    """A value no column can hold; its row becomes a malformed row with this reason."""


_UTC_CACHE: dict[str, str] = {}


def utc_text(value: str) -> str:
    """An ISO 8601 timestamp as naive UTC text (``YYYY-MM-DD HH:MM:SS``); unparseable text unchanged."""
    cached = _UTC_CACHE.get(value)
    if cached is not None:
        return cached
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value  # the validator reports it as "expected a timestamp"
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    text = when.isoformat(sep=" ")
    if len(_UTC_CACHE) < 100_000:
        _UTC_CACHE[value] = text
    return text


def parse_utc(value: Any) -> datetime | None:
    """A naive UTC datetime from an ISO 8601 string, or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(utc_text(value))
    except ValueError:
        return None


def to_text(value: Any, kind: Kind, column: str) -> str | None:
    """A JSON value as the text a column receives (None stays None)."""
    if value is None:
        return None
    if kind == "texts" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if isinstance(value, dict | list):
        what = "an object" if isinstance(value, dict) else "a list"
        raise BadValue(f"column {column!r}: expected a single value, got {what}")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadValue(f"column {column!r}: expected a finite number")
        return repr(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if len(text) > MAX_TEXT:
        raise BadValue(f"column {column!r}: value is {len(text):,} characters long (at most {MAX_TEXT:,})")
    return utc_text(text) if kind == "ts" else text


def _get(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = record
    for step in path:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def _excerpt(record: Any) -> str:
    try:
        return json.dumps(record)[:500]
    except (RecursionError, ValueError, TypeError):
        return "(not printable)"


@dataclass
class _Builder:
    """Rows of one source table under one label, numbered from 1."""

    label: str
    table: Table
    columns: dict[str, list[str | None]] = field(default_factory=dict)
    rows: list[int] = field(default_factory=list)
    malformed: list[MalformedRow] = field(default_factory=list)
    count: int = 0

    def __post_init__(self) -> None:
        self.columns = {c: [] for c in self.table.column_names}

    def add(self, values: Mapping[str, str | None]) -> None:
        self.count += 1
        self.rows.append(self.count)
        for name, column in self.columns.items():
            column.append(values.get(name))

    def bad(self, reason: str, record: Any) -> None:
        self.count += 1
        self.malformed.append(MalformedRow(self.count, reason, _excerpt(record)))

    def add_record(self, record: Any, spec: Spec, context: Mapping[str, str | None] | None = None) -> None:
        if not isinstance(record, dict):
            self.bad(f"expected a JSON object, got {type(record).__name__}", record)
            return
        try:
            values = {col: to_text(_get(record, path), kind, col) for col, path, kind in spec}
        except BadValue as exc:
            self.bad(str(exc), record)
            return
        self.add({**values, **(context or {})})

    def raw(self) -> RawTable:
        arrays = {ROW_COL: pa.array(self.rows, pa.int64())}
        arrays.update({name: pa.array(values, pa.string()) for name, values in self.columns.items()})
        return RawTable(Path(self.label), pa.table(arrays), self.malformed)


@dataclass
class SourceRows:
    """The source tables of one run, ready for a batch."""

    tables: dict[str, list[RawTable]] = field(default_factory=dict)
    latest: dict[int, tuple[str | None, str | None]] = field(default_factory=dict)  # newest submitted, graded

    def add(self, name: str, builder: _Builder) -> None:
        if builder.count:
            self.tables.setdefault(name, []).append(builder.raw())


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def build_source_rows(
    courses: list[Any],
    lists: Callable[[int, str], Iterable[Any]],
    activity: Callable[[int], Iterable[tuple[int, Any]]],
    *,
    since: datetime | None = None,
) -> SourceRows:
    """Flatten one run's records: ``courses``, and per course ``lists(course_id, kind)``.

    ``kind`` is one of ``sections``, ``users``, ``enrollments``, ``assignments``,
    ``submissions``; ``activity(course_id)`` yields ``(user_id, answer)`` pairs.
    Activity hours before ``since`` are left out.
    """
    out = SourceRows()
    course_rows = _Builder("courses", SOURCE_TABLES["canvas_courses"])
    accounts: dict[Any, dict[str, str | None]] = {}
    terms: dict[Any, dict[str, Any]] = {}
    course_ids: list[int] = []
    term_of: dict[int, Any] = {}
    for record in courses:
        course_rows.add_record(record, COURSE_SPEC)
        if not isinstance(record, dict):
            continue
        _note_account(accounts, record)
        _note_term(terms, record)
        cid = _int_or_none(record.get("id"))
        if cid is not None and cid not in term_of:
            course_ids.append(cid)
            term_of[cid] = record.get("enrollment_term_id")
    out.add("canvas_courses", course_rows)
    out.add("canvas_accounts", _entity_rows("accounts", "canvas_accounts", accounts))
    term_rows = _entity_rows("terms", "canvas_terms", {k: _term_values(v) for k, v in terms.items()})
    out.add("canvas_terms", term_rows)

    users = _Builder("users", SOURCE_TABLES["canvas_users"])
    # One table per kind across courses: the validator takes one input per table.
    per_course = {
        kind: _Builder(kind, SOURCE_TABLES[name])
        for kind, name in (
            ("sections", "canvas_sections"),
            ("enrollments", "canvas_enrollments"),
            ("assignments", "canvas_assignments"),
            ("submissions", "canvas_submissions"),
            ("activity", "canvas_activity"),
        )
    }
    seen_users: set[Any] = set()
    roles: dict[Any, str] = {}
    ranks = list(ROLE_OF_TYPE.values())
    for cid in course_ids:
        for e in lists(cid, "enrollments"):
            if isinstance(e, dict) and e.get("type") in ROLE_OF_TYPE and _hashable(e.get("user_id")):
                role = ROLE_OF_TYPE[e["type"]]
                previous = roles.get(e.get("user_id"))
                # A student in one course and a TA in another is a student to an early-warning system.
                if previous is None or ranks.index(role) < ranks.index(previous):
                    roles[e.get("user_id")] = role
    for cid in course_ids:
        context = _term_context(_term_values(terms.get(term_of[cid], {})))
        for kind, spec in (
            ("sections", SECTION_SPEC),
            ("enrollments", ENROLLMENT_SPEC),
            ("assignments", ASSIGNMENT_SPEC),
        ):
            for record in lists(cid, kind):
                per_course[kind].add_record(record, spec, context if kind == "enrollments" else None)
        for record in lists(cid, "users"):
            key = record.get("id") if isinstance(record, dict) else None
            if key is not None and _hashable(key) and key in seen_users:
                continue
            if key is not None and _hashable(key):
                seen_users.add(key)
            users.add_record(record, USER_SPEC, {"role": roles.get(key) if _hashable(key) else None})
        out.latest[cid] = _submission_rows(cid, lists(cid, "submissions"), per_course["submissions"])
        _activity_rows(cid, activity(cid), since, per_course["activity"])
    for kind, name in (
        ("sections", "canvas_sections"),
        ("enrollments", "canvas_enrollments"),
        ("assignments", "canvas_assignments"),
        ("submissions", "canvas_submissions"),
        ("activity", "canvas_activity"),
    ):
        out.add(name, per_course[kind])
    out.add("canvas_users", users)
    return out


def _hashable(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _note_account(accounts: dict[Any, dict[str, str | None]], course: dict[str, Any]) -> None:
    account = course.get("account")
    key = course.get("account_id")
    if not _hashable(key) or key is None or key in accounts:
        return
    name = account.get("name") if isinstance(account, dict) and account.get("id") == key else None
    accounts[key] = {"id": key, "name": name}


def _note_term(terms: dict[Any, dict[str, Any]], course: dict[str, Any]) -> None:
    key = course.get("enrollment_term_id")
    if not _hashable(key) or key is None:
        return
    entry = terms.setdefault(
        key, {"id": key, "name": None, "start_at": None, "end_at": None, "starts": [], "ends": []}
    )
    term = course.get("term")
    if isinstance(term, dict) and term.get("id") == key:
        for field_name in ("name", "start_at", "end_at"):
            if entry[field_name] is None and isinstance(term.get(field_name), str):
                entry[field_name] = term[field_name]
    # Canvas's default term has no dates; the dates of its courses stand in for them.
    for src, dst in (("start_at", "starts"), ("end_at", "ends")):
        when = parse_utc(course.get(src))
        if when is not None:
            entry[dst].append(when)


def _term_values(entry: Mapping[str, Any]) -> dict[str, Any]:
    if not entry:
        return {}
    start = entry.get("start_at") or (
        min(entry["starts"]).isoformat(sep=" ") if entry.get("starts") else None
    )
    end = entry.get("end_at") or (max(entry["ends"]).isoformat(sep=" ") if entry.get("ends") else None)
    return {"id": entry.get("id"), "name": entry.get("name"), "start_at": start, "end_at": end}


def _term_context(term: Mapping[str, Any]) -> dict[str, str | None]:
    """The term columns every enrollment row carries (bad values become nulls; the term row says why)."""
    out: dict[str, str | None] = {}
    wanted: tuple[tuple[str, str, Kind], ...] = (
        ("term_id", "id", "int"),
        ("term_start_at", "start_at", "ts"),
        ("term_end_at", "end_at", "ts"),
    )
    for column, key, kind in wanted:
        try:
            out[column] = to_text(term.get(key), kind, column)
        except BadValue:
            out[column] = None
    return out


def _entity_rows(label: str, table: str, entities: Mapping[Any, Mapping[str, Any]]) -> _Builder:
    builder = _Builder(label, SOURCE_TABLES[table])
    spec: Spec = tuple(
        (c, (c,), "ts" if c.endswith("_at") else "text") for c in SOURCE_TABLES[table].column_names
    )
    for values in entities.values():
        builder.add_record(dict(values), spec)
    return builder


def _submission_rows(cid: int, records: Iterable[Any], builder: _Builder) -> tuple[str | None, str | None]:
    """Add one course's submissions to ``builder``; return the newest submitted_at and graded_at."""
    seen: set[tuple[Any, Any]] = set()
    newest_submitted: str | None = None
    newest_graded: str | None = None
    for record in records:
        if isinstance(record, dict):
            key = (record.get("assignment_id"), record.get("user_id"))
            if all(_hashable(k) for k in key):
                # Incremental runs ask several overlapping questions; each answer counts once.
                if key in seen:
                    continue
                seen.add(key)
            submitted, graded = parse_utc(record.get("submitted_at")), parse_utc(record.get("graded_at"))
            if submitted is not None and (
                newest_submitted is None or submitted.isoformat() > newest_submitted
            ):
                newest_submitted = submitted.isoformat()
            if graded is not None and (newest_graded is None or graded.isoformat() > newest_graded):
                newest_graded = graded.isoformat()
        builder.add_record(record, SUBMISSION_SPEC, {"course_id": str(cid)})
    return newest_submitted, newest_graded


_HOUR_SPEC: Spec = (
    ("hour", ("hour",), "ts"),
    ("page_views", ("page_views",), "int"),
    ("participations", ("participations",), "int"),
)


def _activity_rows(
    cid: int, answers: Iterable[tuple[int, Any]], since: datetime | None, builder: _Builder
) -> None:
    """Add one course's activity answers to ``builder`` as hourly rows."""
    floor = since.replace(minute=0, second=0, microsecond=0) if since else None
    for user_id, answer in answers:
        views = answer.get("page_views") if isinstance(answer, dict) else None
        parts = answer.get("participations") if isinstance(answer, dict) else None
        if not isinstance(views, dict) or not isinstance(parts, list):
            builder.bad("activity answer without a 'page_views' object and a 'participations' list", answer)
            continue
        hours: dict[datetime, list[Any]] = {}
        for key, count in views.items():
            hour = parse_utc(key)
            if hour is None:
                builder.bad(f"page_views key {str(key)[:40]!r} is not a timestamp", {key: count})
                continue
            slot = hours.setdefault(hour, [0, 0])
            # Two keys can name one hour in different offsets; counts add up, anything else is kept raw.
            slot[0] = slot[0] + count if type(slot[0]) is int and type(count) is int else count
        for event in parts:
            when = parse_utc(event.get("created_at")) if isinstance(event, dict) else None
            if when is None:
                builder.bad("participation without a created_at timestamp", event)
                continue
            hours.setdefault(when.replace(minute=0, second=0, microsecond=0), [0, 0])[1] += 1
        for hour in sorted(hours):
            if floor is not None and hour < floor:
                continue
            record = {
                "hour": hour.isoformat(sep=" "),
                "page_views": hours[hour][0],
                "participations": hours[hour][1],
            }
            builder.add_record(record, _HOUR_SPEC, {"course_id": str(cid), "user_id": str(user_id)})
