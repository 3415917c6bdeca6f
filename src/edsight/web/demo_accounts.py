"""Demo accounts, one per role, over real relationships in the warehouse.

The teacher is the one with the most students in the latest school year, the principal runs
the largest school, the district administrator the district that holds it, the counselor's
caseload is 25 students of that school (highest current risk first), and the parent's child
is a student of the demo teacher. Passwords are random; staff accounts get a TOTP secret
(printed by ``make demo`` so the codes can be generated with any authenticator app or with
``python -c "import pyotp; print(pyotp.TOTP('<secret>').now())"``).
"""

from __future__ import annotations

import secrets
from typing import NamedTuple

import duckdb
import pyotp

from edsight.errors import WarehouseError
from edsight.governance.identity import STAFF_ROLES, GovernanceStore, Grant

CASELOAD_SIZE = 25
DEMO_ROLES = ("teacher", "counselor", "principal", "district_admin", "state_analyst", "researcher", "parent")
_ROLE_NAMES = frozenset(r.replace("_", "-") for r in DEMO_ROLES)


class DemoAccount(NamedTuple):
    """A demo login: ``(username, password, role)`` plus the TOTP secret of staff accounts."""

    username: str
    password: str
    role: str
    totp_secret: str | None = None


def _one(con: duckdb.DuckDBPyConnection, sql: str, what: str, params: list[object] | None = None) -> str:
    rows = con.execute(sql, params or []).fetchall()
    if not rows or rows[0][0] is None:
        raise WarehouseError(f"demo accounts: the warehouse has no {what}; load a district first")
    return str(rows[0][0])


def demo_targets(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """The warehouse ids the demo accounts are granted (teacher, school, district, caseload, child)."""
    year = "(SELECT max(school_year) FROM school_enrollment)"
    teacher = _one(
        con,
        f"""SELECT t.person_id FROM enrollment t JOIN section s ON s.section_id = t.section_id
            JOIN term tm ON tm.term_id = s.term_id
            JOIN enrollment e ON e.section_id = t.section_id AND e.role = 'student'
            WHERE t.role = 'teacher' AND tm.school_year = {year}
            GROUP BY 1 ORDER BY count(DISTINCT e.person_id) DESC, 1 LIMIT 1""",
        "teacher with students",
    )
    school = _one(
        con,
        f"""SELECT school_id FROM school_enrollment WHERE school_year = {year}
            GROUP BY 1 ORDER BY count(DISTINCT person_id) DESC, 1 LIMIT 1""",
        "school enrolment",
    )
    district = _one(con, "SELECT parent_org_id FROM organization WHERE org_id = ?", "district", [school])
    caseload = [
        str(r[0])
        for r in con.execute(
            f"""SELECT e.person_id FROM school_enrollment e
                LEFT JOIN (SELECT person_id, max(probability) AS p FROM risk_score GROUP BY 1) r
                ON r.person_id = e.person_id
                WHERE e.school_id = ? AND e.school_year = {year}
                GROUP BY e.person_id ORDER BY max(r.p) DESC NULLS LAST, e.person_id LIMIT {CASELOAD_SIZE}""",
            [school],
        ).fetchall()
    ]
    child = _one(
        con,
        f"""SELECT e.person_id FROM enrollment e JOIN enrollment t ON t.section_id = e.section_id
            AND t.role = 'teacher' AND t.person_id = ? JOIN section s ON s.section_id = e.section_id
            JOIN term tm ON tm.term_id = s.term_id
            WHERE e.role = 'student' AND tm.school_year = {year} ORDER BY e.person_id LIMIT 1""",
        "student of the demo teacher",
        [teacher],
    )
    return {"teacher": teacher, "school": school, "district": district, "caseload": caseload, "child": child}


def free_prefix(store: GovernanceStore, base: str = "demo-") -> str:
    """``demo-`` or, when demo accounts exist already, ``demo-2-``, ``demo-3-`` ..."""
    taken = {str(a["username"]) for a in store.accounts()}
    prefix, n = base, 1
    while any(name.startswith(prefix) and name[len(prefix) :] in _ROLE_NAMES for name in taken):
        n += 1
        prefix = f"{base}{n}-"
    return prefix


def create_demo_accounts(
    store: GovernanceStore, con: duckdb.DuckDBPyConnection, *, prefix: str = "demo-"
) -> list[DemoAccount]:
    """Create one account per role (usernames ``demo-teacher`` ...); return their credentials."""
    t = demo_targets(con)
    grants = {
        "teacher": Grant("teacher", str(t["teacher"])),
        "counselor": Grant("counselor"),
        "principal": Grant("principal", str(t["school"])),
        "district_admin": Grant("district_admin", str(t["district"])),
        "state_analyst": Grant("state_analyst"),
        "researcher": Grant("researcher"),
        "parent": Grant("parent", str(t["child"])),
    }
    out: list[DemoAccount] = []
    for role, grant in grants.items():
        username = f"{prefix}{role.replace('_', '-')}"
        password = secrets.token_urlsafe(15)
        totp = pyotp.random_base32(32) if role in STAFF_ROLES else None
        account_id = store.create_account(username, password, [grant], totp_secret=totp)
        if role == "counselor":
            store.set_caseload(account_id, [str(p) for p in t["caseload"]])  # type: ignore[attr-defined]
        out.append(DemoAccount(username, password, role, totp))
    return out


__all__ = ["DEMO_ROLES", "DemoAccount", "create_demo_accounts", "demo_targets", "free_prefix"]
