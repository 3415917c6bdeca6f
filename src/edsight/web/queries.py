"""The query layer of the dashboard and the API: scoped, audited, read-only.

Every student-level query carries the viewer's scope INSIDE its SQL
(``WITH scope AS (<student_scope_sql>) ... WHERE person_id IN (SELECT person_id FROM scope)``),
so rows outside the scope are never fetched, and every student-level read writes one
:class:`~edsight.governance.audit.AuditEvent` naming the students returned. Aggregates
are computed over schools the viewer's grants cover (``school_scope``) and, on the district
and state views, pass small-cell suppression before they leave this module.

Connections: one read-only DuckDB database handle per process, and a cursor (a new
connection to the same database instance) per request; ``mode="per_request"`` opens the
file for every request instead (slower, but never holds the file between requests).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb
import pandas as pd

from edsight.config import Settings
from edsight.errors import InvalidInput, NotAuthorized
from edsight.governance.audit import AuditEvent, AuditLog
from edsight.governance.identity import GovernanceStore, Principal
from edsight.governance.scopes import allowed, school_scope, section_scope_sql, student_scope_sql
from edsight.governance.suppression import suppress_table
from edsight.store.warehouse import Warehouse

log = logging.getLogger(__name__)

ConnectionMode = Literal["shared", "per_request"]
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


@dataclass
class _Cache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    values: dict[str, Any] = field(default_factory=dict)


class WarehouseReader:
    """Read-only connections to the warehouse for the web process."""

    def __init__(self, settings: Settings, *, mode: ConnectionMode = "shared") -> None:
        if mode not in ("shared", "per_request"):
            raise InvalidInput(f"connection mode must be 'shared' or 'per_request', got {mode!r}")
        self.warehouse = Warehouse(settings)
        self.mode = mode
        self._lock = threading.Lock()
        self._stack: ExitStack | None = None
        self._base: duckdb.DuckDBPyConnection | None = None

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.mode == "per_request":
            with self.warehouse.connect(read_only=True) as con:
                yield con
            return
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
                self._base = stack.enter_context(self.warehouse.connect(read_only=True))
                self._stack = stack
            return self._base

    def close(self) -> None:
        with self._lock:
            if self._stack is not None:
                self._stack.close()
            self._stack, self._base = None, None


def _scoped(viewer: Viewer) -> str:
    return f"scope AS ({student_scope_sql(viewer.principal, viewer.store)})"


_LATEST_ENROLLMENT = """
latest_enrollment AS (
  SELECT person_id, school_id, grade_level, school_year FROM school_enrollment
  WHERE person_id IN (SELECT person_id FROM scope)
  QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY school_year DESC, entry_date DESC) = 1
)"""

_LATEST_RISK = """
latest_risk AS (
  SELECT person_id, probability, target, as_of, reasons, model_id FROM risk_score
  WHERE person_id IN (SELECT person_id FROM scope)
  QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY as_of DESC,
                 probability DESC) = 1
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

    def __init__(self, reader: WarehouseReader, store: GovernanceStore) -> None:
        self.reader = reader
        self.store = store
        self.audit = AuditLog(store)
        self._cache = _Cache()

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

    def _frame(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        with self.reader.cursor() as con:
            return con.execute(sql, params or {}).df()

    # -- students --------------------------------------------------------------------

    def in_scope(self, viewer: Viewer, person_id: str) -> bool:
        sql = f"WITH {_scoped(viewer)} SELECT count(*) AS n FROM scope WHERE person_id = $pid"
        return bool(self._frame(sql, {"pid": person_id})["n"].iloc[0])

    def students(self, viewer: Viewer, *, limit: int, offset: int, what: str = "students") -> Page:
        """In-scope students by descending current risk, with school and grade."""
        limit, offset = _bounds(limit, offset)
        sql = f"""
        WITH {_scoped(viewer)}, {_LATEST_ENROLLMENT}, {_LATEST_RISK}
        SELECT s.person_id, p.given_name, p.family_name, le.school_id, le.grade_level,
               lr.probability, lr.target, lr.as_of, lr.reasons, count(*) OVER () AS total
        FROM (SELECT DISTINCT person_id FROM scope) s
        JOIN person p ON p.person_id = s.person_id AND p.role = 'student'
        LEFT JOIN latest_enrollment le ON le.person_id = s.person_id
        LEFT JOIN latest_risk lr ON lr.person_id = s.person_id
        ORDER BY lr.probability DESC NULLS LAST, p.family_name, p.given_name, s.person_id
        LIMIT $limit OFFSET $offset"""
        rows = self._frame(sql, {"limit": limit, "offset": offset})
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
        return int(self._frame(sql)["n"].iloc[0])

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
        )
        risk = self._frame(
            f"""{base} SELECT as_of, target, section_id, probability, reasons, model_id FROM risk_score
                WHERE {guard()} ORDER BY as_of DESC, probability DESC LIMIT 200""",
            pid,
        )
        risk["reasons"] = risk["reasons"].map(parse_reasons)
        attendance = self._frame(
            f"""{base} SELECT date_trunc('month', date)::DATE AS month,
                count(*) FILTER (WHERE status LIKE 'absent%') AS absences,
                count(*) FILTER (WHERE status = 'absent_unexcused') AS unexcused,
                count(*) FILTER (WHERE status = 'tardy') AS tardies
                FROM attendance WHERE {guard()} GROUP BY 1 ORDER BY 1 DESC LIMIT 24""",
            pid,
        )
        rate = self._frame(
            f"""{base} SELECT school_year, week, attendance_rate, chronic_absence, abc_attendance_lt90,
                abc_course_failure, abc_behavior FROM weekly_features_k12 WHERE {guard()}
                ORDER BY school_year DESC, week DESC LIMIT 1""",
            pid,
        )
        grades = self._frame(
            f"""{base} SELECT t.name AS term, c.title AS course, g.section_id, g.numeric_grade,
                g.letter_grade,
                g.credits_earned FROM course_grade g JOIN section s ON s.section_id = g.section_id
                JOIN course c ON c.course_id = s.course_id JOIN term t ON t.term_id = g.term_id
                WHERE {guard("g.")} ORDER BY t.start_date DESC, c.title LIMIT 100""",
            pid,
        )
        assessments = self._frame(
            f"""{base} SELECT assessment, subject, school_year, grade_level, test_date, scale_score, sem,
                perf_level, percentile FROM assessment_result WHERE {guard()}
                ORDER BY test_date DESC, subject LIMIT 100""",
            pid,
        )
        interventions = self._frame(
            f"""{base} SELECT intervention_id, intervention_type, start_date, end_date, status, outcome
                FROM intervention WHERE {guard()} ORDER BY start_date DESC LIMIT 100""",
            pid,
        )
        alerts = self._frame(
            f"""{base} SELECT alert_id, rule, raised_at, status FROM alert WHERE {guard()}
                ORDER BY raised_at DESC LIMIT 50""",
            pid,
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

    def risk_history(self, viewer: Viewer, person_ids: Sequence[str], section_id: str | None = None) -> dict:
        """Per student, the daily maximum probability over time (oldest first), for sparklines."""
        if not person_ids:
            return {}
        section = "AND (section_id = $section OR section_id IS NULL)" if section_id else ""
        sql = f"""WITH {_scoped(viewer)}
            SELECT person_id, as_of, max(probability) AS p FROM risk_score
            WHERE person_id IN (SELECT unnest($ids::VARCHAR[])) AND person_id IN (SELECT person_id FROM scope)
            {section} GROUP BY 1, 2 ORDER BY 1, 2"""
        params: dict[str, Any] = {"ids": list(person_ids)}
        if section_id:
            params["section"] = section_id
        frame = self._frame(sql, params)
        return {k: g["p"].tail(12).tolist() for k, g in frame.groupby("person_id", sort=False)}

    # -- sections ----------------------------------------------------------------------

    def _section_filter(self, viewer: Viewer) -> tuple[str, dict[str, Any]]:
        """SQL predicate on ``s`` (section): the sections the viewer's grants reach as sections."""
        return f"s.section_id IN ({section_scope_sql(viewer.principal)})", {}

    def sections(self, viewer: Viewer, *, limit: int = 100, offset: int = 0) -> Page:
        """The viewer's sections (taught, or in a school it oversees), newest term first."""
        limit, offset = _bounds(limit, offset)
        pred, params = self._section_filter(viewer)
        sql = f"""
        WITH {_scoped(viewer)}
        SELECT s.section_id, c.title AS course, t.name AS term, t.start_date, s.school_id, o.name AS school,
               (SELECT count(*) FROM enrollment e WHERE e.section_id = s.section_id AND e.role = 'student'
                AND e.person_id IN (SELECT person_id FROM scope)) AS students,
               count(*) OVER () AS total
        FROM section s JOIN course c ON c.course_id = s.course_id JOIN term t ON t.term_id = s.term_id
        LEFT JOIN organization o ON o.org_id = s.school_id
        WHERE {pred}
        ORDER BY t.start_date DESC, c.title, s.section_id LIMIT $limit OFFSET $offset"""
        rows = self._frame(sql, {**params, "limit": limit, "offset": offset})
        total = int(rows["total"].iloc[0]) if len(rows) else 0
        return Page(rows.drop(columns="total"), total, limit, offset)

    def section_roster(self, viewer: Viewer, section_id: str, *, limit: int, offset: int) -> dict[str, Any]:
        """Students of one section in scope, by descending risk, with reasons and missing work."""
        limit, offset = _bounds(limit, offset)
        pred, params = self._section_filter(viewer)
        info = self._frame(
            f"""SELECT s.section_id, c.title AS course, t.name AS term, o.name AS school FROM section s
                JOIN course c ON c.course_id = s.course_id JOIN term t ON t.term_id = s.term_id
                LEFT JOIN organization o ON o.org_id = s.school_id
                WHERE s.section_id = $section AND {pred}""",
            {**params, "section": section_id},
        )
        if info.empty:
            raise NotFound(NOT_FOUND_SECTION)
        sql = f"""
        WITH {_scoped(viewer)},
        roster AS (SELECT DISTINCT person_id FROM enrollment WHERE section_id = $section AND role = 'student'
                   AND person_id IN (SELECT person_id FROM scope)),
        risk AS (SELECT person_id, probability, reasons, as_of, target FROM risk_score
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
        rows = self._frame(sql, {"section": section_id, "limit": limit, "offset": offset})
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
        rows = self._frame(sql, {"limit": limit, "offset": offset, **(extra or {})})
        total = int(rows["total"].iloc[0]) if len(rows) else 0
        rows = rows.drop(columns="total")
        if len(rows):
            self._audit(viewer, "view_student", what, rows["person_id"].tolist())
        return Page(rows, total, limit, offset)

    # -- aggregates ----------------------------------------------------------------------

    def schools_in_scope(self, viewer: Viewer) -> pd.DataFrame:
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
        params = {"school": school_id}
        current = """cur AS (SELECT DISTINCT person_id FROM school_enrollment WHERE school_id = $school
                     AND school_year = (SELECT max(school_year) FROM school_enrollment
                     WHERE school_id = $school))"""
        dist = self._frame(
            f"""WITH {current},
                lr AS (SELECT person_id, probability FROM risk_score
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
        name = schools.loc[schools["org_id"] == school_id, "name"].iloc[0]
        abc_row = abc.iloc[0].to_dict() if len(abc) else {}
        if not viewer.can("view_student"):
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
        frame = self._frame(
            f"""WITH yr AS (SELECT school_id, max(school_year) AS y FROM school_enrollment GROUP BY 1),
            cur AS (SELECT DISTINCT e.school_id, e.person_id FROM school_enrollment e JOIN yr
                    ON yr.school_id = e.school_id AND e.school_year = yr.y
                    WHERE e.school_id IN (SELECT unnest($ids::VARCHAR[]))),
            lr AS (SELECT person_id, probability FROM risk_score
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

    # -- cached statistics ----------------------------------------------------------------

    def cached(self, key: str, compute: Any) -> Any:
        """``compute(con)`` once per process (statistics over the whole warehouse are slow)."""
        with self._cache.lock:
            if key not in self._cache.values:
                with self.reader.cursor() as con:
                    self._cache.values[key] = compute(con)
            return self._cache.values[key]


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
