"""Interventions: a catalogue, recommendations from reason codes, and case tracking.

Recommendations map the reason codes of a student's risk score (:mod:`edsight.models.explain`)
to supports that address them, with the rationale shown to staff; a person decides. Case
tracking keeps one ``intervention`` row per support (recommended -> assigned -> active ->
closed, with an outcome) and an ``intervention_note`` row per change, so the log of who did
what and when is never overwritten. Exports for case-management systems: CSV and a signed
webhook (:mod:`edsight.ops.delivery`).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import pandas as pd

from edsight.errors import InvalidInput
from edsight.ops.delivery import Notification, WebhookChannel
from edsight.schema import INTERVENTION_OUTCOMES

__all__ = [
    "CATALOGUE",
    "Intervention",
    "assign_intervention",
    "case_log",
    "close_intervention",
    "export_csv",
    "export_webhook",
    "recommend",
    "update_intervention",
]

Status = Literal["recommended", "assigned", "active", "closed"]
_NEXT: Mapping[str, tuple[str, ...]] = {
    "recommended": ("assigned", "closed"),
    "assigned": ("active", "closed"),
    "active": ("closed",),
    "closed": (),
}


@dataclass(frozen=True)
class Intervention:
    """A support the district offers, and what it addresses."""

    key: str
    name: str
    addresses: tuple[str, ...]  # reason codes
    rationale: str
    owner_role: str


CATALOGUE: Mapping[str, Intervention] = {
    i.key: i
    for i in (
        Intervention(
            "tutoring",
            "Academic tutoring",
            ("GRADE_LOW", "GRADE_DECLINE", "COURSE_FAILURE", "COURSE_GRADES", "PRIOR_ACHIEVEMENT"),
            "Grades are low or falling; targeted tutoring is among the better-evidenced supports "
            "for course performance.",
            "teacher",
        ),
        Intervention(
            "missing_work_plan",
            "Missing-work recovery plan",
            ("MISSING_WORK", "LATE_WORK", "ON_TIME_LOW", "LOW_SUBMISSIONS", "WORKLOAD"),
            "Work is missing or late; a short plan with the teacher to recover it addresses the "
            "cause directly.",
            "teacher",
        ),
        Intervention(
            "mentoring",
            "Check-in / check-out mentoring",
            ("INACTIVITY", "LOW_ACTIVITY", "LOW_PARTICIPATION", "ACTIVITY_DECLINE"),
            "Engagement has dropped; a regular adult check-in helps re-engage the student.",
            "counselor",
        ),
        Intervention(
            "attendance_outreach",
            "Attendance outreach",
            ("ATTENDANCE_LOW", "ATTENDANCE_RECENT", "CHRONIC_ABSENCE", "TARDIES"),
            "Attendance is low or falling; early contact with the family finds barriers to attending.",
            "counselor",
        ),
        Intervention(
            "family_conference",
            "Family conference",
            ("CHRONIC_ABSENCE", "BEHAVIOR", "COURSE_FAILURE", "OFF_TRACK"),
            "Several signals point the same way; a conference aligns school and family on one plan.",
            "counselor",
        ),
        Intervention(
            "credit_recovery",
            "Credit recovery",
            ("CREDITS_LOW", "OFF_TRACK", "COURSE_FAILURE"),
            "Credits are behind for graduation; recovery courses restore the path to graduating on time.",
            "counselor",
        ),
        Intervention(
            "counseling",
            "Counseling / behavior support",
            ("BEHAVIOR", "BEHAVIOR_RECENT"),
            "Behavior incidents are rising; counseling addresses what drives them.",
            "counselor",
        ),
    )
}


def recommend(reasons: Sequence[Mapping[str, Any]], *, top: int = 3) -> list[dict[str, Any]]:
    """Supports for a student's reason codes, best match first, with the rationale.

    Each reason contributes its rank weight (first reason 3, second 2, ...), so a support that
    addresses the main reason comes first; ties keep catalogue order.
    """
    scores: dict[str, float] = {}
    matched: dict[str, list[str]] = {}
    for rank, reason in enumerate(reasons):
        code = str(reason.get("code", ""))
        weight = float(len(reasons) - rank)
        for key, item in CATALOGUE.items():
            if code in item.addresses:
                scores[key] = scores.get(key, 0.0) + weight
                matched.setdefault(key, []).append(code)
    order = list(CATALOGUE)
    ranked = sorted(scores, key=lambda k: (-scores[k], order.index(k)))[:top]
    return [
        {
            "intervention": key,
            "name": CATALOGUE[key].name,
            "owner_role": CATALOGUE[key].owner_role,
            "addresses": sorted(set(matched[key])),
            "rationale": CATALOGUE[key].rationale,
        }
        for key in ranked
    ]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _log(
    con: duckdb.DuckDBPyConnection, intervention_id: str, author: str, status: str, note: str | None
) -> None:
    # Two changes within the same microsecond would collide on the key: nudge forward.
    stamp = _now()
    taken = con.execute(
        "SELECT max(noted_at) FROM intervention_note WHERE intervention_id = ?", [intervention_id]
    ).fetchall()[0][0]
    if taken is not None and taken >= stamp:
        stamp = taken + pd.Timedelta(microseconds=1)
    con.execute(
        "INSERT INTO intervention_note VALUES (?, ?, ?, ?, ?)", [intervention_id, stamp, author, status, note]
    )


def assign_intervention(
    con: duckdb.DuckDBPyConnection,
    person_id: str,
    intervention_type: str,
    *,
    owner_id: str,
    author_id: str,
    start: date,
    reasons: Sequence[Mapping[str, Any]] = (),
    status: Status = "assigned",
    note: str | None = None,
) -> str:
    """Open a case: returns the intervention id (derived, so re-submitting is harmless)."""
    if intervention_type not in CATALOGUE:
        raise InvalidInput(
            f"unknown intervention type {intervention_type!r}; the catalogue has {sorted(CATALOGUE)}"
        )
    if status not in ("recommended", "assigned", "active"):
        raise InvalidInput(f"a new intervention starts as recommended, assigned or active, not {status!r}")
    known = con.execute("SELECT count(*) FROM person WHERE person_id = ?", [person_id]).fetchall()
    if not known[0][0]:
        raise InvalidInput("unknown student: no person with that id")
    key = "\0".join([person_id, intervention_type, start.isoformat()])
    intervention_id = "iv-" + hashlib.sha256(key.encode()).hexdigest()[:20]
    exists = con.execute(
        "SELECT count(*) FROM intervention WHERE intervention_id = ?", [intervention_id]
    ).fetchall()
    if exists[0][0]:
        return intervention_id
    codes = json.dumps([str(r.get("code")) for r in reasons]) if reasons else None
    con.execute("BEGIN")
    con.execute(
        "INSERT INTO intervention VALUES (?, ?, ?, ?, NULL, ?, ?, NULL, ?)",
        [intervention_id, person_id, intervention_type, start, owner_id, status, codes],
    )
    _log(con, intervention_id, author_id, status, note)
    con.execute("COMMIT")
    return intervention_id


def _current(con: duckdb.DuckDBPyConnection, intervention_id: str) -> str:
    rows = con.execute(
        "SELECT status FROM intervention WHERE intervention_id = ?", [intervention_id]
    ).fetchall()
    if not rows:
        raise InvalidInput(f"no intervention {intervention_id!r}")
    return str(rows[0][0])


def update_intervention(
    con: duckdb.DuckDBPyConnection,
    intervention_id: str,
    *,
    author_id: str,
    status: Status | None = None,
    note: str | None = None,
) -> None:
    """Move a case forward (recommended -> assigned -> active -> closed) and/or add a note."""
    current = _current(con, intervention_id)
    if status is not None and status != current and status not in _NEXT[current]:
        raise InvalidInput(f"an intervention that is {current} cannot become {status}")
    if status == "closed":
        raise InvalidInput("close an intervention with close_intervention(), which records the outcome")
    con.execute("BEGIN")
    if status is not None and status != current:
        con.execute("UPDATE intervention SET status = ? WHERE intervention_id = ?", [status, intervention_id])
    _log(con, intervention_id, author_id, status or current, note)
    con.execute("COMMIT")


def close_intervention(
    con: duckdb.DuckDBPyConnection,
    intervention_id: str,
    *,
    author_id: str,
    outcome: str,
    end: date,
    note: str | None = None,
) -> None:
    """Close a case with its outcome (improved, no_change, worsened, withdrawn, transferred)."""
    if outcome not in INTERVENTION_OUTCOMES:
        raise InvalidInput(f"unknown outcome {outcome!r}; expected one of {list(INTERVENTION_OUTCOMES)}")
    if _current(con, intervention_id) == "closed":
        raise InvalidInput("the intervention is already closed")
    con.execute("BEGIN")
    con.execute(
        "UPDATE intervention SET status = 'closed', outcome = ?, end_date = ? WHERE intervention_id = ?",
        [outcome, end, intervention_id],
    )
    _log(con, intervention_id, author_id, "closed", note)
    con.execute("COMMIT")


def case_log(con: duckdb.DuckDBPyConnection, intervention_id: str) -> pd.DataFrame:
    """Every change of a case, oldest first."""
    return con.execute(
        "SELECT noted_at, author_id, status, note FROM intervention_note WHERE intervention_id = ? "
        "ORDER BY noted_at",
        [intervention_id],
    ).df()


_EXPORT_COLUMNS = (
    "intervention_id",
    "person_id",
    "intervention_type",
    "start_date",
    "end_date",
    "owner_id",
    "status",
    "outcome",
)


def _cases(con: duckdb.DuckDBPyConnection, person_ids: Iterable[str] | None) -> pd.DataFrame:
    cols = ", ".join(_EXPORT_COLUMNS)
    if person_ids is None:
        return con.sql(f"SELECT {cols} FROM intervention ORDER BY intervention_id").df()  # noqa: S608
    return con.execute(
        f"SELECT {cols} FROM intervention WHERE person_id IN (SELECT unnest($ids)) "  # noqa: S608
        "ORDER BY intervention_id",
        {"ids": list(person_ids)},
    ).df()


def export_csv(con: duckdb.DuckDBPyConnection, path: Path, *, person_ids: Iterable[str] | None = None) -> int:
    """Write the cases (optionally of the given students only) as CSV; returns rows written.

    ``person_ids`` is how a caller limits the export to the students in its scope.
    """
    frame = _cases(con, person_ids)
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL, date_format="%Y-%m-%d")
    tmp.replace(path)
    return len(frame)


def export_webhook(
    con: duckdb.DuckDBPyConnection, channel: WebhookChannel, *, person_ids: Iterable[str] | None = None
) -> int:
    """POST the cases to a case-management system as one signed JSON document."""
    frame = _cases(con, person_ids)
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    channel.send(
        Notification(
            channel=channel.config.name,
            recipient=channel.config.name,
            subject="interventions",
            body="",
            alert_ids=tuple(frame["intervention_id"]),
            payload={"kind": "interventions", "cases": records},
        )
    )
    return len(frame)
