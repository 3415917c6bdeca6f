"""The dashboard's writes: alert acknowledgement and snooze, and intervention case work.

Each action is scoped like the reads (the student must be in the viewer's scope, or the
answer is :class:`~edsight.web.queries.NotFound`), done through :mod:`edsight.ops` on the
process's shared warehouse instance, and written to the audit log before the response
leaves. An alert can be changed by its own recipient only: ``alert.recipient_id`` holds a
teacher's person id (routing by section) or the id a district configured for a counselor
or principal in ``ops.yaml``, which is matched against the account's username and id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from edsight.errors import InvalidInput
from edsight.governance.audit import AuditEvent
from edsight.ops.alerts import set_alert_status
from edsight.ops.interventions import (
    CATALOGUE,
    assign_intervention,
    close_intervention,
    recommend,
    update_intervention,
)
from edsight.schema import INTERVENTION_OUTCOMES
from edsight.web.queries import NOT_FOUND_STUDENT, DashboardQueries, NotFound, Viewer, _scoped, require

log = logging.getLogger(__name__)

AlertAction = Literal["acknowledge", "snooze", "reopen", "close"]
ALERT_ACTIONS: dict[str, str] = {
    "acknowledge": "acknowledged",
    "snooze": "snoozed",
    "reopen": "open",
    "close": "closed",
}
MAX_SNOOZE_DAYS = 90
MAX_NOTE = 2000
NOT_FOUND_ALERT = "no such alert in your inbox"
NOT_FOUND_INTERVENTION = "no such intervention in your scope"
# Where a case may go next from each status (closing has its own form, with the outcome).
NEXT_STATUS: dict[str, tuple[str, ...]] = {
    "recommended": ("assigned",),
    "assigned": ("active",),
    "active": (),
    "closed": (),
}


def _today() -> date:
    return datetime.now(UTC).date()


def reason_items(value: object) -> list[dict[str, Any]]:
    """``risk_score.reasons`` as mappings with a ``code`` (a list of codes becomes one)."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    try:
        data = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return []
    if isinstance(data, dict):
        data = data.get("reasons", [data])
    items: list[dict[str, Any]] = []
    for item in data if isinstance(data, list) else [data]:
        if isinstance(item, dict) and item.get("code"):
            items.append(dict(item))
        elif isinstance(item, str) and item:
            items.append({"code": item})
    return items


def recipient_ids(viewer: Viewer) -> list[str]:
    """The ``alert.recipient_id`` values that mean this account."""
    principal = viewer.principal
    return sorted({principal.username, principal.account_id, *principal.targets("teacher")})


class DashboardActions:
    """Scoped, audited writes of the dashboard."""

    def __init__(self, queries: DashboardQueries) -> None:
        self.queries = queries

    def _audit(self, viewer: Viewer, action: str, what: str, person_id: str, why: str | None = None) -> None:
        self.queries.audit.record(
            AuditEvent(
                actor=viewer.principal.account_id,
                role=viewer.role_label,
                action=action,
                what=what,
                person_ids=(person_id,),
                why=why,
            )
        )

    # -- alerts -----------------------------------------------------------------------

    def set_alert(
        self, viewer: Viewer, alert_id: str, action: str, *, snooze_until: date | None = None
    ) -> str:
        """Acknowledge, snooze (until a date), reopen or close one of the viewer's alerts;
        returns the student's person id."""
        require(viewer, "view_student")
        if action not in ALERT_ACTIONS:
            raise InvalidInput(f"action must be one of {', '.join(ALERT_ACTIONS)}, got {action!r}")
        if action == "snooze":
            if snooze_until is None:
                raise InvalidInput("snoozing needs a date to snooze until")
            if not _today() < snooze_until <= _today() + timedelta(days=MAX_SNOOZE_DAYS):
                raise InvalidInput(f"snooze until a date within the next {MAX_SNOOZE_DAYS} days")
        mine = recipient_ids(viewer)
        with self.queries.reader.cursor() as con:
            self.queries.register_scope(con, viewer)
            found = con.execute(
                f"""WITH {_scoped(viewer)} SELECT person_id, recipient_id FROM alert
                    WHERE alert_id = $id AND recipient_id IN (SELECT unnest($mine::VARCHAR[]))
                    AND person_id IN (SELECT person_id FROM scope)""",  # noqa: S608 (governance scope SQL; values are parameters)
                {"id": alert_id, "mine": mine},
            ).fetchall()
            if not found:
                raise NotFound(NOT_FOUND_ALERT)
            person_id, recipient = str(found[0][0]), str(found[0][1])
            set_alert_status(
                con,
                alert_id,
                ALERT_ACTIONS[action],  # type: ignore[arg-type]
                recipient_id=recipient,
                snooze_until=snooze_until if action == "snooze" else None,
            )
        until = f" until {snooze_until.isoformat()}" if action == "snooze" and snooze_until else ""
        self._audit(viewer, "update_alert", f"alert:{alert_id}:{ALERT_ACTIONS[action]}{until}", person_id)
        return person_id

    # -- interventions ------------------------------------------------------------------

    def _latest_reasons(self, viewer: Viewer, person_id: str) -> list[dict[str, Any]]:
        rows = self.queries._frame(
            f"""WITH {_scoped(viewer)} SELECT reasons FROM risk_score_latest
                WHERE person_id = $pid AND person_id IN (SELECT person_id FROM scope)
                ORDER BY as_of DESC, probability DESC LIMIT 1""",  # noqa: S608 (governance scope SQL; values are parameters)
            {"pid": person_id},
            viewer,
        )
        return reason_items(rows["reasons"].iloc[0]) if len(rows) else []

    def recommendations(self, viewer: Viewer, person_id: str) -> list[dict[str, Any]]:
        """Supports for the student's latest reason codes (the catalogue when there are none)."""
        reasons = self._latest_reasons(viewer, person_id)
        found = recommend(reasons) if reasons else []
        if found:
            return found
        return [
            {
                "intervention": key,
                "name": item.name,
                "owner_role": item.owner_role,
                "addresses": [],
                "rationale": item.rationale,
            }
            for key, item in CATALOGUE.items()
        ]

    def assign(
        self, viewer: Viewer, person_id: str, intervention_type: str, *, note: str | None = None
    ) -> str:
        """Open a case for an in-scope student from the recommended supports; returns its id."""
        require(viewer, "manage_interventions")
        if not self.queries.in_scope(viewer, person_id):
            raise NotFound(NOT_FOUND_STUDENT)
        offered = {r["intervention"] for r in self.recommendations(viewer, person_id)}
        if intervention_type not in offered:
            raise InvalidInput(
                f"intervention must be one of the recommended supports ({', '.join(sorted(offered))})"
            )
        reasons = self._latest_reasons(viewer, person_id)
        with self.queries.reader.cursor() as con:
            intervention_id = assign_intervention(
                con,
                person_id,
                intervention_type,
                owner_id=viewer.principal.username,
                author_id=viewer.principal.username,
                start=_today(),
                reasons=reasons,
                note=_note(note),
            )
        self._audit(viewer, "manage_interventions", f"intervention:{intervention_id}:assigned", person_id)
        return intervention_id

    def _case_student(self, viewer: Viewer, intervention_id: str) -> str:
        require(viewer, "manage_interventions")
        rows = self.queries._frame(
            f"""WITH {_scoped(viewer)} SELECT person_id FROM intervention WHERE intervention_id = $id
                AND person_id IN (SELECT person_id FROM scope)""",  # noqa: S608 (governance scope SQL; values are parameters)
            {"id": intervention_id},
            viewer,
        )
        if rows.empty:
            raise NotFound(NOT_FOUND_INTERVENTION)
        return str(rows["person_id"].iloc[0])

    def update(self, viewer: Viewer, intervention_id: str, *, status: str | None, note: str | None) -> str:
        """Move a case forward and/or add a note; returns the student's person id."""
        person_id = self._case_student(viewer, intervention_id)
        if status is not None and status not in ("recommended", "assigned", "active"):
            raise InvalidInput("status must be recommended, assigned or active (close with an outcome)")
        if status is None and not (note or "").strip():
            raise InvalidInput("give a new status or a note")
        with self.queries.reader.cursor() as con:
            update_intervention(
                con,
                intervention_id,
                author_id=viewer.principal.username,
                status=status,  # type: ignore[arg-type]
                note=_note(note),
            )
        self._audit(
            viewer, "manage_interventions", f"intervention:{intervention_id}:{status or 'note'}", person_id
        )
        return person_id

    def close(self, viewer: Viewer, intervention_id: str, *, outcome: str, note: str | None) -> str:
        """Close a case with its outcome; returns the student's person id."""
        person_id = self._case_student(viewer, intervention_id)
        if outcome not in INTERVENTION_OUTCOMES:
            raise InvalidInput(f"outcome must be one of {', '.join(INTERVENTION_OUTCOMES)}")
        with self.queries.reader.cursor() as con:
            close_intervention(
                con,
                intervention_id,
                author_id=viewer.principal.username,
                outcome=outcome,
                end=_today(),
                note=_note(note),
            )
        what = f"intervention:{intervention_id}:closed:{outcome}"
        self._audit(viewer, "manage_interventions", what, person_id)
        return person_id

    def case_notes(self, viewer: Viewer, person_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Notes of the cases of in-scope students, per intervention id, oldest first."""
        if not person_ids:
            return {}
        frame = self.queries._frame(
            f"""WITH {_scoped(viewer)} SELECT n.intervention_id, n.noted_at, n.author_id, n.status, n.note
                FROM intervention_note n JOIN intervention i ON i.intervention_id = n.intervention_id
                WHERE i.person_id IN (SELECT unnest($ids::VARCHAR[]))
                AND i.person_id IN (SELECT person_id FROM scope) ORDER BY n.noted_at""",  # noqa: S608 (scope SQL; values are parameters)
            {"ids": list(person_ids)},
            viewer,
        )
        out: dict[str, list[dict[str, Any]]] = {}
        for key, group in frame.groupby("intervention_id", sort=False):
            rows = group.drop(columns="intervention_id").to_dict("records")
            out[str(key)] = [{str(c): v for c, v in row.items()} for row in rows]
        return out


def _note(value: str | None) -> str | None:
    text = (value or "").strip()
    if len(text) > MAX_NOTE:
        raise InvalidInput(f"a note has at most {MAX_NOTE} characters")
    return text or None


__all__ = ["ALERT_ACTIONS", "NEXT_STATUS", "DashboardActions", "reason_items", "recipient_ids"]
