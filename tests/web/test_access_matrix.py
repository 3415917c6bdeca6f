"""Every role x every route x an in-scope and an out-of-scope student: the expected status, and
not one student row outside the role's scope in any response (0 leaks).

The scope each role should have is recomputed here from the warehouse with SQL written for the
test, independently of edsight.governance, and the expected status of each route is written
out as a table, so a widening of either the scope SQL or the permissions shows up as a failure.
"""

from __future__ import annotations

import re

import pytest

from .conftest import WebWorld

ROLES = ("teacher", "counselor", "principal", "district_admin", "state_analyst", "researcher", "parent")

# route -> roles that get 200 (everyone else: 403). Student and school routes are separate.
PLAIN_ROUTES: dict[str, set[str]] = {
    "/sections": {"teacher", "principal", "district_admin"},
    "/caseload": {"teacher", "counselor", "principal", "district_admin", "parent"},
    "/alerts": {"teacher", "counselor", "principal", "district_admin", "parent"},
    "/interventions": {"teacher", "counselor", "principal", "district_admin"},
    "/district": {"district_admin", "state_analyst"},
    "/state": {"state_analyst"},
    "/models": set(ROLES) - {"parent"},
    "/research": {"district_admin", "researcher"},
    "/api/v1/me": set(ROLES),
    "/api/v1/students?limit=500": {"teacher", "counselor", "principal", "district_admin", "parent"},
    "/api/v1/sections": {"teacher", "principal", "district_admin"},
    "/api/v1/alerts?limit=500": {"teacher", "counselor", "principal", "district_admin", "parent"},
    "/api/v1/interventions?limit=500": {"teacher", "counselor", "principal", "district_admin"},
    "/api/v1/schools": {"principal", "district_admin", "state_analyst"},
    "/api/v1/trends": {"district_admin", "state_analyst"},
    "/api/v1/models": set(ROLES) - {"parent"},
}
STUDENT_ROLES = {"teacher", "counselor", "principal", "district_admin", "parent"}
STUDENT_ROUTES = ("/students/{}", "/api/v1/students/{}")
PERSON_ID = re.compile(r"S\d{8}|cv-per-[0-9a-f]{16}")


def expected_scope(world: WebWorld, role: str) -> set[str]:
    """The students ``role``'s demo account should reach, from first principles."""
    t = world.targets
    queries = {
        "teacher": (
            "SELECT e.person_id FROM enrollment e WHERE e.role = 'student' AND e.section_id IN "
            "(SELECT section_id FROM enrollment WHERE role = 'teacher' AND person_id = $x)",
            t["teacher"],
        ),
        "principal": (
            "SELECT person_id FROM school_enrollment WHERE school_id = $x UNION SELECT e.person_id "
            "FROM enrollment e JOIN section s USING (section_id) "
            "WHERE e.role = 'student' AND s.school_id = $x",
            t["school"],
        ),
        "district_admin": (
            "SELECT person_id FROM school_enrollment WHERE school_id IN (SELECT org_id FROM organization "
            "WHERE parent_org_id = $x) UNION SELECT e.person_id FROM enrollment e JOIN section s "
            "USING (section_id) JOIN organization o ON o.org_id = s.school_id WHERE e.role = 'student' "
            "AND o.parent_org_id = $x",
            t["district"],
        ),
    }
    if role == "counselor":
        return set(map(str, t["caseload"]))  # type: ignore[call-overload]
    if role == "parent":
        return {str(t["child"])}
    if role not in queries:
        return set()
    sql, x = queries[role]
    with world.warehouse() as con:
        return {r[0] for r in con.execute(sql, {"x": x}).fetchall()}


def all_students(world: WebWorld) -> set[str]:
    with world.warehouse() as con:
        return {r[0] for r in con.execute("SELECT person_id FROM person WHERE role = 'student'").fetchall()}


@pytest.fixture(scope="module")
def scopes(world: WebWorld) -> dict[str, set[str]]:
    return {role: expected_scope(world, role) for role in ROLES}


@pytest.mark.parametrize("role", ROLES)
def test_access_matrix(world: WebWorld, scopes: dict[str, set[str]], role: str) -> None:
    scope = scopes[role]
    everyone = all_students(world)
    outside = sorted(everyone - scope)
    assert outside, "the fixture must leave someone outside every scope"
    leaks: list[str] = []
    mismatches: list[str] = []
    client = world.client(role)

    def check(path: str, expected: int) -> None:
        response = client.get(path, follow_redirects=False)
        if response.status_code != expected:
            mismatches.append(f"{path}: {response.status_code} != {expected}")
        seen = set(PERSON_ID.findall(response.text))
        leaked = seen - scope
        if leaked:
            leaks.append(f"{path}: {len(leaked)} out-of-scope ids, e.g. {sorted(leaked)[:3]}")

    for path, ok_roles in PLAIN_ROUTES.items():
        check(path, 200 if role in ok_roles else 403)
    for template in STUDENT_ROUTES:
        if scope:
            check(template.format(sorted(scope)[0]), 200)
        # Out of scope: 404 (existence not revealed) for roles whose scope comes from warehouse
        # rows; 403 where the grant alone decides (a parent asking for another child) or the
        # role sees no student at all.
        refused = 404 if role in STUDENT_ROLES - {"parent"} else 403
        for other in (outside[0], outside[-1], "S99999999"):
            check(template.format(other), refused)
    # Sections: one the demo teacher teaches, and one outside the district (a Canvas course).
    with world.warehouse() as con:
        taught, taught_school = con.execute(
            "SELECT s.section_id, s.school_id FROM enrollment e JOIN section s USING (section_id) "
            "WHERE e.role = 'teacher' AND e.person_id = ? ORDER BY 1 LIMIT 1",
            [world.targets["teacher"]],
        ).fetchall()[0]
        foreign = con.execute(
            "SELECT section_id FROM section WHERE school_id NOT IN (SELECT org_id FROM organization "
            "WHERE parent_org_id = ?) ORDER BY 1 LIMIT 1",
            [world.targets["district"]],
        ).fetchall()[0][0]
    overseers = {"teacher", "district_admin"}
    if taught_school == world.targets["school"]:
        overseers.add("principal")
    section_roles = {"teacher", "principal", "district_admin"}
    for template in ("/sections/{}", "/api/v1/sections/{}/students"):
        expected = 200 if role in overseers else 404 if role in section_roles else 403
        check(template.format(taught), expected)
        check(template.format(foreign), 404 if role in section_roles else 403)
    # Schools: the principal's school and, for the district and state, every school.
    school_ok = 200 if role in {"principal", "district_admin", "state_analyst"} else 403
    check(f"/schools/{world.targets['school']}", school_ok)
    check(f"/api/v1/schools/{world.targets['school']}", school_ok)
    assert not mismatches, mismatches
    assert not leaks, leaks


def test_student_lists_return_the_whole_scope(world: WebWorld, scopes: dict[str, set[str]]) -> None:
    """Scoping is neither too wide nor too narrow: the paginated API lists exactly the scope."""
    for role in ("teacher", "counselor", "principal", "parent"):
        client = world.client(role)
        seen: list[str] = []
        offset: int | None = 0
        while offset is not None:
            body = client.get(f"/api/v1/students?limit=100&offset={offset}").json()
            seen += [row["person_id"] for row in body["items"]]
            offset = body["next_offset"]
        with world.warehouse() as con:
            rows = con.execute("SELECT person_id FROM person WHERE role = 'student'").fetchall()
        students = {r[0] for r in rows}
        assert len(seen) == len(set(seen)), f"{role}: a student appears on two pages"
        assert set(seen) == scopes[role] & students, role


def test_anonymous_gets_nothing(world: WebWorld) -> None:
    client = world.client(None)
    for path in [*PLAIN_ROUTES, "/students/S00000001", f"/schools/{world.targets['school']}"]:
        response = client.get(path, follow_redirects=False)
        if path.startswith("/api/"):
            assert response.status_code == 401, path
            assert response.json()["error"]["status"] == 401
        else:
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login?next=")
        assert not PERSON_ID.search(response.text)
