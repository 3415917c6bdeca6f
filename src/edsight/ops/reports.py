"""School and district reports (HTML and PDF): risk, ABC indicators, gaps, growth, value-added, trends.

Reports are for people without student-level access, so every aggregate passes small-cell
suppression (:func:`edsight.governance.suppression.suppress_table`, minimum n from
``Settings.min_cell_n``) before it is formatted, charted or narrated, and nothing that names
a person (ids, names, teacher ids) is put into a report. See docs/reports.md.

>>> report = build_school_report(warehouse, "SCH001")          # doctest: +SKIP
>>> write_report(report, Path("maple.pdf"))                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from edsight.errors import InvalidInput
from edsight.ops._report_data import Scope, pick_assessment, resolve_scope, score_tables, vam_tables
from edsight.ops._report_model import Report, Section, is_number
from edsight.ops._report_risk import attendance_section, risk_section
from edsight.ops._report_scores import gaps_section, growth_section, trends_section, value_added_section
from edsight.store.warehouse import Warehouse

__all__ = [
    "FORMATS",
    "Report",
    "ReportOptions",
    "Section",
    "build_district_report",
    "build_school_report",
    "write_report",
]

log = logging.getLogger(__name__)

FORMATS = (".html", ".pdf")
BAD_FORMAT = "{name}: reports are written as .html or .pdf (chosen by the file suffix)"
BAD_MIN_N = "min_n must be at least 1, got {value}"
NO_FLAG_SENTENCE = "The number of flagged students is too small to report."


@dataclass(frozen=True)
class ReportOptions:
    """How a report is computed: the minimum cell size (default: ``Settings.min_cell_n``), the
    students per grade a growth-percentile model needs, and the years to forecast."""

    min_n: int | None = None
    sgp_min_students: int = 200
    horizon: int = 1


def build_school_report(
    warehouse: Warehouse, school_id: str, *, as_of: date | None = None, options: ReportOptions | None = None
) -> Report:
    """The report of one school (``organization`` of type school or institution)."""
    return _build(warehouse, "school", school_id, as_of, options or ReportOptions())


def build_district_report(
    warehouse: Warehouse,
    district_id: str | None = None,
    *,
    as_of: date | None = None,
    options: ReportOptions | None = None,
) -> Report:
    """The report of a district (default: the warehouse's only district, or all its schools)."""
    return _build(warehouse, "district", district_id, as_of, options or ReportOptions())


def write_report(report: Report, path: Path) -> Path:
    """Write ``report`` as HTML or PDF, chosen by the suffix of ``path``."""
    from edsight.ops._report_render import write_html, write_pdf

    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInput(BAD_FORMAT.format(name=path.name))
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".html":
        write_html(report, path)
    else:
        write_pdf(report, path)
    return path


def _build(
    warehouse: Warehouse, kind: str, org_id: str | None, as_of: date | None, options: ReportOptions
) -> Report:
    started = time.perf_counter()
    min_n = warehouse.settings.min_cell_n if options.min_n is None else options.min_n
    if min_n < 1:
        raise InvalidInput(BAD_MIN_N.format(value=min_n))
    tables: dict[str, pd.DataFrame] | None = None
    linked: dict[str, pd.DataFrame] | None = None
    with warehouse.connect(read_only=True) as con:
        scope = resolve_scope(con, kind, org_id, as_of)
        risk, headline = risk_section(con, scope, min_n)
        abc, chronic = attendance_section(con, scope, min_n)
        assessment = pick_assessment(con, scope.as_of)
        if assessment is not None:
            tables = score_tables(con, assessment, scope.as_of)
            linked = vam_tables(con, tables["assessment_result"])
    frame = _gap_frame(tables, assessment)
    vam_frame = _vam_frame(linked, assessment)
    gaps, largest = gaps_section(frame, scope, min_n)
    sections = [
        risk,
        abc,
        gaps,
        growth_section(frame, scope, min_n, options.sgp_min_students),
        value_added_section(vam_frame, scope, min_n),
        trends_section(frame, scope, min_n, options.horizon),
    ]
    narrative = _narrative(scope, headline, chronic, largest)
    log.info("%s report built in %.1f s", kind, time.perf_counter() - started)
    return Report(kind, scope.org_id, scope.name, scope.as_of, scope.school_year, min_n, narrative, sections)


def _gap_frame(tables: dict[str, pd.DataFrame] | None, assessment: str | None) -> pd.DataFrame | None:
    from edsight.stats.gaps import gap_frame_from_tables

    if tables is None or tables["assessment_result"].empty:
        return None
    return gap_frame_from_tables(tables, assessment=assessment)


def _vam_frame(tables: dict[str, pd.DataFrame] | None, assessment: str | None) -> pd.DataFrame | None:
    from edsight.stats.vam import vam_frame_from_tables

    if tables is None or tables["assessment_result"].empty:
        return None
    try:
        return vam_frame_from_tables(tables, assessment=assessment)
    except InvalidInput as exc:
        log.info("value-added frame not built: %s", exc)
        return None


def _narrative(
    scope: Scope, headline: dict[str, Any], chronic: dict[str, float | None], largest: dict[str, Any] | None
) -> str:
    from edsight.ops.narrate import district_narrative, school_narrative

    schools = headline["schools"]
    if scope.kind == "school":
        info = schools.get(scope.org_id, {"students": None, "flagged": None, "scored": False})
        if not is_number(info["students"]):
            return f"{scope.name} has too few students in the current data to report."
        if int(info["students"]) == 0:
            return (
                f"{scope.name} has no students enrolled on {scope.effective.isoformat()} in the current data."
            )
        text = school_narrative(
            scope.name,
            students=int(info["students"]),
            flagged=info["flagged"],
            chronic_absence_rate=chronic.get(scope.org_id),
            largest_gap=largest,
        )
        if not info["scored"]:
            text = text.replace(NO_FLAG_SENTENCE, "No early-warning scores are stored for its students.")
        return text
    rows = [
        {
            "name": scope.schools[school_id],
            "students": int(info["students"]) if is_number(info["students"]) else 0,
            "flagged": info["flagged"] if info["scored"] else None,
        }
        for school_id, info in schools.items()
    ]
    text = district_narrative(scope.name, rows)
    if largest:
        text += (
            f" Across the district the largest achievement gap is in {largest['subject']}: "
            f"{largest['focal']} vs {largest['reference']}, "
            f"{abs(float(largest['effect_size'])):.2f} standard deviations."
        )
    return text
