"""OneRoster rows, validated as themselves, mapped to canonical relations.

The mapper runs inside the load's transaction, after the source files were
validated. It first rejects rows that cannot be mapped, naming the source file,
row and column (a reference to a class, user, course, org or session that is
neither in this export nor loaded before; a 1.2 user without a role), then adds
one relation per canonical table. Lookups go to this export first and to the
warehouse second, because a delta file refers to rows loaded earlier.

Ids come from :mod:`edsight.ingest.ids` (system ``oneroster``), except for a
student a non-roster source created first: a OneRoster student whose
``identifier`` (the SIS student number) is the ``local_id`` of exactly one such
person takes that person over, so the student's history stays on one person.
Columns OneRoster does not carry (state ids, directory opt-out, program flags,
school levels, credits) keep the values the warehouse has.

SQL here is assembled from names declared in :mod:`edsight.schema` and in
:mod:`._oneroster_tables`; values from files stay data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edsight.ingest._oneroster_common import NOT_DELETED, reject_rows, table_exists, value_case
from edsight.ingest._oneroster_delta import ENTITY_OF_FILE, SYSTEM
from edsight.ingest._oneroster_tables import (
    ENROLLMENT_ROLE_MAP,
    GRADE_CODES,
    ORG_TYPE_MAP,
    PERSON_ROLE_MAP,
    RACE_FLAGS,
    SESSION_TYPE_MAP,
    SEX_MAP,
    files_for,
    source_tables,
)
from edsight.ingest.batch import Mapper
from edsight.ingest.ids import edsight_id_sql
from edsight.ingest.quarantine import BatchValidator
from edsight.schema import Table
from edsight.sql import quote_ident, quote_literal


@dataclass(frozen=True)
class _Ref:
    """A column of ``file`` naming rows of ``parent`` (``many``: a comma list of them)."""

    file: str
    column: str
    parent: str
    label: str
    many: bool = False
    expr: str | None = None


REFERENCES = (
    _Ref("orgs", "parentSourcedId", "orgs", "org"),
    _Ref("academicSessions", "parentSourcedId", "academicSessions", "academic session"),
    _Ref("classes", "courseSourcedId", "courses", "course"),
    _Ref("classes", "schoolSourcedId", "orgs", "org"),
    _Ref("classes", "termSourcedIds", "academicSessions", "academic session", many=True),
    _Ref("roles", "userSourcedId", "users", "user"),
    _Ref("demographics", "sourcedId", "users", "user", expr="coalesce(userSourcedId, sourcedId)"),
    _Ref("enrollments", "classSourcedId", "classes", "class"),
    _Ref("enrollments", "userSourcedId", "users", "user"),
)


def _id(entity: str, expr: str) -> str:
    return edsight_id_sql(SYSTEM, entity, expr)


def _list(expr: str) -> str:
    """The values of a OneRoster multi-valued cell (a comma list) as a SQL list."""
    return f"list_filter(list_transform(string_split({expr}, ','), lambda x: trim(x)), lambda x: x <> '')"


def _first(expr: str) -> str:
    return f"{_list(expr)}[1]"


def _grade(expr: str) -> str:
    """A CEDS grade code as a canonical grade level (null when it is not a grade)."""
    code = f"upper(trim({expr}))"
    number = f"try_cast({code} AS INTEGER)"
    return f"coalesce({value_case(code, GRADE_CODES)}, CASE WHEN {number} BETWEEN 1 AND 13 THEN {number} END)"


def oneroster_mapper(version: str) -> Mapper:
    """The mapper of a OneRoster ``version`` package (see the module docstring)."""

    def mapper(source: BatchValidator, target: BatchValidator) -> None:
        _Mapping(source, target, version).run()

    return mapper


class _Mapping:
    def __init__(self, source: BatchValidator, target: BatchValidator, version: str) -> None:
        self.source = source
        self.target = target
        self.version = version
        self.con = source.con
        self.have = {f for f in files_for(version) if f in source.reports}
        self.tables: Mapping[str, Table] = source.tables

    # -- relations of the source files --------------------------------------------

    def st(self, file: str) -> str:
        """The valid rows of ``file``, or an empty relation of its declared columns."""
        if file in self.have:
            return self.source.stage(file)
        cols = ", ".join(
            f"NULL::{c.sql_type} AS {quote_ident(c.name)}" for c in self._declaration(file).columns
        )
        return f"(SELECT NULL::VARCHAR AS __file, NULL::BIGINT AS __row, {cols} LIMIT 0)"

    def raw(self, file: str) -> str | None:
        """Every row of ``file`` as read (all text), when any was staged."""
        name = self.source.raw(file)
        return name if file in self.have and table_exists(self.source, name) else None

    def _declaration(self, file: str) -> Table:
        if file in self.tables:
            return self.tables[file]
        return source_tables(self.version, {file: "bulk"})[file]

    def run(self) -> None:
        self._user_roles()
        if self.version == "1.2" and "users" in self.have:
            self._reject_users_without_role()
        for ref in REFERENCES:
            if ref.file in self.have:
                self._check_reference(ref)
        self._reject_repeated_demographics()
        self._people()
        # Only tables this export has rows for get a relation (a delta may hold one file).
        have = self.have
        if "orgs" in have:
            self._organizations()
        if "academicSessions" in have:
            self._terms()
        if "courses" in have:
            self._courses()
        if "classes" in have:
            self._sections()
        if have & {"users", "demographics", "roles"}:
            self._persons()
        if "demographics" in have:
            self._demographics()
        if "enrollments" in have:
            self._enrollments()
        self._id_map()

    def _exec(self, sql: str) -> None:
        self.con.execute(sql)

    # -- rejections ---------------------------------------------------------------

    def _check_reference(self, ref: _Ref) -> None:
        entity = ENTITY_OF_FILE[ref.parent]
        ids = _list(ref.column) if ref.many else f"[{ref.expr or ref.column}]"
        raw = self.raw(ref.parent)
        gone = (
            f"SELECT sourcedId AS id FROM {raw} WHERE status = 'tobedeleted'"  # noqa: S608
            if raw
            else "SELECT NULL::VARCHAR AS id WHERE false"
        )
        seen = f"SELECT sourcedId AS id FROM {raw}" if raw else "SELECT NULL::VARCHAR AS id WHERE false"  # noqa: S608
        unknown = f"no {ref.label} with this sourcedId in {ref.parent}.csv or loaded before"
        quarantined = f"refers to a {ref.label} that was quarantined (see {ref.parent}.csv)"
        deleted = f"refers to a {ref.label} marked tobedeleted in {ref.parent}.csv"
        bad = (
            f"WITH refs AS (SELECT __file, __row, unnest({ids}) AS id FROM {self.st(ref.file)} "  # noqa: S608
            f"WHERE {NOT_DELETED}), "
            f"ok AS (SELECT sourcedId AS id FROM {self.st(ref.parent)} WHERE {NOT_DELETED} "
            f"UNION SELECT source_id FROM main.id_map WHERE source_system = '{SYSTEM}' "
            f"AND entity = {quote_literal(entity)}), gone AS ({gone}), seen AS ({seen}), "
            "flags AS (SELECT __file, __row, id IN (SELECT id FROM gone) AS is_gone, "
            "id IN (SELECT id FROM seen) AS is_seen, id IN (SELECT id FROM ok) AS is_ok "
            "FROM refs WHERE id IS NOT NULL) "
            f"SELECT __file, __row, CASE WHEN bool_or(is_gone) THEN {quote_literal(deleted)} "
            f"WHEN bool_or(is_seen) THEN {quote_literal(quarantined)} ELSE {quote_literal(unknown)} END "
            "AS reason FROM flags WHERE is_gone OR NOT is_ok GROUP BY __file, __row"
        )
        reject_rows(self.source, ref.file, bad, ref.column)

    def _reject_users_without_role(self) -> None:
        reason = (
            "no role for this user: OneRoster 1.2 keeps roles in roles.csv, which has none for it, "
            "and it was not loaded before"
        )
        bad = (
            f"SELECT u.__file, u.__row, {quote_literal(reason)} AS reason FROM {self.st('users')} u "  # noqa: S608
            "LEFT JOIN or_user_role r ON r.user_id = u.sourcedId "
            f"LEFT JOIN main.id_map m ON m.source_system = '{SYSTEM}' AND m.entity = 'person' "
            "AND m.source_id = u.sourcedId LEFT JOIN main.person old ON old.person_id = m.edsight_id "
            f"WHERE u.{NOT_DELETED} AND r.role IS NULL AND old.role IS NULL"
        )
        reject_rows(self.source, "users", bad, "sourcedId")

    def _reject_repeated_demographics(self) -> None:
        if "demographics" not in self.have:
            return
        reason = "another row of demographics.csv already describes this user"
        bad = (
            f"SELECT __file, __row, {quote_literal(reason)} AS reason FROM (SELECT __file, __row, "  # noqa: S608
            "row_number() OVER (PARTITION BY coalesce(userSourcedId, sourcedId) ORDER BY __file, __row) AS n "
            f"FROM {self.st('demographics')} WHERE {NOT_DELETED}) WHERE n > 1"
        )
        reject_rows(self.source, "demographics", bad, "userSourcedId")

    # -- people ---------------------------------------------------------------------

    def _user_roles(self) -> None:
        if self.version == "1.1":
            role = value_case("role", PERSON_ROLE_MAP)
            sql = f"SELECT sourcedId AS user_id, {role} AS role FROM {self.st('users')} WHERE {NOT_DELETED}"  # noqa: S608
        else:
            role = value_case("role", PERSON_ROLE_MAP)
            sql = (
                f"SELECT userSourcedId AS user_id, first({role} ORDER BY roleType <> 'primary', role) "  # noqa: S608
                f"AS role FROM {self.st('roles')} WHERE {NOT_DELETED} AND {role} IS NOT NULL "
                "GROUP BY userSourcedId"
            )
        self._exec(f"CREATE OR REPLACE TEMP TABLE or_user_role AS {sql}")

    def _people(self) -> None:
        """or_person_ref (user sourcedId -> person_id) and or_demo (demographics by user)."""
        users = self.st("users")
        self._exec(
            "CREATE OR REPLACE TEMP TABLE or_person_ref AS "  # noqa: S608
            f"WITH u AS (SELECT sourcedId AS user_id, identifier FROM {users} WHERE {NOT_DELETED}), "
            "adopt AS (SELECT local_id, min(person_id) AS person_id FROM main.person p "
            "WHERE role = 'student' AND local_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM main.id_map m "
            f"WHERE m.source_system = '{SYSTEM}' AND m.entity = 'person' AND m.edsight_id = p.person_id) "
            "GROUP BY local_id HAVING count(*) = 1) "
            "SELECT u.user_id AS source_id, coalesce(m.edsight_id, "
            f"CASE WHEN r.role = 'student' THEN a.person_id END, {_id('person', 'u.user_id')}) AS person_id "
            f"FROM u LEFT JOIN main.id_map m ON m.source_system = '{SYSTEM}' AND m.entity = 'person' "
            "AND m.source_id = u.user_id LEFT JOIN or_user_role r ON r.user_id = u.user_id "
            "LEFT JOIN adopt a ON a.local_id = u.identifier "
            "UNION ALL SELECT source_id, edsight_id FROM main.id_map "
            f"WHERE source_system = '{SYSTEM}' AND entity = 'person' "
            "AND source_id NOT IN (SELECT user_id FROM u)"
        )
        flags = ", ".join(quote_ident(f) for f, _ in RACE_FLAGS)
        self._exec(
            "CREATE OR REPLACE TEMP TABLE or_demo AS SELECT __file, __row, "  # noqa: S608
            "coalesce(userSourcedId, sourcedId) AS user_id, birthDate, sex, "
            f"{flags}, demographicRaceTwoOrMoreRaces, hispanicOrLatinoEthnicity "
            f"FROM {self.st('demographics')} WHERE {NOT_DELETED}"
        )

    def _persons(self) -> None:
        role = "coalesce(ur.role, old.role)"
        birth = "CASE WHEN d.user_id IS NOT NULL THEN d.birthDate ELSE old.birth_date END"
        from_users = (
            f"SELECT u.__file, u.__row, r.person_id, {role} AS role, u.givenName AS given_name, "  # noqa: S608
            f"u.familyName AS family_name, {birth} AS birth_date, "
            "coalesce(u.identifier, old.local_id) AS local_id, old.state_id, "
            "coalesce(old.directory_opt_out, false) AS directory_opt_out "
            f"FROM {self.st('users')} u JOIN or_person_ref r ON r.source_id = u.sourcedId "
            "LEFT JOIN or_user_role ur ON ur.user_id = u.sourcedId "
            "LEFT JOIN or_demo d ON d.user_id = u.sourcedId "
            f"LEFT JOIN main.person old ON old.person_id = r.person_id WHERE u.{NOT_DELETED}"
        )
        # People this export changes only through demographics (birth date) or 1.2 roles.
        touched = ["SELECT user_id, __file, __row FROM or_demo"]
        if self.version == "1.2":
            touched.append(
                f"SELECT userSourcedId, __file, __row FROM {self.st('roles')} WHERE {NOT_DELETED}"  # noqa: S608
            )
        users_raw = self.raw("users")
        not_in_users = (
            f"WHERE x.user_id NOT IN (SELECT sourcedId FROM {users_raw})"  # noqa: S608
            if users_raw
            else ""
        )
        from_others = (
            "SELECT x.__file, x.__row, old.person_id, "  # noqa: S608
            f"{role} AS role, old.given_name, old.family_name, {birth} AS birth_date, old.local_id, "
            "old.state_id, old.directory_opt_out FROM (SELECT user_id, first(__file ORDER BY __file, __row) "
            "AS __file, first(__row ORDER BY __file, __row) AS __row FROM "
            f"({' UNION ALL '.join(touched)}) GROUP BY user_id) x "
            "JOIN or_person_ref r ON r.source_id = x.user_id "
            "JOIN main.person old ON old.person_id = r.person_id "
            "LEFT JOIN or_user_role ur ON ur.user_id = x.user_id "
            f"LEFT JOIN or_demo d ON d.user_id = x.user_id {not_in_users}"
        )
        # One relation per table: the validator names its inputs by position.
        self.target.add_relation("person", f"{from_users} UNION ALL {from_others}", "users.csv")

    def _demographics(self) -> None:
        flags = [f"coalesce(d.{quote_ident(f)}::INTEGER, 0)" for f, _ in RACE_FLAGS]
        singles = " ".join(f"WHEN d.{quote_ident(f)} THEN {quote_literal(v)}" for f, v in RACE_FLAGS)
        race = (
            "CASE WHEN d.hispanicOrLatinoEthnicity THEN 'hispanic' "
            f"WHEN coalesce(d.demographicRaceTwoOrMoreRaces, false) OR ({' + '.join(flags)}) >= 2 "
            f"THEN 'multiracial' {singles} END"
        )
        person = "coalesce(r.person_id, " + _id("person", "d.user_id") + ")"
        self.target.add_relation(
            "student_demographics",
            f"SELECT d.__file, d.__row, {person} AS person_id, {value_case('d.sex', SEX_MAP)} AS sex, "  # noqa: S608
            f"{race} AS race_ethnicity, old.economically_disadvantaged, old.english_learner, old.disability "
            "FROM or_demo d LEFT JOIN or_person_ref r ON r.source_id = d.user_id "
            f"LEFT JOIN main.student_demographics old ON old.person_id = {person}",
            "demographics.csv",
        )

    # -- organisations, sessions, courses, classes, enrollments --------------------

    def _organizations(self) -> None:
        org = _id("organization", "o.sourcedId")
        self.target.add_relation(
            "organization",
            f"SELECT o.__file, o.__row, {org} AS org_id, o.name, "  # noqa: S608
            f"{value_case('o.' + quote_ident('type'), ORG_TYPE_MAP)} AS org_type, "
            f"{_id('organization', 'o.parentSourcedId')} AS parent_org_id, old.school_level, "
            f"old.grade_low, old.grade_high FROM {self.st('orgs')} o "
            f"LEFT JOIN main.organization old ON old.org_id = {org} WHERE o.{NOT_DELETED}",
            "orgs.csv",
        )

    def _terms(self) -> None:
        self.target.add_relation(
            "term",
            f"SELECT __file, __row, {_id('term', 'sourcedId')} AS term_id, title AS name, "  # noqa: S608
            f"{value_case(quote_ident('type'), SESSION_TYPE_MAP)} AS term_type, "
            # OneRoster's schoolYear is the year the school year ends; edsight keeps the fall year.
            "schoolYear - 1 AS school_year, startDate AS start_date, endDate AS end_date, "
            f"{_id('term', 'parentSourcedId')} AS parent_term_id "
            f"FROM {self.st('academicSessions')} WHERE {NOT_DELETED}",
            "academicSessions.csv",
        )

    def _courses(self) -> None:
        course = _id("course", "c.sourcedId")
        grades = f"list_transform(string_split(c.grades, ','), lambda g: {_grade('g')})"
        self.target.add_relation(
            "course",
            f"SELECT c.__file, c.__row, {course} AS course_id, c.title, "  # noqa: S608
            f"coalesce({_first('c.subjects')}, old.subject) AS subject, "
            f"coalesce(list_min({grades}), old.grade_low) AS grade_low, "
            f"coalesce(list_max({grades}), old.grade_high) AS grade_high, old.credits "
            f"FROM {self.st('courses')} c LEFT JOIN main.course old ON old.course_id = {course} "
            f"WHERE c.{NOT_DELETED}",
            "courses.csv",
        )

    def _sections(self) -> None:
        # A class listing several terms is placed in the first one listed.
        term = _id("term", _first("termSourcedIds"))
        self.target.add_relation(
            "section",
            f"SELECT __file, __row, {_id('section', 'sourcedId')} AS section_id, "  # noqa: S608
            f"{_id('course', 'courseSourcedId')} AS course_id, {term} AS term_id, "
            f"{_id('organization', 'schoolSourcedId')} AS school_id "
            f"FROM {self.st('classes')} WHERE {NOT_DELETED}",
            "classes.csv",
        )

    def _enrollments(self) -> None:
        self._exec(
            f"CREATE OR REPLACE TEMP TABLE or_class_term AS SELECT {_id('section', 'sourcedId')} "  # noqa: S608
            f"AS section_id, {_id('term', _first('termSourcedIds'))} AS term_id "
            f"FROM {self.st('classes')} WHERE {NOT_DELETED}"
        )
        self._exec(
            "CREATE OR REPLACE TEMP TABLE or_term_start AS "  # noqa: S608
            f"SELECT {_id('term', 'sourcedId')} AS term_id, startDate AS start_date "
            f"FROM {self.st('academicSessions')} WHERE {NOT_DELETED}"
        )
        person = "coalesce(r.person_id, " + _id("person", "x.userSourcedId") + ")"
        term = "coalesce(bc.term_id, ws.term_id)"
        self.target.add_relation(
            "enrollment",
            "SELECT e.__file, e.__row, e.section_id, e.person_id, e.role, "  # noqa: S608
            # Without a beginDate the enrollment starts with its class's term.
            "coalesce(e.beginDate, bt.start_date, wt.start_date) AS start_date, e.endDate AS end_date "
            f"FROM (SELECT x.__file, x.__row, {_id('section', 'x.classSourcedId')} AS section_id, "
            f"{person} AS person_id, {value_case('x.role', ENROLLMENT_ROLE_MAP)} AS role, "
            f"x.beginDate, x.endDate FROM {self.st('enrollments')} x "
            f"LEFT JOIN or_person_ref r ON r.source_id = x.userSourcedId WHERE x.{NOT_DELETED}) e "
            "LEFT JOIN or_class_term bc ON bc.section_id = e.section_id "
            "LEFT JOIN main.section ws ON ws.section_id = e.section_id "
            f"LEFT JOIN or_term_start bt ON bt.term_id = {term} "
            f"LEFT JOIN main.term wt ON wt.term_id = {term}",
            "enrollments.csv",
        )

    def _id_map(self) -> None:
        parts = []
        for file, entity in ENTITY_OF_FILE.items():
            if file == "users" or file not in self.have:
                continue
            parts.append(
                f"SELECT __file, __row, '{SYSTEM}' AS source_system, {quote_literal(entity)} AS entity, "  # noqa: S608
                f"sourcedId AS source_id, {_id(entity, 'sourcedId')} AS edsight_id "
                f"FROM {self.st(file)} WHERE {NOT_DELETED}"
            )
        if "orgs" in self.have:
            # The SIS's own school codes, so attendance and discipline files can name a school by them.
            parts.append(
                "SELECT __file || ' (identifier)' AS __file, __row, 'sis' AS source_system, "  # noqa: S608
                f"'organization' AS entity, identifier AS source_id, {_id('organization', 'sourcedId')} "
                f"AS edsight_id FROM {self.st('orgs')} WHERE {NOT_DELETED} AND identifier IS NOT NULL"
            )
        if "users" in self.have:
            parts.append(
                f"SELECT u.__file, u.__row, '{SYSTEM}' AS source_system, 'person' AS entity, "  # noqa: S608
                f"u.sourcedId AS source_id, r.person_id AS edsight_id FROM {self.st('users')} u "
                f"JOIN or_person_ref r ON r.source_id = u.sourcedId WHERE u.{NOT_DELETED}"
            )
        if "enrollments" in self.have:
            parts.append(
                f"SELECT __file, __row, '{SYSTEM}' AS source_system, 'enrollment' AS entity, "  # noqa: S608
                f"sourcedId AS source_id, {_id('enrollment', 'sourcedId')} AS edsight_id "
                f"FROM {self.st('enrollments')} WHERE {NOT_DELETED}"
            )
        if parts:
            self.target.add_relation("id_map", " UNION ALL ".join(parts), "id_map")
