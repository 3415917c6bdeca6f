"""The query layer of the dashboard and the API: scoped, audited, read-only.

Every student-level query carries the viewer's scope INSIDE its SQL
(``WITH scope AS (<student_scope_sql>) ... WHERE person_id IN (SELECT person_id FROM scope)``),
so rows outside the scope are never fetched, and every student-level read writes one
:class:`~edsight.governance.audit.AuditEvent` naming the students returned. Aggregates
are computed over schools the viewer's grants cover (``school_scope``) and, on the district
and state views, pass small-cell suppression before they leave this module.

Connections: one read-write DuckDB database instance per process (the configuration of
``Warehouse.connect()``), and a cursor per request. The in-process scheduler's daily run
opens the same file with the same configuration, so DuckDB hands it the same instance: the
server and the daily job share it.

District, state and school aggregates are cached per process and dropped when the
warehouse's version (last load batch, last daily-run step, latest scores) changes; the
version is read at most every ``VERSION_TTL_S`` seconds.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from edsight.config import Settings
from edsight.errors import InvalidInput, NotAuthorized
from edsight.governance.audit import AuditEvent, AuditLog, DisclosureLedger
from edsight.governance.identity import GovernanceStore, Principal
from edsight.governance.scopes import allowed, school_scope, section_scope_sql, student_scope_sql
from edsight.governance.suppression import suppress_table
from edsight.store.warehouse import Warehouse

log = logging.getLogger(__name__)

FLAG_THRESHOLD = 0.5  # probability at or above which a student shows as flagged
MIN_CELL = 10
MAX_PAGE = 500

NOT_FOUND_STUDENT = "no such student in your scope"
NOT_FOUND_SECTION = "no such section in your scope"
NOT_FOUND_SCHOOL = "no such school in your scope"


class NotFound(LookupError):
    """The resource does not exist or is outside the viewer's scope (never says which)."""


@dataclass(frozen=True)
class Viewer:
    """Who asks: the principal, the governance store that decides its scope, and the request."""

    principal: Principal
    store: GovernanceStore
    what: str = ""

    @property
    def roles(self) -> frozenset[str]:
        return self.principal.roles()

    @property
    def role_label(self) -> str:
        return ",".join(sorted(self.roles))

    def targets(self, role: str) -> list[str]:
        """Grant targets (person ids, org ids) of ``role``."""
        return sorted(self.principal.targets(role))

    def can(self, action: str, resource: str | None = None) -> bool:
        return allowed(self.principal, action, resource)


@dataclass(frozen=True)
class Page:
    """One page of rows with the total count (for pagination)."""

    rows: pd.DataFrame
    total: int
    limit: int
    offset: int


VERSION_TTL_S = 5.0  # how stale the warehouse version (and so a cached aggregate) may be
VERSION_SQL = """SELECT (SELECT max(loaded_at) FROM load_batch), (SELECT count(*) FROM load_batch),
  (SELECT max(coalesce(finished_at, started_at)) FROM ops_run), (SELECT count(*) FROM ops_run),
  (SELECT max(as_of) FROM risk_score_latest), (SELECT count(*) FROM risk_score_latest)"""


@dataclass
class _Entry:
    value: Any
    version: tuple[Any, ...]


@dataclass
class _Memo:
    """Values computed from the warehouse, each tagged with the warehouse version it saw."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict[Hashable, _Entry] = field(default_factory=dict)
    computing: dict[Hashable, threading.Lock] = field(default_factory=dict)
    refreshing: set[Hashable] = field(default_factory=set)
    version: tuple[Any, ...] | None = None
    checked: float = float("-inf")

    def key_lock(self, key: Hashable) -> threading.Lock:
        with self.lock:
            return self.computing.setdefault(key, threading.Lock())


class WarehouseReader:
    """The web process's connections to the warehouse (one shared instance, a cursor per request)."""

    def __init__(self, settings: Settings) -> None:
        self.warehouse = Warehouse(settings)
        self._lock = threading.Lock()
        self._stack: ExitStack | None = None
        self._base: duckdb.DuckDBPyConnection | None = None

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor (a connection of its own) on the process's shared DuckDB instance."""
        base = self._shared()
        cur = base.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def _shared(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._base is None:
                stack = ExitStack()
                # Read-write, with Warehouse.connect()'s configuration: a daily run in this
                # process gets the same DuckDB instance instead of a lock conflict.
                self._base = stack.enter_context(self.warehouse.connect())
                self._stack = stack
            return self._base

    def close(self) -> None:
        with self._lock:
            if self._stack is not None:
                self._stack.close()
            self._stack, self._base = None, None


SCOPE_RELATION = "web_scope"
STUDENT_NOW_RELATION = "web_student_now"


def _scoped(viewer: Viewer) -> str:
    """The ``scope`` CTE of a student-level query: the viewer's students, as computed by
    :func:`governance.scopes.student_scope_sql` (see :meth:`DashboardQueries.scope`), read from
    the relation the query layer registers on the cursor. A query run without it fails: there
    is no unscoped fallback."""
    return f"scope AS (SELECT person_id FROM {SCOPE_RELATION})"


_HISTORY = """
WITH d AS (SELECT person_id, section_id, as_of, max(probability) AS p FROM risk_score GROUP BY ALL)
SELECT person_id, section_id, as_of, p FROM d
QUALIFY row_number() OVER (PARTITION BY person_id, section_id ORDER BY as_of DESC) <= 12
ORDER BY person_id, section_id NULLS FIRST, as_of"""


class RiskHistory:
    """``(person_id, section_id or None) -> [(as_of, daily max probability), ...]``, oldest first."""

    def __init__(self, series: dict[tuple[str, str | None], list[tuple[Any, float]]]) -> None:
        self._series = series
        self._sections: dict[str, list[tuple[str, str | None]]] = {}
        for key in series:
            self._sections.setdefault(key[0], []).append(key)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> RiskHistory:
        if frame.empty:
            return cls({})
        people = frame["person_id"].astype(str).to_numpy()
        sections = frame["section_id"].astype(object).where(frame["section_id"].notna(), None).to_numpy()
        days = frame["as_of"].to_numpy()
        probs = frame["p"].astype(float).to_numpy()
        series: dict[tuple[str, str | None], list[tuple[Any, float]]] = {}
        for person, section, day, p in zip(people, sections, days, probs, strict=True):
            series.setdefault((person, section), []).append((day, float(p)))
        return cls(series)

    def get(
        self, key: tuple[str, str | None], default: Sequence[tuple[Any, float]] = ()
    ) -> Sequence[tuple[Any, float]]:
        return self._series.get(key, default)

    def sections_of(self, person_id: str) -> list[tuple[str, str | None]]:
        return [k for k in self._sections.get(person_id, []) if k[1] is not None]


@dataclass(frozen=True)
class Scope:
    """The result of a viewer's scope SQL: the person ids, as an Arrow table and a set."""

    table: pa.Table
    ids: frozenset[str]


_STUDENT_NOW = """
WITH le AS (
  SELECT person_id, school_id, grade_level FROM school_enrollment
  QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY school_year DESC, entry_date DESC) = 1
), lr AS (
  SELECT person_id, probability, target, as_of, reasons FROM risk_score_latest
  QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY as_of DESC, probability DESC) = 1
)
SELECT p.person_id, p.given_name, p.family_name, le.school_id, le.grade_level,
       lr.probability, lr.target, lr.as_of, lr.reasons
FROM person p LEFT JOIN le ON le.person_id = p.person_id LEFT JOIN lr ON lr.person_id = p.person_id
WHERE p.role = 'student'"""

_LATEST_ENROLLMENT = """
latest_enrollment AS (
  SELECT person_id, school_id, grade_level, school_year FROM school_enrollment
  WHERE person_id IN (SELECT person_id FROM scope)
  QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY school_year DESC, entry_date DESC) = 1
)"""


def parse_reasons(value: object) -> list[str]:
    """Reason codes from the ``risk_score.reasons`` JSON: a list of codes or of objects."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    try:
        data = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return [str(value)[:80]]
    if isinstance(data, dict):
        data = data.get("reasons", [data])
    out: list[str] = []
    for item in data if isinstance(data, list) else [data]:
        if isinstance(item, dict):
            code = item.get("code") or item.get("feature") or item.get("name") or ""
            direction = item.get("direction")
            out.append(f"{code} ({direction})" if direction else str(code))
        else:
            out.append(str(item))
    return [r for r in out if r][:5]


class DashboardQueries:
    """Scoped, audited reads for the pages and the API."""

    def __init__(self, reader: WarehouseReader, store: GovernanceStore, *, caching: bool = True) -> None:
        self.reader = reader
        self.store = store
        self.audit = AuditLog(store)
        self.caching = caching  # off: every value is recomputed per request (the load test's baseline)
        self._memo = _Memo()

    # -- audit ---------------------------------------------------------------------

    def _audit(self, viewer: Viewer, action: str, what: str, person_ids: Sequence[str]) -> None:
        self.audit.record(
            AuditEvent(
                actor=viewer.principal.account_id,
                role=viewer.role_label,
                action=action,
                what=what,
                person_ids=tuple(sorted(set(person_ids))),
            )
        )

    def _frame(
        self, sql: str, params: dict[str, Any] | None = None, viewer: Viewer | None = None
    ) -> pd.DataFrame:
        """Run one query; with ``viewer`` its scope is registered for the ``scope`` CTE."""
        with self.reader.cursor() as con:
            if viewer is not None:
                self.register_scope(con, viewer)
            return con.execute(sql, params or {}).df()

    # -- scope -----------------------------------------------------------------------

    def scope(self, viewer: Viewer) -> Scope:
        """The viewer's students: governance's scope SQL, run once per distinct SQL text and
        warehouse version. The SQL names the grants' targets and a counselor's caseload, so a
        changed grant or caseload is a different key; a load or daily run changes the version."""
        sql = student_scope_sql(viewer.principal, viewer.store)

        def compute() -> Scope:
            with self.reader.cursor() as con:
                query = f"SELECT DISTINCT person_id FROM ({sql}) s ORDER BY 1"
                table: pa.Table = con.sql(query).to_arrow_table()
            return Scope(table, frozenset(table.column("person_id").to_pylist()))

        scope: Scope = self.memo(("scope", sql), compute)
        return scope

    def register_scope(self, con: duckdb.DuckDBPyConnection, viewer: Viewer) -> None:
        """Make the viewer's scope readable as the ``scope`` CTE on this cursor."""
        con.register(SCOPE_RELATION, self.scope(viewer).table)

    def student_now(self) -> pa.Table:
        """One row per student: name, latest school and grade, current risk (highest probability
        of the latest scoring date) with its target, date and reasons. Once per version."""

        def compute() -> pa.Table:
            with self.reader.cursor() as con:
                table: pa.Table = con.sql(_STUDENT_NOW).to_arrow_table()
            return table

        table: pa.Table = self.memo("student_now", compute)
        return table

    # -- students --------------------------------------------------------------------

    def in_scope(self, viewer: Viewer, person_id: str) -> bool:
        return person_id in self.scope(viewer).ids

    def students(self, viewer: Viewer, *, limit: int, offset: int, what: str = "students") -> Page:
        """In-scope students by descending current risk, with school and grade."""
        limit, offset = _bounds(limit, offset)
        sql = f"""
        WITH {_scoped(viewer)}
        SELECT n.person_id, n.given_name, n.family_name, n.school_id, n.grade_level,
               n.probability, n.target, n.as_of, n.reasons, count(*) OVER () AS total
        FROM {STUDENT_NOW_RELATION} n
        WHERE n.person_id IN (SELECT person_id FROM scope)
        ORDER BY n.probability DESC NULLS LAST, n.family_name, n.given_name, n.person_id
        LIMIT $limit OFFSET $offset"""
        with self.reader.cursor() as con:
            self.register_scope(con, viewer)
            con.register(STUDENT_NOW_RELATION, self.student_now())
            rows = con.execute(sql, {"limit": limit, "offset": offset}).df()
        total = int(rows["total"].iloc[0]) if len(rows) else self._count_scope(viewer)
        rows = rows.drop(columns="total")
        rows["reasons"] = rows["reasons"].map(parse_reasons)
        if len(rows):
            self._audit(viewer, "view_student", what, rows["person_id"].tolist())
        return Page(rows, total, limit, offset)

    def _count_scope(self, viewer: Viewer) -> int:
        sql = (
            f"WITH {_scoped(viewer)} SELECT count(DISTINCT s.person_id) AS n FROM scope s "
            "JOIN person p ON p.person_id = s.person_id AND p.role = 'student'"
        )
        return int(self._frame(sql, viewer=viewer)["n"].iloc[0])

    def student_profile(self, viewer: Viewer, person_id: str) -> dict[str, Any]:
        """Everything the profile page shows about one in-scope student (one audit event)."""
        if not self.in_scope(viewer, person_id):
            raise NotFound(NOT_FOUND_STUDENT)
        pid = {"pid": person_id}
        base = f"WITH {_scoped(viewer)}, {_LATEST_ENROLLMENT}"

        def guard(alias: str = "") -> str:
            return f"{alias}person_id = $pid AND {alias}person_id IN (SELECT person_id FROM scope)"

        header = self._frame(
            f"""{base} SELECT p.person_id, p.given_name, p.family_name, le.school_id, o.name AS school,
                le.grade_level, le.school_year FROM person p
                LEFT JOIN latest_enrollment le ON le.person_id = p.person_id
                LEFT JOIN organization o ON o.org_id = le.school_id WHERE {guard("p.")}""",
            pid,
            viewer,
        )
        risk = self._frame(
            f"""{base} SELECT as_of, target, section_id, probability, reasons, model_id FROM risk_score
                WHERE {guard()} ORDER BY as_of DESC, probability DESC LIMIT 200""",
            pid,
            viewer,
        )
        risk["reasons"] = risk["reasons"].map(parse_reasons)
        attendance = self._frame(
            f"""{base} SELECT date_trunc('month', date)::DATE AS month,
                count(*) FILTER (WHERE status LIKE 'absent%') AS absences,
                count(*) FILTER (WHERE status = 'absent_unexcused') AS unexcused,
                count(*) FILTER (WHERE status = 'tardy') AS tardies
                FROM attendance WHERE {guard()} GROUP BY 1 ORDER BY 1 DESC LIMIT 24""",
            pid,
            viewer,
        )
        rate = self._frame(
            f"""{base} SELECT school_year, week, attendance_rate, chronic_absence, abc_attendance_lt90,
                abc_course_failure, abc_behavior FROM weekly_features_k12 WHERE {guard()}
                ORDER BY school_year DESC, week DESC LIMIT 1""",
            pid,
            viewer,
        )
        grades = self._frame(
            f"""{base} SELECT t.name AS term, c.title AS course, g.section_id, g.numeric_grade,
                g.letter_grade,
                g.credits_earned FROM course_grade g JOIN section s ON s.section_id = g.section_id
                JOIN course c ON c.course_id = s.course_id JOIN term t ON t.term_id = g.term_id
                WHERE {guard("g.")} ORDER BY t.start_date DESC, c.title LIMIT 100""",
            pid,
            viewer,
        )
        assessments = self._frame(
            f"""{base} SELECT assessment, subject, school_year, grade_level, test_date, scale_score, sem,
                perf_level, percentile FROM assessment_result WHERE {guard()}
                ORDER BY test_date DESC, subject LIMIT 100""",
            pid,
            viewer,
        )
        interventions = self._frame(
            f"""{base} SELECT intervention_id, intervention_type, start_date, end_date, status, outcome
                FROM intervention WHERE {guard()} ORDER BY start_date DESC LIMIT 100""",
            pid,
            viewer,
        )
        alerts = self._frame(
            f"""{base} SELECT alert_id, rule, raised_at, status, recipient_id FROM alert WHERE {guard()}
                ORDER BY raised_at DESC LIMIT 50""",
            pid,
            viewer,
        )
        self._audit(viewer, "view_student", viewer.what or "student_profile", [person_id])
        return {
            "header": header.iloc[0].to_dict() if len(header) else {"person_id": person_id},
            "risk": risk,
            "attendance": attendance,
            "attendance_now": rate.iloc[0].to_dict() if len(rate) else {},
            "grades": grades,
            "assessments": assessments,
            "interventions": interventions,
            "alerts": alerts,
        }

    def disclosures(self, viewer: Viewer, person_id: str) -> pd.DataFrame:
        """The student's disclosure ledger (who received which records, when, on what basis)."""
        ledger = DisclosureLedger(self.store).for_student(person_id)
        self._audit(viewer, "view_disclosures", viewer.what or "disclosures", [person_id])
        return ledger

    def risk_history(self, viewer: Viewer, person_ids: Sequence[str], section_id: str | None = None) -> dict:
        """Per in-scope student, the daily maximum probability of the last 12 scoring dates
        (oldest first) of the section's and the section-less (K-12) scores, for sparklines."""
        ids = self.scope(viewer).ids
        history = self.history()
        out: dict[str, list[float]] = {}
        for pid in person_ids:
            if pid not in ids:
                continue
            # The section's scores and the section-less ones; without a section, every series.
            keys: list[tuple[str, str | None]] = [(pid, None)]
            keys += [(pid, section_id)] if section_id else history.sections_of(pid)
            points: dict[Any, float] = {}
            for key in keys:
                for day, p in history.get(key):
                    points[day] = max(p, points.get(day, p))
            if points:
                out[pid] = [points[d] for d in sorted(points)][-12:]
        return out

    def history(self) -> RiskHistory:
        """The last 12 scoring dates of every student and section (once per warehouse version;
        after a scoring run the previous one is served while the new one is built)."""

        def compute() -> RiskHistory:
            with self.reader.cursor() as con:
                frame = con.sql(_HISTORY).df()
            return RiskHistory.from_frame(frame)

        history: RiskHistory = self.memo("risk_history", compute, stale_ok=True)
        return history

    # -- sections ----------------------------------------------------------------------

    def _section_filter(self, viewer: Viewer) -> tuple[str, dict[str, Any]]:
        """SQL predicate on ``s`` (section): the sections the viewer's grants reach as sections."""
        return f"s.section_id IN ({section_scope_sql(viewer.principal)})", {}

    def _all_sections(self, viewer: Viewer) -> pd.DataFrame:
        """Every section of the viewer with its in-scope student count (once per version)."""
        pred, params = self._section_filter(viewer)
        sql = f"""
        WITH {_scoped(viewer)},
        mine AS (SELECT s.section_id, s.course_id, s.term_id, s.school_id FROM section s WHERE {pred}),
        counts AS (SELECT e.section_id, count(*) AS students FROM enrollment e
                   WHERE e.role = 'student' AND e.section_id IN (SELECT section_id FROM mine)
                   AND e.person_id IN (SELECT person_id FROM scope) GROUP BY 1)
        SELECT s.section_id, c.title AS course, t.name AS term, t.start_date, s.school_id, o.name AS school,
               coalesce(counts.students, 0) AS students
        FROM mine s JOIN course c ON c.course_id = s.course_id JOIN term t ON t.term_id = s.term_id
        LEFT JOIN organization o ON o.org_id = s.school_id
        LEFT JOIN counts ON counts.section_id = s.section_id
        ORDER BY t.start_date DESC, c.title, s.section_id"""
        key = ("sections", pred, student_scope_sql(viewer.principal, viewer.store))
        frame: pd.DataFrame = self.memo(key, lambda: self._frame(sql, params, viewer))
        return frame

    def sections(self, viewer: Viewer, *, limit: int = 100, offset: int = 0) -> Page:
        """The viewer's sections (taught, or in a school it oversees), newest term first."""
        limit, offset = _bounds(limit, offset)
        frame = self._all_sections(viewer)
        rows = frame.iloc[offset : offset + limit].reset_index(drop=True)
        return Page(rows, len(frame), limit, offset)

    def section_roster(self, viewer: Viewer, section_id: str, *, limit: int, offset: int) -> dict[str, Any]:
        """Students of one section in scope, by descending risk, with reasons and missing work."""
        limit, offset = _bounds(limit, offset)
        listing = self._all_sections(viewer)
        info = listing.loc[listing["section_id"] == section_id, ["section_id", "course", "term", "school"]]
        if info.empty:
            raise NotFound(NOT_FOUND_SECTION)
        sql = f"""
        WITH {_scoped(viewer)},
        roster AS (SELECT DISTINCT person_id FROM enrollment WHERE section_id = $section AND role = 'student'
                   AND person_id IN (SELECT person_id FROM scope)),
        risk AS (SELECT person_id, probability, reasons, as_of, target FROM risk_score_latest
                 WHERE person_id IN (SELECT person_id FROM roster)
                 AND (section_id = $section OR section_id IS NULL)
                 QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY as_of DESC,
                 probability DESC) = 1),
        work AS (SELECT person_id, assignments_missing, current_grade, week FROM weekly_features_lms
                 WHERE section_id = $section AND person_id IN (SELECT person_id FROM roster)
                 QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY week DESC) = 1)
        SELECT r.person_id, p.given_name, p.family_name, risk.probability, risk.target, risk.as_of,
               risk.reasons, work.assignments_missing, work.current_grade, count(*) OVER () AS total
        FROM roster r JOIN person p ON p.person_id = r.person_id
        LEFT JOIN risk ON risk.person_id = r.person_id LEFT JOIN work ON work.person_id = r.person_id
        ORDER BY risk.probability DESC NULLS LAST, p.family_name, p.given_name, r.person_id
        LIMIT $limit OFFSET $offset"""
        rows = self._frame(sql, {"section": section_id, "limit": limit, "offset": offset}, viewer)
        total = int(rows["total"].iloc[0]) if len(rows) else 0
        rows = rows.drop(columns="total")
        rows["reasons"] = rows["reasons"].map(parse_reasons)
        history = self.risk_history(viewer, rows["person_id"].tolist(), section_id)
        rows["history"] = rows["person_id"].map(lambda p: history.get(p, []))
        if len(rows):
            self._audit(viewer, "view_section", f"section:{section_id}", rows["person_id"].tolist())
        return {"section": info.iloc[0].to_dict(), "page": Page(rows, total, limit, offset)}

    # -- interventions and alerts --------------------------------------------------------

    def interventions(self, viewer: Viewer, *, limit: int, offset: int) -> Page:
        limit, offset = _bounds(limit, offset)
        sql = f"""WITH {_scoped(viewer)}
        SELECT i.intervention_id, i.person_id, p.given_name, p.family_name, i.intervention_type,
               i.start_date, i.end_date, i.status, i.outcome, i.owner_id, count(*) OVER () AS total
        FROM intervention i JOIN person p ON p.person_id = i.person_id
        WHERE i.person_id IN (SELECT person_id FROM scope)
        ORDER BY i.start_date DESC, i.intervention_id LIMIT $limit OFFSET $offset"""
        return self._page(viewer, sql, limit, offset, "interventions")

    def alerts(self, viewer: Viewer, *, limit: int, offset: int, status: str | None = None) -> Page:
        limit, offset = _bounds(limit, offset)
        if status is not None and status not in ("open", "acknowledged", "snoozed", "closed"):
            raise InvalidInput("status must be one of open, acknowledged, snoozed, closed")
        sql = f"""WITH {_scoped(viewer)}
        SELECT a.alert_id, a.person_id, p.given_name, p.family_name, a.rule, a.raised_at, a.status,
               a.recipient_id, count(*) OVER () AS total
        FROM alert a JOIN person p ON p.person_id = a.person_id
        WHERE a.person_id IN (SELECT person_id FROM scope) AND ($status IS NULL OR a.status = $status)
        ORDER BY (a.status = 'open') DESC, a.raised_at DESC, a.alert_id LIMIT $limit OFFSET $offset"""
        return self._page(viewer, sql, limit, offset, "alerts", {"status": status})

    def _page(
        self,
        viewer: Viewer,
        sql: str,
        limit: int,
        offset: int,
        what: str,
        extra: dict[str, Any] | None = None,
    ) -> Page:
        rows = self._frame(sql, {"limit": limit, "offset": offset, **(extra or {})}, viewer)
        total = int(rows["total"].iloc[0]) if len(rows) else 0
        rows = rows.drop(columns="total")
        if len(rows):
            self._audit(viewer, "view_student", what, rows["person_id"].tolist())
        return Page(rows, total, limit, offset)

    # -- aggregates ----------------------------------------------------------------------

    def schools_in_scope(self, viewer: Viewer) -> pd.DataFrame:
        """Schools the viewer's grants cover (cached per grant set and warehouse version)."""
        key = ("schools", frozenset(viewer.principal.grants))
        return self.memo(key, lambda: self._schools_in_scope(viewer)).copy()

    def _schools_in_scope(self, viewer: Viewer) -> pd.DataFrame:
        with self.reader.cursor() as con:
            ids = sorted(school_scope(viewer.principal, con))
            return con.execute(
                """SELECT o.org_id, o.name, o.school_level, o.parent_org_id, d.name AS district
                   FROM organization o LEFT JOIN organization d ON d.org_id = o.parent_org_id
                   WHERE o.org_id IN (SELECT unnest($ids::VARCHAR[])) AND o.org_type = 'school'
                   ORDER BY o.school_level, o.name""",
                {"ids": ids},
            ).df()

    def school_summary(self, viewer: Viewer, school_id: str) -> dict[str, Any]:
        """Risk distribution, ABC indicators and growth of one school (counts, no student rows)."""
        schools = self.schools_in_scope(viewer)
        if school_id not in set(schools["org_id"]):
            raise NotFound(NOT_FOUND_SCHOOL)
        name = str(schools.loc[schools["org_id"] == school_id, "name"].iloc[0])
        suppressed = not viewer.can("view_student")
        key = ("school_summary", school_id, suppressed)
        summary = self.memo(key, lambda: self._school_summary(school_id, name, suppressed))
        return copy.deepcopy(summary)

    def _school_summary(self, school_id: str, name: str, suppressed: bool) -> dict[str, Any]:
        params = {"school": school_id}
        current = """cur AS (SELECT DISTINCT person_id FROM school_enrollment WHERE school_id = $school
                     AND school_year = (SELECT max(school_year) FROM school_enrollment
                     WHERE school_id = $school))"""
        dist = self._frame(
            f"""WITH {current},
                lr AS (SELECT person_id, probability FROM risk_score_latest
                   WHERE person_id IN (SELECT person_id FROM cur)
                       QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY as_of DESC,
                 probability DESC) = 1)
                SELECT least(floor(probability * 10), 9)::INT AS bin, count(*) AS n FROM lr GROUP BY 1""",
            params,
        )
        counts: list[int | None] = [int(dist.loc[dist["bin"] == b, "n"].sum()) for b in range(10)]
        abc = self._frame(
            """WITH k AS (SELECT * FROM weekly_features_k12 WHERE school_id = $school
                AND school_year = (SELECT max(school_year) FROM weekly_features_k12 WHERE school_id = $school)
                QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY week DESC) = 1)
                SELECT count(*) AS n, avg(abc_attendance_lt90::INT) AS attendance_below_90,
                       avg(chronic_absence::INT) AS chronic_absence,
                       avg(abc_course_failure::INT) AS course_failure,
                       avg(abc_behavior::INT) AS behavior, max(school_year) AS school_year FROM k""",
            params,
        )
        growth = self._frame(
            """SELECT a.subject, a.school_year, avg(a.scale_score) AS mean_score, count(*) AS n,
                      avg((a.perf_level >= 3)::INT) AS proficient
               FROM assessment_result a JOIN school_enrollment e ON e.person_id = a.person_id
               AND e.school_year = a.school_year AND e.school_id = $school
               WHERE a.assessment = 'state_test' GROUP BY 1, 2 ORDER BY 1, 2""",
            params,
        )
        abc_row = abc.iloc[0].to_dict() if len(abc) else {}
        if suppressed:
            # Aggregate-only roles: the same figures, small cells hidden.
            bins = suppress_table(
                pd.DataFrame({"bin": range(10), "n": counts}), count_col="n", min_n=MIN_CELL
            )
            counts = [None if pd.isna(n) else int(n) for n in bins["n"]]
            growth = suppress_table(
                growth,
                count_col="n",
                min_n=MIN_CELL,
                value_cols=("mean_score",),
                rate_cols=("proficient",),
            )
            if 0 < int(abc_row.get("n") or 0) < MIN_CELL:
                abc_row = {k: (v if k == "school_year" else None) for k, v in abc_row.items()}
        return {
            "school_id": school_id,
            "name": name,
            "risk_counts": counts,
            "abc": abc_row,
            "growth": growth,
        }

    def school_table(self, viewer: Viewer) -> pd.DataFrame:
        """Per school in scope: enrolled n, flagged share, mean risk, chronic absence, proficiency
        (latest year), after small-cell suppression."""
        schools = self.schools_in_scope(viewer)
        key = ("school_table", tuple(schools["org_id"]))
        return self.memo(key, lambda: self._school_table(schools)).copy()

    def _school_table(self, schools: pd.DataFrame) -> pd.DataFrame:
        frame = self._frame(
            f"""WITH yr AS (SELECT school_id, max(school_year) AS y FROM school_enrollment GROUP BY 1),
            cur AS (SELECT DISTINCT e.school_id, e.person_id FROM school_enrollment e JOIN yr
                    ON yr.school_id = e.school_id AND e.school_year = yr.y
                    WHERE e.school_id IN (SELECT unnest($ids::VARCHAR[]))),
            lr AS (SELECT person_id, probability FROM risk_score_latest
                   WHERE person_id IN (SELECT person_id FROM cur)
                   QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY as_of DESC,
                 probability DESC) = 1),
            k AS (SELECT school_id, person_id, chronic_absence FROM weekly_features_k12
                  WHERE school_id IN (SELECT unnest($ids::VARCHAR[]))
                  AND (school_id, school_year) IN (SELECT school_id, y FROM yr)
                  QUALIFY row_number() OVER (PARTITION BY school_id, person_id ORDER BY week DESC) = 1),
            prof AS (SELECT e.school_id, avg((a.perf_level >= 3)::INT) AS proficient
                     FROM assessment_result a JOIN cur e ON e.person_id = a.person_id
                     JOIN yr ON yr.school_id = e.school_id AND a.school_year = yr.y
                     WHERE a.assessment = 'state_test' GROUP BY 1)
            SELECT cur.school_id AS org_id, count(DISTINCT cur.person_id) AS n,
                   count(DISTINCT lr.person_id) FILTER (WHERE lr.probability >= {FLAG_THRESHOLD}) AS flagged,
                   avg(lr.probability) AS mean_risk,
                   (SELECT avg(chronic_absence::INT) FROM k WHERE k.school_id = cur.school_id)
                   AS chronic_absence,
                   any_value(prof.proficient) AS proficient
            FROM cur LEFT JOIN lr ON lr.person_id = cur.person_id
            LEFT JOIN prof ON prof.school_id = cur.school_id
            GROUP BY 1""",
            {"ids": schools["org_id"].tolist()},
        )
        frame["flagged_rate"] = frame["flagged"] / frame["n"].where(frame["n"] > 0)
        merged = schools.merge(frame, on="org_id", how="left")
        merged["n"] = merged["n"].fillna(0).astype(int)
        merged = merged.drop(columns=["flagged"])
        return suppress_table(
            merged,
            count_col="n",
            min_n=MIN_CELL,
            value_cols=("mean_risk",),
            rate_cols=("flagged_rate", "chronic_absence", "proficient"),
        )

    def district_trends(self, viewer: Viewer) -> pd.DataFrame:
        """Per school year over the schools in scope: tested n and proficiency by subject (suppressed)."""
        schools = self.schools_in_scope(viewer)
        key = ("district_trends", tuple(schools["org_id"]))
        return self.memo(key, lambda: self._district_trends(schools)).copy()

    def _district_trends(self, schools: pd.DataFrame) -> pd.DataFrame:
        frame = self._frame(
            """SELECT a.school_year, a.subject, count(*) AS n, avg((a.perf_level >= 3)::INT) AS proficient,
                      avg(a.scale_score) AS mean_score
               FROM assessment_result a JOIN school_enrollment e ON e.person_id = a.person_id
               AND e.school_year = a.school_year WHERE a.assessment = 'state_test'
               AND e.school_id IN (SELECT unnest($ids::VARCHAR[])) GROUP BY 1, 2 ORDER BY 2, 1""",
            {"ids": schools["org_id"].tolist()},
        )
        return suppress_table(
            frame, count_col="n", min_n=MIN_CELL, value_cols=("mean_score",), rate_cols=("proficient",)
        )

    def extract_frame(self, dataset: str) -> pd.DataFrame:
        """Student-level rows for a de-identified research extract (identifiers still present:
        the caller passes them through :func:`edsight.governance.deidentify.research_extract`)."""
        demo = """d.sex, d.race_ethnicity, d.economically_disadvantaged, d.english_learner, d.disability"""
        if dataset == "assessments":
            sql = f"""SELECT a.person_id, a.assessment, a.subject, a.school_year, a.grade_level,
                      a.scale_score,
                      a.perf_level, {demo} FROM assessment_result a
                      LEFT JOIN student_demographics d ON d.person_id = a.person_id
                      ORDER BY a.school_year, a.subject, a.person_id"""
        elif dataset == "attendance":
            sql = f"""SELECT e.person_id, e.school_year, e.grade_level,
                      count(t.date) FILTER (WHERE t.status LIKE 'absent%') AS absences,
                      count(t.date) FILTER (WHERE t.status = 'tardy') AS tardies, {demo}
                      FROM school_enrollment e LEFT JOIN attendance t ON t.person_id = e.person_id
                      AND t.school_id = e.school_id AND t.date >= e.entry_date
                      AND (e.exit_date IS NULL OR t.date <= e.exit_date)
                      LEFT JOIN student_demographics d ON d.person_id = e.person_id
                      GROUP BY ALL ORDER BY e.school_year, e.person_id"""
        else:
            raise InvalidInput(f"unknown extract dataset {dataset!r}")
        return self._frame(sql)

    # -- caches ---------------------------------------------------------------------------

    def version(self) -> tuple[Any, ...]:
        """The warehouse's version: last load batch, last daily-run step, latest scores.

        Read from the warehouse at most every :data:`VERSION_TTL_S` seconds; a change drops
        every cached aggregate (statistics are recomputed in the background, see :meth:`cached`).
        """
        memo = self._memo
        now = time.monotonic()
        with memo.lock:
            if memo.version is not None and now - memo.checked < VERSION_TTL_S:
                return memo.version
        row = self._row(VERSION_SQL)
        current = tuple(str(v) for v in row)
        with memo.lock:
            if current != memo.version:
                if memo.version is not None:
                    log.info("warehouse changed: cached aggregates dropped")
                memo.version = current
            memo.checked = now
        return current

    def invalidate(self) -> None:
        """Re-read the warehouse version on the next request (after a write of this process)."""
        with self._memo.lock:
            self._memo.checked = float("-inf")

    def _row(self, sql: str) -> tuple[Any, ...]:
        with self.reader.cursor() as con:
            found = con.execute(sql).fetchone()
        return tuple(found) if found is not None else ()

    def memo(self, key: Hashable, compute: Callable[[], Any], *, stale_ok: bool = False) -> Any:
        """``compute()`` once per warehouse version (concurrent callers of a key wait for one run).

        With ``stale_ok`` a value of an older version is returned at once while a background
        thread computes the new one (for statistics that take seconds).
        """
        if not self.caching:
            return compute()
        version = self.version()
        memo = self._memo
        with memo.lock:
            entry = memo.entries.get(key)
        if entry is not None and entry.version == version:
            return entry.value
        if entry is not None and stale_ok:
            self._refresh_in_background(key, compute, version)
            return entry.value
        with memo.key_lock(key):
            with memo.lock:
                entry = memo.entries.get(key)
            if entry is not None and entry.version == version:
                return entry.value
            value = compute()
            with memo.lock:
                memo.entries[key] = _Entry(value, version)
            return value

    def _refresh_in_background(
        self, key: Hashable, compute: Callable[[], Any], version: tuple[Any, ...]
    ) -> None:
        memo = self._memo
        with memo.lock:
            if key in memo.refreshing:
                return
            memo.refreshing.add(key)

        def run() -> None:
            try:
                with memo.key_lock(key):
                    value = compute()
                with memo.lock:
                    memo.entries[key] = _Entry(value, version)
            except Exception:
                log.exception("background refresh of %s failed", key)
            finally:
                with memo.lock:
                    memo.refreshing.discard(key)

        threading.Thread(target=run, name=f"edsight-refresh-{key}", daemon=True).start()

    def cached(self, key: str, compute: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        """A statistic over the whole warehouse (``compute(con)`` takes seconds): computed once
        per warehouse version; after a change the old value is served while the new one is
        computed in the background."""

        def run() -> Any:
            with self.reader.cursor() as con:
                return compute(con)

        return self.memo(("statistic", key), run, stale_ok=True)


def _bounds(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    if offset < 0:
        raise InvalidInput(f"offset must be >= 0, got {offset}")
    return limit, offset


def require(viewer: Viewer, action: str, resource: str | None = None) -> None:
    """Raise NotAuthorized unless the viewer may perform ``action``."""
    if not viewer.can(action, resource):
        raise NotAuthorized(f"your role may not {action.replace('_', ' ')}")


__all__ = [
    "FLAG_THRESHOLD",
    "DashboardQueries",
    "NotFound",
    "Page",
    "Viewer",
    "WarehouseReader",
    "parse_reasons",
    "require",
]
