"""What each role may do, and which students it may see (FERPA 34 CFR 99.31(a)(1)(ii)).

Permissions are registered actions checked through one call, :func:`allowed`, so
the CLI and the web obey the same rules. Student-level scope is a SQL ``SELECT``
over the warehouse's relationship tables (enrollment, school_enrollment,
organization) plus counselor caseloads, so callers filter *inside* their query
and out-of-scope rows are never fetched. A principal's scope is the union of its
grants' scopes, computed grant by grant: holding two roles never widens either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import duckdb
import pandas as pd

from edsight.errors import InvalidInput
from edsight.governance.identity import ROLES, GovernanceStore, Grant, Principal
from edsight.schema import CANONICAL
from edsight.sql import quote_literal

ACTIONS = (
    "view_student",
    "view_section",
    "view_school_aggregates",
    "view_district_aggregates",
    "view_state_aggregates",
    "export_deidentified",
    "export_roster",
    "view_disclosures",
    "manage_interventions",
    "view_model_card",
)

ROLE_ACTIONS: Mapping[str, frozenset[str]] = {
    "teacher": frozenset({"view_student", "view_section", "manage_interventions", "view_model_card"}),
    "counselor": frozenset({"view_student", "manage_interventions", "view_model_card"}),
    "principal": frozenset(
        {
            "view_student",
            "view_section",
            "view_school_aggregates",
            "export_roster",
            "manage_interventions",
            "view_model_card",
        }
    ),
    "district_admin": frozenset(
        {
            "view_student",
            "view_section",
            "view_school_aggregates",
            "view_district_aggregates",
            "export_roster",
            "export_deidentified",
            "manage_interventions",
            "view_model_card",
        }
    ),
    "state_analyst": frozenset(
        {
            "view_school_aggregates",
            "view_district_aggregates",
            "view_state_aggregates",
            "view_model_card",
        }
    ),
    "researcher": frozenset({"export_deidentified", "view_model_card"}),
    "parent": frozenset({"view_student", "view_disclosures"}),
}

# Roles whose student-level access is bounded by the grant's target (the child).
_TARGETED_STUDENT_ACTIONS = frozenset({"view_student", "view_disclosures"})

EMPTY_SCOPE = "SELECT NULL::VARCHAR AS person_id WHERE false"

# Direct identifiers, from the schema's pii flags (names, birth date, local/state ids, source ids).
PII_COLUMNS: frozenset[str] = frozenset(
    c.name for table in CANONICAL.values() for c in table.columns if c.pii
)


def _check_action(action: str) -> None:
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")


def grant_allows(grant: Grant, action: str, resource: str | None = None) -> bool:
    """Whether one grant allows ``action`` (on ``resource`` where the grant's target decides)."""
    _check_action(action)
    if action not in ROLE_ACTIONS[grant.role]:
        return False
    if grant.role == "parent" and action in _TARGETED_STUDENT_ACTIONS and resource is not None:
        return resource == grant.target
    if grant.role == "principal" and action == "view_school_aggregates" and resource is not None:
        return resource == grant.target
    return True


def allowed(principal: Principal, action: str, resource: str | None = None) -> bool:
    """Whether any one of the principal's grants allows ``action``.

    ``resource`` is checked where a grant's target alone decides (a parent's child, a
    principal's school). Which students, sections and schools fall under a teacher,
    counselor, principal or district grant depends on warehouse rows: filter with
    :func:`student_scope_sql`, :func:`section_scope_sql` or :func:`school_scope`,
    or ask :func:`can_view_student`.
    """
    return any(grant_allows(g, action, resource) for g in principal.grants)


def _schools_of(org_id: str) -> str:
    """Org ids at or under ``org_id`` (a district's schools, nested at any depth)."""
    return (
        "(WITH RECURSIVE tree(org_id) AS ("  # noqa: S608
        f"SELECT org_id FROM organization WHERE org_id = {quote_literal(org_id)} "
        "UNION SELECT o.org_id FROM organization o JOIN tree t ON o.parent_org_id = t.org_id) "
        "SELECT org_id FROM tree)"
    )


def _students_at(schools: str) -> str:
    return (
        f"SELECT person_id FROM school_enrollment WHERE school_id IN {schools} "  # noqa: S608
        "UNION SELECT e.person_id FROM enrollment e JOIN section s ON s.section_id = e.section_id "
        f"WHERE e.role = 'student' AND s.school_id IN {schools}"
    )


def grant_student_sql(grant: Grant, caseload: Iterable[str] = ()) -> str | None:
    """The students one grant reaches at student level, as SQL (None: none)."""
    target = grant.target or ""
    if grant.role == "teacher":
        return (
            "SELECT e.person_id FROM enrollment e JOIN enrollment t ON t.section_id = e.section_id "  # noqa: S608
            f"AND t.role = 'teacher' AND t.person_id = {quote_literal(target)} WHERE e.role = 'student'"
        )
    if grant.role == "counselor":
        ids = sorted(set(caseload))
        if not ids:
            return None
        listed = ", ".join(quote_literal(p) for p in ids)
        return f"SELECT person_id FROM person WHERE person_id IN ({listed})"  # noqa: S608
    if grant.role == "principal":
        return _students_at(f"({'SELECT ' + quote_literal(target)})")
    if grant.role == "district_admin":
        return _students_at(_schools_of(target))
    if grant.role == "parent":
        return f"SELECT person_id FROM person WHERE person_id = {quote_literal(target)}"  # noqa: S608
    return None  # state_analyst, researcher: aggregates and de-identified extracts only


def student_scope_sql(principal: Principal, store: GovernanceStore) -> str:
    """A ``SELECT DISTINCT person_id`` of the students the principal may see at student level."""
    parts: list[str] = []
    for grant in sorted(principal.grants, key=str):
        caseload = store.caseload(principal.account_id) if grant.role == "counselor" else ()
        sql = grant_student_sql(grant, caseload)
        if sql is not None:
            parts.append(f"({sql})")
    if not parts:
        return EMPTY_SCOPE
    return (
        "SELECT DISTINCT CAST(person_id AS VARCHAR) AS person_id FROM ("  # noqa: S608
        + " UNION ALL ".join(parts)
        + ") scope WHERE person_id IS NOT NULL"
    )


def section_scope_sql(principal: Principal) -> str:
    """A ``SELECT DISTINCT section_id`` of the sections the principal may view as sections."""
    parts: list[str] = []
    for grant in sorted(principal.grants, key=str):
        target = grant.target or ""
        if grant.role == "teacher":
            parts.append(
                "SELECT section_id FROM enrollment WHERE role = 'teacher' "  # noqa: S608
                f"AND person_id = {quote_literal(target)}"
            )
        elif grant.role == "principal":
            parts.append(f"SELECT section_id FROM section WHERE school_id = {quote_literal(target)}")  # noqa: S608
        elif grant.role == "district_admin":
            parts.append(f"SELECT section_id FROM section WHERE school_id IN {_schools_of(target)}")  # noqa: S608
    if not parts:
        return "SELECT NULL::VARCHAR AS section_id WHERE false"
    return "SELECT DISTINCT section_id FROM (" + " UNION ALL ".join(f"({p})" for p in parts) + ") scope"  # noqa: S608


def scoped_students(
    con: duckdb.DuckDBPyConnection, principal: Principal, store: GovernanceStore
) -> pd.DataFrame:
    """The person_ids in scope, as a one-column frame sorted by id."""
    return con.sql(f"SELECT person_id FROM ({student_scope_sql(principal, store)}) ORDER BY 1").df()  # noqa: S608


def can_view_student(
    con: duckdb.DuckDBPyConnection, principal: Principal, store: GovernanceStore, person_id: str
) -> bool:
    """Whether ``person_id`` is in the principal's student scope."""
    row = con.execute(
        f"SELECT count(*) FROM ({student_scope_sql(principal, store)}) WHERE person_id = ?",  # noqa: S608
        [person_id],
    ).fetchone()
    return bool(row and row[0])


def school_scope(principal: Principal, con: duckdb.DuckDBPyConnection) -> set[str]:
    """Org ids of the schools whose (suppressed) aggregates the principal may see."""
    if "state_analyst" in principal.roles():
        rows = con.execute("SELECT org_id FROM organization WHERE org_type = 'school'").fetchall()
        return {r[0] for r in rows}
    out: set[str] = set()
    for grant in principal.grants:
        if grant.role == "principal" and grant.target:
            out.add(grant.target)
        elif grant.role == "district_admin" and grant.target:
            rows = con.execute(
                f"SELECT org_id FROM organization WHERE org_type = 'school' AND org_id IN "  # noqa: S608
                f"{_schools_of(grant.target)}"
            ).fetchall()
            out.update(r[0] for r in rows)
    return out


def sees_identifiers(principal: Principal) -> bool:
    """Whether the principal may see direct identifiers (names, birth date, ids) at all."""
    return allowed(principal, "view_student")


def redact_identifiers(frame: pd.DataFrame, principal: Principal) -> pd.DataFrame:
    """``frame`` without the direct-identifier columns unless the principal may see students."""
    if sees_identifiers(principal):
        return frame
    return frame.drop(columns=[c for c in frame.columns if c in PII_COLUMNS])


__all__ = [
    "ACTIONS",
    "EMPTY_SCOPE",
    "PII_COLUMNS",
    "ROLES",
    "ROLE_ACTIONS",
    "allowed",
    "can_view_student",
    "grant_allows",
    "grant_student_sql",
    "redact_identifiers",
    "school_scope",
    "scoped_students",
    "section_scope_sql",
    "sees_identifiers",
    "student_scope_sql",
]
