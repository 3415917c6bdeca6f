"""Role scoping (GOVERNANCE.md rows 2, 3 and 5): SQL scope equals an oracle; unions never widen."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edsight.governance.identity import ROLES, TARGET_ROLES, GovernanceStore, Grant, Principal
from edsight.governance.scopes import (
    ACTIONS,
    EMPTY_SCOPE,
    allowed,
    can_view_student,
    grant_allows,
    redact_identifiers,
    school_scope,
    section_scope_sql,
    student_scope_sql,
)
from edsight.schema import CANONICAL

TABLES = ("organization", "person", "section", "enrollment", "school_enrollment")
SCHOOLS = ("s1", "s2", "s3", "s4")
DISTRICT_OF = {"s1": "d1", "s2": "d1", "s3": "d2", "s4": "d2"}
STUDENTS = (*(f"p{i}" for i in range(12)), "o'brien")  # a quote in an id stays a literal
TEACHERS = ("t1", "t2", "t3")
SECTIONS = tuple(f"c{i}" for i in range(6))


@dataclass
class Roster:
    section_school: dict[str, str]
    teaches: set[tuple[str, str]]  # (teacher, section)
    takes: set[tuple[str, str]]  # (student, section)
    attends: set[tuple[str, str]]  # (student, school)
    caseload: set[str] = field(default_factory=set)


rosters = st.builds(
    Roster,
    section_school=st.fixed_dictionaries({s: st.sampled_from(SCHOOLS) for s in SECTIONS}),
    teaches=st.sets(st.tuples(st.sampled_from(TEACHERS), st.sampled_from(SECTIONS)), max_size=8),
    takes=st.sets(st.tuples(st.sampled_from(STUDENTS), st.sampled_from(SECTIONS)), max_size=25),
    attends=st.sets(st.tuples(st.sampled_from(STUDENTS), st.sampled_from(SCHOOLS)), max_size=15),
    caseload=st.sets(st.sampled_from((*STUDENTS, "not-a-student")), max_size=5),
)
TARGETS = {
    "teacher": TEACHERS,
    "principal": SCHOOLS,
    "district_admin": ("d1", "d2", "nowhere"),
    "parent": (*STUDENTS[:4], "o'brien"),
}


@st.composite
def grants(draw: st.DrawFn) -> Grant:
    role = draw(st.sampled_from(ROLES))
    return Grant(role, draw(st.sampled_from(TARGETS[role])) if role in TARGET_ROLES else None)


grant_sets = st.frozensets(grants(), max_size=4)


def oracle(grant: Grant, roster: Roster) -> set[str]:
    """The students a grant reaches, computed in Python from the same relationships."""
    if grant.role == "teacher":
        sections = {s for t, s in roster.teaches if t == grant.target}
        return {p for p, s in roster.takes if s in sections}
    if grant.role == "counselor":
        return roster.caseload & set(STUDENTS)
    if grant.role in ("principal", "district_admin"):
        schools = (
            {grant.target}
            if grant.role == "principal"
            else {s for s, d in DISTRICT_OF.items() if d == grant.target}
        )
        by_section = {p for p, s in roster.takes if roster.section_school[s] in schools}
        return by_section | {p for p, s in roster.attends if s in schools}
    if grant.role == "parent":
        return {grant.target} if grant.target in STUDENTS else set()
    return set()


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    for name in TABLES:
        c.execute(CANONICAL[name].ddl())
    yield c
    c.close()


def insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple[object, ...]]) -> None:
    if rows:
        frame = pd.DataFrame(rows)
        con.register("_rows", frame)
        con.execute(f'INSERT INTO "{table}" SELECT * FROM _rows')
        con.unregister("_rows")


def load(con: duckdb.DuckDBPyConnection, roster: Roster) -> None:
    for name in TABLES:
        con.execute(f'DELETE FROM "{name}"')
    orgs = [("state", "Nation", "state", None)] + [(d, d, "district", "state") for d in ("d1", "d2")]
    orgs += [(s, s, "school", DISTRICT_OF[s]) for s in SCHOOLS]
    insert(con, "organization", [(*o, None, None, None) for o in orgs])
    people = [(p, "student", False) for p in STUDENTS] + [(t, "teacher", False) for t in TEACHERS]
    insert(con, "person", [(p, r, None, None, None, None, None, o) for p, r, o in people])
    insert(con, "section", [(s, "course", "term", school) for s, school in roster.section_school.items()])
    rows = [(s, t, "teacher") for t, s in roster.teaches] + [(s, p, "student") for p, s in roster.takes]
    start = pd.Timestamp("2024-09-01").date()
    insert(con, "enrollment", [(*r, start, None) for r in rows])
    insert(con, "school_enrollment", [(p, s, 2024, 6, start, None, None) for p, s in sorted(roster.attends)])


def scope(con: duckdb.DuckDBPyConnection, principal: Principal, store: GovernanceStore) -> set[str]:
    return {r[0] for r in con.execute(student_scope_sql(principal, store)).fetchall()}


def principal_with(store: GovernanceStore, account: str, granted: frozenset[Grant]) -> Principal:
    return Principal(account, "u", granted, mfa=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(roster=rosters, a=grant_sets, b=grant_sets)
def test_scope_equals_oracle_and_union_never_widens(
    con: duckdb.DuckDBPyConnection,
    store: GovernanceStore,
    roster: Roster,
    a: frozenset[Grant],
    b: frozenset[Grant],
) -> None:
    load(con, roster)
    account = "counselor-account"
    store.set_caseload(account, roster.caseload)
    pa, pb, pab = (principal_with(store, account, g) for g in (a, b, a | b))
    expected_a = set().union(*(oracle(g, roster) for g in a))
    expected_b = set().union(*(oracle(g, roster) for g in b))
    assert scope(con, pa, store) == expected_a
    assert scope(con, pb, store) == expected_b
    assert scope(con, pab, store) == expected_a | expected_b  # the union of grants, never wider
    for action in ACTIONS:
        for resource in (None, "p1", "s1"):
            if allowed(pab, action, resource):
                assert allowed(pa, action, resource) or allowed(pb, action, resource)


@pytest.fixture(autouse=True)
def counselor_account(store: GovernanceStore) -> None:
    store.connection.execute(
        "INSERT INTO account (account_id, username, password_hash, created_at) "
        "VALUES ('counselor-account', 'cora', 'x', '2024-01-01')"
    )


def test_teacher_plus_parent_stays_section_limited(
    con: duckdb.DuckDBPyConnection, store: GovernanceStore
) -> None:
    roster = Roster(
        section_school=dict.fromkeys(SECTIONS, "s1"),
        teaches={("t1", "c0")},
        takes={("p1", "c0"), ("p2", "c1"), ("p3", "c0")},
        attends={("p4", "s1")},
    )
    load(con, roster)
    both = principal_with(store, "x", frozenset({Grant("teacher", "t1"), Grant("parent", "p5")}))
    assert scope(con, both, store) == {"p1", "p3", "p5"}
    assert can_view_student(con, both, store, "p1")
    assert not can_view_student(con, both, store, "p2")
    assert {r[0] for r in con.execute(section_scope_sql(both)).fetchall()} == {"c0"}
    assert not allowed(both, "view_school_aggregates")
    assert allowed(both, "view_disclosures", "p5")
    assert not allowed(both, "view_disclosures", "p1")


def test_aggregate_roles_see_no_student_and_no_identifiers(
    con: duckdb.DuckDBPyConnection, store: GovernanceStore
) -> None:
    load(
        con,
        Roster(
            section_school=dict.fromkeys(SECTIONS, "s1"), teaches=set(), takes=set(), attends={("p1", "s1")}
        ),
    )
    for role in ("state_analyst", "researcher"):
        p = principal_with(store, "x", frozenset({Grant(role)}))
        assert student_scope_sql(p, store) == EMPTY_SCOPE
        assert scope(con, p, store) == set()
        assert not allowed(p, "view_student")
        frame = pd.DataFrame(
            {
                "person_id": ["p1"],
                "given_name": ["Ann"],
                "family_name": ["Lee"],
                "birth_date": ["2010-01-01"],
                "local_id": ["1001"],
                "state_id": ["S1"],
                "grade_level": [6],
            }
        )
        assert list(redact_identifiers(frame, p).columns) == ["person_id", "grade_level"]
    analyst = principal_with(store, "x", frozenset({Grant("state_analyst")}))
    assert school_scope(analyst, con) == set(SCHOOLS)
    district = principal_with(store, "x", frozenset({Grant("district_admin", "d2")}))
    assert school_scope(district, con) == {"s3", "s4"}
    assert grant_allows(Grant("principal", "s1"), "view_school_aggregates", "s1")
    assert not grant_allows(Grant("principal", "s1"), "view_school_aggregates", "s2")
