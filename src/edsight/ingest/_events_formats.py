"""Canvas live events and Caliper 1.1 events: recognising, slimming and normalising them.

Shared by the HTTP endpoint (:mod:`edsight.web.events`), which checks the shape of
a request and spools the events it can use, and by the ingest
(:mod:`edsight.ingest.events`), which turns each spooled event into one flat row
of the ``live_event`` source table. Field names follow STANDARDS.md section 2.

Identifiers: Canvas emits *global* ids (``shard * 10**13 + local id``, e.g.
``21070000000000144``), ``<shard>~<local>`` short forms and Caliper URNs
(``urn:instructure:canvas:user:21070000000000001``); the REST API, and so
``id_map``, holds local ids. :func:`canvas_local_id` reduces all of them to the
local id.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from edsight.errors import InvalidInput

CANVAS = "canvas"
CALIPER = "caliper"
FORMATS = (CANVAS, CALIPER)
EVENT_NAMES = ("asset_accessed", "logged_in", "submission_created", "grade_change")
CANVAS_EXT = "com.instructure.canvas"
SHARD_FACTOR = 10**13
# Longer digit strings are not Canvas ids (and int() of huge ones is refused anyway).
_MAX_ID_DIGITS = 30

# Caliper (type, action) -> the Canvas live event it carries. The Canvas mapping
# table says logins are `Event`, its JSON examples say `SessionEvent`: accept both.
CALIPER_EVENTS: Mapping[tuple[str, str], str] = {
    ("NavigationEvent", "NavigatedTo"): "asset_accessed",
    ("AssignableEvent", "Submitted"): "submission_created",
    ("GradeEvent", "Graded"): "grade_change",
    ("SessionEvent", "LoggedIn"): "logged_in",
    ("Event", "LoggedIn"): "logged_in",
}

SHAPES = (
    "expected a Canvas live event {metadata, body}, a Caliper envelope "
    "{sensor, sendTime, dataVersion, data: [...]}, or a JSON array of them"
)

# Dropped before spooling: free text, network details, logins, names and URLs that
# edsight never maps (data minimisation; none of them is used for ids either).
_CANVAS_METADATA_DROP = frozenset(
    {"client_ip", "user_agent", "user_login", "referrer", "url", "session_id", "hostname"}
)
_CANVAS_BODY_DROP = frozenset({"body", "url", "asset_name", "display_name", "filename", "domain"})
_CALIPER_EVENT_DROP = frozenset({"referrer", "session"})
_CALIPER_EXT_DROP = frozenset(
    {"client_ip", "user_agent", "request_url", "user_login", "asset_name", "display_name", "filename", "url"}
)
_CALIPER_OBJECT_DROP = frozenset({"body", "name"})

# What identifies a Canvas-format event: these metadata fields, and the body fields
# below plus every body field ending in `_id`.
_CANVAS_ID_METADATA = ("event_name", "event_time", "request_id", "user_id", "context_type", "context_id")
_CANVAS_ID_FIELDS = frozenset(
    {"asset_type", "asset_subtype", "attempt", "score", "old_score", "grade", "submitted_at", "level"}
)

Event = dict[str, Any]


class IgnoredEvent(Exception):
    """An event edsight does not use (its type, or activity that belongs to no student course)."""


# -- request and line shapes ------------------------------------------------------------


def split_payload(doc: object) -> list[tuple[str, Event]]:
    """The (format, event) pairs of a request body; :class:`InvalidInput` names what is wrong."""
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise InvalidInput("empty array: " + SHAPES)
    events: list[tuple[str, Event]] = []
    for number, item in enumerate(items, 1):
        where = f"item {number}: " if isinstance(doc, list) else ""
        if not isinstance(item, dict):
            raise InvalidInput(where + SHAPES)
        if "metadata" in item:
            check_canvas_event(item, where)
            events.append((CANVAS, item))
        elif "data" in item:
            events.extend((CALIPER, e) for e in _caliper_envelope_events(item, where))
        elif "actor" in item or "action" in item:
            check_caliper_event(item, where)
            events.append((CALIPER, item))
        else:
            raise InvalidInput(where + SHAPES)
    return events


def check_canvas_event(event: Event, where: str = "") -> None:
    """Raise :class:`InvalidInput` unless ``event`` has the shape of a Canvas live event."""
    metadata = event.get("metadata")
    if not isinstance(metadata, dict):
        raise InvalidInput(f"{where}metadata must be an object")
    if not isinstance(metadata.get("event_name"), str) or not metadata["event_name"]:
        raise InvalidInput(f"{where}metadata.event_name must be a non-empty string")
    if event.get("body") is not None and not isinstance(event["body"], dict):
        raise InvalidInput(f"{where}body must be an object")


def _caliper_envelope_events(envelope: Event, where: str) -> list[Event]:
    data = envelope["data"]
    if not isinstance(data, list) or not data:
        raise InvalidInput(f"{where}data must be a non-empty array of Caliper events")
    for key in ("sensor", "sendTime", "dataVersion"):
        if envelope.get(key) is not None and not isinstance(envelope[key], str):
            raise InvalidInput(f"{where}{key} must be a string")
    for number, event in enumerate(data, 1):
        check_caliper_event(event, f"{where}data[{number - 1}]: ")
    return list(data)


def check_caliper_event(event: object, where: str = "") -> None:
    """Raise :class:`InvalidInput` unless ``event`` has the shape of a Caliper event."""
    if not isinstance(event, dict):
        raise InvalidInput(f"{where}a Caliper event must be an object")
    for key in ("type", "action"):
        if not isinstance(event.get(key), str) or not event[key]:
            raise InvalidInput(f"{where}{key} must be a non-empty string")
    if event.get("id") is not None and not isinstance(event["id"], str):
        raise InvalidInput(f"{where}id must be a string")
    for key in ("actor", "object", "group", "generated", "membership", "extensions"):
        if event.get(key) is not None and not isinstance(event[key], dict):
            raise InvalidInput(f"{where}{key} must be an object")


def is_used(fmt: str, event: Event) -> bool:
    """Whether the ingest would map ``event`` (its type, a student, a course where needed)."""
    try:
        normalise(fmt, event)
    except IgnoredEvent:
        return False
    return True


def json_limits_problem(doc: object, max_depth: int, max_string: int | None) -> str | None:
    """Why ``doc`` exceeds the nesting or string-length limits, or None.

    Breadth-first, one level at a time (no recursion, so no stack to exhaust);
    ``max_string=None`` skips the string check, for callers who know that no string
    can be that long (the whole text was shorter).
    """
    level: list[object] = [doc]
    depth = 1
    while level:
        if depth > max_depth:
            return f"JSON nested deeper than {max_depth} levels"
        below: list[object] = []
        for node in level:
            if isinstance(node, dict):
                if max_string is not None and any(len(key) > max_string for key in node):
                    return f"a key is longer than {max_string} characters"
                values: Iterable[object] = node.values()
            elif isinstance(node, list):
                values = node
            else:
                if max_string is not None and isinstance(node, str) and len(node) > max_string:
                    return f"a string is longer than {max_string} characters"
                continue
            for value in values:
                if isinstance(value, (dict, list)):
                    below.append(value)
                elif max_string is not None and isinstance(value, str) and len(value) > max_string:
                    return f"a string is longer than {max_string} characters"
        level = below
        depth += 1
    return None


def reject_constant(name: str) -> float:
    """``parse_constant`` for :func:`json.loads`: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


# -- spooling -----------------------------------------------------------------------------


def spool_line(fmt: str, event: Event, received_at: datetime) -> bytes:
    """One spool line: the slimmed event in its own format, with when it was received."""
    record = {"format": fmt, "received_at": received_at.isoformat(), "event": slim(fmt, event)}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def slim(fmt: str, event: Event) -> Event:
    """A copy of ``event`` without the fields edsight never maps (see the drop lists)."""
    if fmt == CANVAS:
        out = dict(event)
        out["metadata"] = _without(event["metadata"], _CANVAS_METADATA_DROP)
        if isinstance(event.get("body"), dict):
            out["body"] = _without(event["body"], _CANVAS_BODY_DROP)
        return out
    out = _without(event, _CALIPER_EVENT_DROP)
    out["extensions"] = _slim_extensions(event.get("extensions"))
    for key in ("actor", "object"):
        part = event.get(key)
        if isinstance(part, dict):
            slimmed = _without(part, _CALIPER_OBJECT_DROP)
            if "extensions" in part:
                slimmed["extensions"] = _slim_extensions(part["extensions"])
            out[key] = slimmed
    if out["extensions"] is None:
        del out["extensions"]
    return out


def _without(part: Mapping[str, Any], drop: frozenset[str]) -> Event:
    return {k: v for k, v in part.items() if k not in drop}


def _slim_extensions(extensions: object) -> Any:
    if not isinstance(extensions, dict):
        return extensions
    canvas = extensions.get(CANVAS_EXT)
    if not isinstance(canvas, dict):
        return extensions
    return {**extensions, CANVAS_EXT: _without(canvas, _CALIPER_EXT_DROP)}


# -- normalising to the live_event row -------------------------------------------------------


def unwrap_record(record: object) -> tuple[str, Event, str | None]:
    """(format, event, received_at) of a spool line, or of a bare event line from an export."""
    if not isinstance(record, dict):
        raise InvalidInput("not a JSON object; " + SHAPES)
    if "event" in record and "format" in record:
        fmt, event, received = record["format"], record["event"], record.get("received_at")
        if fmt not in FORMATS:
            raise InvalidInput(f"format must be one of {', '.join(FORMATS)}")
        if not isinstance(event, dict):
            raise InvalidInput("event must be an object")
        if received is not None and not isinstance(received, str):
            raise InvalidInput("received_at must be a string")
    elif "metadata" in record:
        fmt, event, received = CANVAS, record, None
    elif "actor" in record or "action" in record:
        fmt, event, received = CALIPER, record, None
    else:
        raise InvalidInput("not one live event; expected one event per line")
    if fmt == CANVAS:
        check_canvas_event(event)
    else:
        check_caliper_event(event)
    return fmt, event, received


def normalise(fmt: str, event: Event) -> dict[str, str | None]:
    """The ``live_event`` row of one event, as text (the validator types it).

    Raises :class:`IgnoredEvent` for events edsight does not use.
    """
    row = _canvas_row(event) if fmt == CANVAS else _caliper_row(event)
    row["format"] = fmt
    return row


def _canvas_row(event: Event) -> dict[str, str | None]:
    md: Event = event["metadata"]
    body = _obj(event.get("body"))
    name = md.get("event_name")
    if name not in EVENT_NAMES:
        raise IgnoredEvent(f"{name}: event type not used")
    course = canvas_local_id(md.get("context_id")) if md.get("context_type") == "Course" else None
    row: dict[str, str | None] = {
        "event_id": canvas_event_id(md, body),
        "event_name": name,
        "event_time": utc_text(md.get("event_time")),
        "course_id": course,
    }
    actor = md.get("user_id")
    if name in ("asset_accessed", "logged_in"):
        _skip_masquerade(actor, md.get("real_user_id"))
        if name == "asset_accessed":
            if actor is None:
                raise IgnoredEvent("asset_accessed: page views without a user")
            if course is None:
                raise IgnoredEvent("asset_accessed: page views outside a course")
            role = body.get("role") or md.get("context_role")
            if role is not None and role != "StudentEnrollment":
                raise IgnoredEvent("asset_accessed: page views in a role other than student")
            row["level"] = text(body.get("level"))
        row["user_id"] = canvas_local_id(actor)
        row["user_sis_id"] = text(md.get("user_sis_id"))
    elif name == "submission_created":
        student = body.get("user_id")
        row["user_id"] = canvas_local_id(student)
        # The metadata describes whoever made the request: its SIS id is the student's
        # only when the student submitted.
        if student is not None and canvas_local_id(actor) == canvas_local_id(student):
            row["user_sis_id"] = text(md.get("user_sis_id"))
        row["assignment_id"] = canvas_local_id(body.get("assignment_id"))
        row["submitted_at"] = utc_text(body.get("submitted_at"))
        row["attempt"] = text(body.get("attempt"))
        row["late"] = text(body.get("late"))
        row["score"] = text(body.get("score"))
        row["workflow_state"] = text(body.get("workflow_state"))
    else:  # grade_change: metadata.user_id is the grader, the body names the student
        row["user_id"] = canvas_local_id(body.get("student_id") or body.get("user_id"))
        row["user_sis_id"] = text(body.get("student_sis_id"))
        row["assignment_id"] = canvas_local_id(body.get("assignment_id"))
        row["score"] = text(body.get("score"))
    return row


def _caliper_row(event: Event) -> dict[str, str | None]:
    name = CALIPER_EVENTS.get((event.get("type"), event.get("action")))  # type: ignore[arg-type]
    if name is None:
        raise IgnoredEvent(f"{event.get('type')}/{event.get('action')}: event type not used")
    group = _obj(event.get("group"))
    course = None
    if group.get("type") == "CourseOffering":
        course = canvas_local_id(group.get("id") or _ext(group).get("entity_id"))
    row: dict[str, str | None] = {
        "event_id": text(event.get("id")),
        "event_name": name,
        "event_time": utc_text(event.get("eventTime")),
        "course_id": course,
    }
    obj = _obj(event.get("object"))
    if name in ("asset_accessed", "logged_in"):
        actor = _obj(event.get("actor"))
        if actor.get("type") != "Person":
            raise IgnoredEvent(f"{name}: no person as actor")
        actor_ext = _ext(actor)
        _skip_masquerade(actor.get("id"), actor_ext.get("real_user_id"))
        if name == "asset_accessed":
            if course is None:
                raise IgnoredEvent("asset_accessed: page views outside a course")
            roles = _obj(event.get("membership")).get("roles")
            if isinstance(roles, list) and roles and "Learner" not in roles:
                raise IgnoredEvent("asset_accessed: page views in a role other than student")
            row["level"] = text(_ext(obj).get("level"))
        row["user_id"] = canvas_local_id(actor.get("id"))
        row["user_sis_id"] = text(actor_ext.get("user_sis_id"))
    elif name == "submission_created":
        row["user_id"] = canvas_local_id(_obj(obj.get("assignee")).get("id"))
        row["assignment_id"] = canvas_local_id(_obj(obj.get("assignable")).get("id"))
        row["submitted_at"] = utc_text(obj.get("dateCreated") or event.get("eventTime"))
        row["attempt"] = text(obj.get("count"))
        row["late"] = text(_ext(obj).get("late"))
    else:  # grade_change: the actor is the grader; the attempt names the student
        assignee = _obj(obj.get("assignee"))
        row["user_id"] = canvas_local_id(assignee.get("id"))
        row["user_sis_id"] = text(_ext(assignee).get("sis_id"))
        row["assignment_id"] = canvas_local_id(_obj(obj.get("assignable")).get("id"))
        row["score"] = text(_obj(event.get("generated")).get("scoreGiven"))
    return row


def _skip_masquerade(user: object, real_user: object) -> None:
    # An admin "acting as" a student is not the student's activity.
    if real_user is not None and canvas_local_id(real_user) != canvas_local_id(user):
        raise IgnoredEvent("activity of a user acting as someone else (masquerade)")


def canvas_event_id(metadata: Mapping[str, Any], body: Mapping[str, Any]) -> str:
    """A stable id for a Canvas-format event, which carries none of its own.

    SHA-256 over the event name and time, the request id, the acting user, the
    context, and the body's identifying fields (every ``*_id`` plus attempt, score,
    grade, submitted_at, asset type/subtype and level): a redelivered event gets the
    same id, two different events of one request get different ones.
    """
    parts = [repr(metadata.get(k)) for k in _CANVAS_ID_METADATA]
    parts += [f"{k}={body[k]!r}" for k in sorted(body) if k.endswith("_id") or k in _CANVAS_ID_FIELDS]
    return "canvas:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def canvas_local_id(value: object) -> str | None:
    """The local Canvas id of a global id, a ``shard~local`` id or a Canvas URN."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return text(value)
    raw = str(value).strip()
    if raw.startswith("urn:instructure:canvas:"):
        raw = raw.rsplit(":", 1)[-1]
    if "~" in raw:
        raw = raw.partition("~")[2]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_ID_DIGITS:
        return raw[:200]
    number = int(raw)
    return str(number % SHARD_FACTOR if number >= SHARD_FACTOR else number)


def utc_text(value: object) -> str | None:
    """An ISO timestamp as naive UTC text; anything else as text, for the validator to reject."""
    if not isinstance(value, str):
        return text(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value[:200]
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(sep=" ")


def text(value: object) -> str | None:
    """A JSON value as the text the validator casts (objects and arrays as short JSON)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # 1e999 parses as infinity; the validator then reports it like any non-number.
        return repr(value) if math.isfinite(value) else "non-finite number"
    return json.dumps(value, separators=(",", ":"), default=str)[:200]


def _obj(value: object) -> Event:
    return value if isinstance(value, dict) else {}


def _ext(part: Mapping[str, Any]) -> Event:
    return _obj(_obj(part.get("extensions")).get(CANVAS_EXT))
