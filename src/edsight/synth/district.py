"""Synthetic K-12 district with known ground truth.

``generate_district`` simulates a district (schools, teachers, sections, students moving
through grades K-12 with mobility, retention, attendance, discipline, course grades, state
tests and high-school outcomes) from a documented generative model whose parameters are
returned alongside the data, so that value-added, growth, gap and early-warning estimates
can be checked against the truth. See ``docs/synthetic-district.md`` for the model.

Tables use the canonical edsight schema; DataFrames are Arrow-backed (``pd.ArrowDtype``)
so that date32, small integer widths and nulls survive exactly.
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from edsight.synth import _district_arrow as ar
from edsight.synth._district_sim import DistrictSim

__all__ = [
    "DISTRICT_TABLES",
    "TRUTH_TABLES",
    "DistrictData",
    "generate_district",
    "write_district",
]

log = logging.getLogger(__name__)

DISTRICT_TABLES: tuple[str, ...] = (
    "organization",
    "term",
    "calendar",
    "person",
    "student_demographics",
    "school_enrollment",
    "course",
    "section",
    "enrollment",
    "attendance",
    "discipline",
    "course_grade",
    "assessment_result",
    "student_outcome",
)
TRUTH_TABLES: tuple[str, ...] = ("school_effects", "teacher_effects", "student_truth")

MAX_SCHOOLS = 999
MAX_YEARS = 30
MIN_STUDENTS = 100
MIN_STUDENTS_PER_SCHOOL = 20
MAX_STUDENTS = 20_000_000


@dataclass(frozen=True)
class DistrictData:
    """A generated district: canonical tables, ground-truth tables and a truth summary."""

    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]
    truth_summary: dict[str, Any]


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if not low <= v <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {v}")
    return v


def _validate(
    n_students: object, n_years: object, n_schools: object, seed: object, start_year: object
) -> tuple[int, int, int, int, int]:
    schools = _check_int("n_schools", n_schools, -(2**31), 2**31)
    if schools < 3:
        raise ValueError(
            f"n_schools must be at least 3 (one elementary, middle and high school), got {schools}"
        )
    if schools > MAX_SCHOOLS:
        raise ValueError(f"n_schools must be at most {MAX_SCHOOLS}, got {schools}")
    students = _check_int("n_students", n_students, MIN_STUDENTS, MAX_STUDENTS)
    if students < MIN_STUDENTS_PER_SCHOOL * schools:
        raise ValueError(
            f"n_students={students} is too small for {schools} schools "
            f"(need at least {MIN_STUDENTS_PER_SCHOOL} students per school)"
        )
    years = _check_int("n_years", n_years, 1, MAX_YEARS)
    s = _check_int("seed", seed, 0, 2**63 - 1)
    start = _check_int("start_year", start_year, 1990, 2100)
    return students, years, schools, s, start


def generate_district(
    n_students: int,
    n_years: int = 1,
    n_schools: int = 10,
    seed: int = 0,
    start_year: int = 2021,
) -> DistrictData:
    """Simulate a district in memory.

    Args:
        n_students: students enrolled in the fall of the first year (the population is
            kept roughly stable afterwards).
        n_years: consecutive school years to simulate.
        n_schools: schools, split about 60/20/20 elementary/middle/high (at least 3).
        seed: non-negative seed; the output is a deterministic function of all arguments.
        start_year: calendar year in which the first school year starts (2021 = 2021-22).

    Returns:
        DistrictData with the 14 canonical tables (``DISTRICT_TABLES``), the ground-truth
        tables (``TRUTH_TABLES``) and a JSON-ready truth summary.

    Raises:
        ValueError: on out-of-range or non-integer arguments.
    """
    args = _validate(n_students, n_years, n_schools, seed, start_year)
    sink = ar.MemorySink()
    sim = DistrictSim(*args)
    sim.run(sink.write)
    return DistrictData(
        tables={name: sink.frame(name) for name in DISTRICT_TABLES},
        truth={name: sink.frame(name) for name in TRUTH_TABLES},
        truth_summary=sim.summary(),
    )


def write_district(
    out_dir: Path,
    n_students: int,
    n_years: int = 1,
    n_schools: int = 10,
    seed: int = 0,
    start_year: int = 2021,
    fmt: Literal["csv", "parquet"] = "parquet",
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Simulate a district and stream it to ``out_dir/<table>.<fmt>``.

    Ground truth goes to ``out_dir/ground_truth/`` (``ground_truth.json`` plus the truth
    tables in the same format). Tables are written chunk by chunk as each school year is
    simulated, so memory stays bounded by one year's data. Existing files of the same
    names are overwritten. Returns the row count per table (canonical and truth tables).
    """
    args = _validate(n_students, n_years, n_schools, seed, start_year)
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sink = ar.FileSink(out, fmt)
    sim = DistrictSim(*args)
    try:
        sim.run(sink.write, progress)
    except BaseException:
        sink.abort()
        raise
    sink.close(DISTRICT_TABLES + TRUTH_TABLES)
    sink.write_json(sim.summary())
    log.info(
        "wrote synthetic district (%d students x %d years, %d schools) to %s in %.1fs",
        args[0],
        args[1],
        args[2],
        out,
        time.perf_counter() - started,
    )
    return {name: sink.rows.get(name, 0) for name in DISTRICT_TABLES + TRUTH_TABLES}
