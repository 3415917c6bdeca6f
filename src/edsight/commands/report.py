"""``edsight report school|district``: suppressed aggregate reports as HTML or PDF."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edsight.commands._output import handle_errors, progress
from edsight.commands._shared import HomeOption, JsonOption, open_warehouse

if TYPE_CHECKING:
    from edsight.ops.reports import Report

report_app = typer.Typer(
    help="School and district reports (HTML or PDF): risk, attendance, gaps, growth, value-added, trends.",
    no_args_is_help=True,
)

OutOption = Annotated[
    Path, typer.Option("--out", help="Report file; the suffix picks the format: .html or .pdf.")
]
AsOfOption = Annotated[
    datetime | None,
    typer.Option("--as-of", help="Report as of this date (default: today); later data is ignored."),
]
MinNOption = Annotated[
    int | None,
    typer.Option("--min-n", min=1, help="Smallest count published (default: EDSIGHT_MIN_CELL_N, 10)."),
]
SgpMinOption = Annotated[
    int,
    typer.Option("--sgp-min-students", min=20, help="Students per grade and subject a growth model needs."),
]


def _check_out(out: Path) -> None:
    from edsight.errors import InvalidInput
    from edsight.ops.reports import BAD_FORMAT, FORMATS

    if out.suffix.lower() not in FORMATS:
        raise InvalidInput(BAD_FORMAT.format(name=out.name))


def _finish(report: Report, out: Path, as_json: bool) -> None:
    from edsight.ops.reports import write_report

    write_report(report, out)
    if as_json:
        typer.echo(json.dumps({"out": str(out), **report.to_dict()}, indent=2))
        return
    available = sum(1 for s in report.sections if s.unavailable is None)
    typer.echo(f"Wrote {out} ({report.title}, {available} of {len(report.sections)} sections with data).")
    for section in report.sections:
        if section.unavailable:
            typer.echo(f"  {section.title}: {section.unavailable}")


@report_app.command("school")
@handle_errors
def school(
    school: Annotated[str, typer.Option("--school", help="The school's org_id.")],
    out: OutOption,
    as_of: AsOfOption = None,
    min_n: MinNOption = None,
    sgp_min_students: SgpMinOption = 200,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """One school's report; teachers appear unnamed. Every count is 0 or at least --min-n."""
    from edsight.ops.reports import ReportOptions, build_school_report

    _check_out(out)
    options = ReportOptions(min_n=min_n, sgp_min_students=sgp_min_students)
    with progress("Building the school report", as_json):
        report = build_school_report(
            open_warehouse(home), school, as_of=as_of.date() if as_of else None, options=options
        )
    _finish(report, out, as_json)


@report_app.command("district")
@handle_errors
def district(
    out: OutOption,
    district_id: Annotated[
        str | None,
        typer.Option("--district", help="The district's org_id (default: the warehouse's only district)."),
    ] = None,
    as_of: AsOfOption = None,
    min_n: MinNOption = None,
    sgp_min_students: SgpMinOption = 200,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """The district's report, school by school. Every count is 0 or at least --min-n."""
    from edsight.ops.reports import ReportOptions, build_district_report

    _check_out(out)
    options = ReportOptions(min_n=min_n, sgp_min_students=sgp_min_students)
    with progress("Building the district report", as_json):
        report = build_district_report(
            open_warehouse(home), district_id, as_of=as_of.date() if as_of else None, options=options
        )
    _finish(report, out, as_json)


__all__ = ["report_app"]
