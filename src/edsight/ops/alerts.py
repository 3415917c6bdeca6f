"""Alert rules over scores and point-in-time features, routing, cool-down and notifications.

A rule fires on a *change* as of a date, so an unchanged situation does not alert again:

* ``risk_threshold``: a risk probability crosses ``threshold`` (below it at the previous
  scoring date, or not scored then, and at or above it now);
* ``risk_rise``: a probability rose by at least ``rise`` since the scoring date a week before;
* ``chronic_absence``: a K-12 student became chronically absent this week (>= 10 % of enrolled
  days missed so far this year) for the first time this year, counted once ``min_days_enrolled``
  days are known;
* ``missing_work``: ``assignments_missing`` reached ``missing`` this week in an LMS section;
* ``on_track_lost``: a 9th grader's core-course Fs reached two this week, so the Chicago
  on-track indicator can no longer be met.

Each candidate is routed to recipients by role (teacher of the section, counselor of the
caseload, principal of the school); one alert row is kept per recipient, so acknowledgement
and snooze are each recipient's own. A rule does not fire again for the same student, section
and recipient within the cool-down, nor while an alert of it is snoozed. Notifications carry
counts and a sign-in link only: no names or identifiers of students leave the system by e-mail,
whatever the recipient may see in the dashboard.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Literal, Protocol

import duckdb
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from edsight.errors import InvalidInput
from edsight.ops.delivery import Notification
from edsight.schema import CANONICAL
from edsight.sql import has_rows

__all__ = [
    "ALERT_RULES",
    "AlertPolicy",
    "RecipientDirectory",
    "WarehouseDirectory",
    "alert_notifications",
    "evaluate_rules",
    "raise_alerts",
    "set_alert_status",
]

Role = Literal["teacher", "counselor", "principal"]
ALERT_RULES = ("risk_threshold", "risk_rise", "chronic_absence", "missing_work", "on_track_lost")


class AlertPolicy(BaseModel):
    """Thresholds, who hears of what, and how (configured per district)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(default=0.5, gt=0, lt=1, description="Probability that flags a student.")
    rise: float = Field(default=0.15, gt=0, lt=1, description="Rise in a week that alerts.")
    missing: int = Field(default=3, ge=1, description="Missing assignments that alert.")
    min_days_enrolled: int = Field(
        default=20,
        ge=1,
        description="Enrolled days before chronic absence can alert (rates are noisy before).",
    )
    cooldown_days: int = Field(default=14, ge=0, description="Quiet days after an alert of a rule.")
    rules: tuple[str, ...] = ALERT_RULES
    routes: dict[str, tuple[Role, ...]] = Field(
        default_factory=lambda: {  # type: ignore[arg-type, unused-ignore]
            "risk_threshold": ("teacher", "counselor"),
            "risk_rise": ("teacher", "counselor"),
            "chronic_absence": ("counselor", "principal"),
            "missing_work": ("teacher",),
            "on_track_lost": ("counselor", "principal"),
        }
    )
    immediate: tuple[str, ...] = Field(
        default=("on_track_lost",), description="Rules sent at once; the others go in a daily digest."
    )
    dashboard_url: str = "http://127.0.0.1:8000/alerts"

    def model_post_init(self, context: object) -> None:
        unknown = sorted(set(self.rules) - set(ALERT_RULES))
        if unknown:
            raise InvalidInput(f"unknown alert rule(s) {unknown}; known: {list(ALERT_RULES)}")


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, name: str, frame: pd.DataFrame) -> Iterator[None]:
    con.register(name, frame)
    try:
        yield
    finally:
        con.unregister(name)


def _risk_candidates(con: duckdb.DuckDBPyConnection, as_of: date, policy: AlertPolicy) -> pd.DataFrame:
    # The scores of the latest scoring date by as_of, each against the same model's score at
    # the latest earlier date (for the crossing) and at the latest date a week or more before.
    return con.execute(
        """
        WITH cur_date AS (SELECT max(as_of) AS d FROM risk_score WHERE as_of <= $as_of),
        cur AS (
            SELECT r.* FROM risk_score r, cur_date WHERE r.as_of = cur_date.d
        ),
        prev AS (
            SELECT r.person_id, r.section_id, r.target, r.model_id, r.probability, r.as_of
            FROM risk_score r, cur_date WHERE r.as_of < cur_date.d
            QUALIFY row_number() OVER (
                PARTITION BY r.person_id, r.section_id, r.target, r.model_id ORDER BY r.as_of DESC) = 1
        ),
        week_ago AS (
            SELECT r.person_id, r.section_id, r.target, r.model_id, r.probability
            FROM risk_score r, cur_date WHERE r.as_of <= cur_date.d - INTERVAL 7 DAY
            QUALIFY row_number() OVER (
                PARTITION BY r.person_id, r.section_id, r.target, r.model_id ORDER BY r.as_of DESC) = 1
        ),
        joined AS (
            SELECT cur.person_id, cur.section_id, cur.target, cur.probability,
                   prev.probability AS previous, week_ago.probability AS week_ago
            FROM cur
            LEFT JOIN prev USING (person_id, section_id, target, model_id)
            LEFT JOIN week_ago USING (person_id, section_id, target, model_id)
        )
        SELECT person_id, section_id, 'risk_threshold' AS rule, target, probability AS value,
               previous
        FROM joined
        WHERE probability >= $threshold AND coalesce(previous, 0) < $threshold
        UNION ALL
        SELECT person_id, section_id, 'risk_rise', target, probability, week_ago
        FROM joined
        WHERE probability - week_ago >= $rise
        """,
        {"as_of": as_of, "threshold": policy.threshold, "rise": policy.rise},
    ).df()


def _feature_candidates(con: duckdb.DuckDBPyConnection, as_of: date, policy: AlertPolicy) -> pd.DataFrame:
    parts: list[pd.DataFrame] = []
    parts.append(
        con.execute(
            """
            WITH w AS (
                SELECT *, row_number() OVER (PARTITION BY person_id, section_id ORDER BY week DESC)
                       AS recency
                FROM weekly_features_lms WHERE week_end <= $as_of
            )
            SELECT c.person_id, c.section_id, 'missing_work' AS rule, NULL::VARCHAR AS target,
                   c.assignments_missing::DOUBLE AS value, p.assignments_missing::DOUBLE AS previous
            FROM w c LEFT JOIN w p
              ON p.person_id = c.person_id AND p.section_id = c.section_id AND p.recency = 2
            WHERE c.recency = 1 AND c.week_end > $as_of::DATE - INTERVAL 7 DAY
              AND c.assignments_missing >= $missing
              AND coalesce(p.assignments_missing, 0) < $missing
            """,
            {"as_of": as_of, "missing": policy.missing},
        ).df()
    )
    parts.append(
        con.execute(
            """
            WITH w AS (
                SELECT *,
                       row_number() OVER (PARTITION BY person_id, school_year ORDER BY week DESC)
                           AS recency,
                       -- chronic in an earlier week of the year, counted once enough days are known
                       coalesce(bool_or(chronic_absence AND days_enrolled >= $min_days) OVER (
                           PARTITION BY person_id, school_year ORDER BY week
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), false) AS chronic_before
                FROM weekly_features_k12 WHERE week_end <= $as_of
            ), pairs AS (
                SELECT c.person_id, c.grade_level, c.chronic_absence, c.chronic_before, c.days_enrolled,
                       c.core_f_count, c.attendance_rate, p.core_f_count AS prev_core_f,
                       p.attendance_rate AS prev_rate
                FROM w c LEFT JOIN w p
                  ON p.person_id = c.person_id AND p.school_year = c.school_year AND p.recency = 2
                WHERE c.recency = 1 AND c.week_end > $as_of::DATE - INTERVAL 7 DAY
            )
            SELECT person_id, NULL::VARCHAR AS section_id, 'chronic_absence' AS rule,
                   NULL::VARCHAR AS target, attendance_rate AS value, prev_rate AS previous
            FROM pairs
            WHERE chronic_absence AND days_enrolled >= $min_days AND NOT chronic_before
            UNION ALL
            SELECT person_id, NULL, 'on_track_lost', NULL, core_f_count::DOUBLE, prev_core_f::DOUBLE
            FROM pairs WHERE grade_level = 9 AND core_f_count >= 2 AND coalesce(prev_core_f, 0) < 2
            """,
            {"as_of": as_of, "min_days": policy.min_days_enrolled},
        ).df()
    )
    return pd.concat(parts, ignore_index=True)


def evaluate_rules(con: duckdb.DuckDBPyConnection, as_of: date, policy: AlertPolicy) -> pd.DataFrame:
    """Rule firings as of a date: person_id, section_id, rule, target, value, previous."""
    frames = []
    if has_rows(con, "risk_score"):
        frames.append(_risk_candidates(con, as_of, policy))
    if has_rows(con, "weekly_features_lms") or has_rows(con, "weekly_features_k12"):
        frames.append(_feature_candidates(con, as_of, policy))
    columns = ["person_id", "section_id", "rule", "target", "value", "previous"]
    if not frames:
        return pd.DataFrame(columns=columns)
    found = pd.concat([f for f in frames if len(f)] or [frames[0]], ignore_index=True)
    found = found[found["rule"].isin(policy.rules)]
    return (
        found[columns]
        .sort_values(["rule", "person_id", "section_id"], na_position="first")
        .reset_index(drop=True)
    )


class RecipientDirectory(Protocol):
    """Who is responsible for a student: (person_id, section_id) -> recipients of a role."""

    def recipients(
        self, con: duckdb.DuckDBPyConnection, candidates: pd.DataFrame, role: Role
    ) -> pd.DataFrame:
        """Rows of ``candidates`` by index (column ``idx``) with recipient_id and address."""
        ...


class WarehouseDirectory:
    """Teachers from section enrolments; counselors and principals from given assignments.

    ``caseloads`` maps a counselor's recipient id to the person_ids of the caseload;
    ``principals`` maps a school org_id to recipient ids; ``addresses`` maps recipient ids to
    e-mail addresses (recipients without one get dashboard alerts only).
    """

    def __init__(
        self,
        *,
        caseloads: Mapping[str, Sequence[str]] | None = None,
        principals: Mapping[str, Sequence[str]] | None = None,
        addresses: Mapping[str, str] | None = None,
    ) -> None:
        self.caseloads = caseloads or {}
        self.principals = principals or {}
        self.addresses = addresses or {}

    def _with_address(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame["address"] = frame["recipient_id"].map(self.addresses)
        return frame[["idx", "recipient_id", "address"]]

    def recipients(
        self, con: duckdb.DuckDBPyConnection, candidates: pd.DataFrame, role: Role
    ) -> pd.DataFrame:
        cand = candidates[["person_id", "section_id"]].reset_index(names="idx")
        if role == "teacher":
            with _registered(con, "alert_candidates", cand):
                found = con.sql(
                    """
                    SELECT c.idx, e.person_id AS recipient_id
                    FROM alert_candidates c
                    JOIN enrollment e ON e.section_id = c.section_id AND e.role = 'teacher'
                    """
                ).df()
        elif role == "counselor":
            pairs = [(cid, pid) for cid, people in self.caseloads.items() for pid in people]
            load = pd.DataFrame(pairs, columns=["recipient_id", "person_id"])
            found = cand.merge(load, on="person_id")[["idx", "recipient_id"]]
        else:
            pairs = [(sid, rid) for sid, rids in self.principals.items() for rid in rids]
            heads = pd.DataFrame(pairs, columns=["school_id", "recipient_id"], dtype="object")
            with _registered(con, "alert_candidates", cand), _registered(con, "alert_heads", heads):
                found = con.sql(
                    """
                    WITH school AS (
                        SELECT person_id, school_id FROM school_enrollment
                        QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY entry_date DESC) = 1
                    )
                    SELECT c.idx, h.recipient_id
                    FROM alert_candidates c JOIN school s USING (person_id)
                    JOIN alert_heads h USING (school_id)
                    """
                ).df()
        return self._with_address(found.drop_duplicates())


def _alert_id(person_id: str, section_id: object, rule: str, target: object, as_of: date, rid: str) -> str:
    text = "\0".join(str(x) for x in (person_id, section_id, rule, target, as_of.isoformat(), rid))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def raise_alerts(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    policy: AlertPolicy,
    directory: RecipientDirectory,
    *,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Evaluate the rules, route, apply cool-down and snooze, and store new alerts.

    Idempotent: alert ids are derived from student, section, rule, target, date and recipient,
    so a second run for the same date adds nothing. Returns the alerts added now, with the
    recipient's address for delivery.
    """
    candidates = evaluate_rules(con, as_of, policy)
    columns = ["alert_id", "person_id", "section_id", "rule", "target", "recipient_id", "role", "address"]
    routed: list[pd.DataFrame] = []
    roles: tuple[Role, ...] = ("teacher", "counselor", "principal")
    for role in roles:
        rules = [r for r, roles in policy.routes.items() if role in roles]
        subset = candidates[candidates["rule"].isin(rules)]
        if subset.empty:
            continue
        found = directory.recipients(con, subset, role)
        merged = subset.join(found.set_index("idx"), how="inner")
        merged["role"] = role
        routed.append(merged)
    if not routed:
        return pd.DataFrame(columns=columns)
    alerts = pd.concat(routed).drop_duplicates(["person_id", "section_id", "rule", "target", "recipient_id"])
    alerts["alert_id"] = [
        _alert_id(p, s, r, t, as_of, rid)
        for p, s, r, t, rid in zip(
            alerts["person_id"],
            alerts["section_id"],
            alerts["rule"],
            alerts["target"],
            alerts["recipient_id"],
            strict=True,
        )
    ]
    stamp = (now or datetime.now(UTC)).replace(tzinfo=None)
    alerts["detail"] = [
        json.dumps(
            {"target": t, "value": v, "previous": None if pd.isna(pv) else pv, "as_of": as_of.isoformat()}
        )
        for t, v, pv in zip(alerts["target"], alerts["value"], alerts["previous"], strict=True)
    ]
    alerts["section_key"] = alerts["section_id"].fillna("")
    with _registered(con, "new_alerts", alerts):
        fresh = _not_cooling_down(con, as_of, policy)
    if fresh.empty:
        return pd.DataFrame(columns=columns)
    fresh["detail"] = [
        json.dumps({**json.loads(d), "section_id": None if pd.isna(s) else s})
        for d, s in zip(fresh["detail"], fresh["section_id"], strict=True)
    ]
    fresh["raised_at"] = stamp
    fresh["status"] = "open"
    table = CANONICAL["alert"].column_names
    with _registered(con, "fresh_alerts", fresh[list(table)]):
        con.execute("INSERT INTO alert BY NAME SELECT * FROM fresh_alerts")
    return fresh[columns].reset_index(drop=True)


def _not_cooling_down(con: duckdb.DuckDBPyConnection, as_of: date, policy: AlertPolicy) -> pd.DataFrame:
    return con.execute(
        """
        SELECT a.* FROM new_alerts a
        WHERE NOT EXISTS (SELECT 1 FROM alert x WHERE x.alert_id = a.alert_id)
          AND NOT EXISTS (
            SELECT 1 FROM alert x
            WHERE x.person_id = a.person_id AND x.rule = a.rule
              AND x.recipient_id = a.recipient_id
              AND coalesce(json_extract_string(x.detail, '$.section_id'), '') = a.section_key
              AND (CAST(json_extract_string(x.detail, '$.as_of') AS DATE) > $since
                   OR (x.status = 'snoozed'
                       AND CAST(json_extract_string(x.detail, '$.snooze_until') AS DATE) > $as_of)))
        """,
        {"since": as_of - timedelta(days=policy.cooldown_days), "as_of": as_of},
    ).df()


def set_alert_status(
    con: duckdb.DuckDBPyConnection,
    alert_id: str,
    status: Literal["open", "acknowledged", "snoozed", "closed"],
    *,
    recipient_id: str,
    snooze_until: date | None = None,
) -> None:
    """Acknowledge, snooze (until a date), reopen or close one's own alert."""
    if status == "snoozed" and snooze_until is None:
        raise InvalidInput("snoozing an alert needs a snooze_until date")
    rows = con.execute(
        "SELECT detail FROM alert WHERE alert_id = ? AND recipient_id = ?", [alert_id, recipient_id]
    ).fetchall()
    if not rows:
        raise InvalidInput("no such alert for this recipient")
    detail = json.loads(rows[0][0]) if rows[0][0] else {}
    if snooze_until is not None:
        detail["snooze_until"] = snooze_until.isoformat()
    con.execute(
        "UPDATE alert SET status = ?, detail = ? WHERE alert_id = ?", [status, json.dumps(detail), alert_id]
    )


_RULE_TEXT = {
    "risk_threshold": "risk rose above the flagging threshold",
    "risk_rise": "risk rose sharply in a week",
    "chronic_absence": "became chronically absent",
    "missing_work": "missing assignments piled up",
    "on_track_lost": "9th-grade on-track status lost",
}


def alert_notifications(alerts: pd.DataFrame, policy: AlertPolicy, *, digest: bool) -> list[Notification]:
    """E-mail notifications: immediate rules one per alert, the rest one digest per recipient.

    The text names rules and counts only, never a student: the link leads to the dashboard,
    where the recipient's own scope decides what is shown.
    """
    if alerts.empty:
        return []
    mail = alerts[alerts["address"].notna()]
    wanted = mail["rule"].isin(policy.immediate) != digest
    mail = mail[wanted]
    notes: list[Notification] = []
    if digest:
        groups = mail.groupby(["recipient_id", "address"], sort=True)
    else:
        groups = mail.groupby(["recipient_id", "address", "alert_id"], sort=True)
    for key, rows in groups:
        address = str(key[1])
        counts = rows["rule"].value_counts().sort_index()
        lines = [f"- {n} student(s): {_RULE_TEXT.get(str(rule), str(rule))}" for rule, n in counts.items()]
        total = len(rows)
        notes.append(
            Notification(
                channel="email",
                recipient=address,
                subject=f"edsight: {total} new early-warning alert{'s' if total != 1 else ''}",
                body="\n".join(
                    [
                        "New early-warning alerts for students you work with:",
                        *lines,
                        "",
                        f"Sign in to see who and why: {policy.dashboard_url}",
                        "Alerts are prompts for a conversation, not labels.",
                    ]
                ),
                alert_ids=tuple(sorted(rows["alert_id"])),
                payload={"rules": {str(k): int(v) for k, v in counts.items()}},
            )
        )
    return notes
