"""The OneRoster 1.1 and 1.2 CSV files edsight reads, declared as tables, and their vocabularies.

Columns and required flags follow the 1EdTech CSV binding as summarised in
``STANDARDS.md`` section 3. ``status`` and ``dateLastModified`` may be blank in a
bulk file but are required in a delta file, and ``tobedeleted`` belongs to delta
files only, so the declaration of a file depends on its mode: :func:`source_tables`
builds the declarations for one package from its version and the manifest's modes.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from edsight.schema import Column, ForeignKey, LogicalType, Table

VERSIONS = ("1.1", "1.2")
MODES = ("bulk", "delta")

# Roster files edsight maps, in load order (parents first). Gradebook and resource
# files are recognised and reported as not read.
ROSTER_FILES = (
    "orgs",
    "academicSessions",
    "courses",
    "classes",
    "users",
    "roles",
    "demographics",
    "enrollments",
)
OTHER_FILES = (
    "categories",
    "lineItems",
    "results",
    "resources",
    "classResources",
    "courseResources",
    "userResources",
    "userProfiles",
    "scoreScales",
    "lineItemLearningObjectiveIds",
    "lineItemScoreScales",
    "resultLearningObjectiveIds",
    "resultScoreScales",
)

ORG_TYPES = ("department", "school", "district", "local", "state", "national")
SESSION_TYPES = ("term", "gradingPeriod", "schoolYear", "semester")
CLASS_TYPES = ("homeroom", "scheduled")
ROLES_11 = ("teacher", "student", "parent", "guardian", "relative", "aide", "administrator")
ROLES_12 = (
    "aide",
    "counselor",
    "districtAdministrator",
    "guardian",
    "parent",
    "principal",
    "proctor",
    "relative",
    "siteAdministrator",
    "student",
    "systemAdministrator",
    "teacher",
)
ENROLLMENT_ROLES_12 = ("administrator", "proctor", "student", "teacher")
ROLE_TYPES = ("primary", "secondary")
SEX_11 = ("male", "female")
SEX_12 = ("male", "female", "unspecified", "other")
RACE_FLAGS = (
    ("americanIndianOrAlaskaNative", "american_indian"),
    ("asian", "asian"),
    ("blackOrAfricanAmerican", "black"),
    ("nativeHawaiianOrOtherPacificIslander", "pacific_islander"),
    ("white", "white"),
)

# OneRoster vocabulary -> canonical vocabulary (edsight.schema).
ORG_TYPE_MAP = {
    "district": "district",
    "school": "school",
    "state": "state",
    "department": "department",
    "local": "district",  # a local education agency: the district tier
    "national": "state",  # the canonical model's top tier
}
SESSION_TYPE_MAP = {
    "schoolYear": "school_year",
    "semester": "semester",
    "term": "term",
    "gradingPeriod": "grading_period",
}
PERSON_ROLE_MAP = {
    "student": "student",
    "teacher": "teacher",
    "aide": "aide",
    "administrator": "administrator",
    "counselor": "counselor",
    "principal": "principal",
    "parent": "parent",
    "guardian": "guardian",
    "relative": "guardian",  # the canonical model has no 'relative'; a household contact
    "districtAdministrator": "administrator",
    "siteAdministrator": "administrator",
    "systemAdministrator": "administrator",
    "proctor": "aide",
}
ENROLLMENT_ROLE_MAP = {
    "student": "student",
    "teacher": "teacher",
    "aide": "aide",
    "administrator": "administrator",
    "proctor": "aide",
    "parent": "observer",
    "guardian": "observer",
    "relative": "observer",
}
SEX_MAP = {"male": "M", "female": "F", "other": "X"}  # 'unspecified' stays unknown (null)
# CEDS grade codes used by OneRoster -> canonical grade levels (-1 = pre-K, 0 = K, 13 = post-secondary).
GRADE_CODES = {"IT": -1, "PR": -1, "PK": -1, "TK": -1, "KG": 0, "PS": 13}
CANONICAL_GRADES = {v: k for k, v in GRADE_CODES.items() if k in ("PK", "KG", "PS")}


def _s(name: str, *, req: bool = False, allowed: tuple[str, ...] | None = None, pii: bool = False) -> Column:
    return Column(name, "string", nullable=not req, allowed=allowed, pii=pii)


def _t(name: str, dtype: LogicalType, *, req: bool = False) -> Column:
    return Column(name, dtype, nullable=not req)


def _record(mode: str, version: str) -> tuple[Column, ...]:
    delta = mode == "delta"
    statuses = ["active"]
    if version == "1.1":
        statuses.append("inactive")
    if delta:
        statuses.append("tobedeleted")
    return (
        _s("sourcedId", req=True),
        _s("status", req=delta, allowed=tuple(statuses)),
        _t("dateLastModified", "timestamp", req=delta),
    )


def _orgs(version: str) -> tuple[Column, ...]:
    meta = (
        (_s("metadata.classification"), _s("metadata.gender"), _s("metadata.boarding"))
        if version == "1.1"
        else ()
    )
    return (
        _s("name", req=True),
        _s("type", req=True, allowed=ORG_TYPES),
        _s("identifier"),
        *meta,
        _s("parentSourcedId"),
    )


def _users(version: str) -> tuple[Column, ...]:
    common = (
        _t("enabledUser", "bool", req=True),
        _s("username", req=True, pii=True),
        _s("userIds", pii=True),
        _s("givenName", req=True, pii=True),
        _s("familyName", req=True, pii=True),
        _s("middleName", pii=True),
        _s("identifier", pii=True),
        _s("email", pii=True),
        _s("sms", pii=True),
        _s("phone", pii=True),
        _s("agentSourcedIds"),
        _s("grades"),
        _s("password", pii=True),
    )
    if version == "1.1":
        return (_s("orgSourcedIds", req=True), _s("role", req=True, allowed=ROLES_11), *common)
    return (
        *common,
        _s("userMasterIdentifier", pii=True),
        _s("preferredGivenName", pii=True),
        _s("preferredMiddleName", pii=True),
        _s("preferredFamilyName", pii=True),
        _s("primaryOrgSourcedId"),
        _s("pronouns", pii=True),
    )


def _columns(name: str, version: str) -> tuple[Column, ...]:
    if name == "orgs":
        return _orgs(version)
    if name == "academicSessions":
        return (
            _s("title", req=True),
            _s("type", req=True, allowed=SESSION_TYPES),
            _t("startDate", "date", req=True),
            _t("endDate", "date", req=True),
            _s("parentSourcedId"),
            Column("schoolYear", "int16", minimum=1901, maximum=2201),
        )
    if name == "courses":
        return (
            _s("schoolYearSourcedId"),
            _s("title", req=True),
            _s("courseCode"),
            _s("grades"),
            _s("orgSourcedId", req=True),
            _s("subjects"),
            _s("subjectCodes"),
        )
    if name == "classes":
        return (
            _s("title", req=True),
            _s("grades"),
            # Optional in some readers; edsight needs it (a section belongs to a course).
            _s("courseSourcedId", req=True),
            _s("classCode"),
            _s("classType", req=True, allowed=CLASS_TYPES),
            _s("location"),
            _s("schoolSourcedId", req=True),
            _s("termSourcedIds", req=True),
            _s("subjects"),
            _s("subjectCodes"),
            _s("periods"),
        )
    if name == "users":
        return _users(version)
    if name == "roles":
        return (
            _s("userSourcedId", req=True),
            _s("roleType", req=True, allowed=ROLE_TYPES),
            _s("role", req=True, allowed=ROLES_12),
            _t("beginDate", "date"),
            _t("endDate", "date"),
            _s("orgSourcedId", req=True),
            _s("userProfileSourcedId"),
        )
    if name == "demographics":
        return (
            _t("birthDate", "date"),
            _s("sex", allowed=SEX_11 if version == "1.1" else SEX_12),
            *(_t(flag, "bool") for flag, _ in RACE_FLAGS),
            _t("demographicRaceTwoOrMoreRaces", "bool"),
            _t("hispanicOrLatinoEthnicity", "bool"),
            _s("countryOfBirthCode"),
            _s("stateOfBirthAbbreviation"),
            _s("cityOfBirth"),
            _s("publicSchoolResidenceStatus"),
            # Not in the binding; some exporters name the user here instead of in sourcedId.
            _s("userSourcedId"),
        )
    if name == "enrollments":
        return (
            _s("classSourcedId", req=True),
            _s("schoolSourcedId", req=True),
            _s("userSourcedId", req=True),
            _s("role", req=True, allowed=ROLES_11 if version == "1.1" else ENROLLMENT_ROLES_12),
            _t("primary", "bool"),
            _t("beginDate", "date"),
            _t("endDate", "date"),
        )
    raise KeyError(name)


def files_for(version: str) -> tuple[str, ...]:
    """The roster files of ``version`` that edsight maps."""
    return tuple(f for f in ROSTER_FILES if version == "1.2" or f != "roles")


@cache
def _table(name: str, version: str, mode: str) -> Table:
    # References between files are checked by the mapper, against this export and the
    # warehouse together (a delta refers to rows loaded before), so none is declared here.
    no_fks: tuple[ForeignKey, ...] = ()
    return Table(
        name,
        (*_record(mode, version), *_columns(name, version)),
        ("sourcedId",),
        no_fks,
        f"OneRoster {version} {name}.csv ({mode})",
    )


def source_tables(version: str, modes: Mapping[str, str]) -> dict[str, Table]:
    """Declarations of the roster files of one package, given each file's manifest mode."""
    if version not in VERSIONS:
        raise ValueError(f"unsupported OneRoster version {version!r}")
    return {name: _table(name, version, modes[name]) for name in files_for(version) if name in modes}


def declared_columns(name: str, version: str) -> tuple[str, ...]:
    """Every column name of file ``name`` in ``version`` (the same in bulk and delta)."""
    return _table(name, version, "bulk").column_names
