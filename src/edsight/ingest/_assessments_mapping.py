"""The YAML mapping of a state test file, checked with pydantic (unknown keys are errors).

See :mod:`edsight.ingest._assessments_state` for what the mapping drives, and
docs/ingest-assessments.md for the format.
"""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from edsight.errors import InvalidInput

MAX_MAPPING_BYTES = 256 * 1024
MIN_YEAR, MAX_YEAR = 1990, 2100

# A column name from a mapping ends up quoted in SQL: printable, no double quotes.
ColumnName = Annotated[str, StringConstraints(pattern=r'^[^\x00-\x1f\x7f"]{1,128}$')]
Word = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Year = Annotated[int, Field(ge=MIN_YEAR, le=MAX_YEAR)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudentSpec(_Spec):
    """Which column identifies the student, and which person field it matches."""

    column: ColumnName
    match: Literal["local_id", "state_id"] = "local_id"


class YearSpec(_Spec):
    """The test year: a column (``2024``, ``2023-24``) or one value for the whole file."""

    column: ColumnName | None = None
    value: Year | None = None
    means: Literal["spring", "fall"] = "spring"

    @model_validator(mode="after")
    def _one_source(self) -> YearSpec:
        if (self.column is None) == (self.value is None):
            raise ValueError("give exactly one of 'column' and 'value'")
        return self


class TestDateSpec(_Spec):
    """The test date: a column (ISO, or ``format``), a date, or a month-day in the test year."""

    column: ColumnName | None = None
    format: str | None = Field(None, pattern=r"^[%a-zA-Z/\-. :]{2,32}$")
    value: date | None = None
    month_day: str | None = Field(None, pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")

    @model_validator(mode="after")
    def _one_source(self) -> TestDateSpec:
        given = [x for x in (self.column, self.value, self.month_day) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'column', 'value' and 'month_day'")
        if self.format is not None and self.column is None:
            raise ValueError("'format' applies to a 'column' only")
        return self


class ColumnMap(_Spec):
    """The columns of one subject for a range of test years (both ends included)."""

    min_year: Year | None = None
    max_year: Year | None = None
    scale_score: ColumnName
    sem: ColumnName | None = None
    perf_level: ColumnName | None = None
    perf_level_label: ColumnName | None = None
    grade: ColumnName | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ColumnMap:
        if self.min_year is not None and self.max_year is not None and self.min_year > self.max_year:
            raise ValueError(f"min_year {self.min_year} is after max_year {self.max_year}")
        return self

    def covers(self, year: int) -> bool:
        return (self.min_year or MIN_YEAR) <= year <= (self.max_year or MAX_YEAR)


class SubjectSpec(_Spec):
    """One subject: its column maps, performance-level labels and proficiency cut."""

    subject: Word
    columns: list[ColumnMap] = Field(min_length=1)
    perf_levels: (
        dict[Annotated[int, Field(ge=1, le=6)], Annotated[str, Field(min_length=1, max_length=80)]] | None
    ) = None
    proficient_level: Annotated[int, Field(ge=1, le=6)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SubjectSpec:
        spans = sorted((c.min_year or MIN_YEAR, c.max_year or MAX_YEAR) for c in self.columns)
        for (_, end), (start, _) in itertools.pairwise(spans):
            if start <= end:
                raise ValueError(f"column maps overlap in year {start}; give each year one map")
        if self.perf_levels is not None:
            labels = [label.casefold() for label in self.perf_levels.values()]
            if len(set(labels)) != len(labels):
                raise ValueError("perf_levels repeats a label")
            if self.proficient_level is not None and self.proficient_level not in self.perf_levels:
                raise ValueError(f"proficient_level {self.proficient_level} is not one of perf_levels")
        return self

    def column_map(self, year: int) -> ColumnMap | None:
        return next((c for c in self.columns if c.covers(year)), None)


class StateTestMapping(_Spec):
    """How a wide state test file maps to the long form (see the module docstring)."""

    name: str = Field(min_length=1, max_length=120)
    assessment: Word = "state_test"
    student: StudentSpec
    year: YearSpec
    grade: ColumnName | None = None
    test_date: TestDateSpec
    subjects: list[SubjectSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _roles(self) -> StateTestMapping:
        names = [s.subject for s in self.subjects]
        if len(set(names)) != len(names):
            raise ValueError("a subject is listed twice")
        roles: dict[str, str] = {}
        spelled: dict[str, str] = {}
        for name, role in self._columns():
            seen = roles.setdefault(name.casefold(), role)
            if seen != role:
                raise ValueError(f"column {name!r} is used both as {seen} and as {role}")
            # Headers are matched ignoring case: one column, one spelling.
            if spelled.setdefault(name.casefold(), name) != name:
                raise ValueError(f"column {name!r} is also spelled {spelled[name.casefold()]!r}")
        return self

    def _columns(self) -> list[tuple[str, str]]:
        out = [(self.student.column, "student id")]
        if self.year.column:
            out.append((self.year.column, "year"))
        if self.test_date.column:
            out.append((self.test_date.column, "test date"))
        if self.grade:
            out.append((self.grade, "grade"))
        for spec in self.subjects:
            for c in spec.columns:
                role = "performance level" if spec.perf_levels is None else "performance level (labelled)"
                for name, what in (
                    (c.scale_score, "scale score"),
                    (c.sem, "SEM"),
                    (c.perf_level, role),
                    (c.perf_level_label, "performance level label"),
                    (c.grade, "grade"),
                ):
                    if name is not None:
                        out.append((name, what))
        return out

    def spring_year(self, year: int) -> int:
        """A year of this mapping as the spring (test) year."""
        return year + 1 if self.year.means == "fall" else year

    def mapping_year(self, spring: int) -> int:
        """A spring (test) year as this mapping writes years."""
        return spring - 1 if self.year.means == "fall" else spring


def load_state_test_mapping(path: Path) -> StateTestMapping:
    """Read and check a YAML mapping; every problem is an :class:`InvalidInput` naming the place."""
    if not path.is_file():
        raise InvalidInput(f"{path}: mapping file not found")
    if path.stat().st_size > MAX_MAPPING_BYTES:
        raise InvalidInput(f"{path.name}: mapping is larger than {MAX_MAPPING_BYTES // 1024} KiB")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path.name}: mapping is not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InvalidInput(f"{path.name}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(document, dict):
        raise InvalidInput(f"{path.name}: a mapping must be a YAML dictionary (name, student, year, ...)")
    try:
        return StateTestMapping.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()[:8]
        )
        raise InvalidInput(f"{path.name}: invalid mapping: {problems}") from exc
