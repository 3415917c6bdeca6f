"""``edsight ingest KIND SOURCE``: the connectors, each a thin call into ``edsight.ingest``."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from edsight.commands._output import handle_errors, print_load, progress
from edsight.commands._shared import HomeOption, JsonOption, open_warehouse
from edsight.errors import InvalidInput

ingest_app = typer.Typer(
    help="Bring district data in: Canvas (API, files, Canvas Data 2, live events), "
    "OneRoster rosters, NWEA MAP, state tests, attendance and discipline files.",
    no_args_is_help=True,
)

SourceArg = Annotated[Path, typer.Argument(help="File, folder or zip to read.")]


def _run(title: str, as_json: bool, call: Any) -> None:
    with progress(title, as_json) as step:
        result = call(step.message)
    print_load(result, as_json)


EncodingOption = Annotated[str, typer.Option("--encoding", help="Text encoding of CSV files, e.g. latin-1.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Load even if these bytes were loaded before.")]


@ingest_app.command("canvas-files")
@handle_errors
def canvas_files(
    source: SourceArg,
    home: HomeOption = None,
    encoding: EncodingOption = "utf-8",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Canvas course files in the seed format (what `edsight generate canvas` writes)."""

    wh = open_warehouse(home, create=True)
    _run(
        f"Loading {source}",
        as_json,
        lambda step: wh.load_directory(source, force=force, progress=step, encoding=encoding),
    )


@ingest_app.command("oneroster")
@handle_errors
def oneroster(
    source: SourceArg,
    home: HomeOption = None,
    encoding: EncodingOption = "utf-8",
    full_sync: Annotated[
        bool, typer.Option("--full-sync", help="Restage rows even if not newer than the last sync.")
    ] = False,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """OneRoster 1.1 or 1.2 CSV roster: a .zip or a folder with manifest.csv (bulk or delta)."""

    from edsight.ingest.oneroster import ingest_oneroster

    wh = open_warehouse(home, create=True)
    _run(
        f"Ingesting OneRoster {source}",
        as_json,
        lambda step: ingest_oneroster(
            wh, source, encoding=encoding, full_sync=full_sync, force=force, progress=step
        ),
    )


@ingest_app.command("attendance")
@handle_errors
def attendance(
    source: SourceArg,
    home: HomeOption = None,
    encoding: EncodingOption = "utf-8",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Daily attendance file (edsight statuses or Ed-Fi descriptors; see docs/ingest-sis.md)."""

    from edsight.ingest.attendance import ingest_attendance

    wh = open_warehouse(home, create=True)
    _run(
        f"Ingesting attendance {source}",
        as_json,
        lambda step: ingest_attendance(wh, source, encoding=encoding, force=force, progress=step),
    )


@ingest_app.command("discipline")
@handle_errors
def discipline(
    source: SourceArg,
    home: HomeOption = None,
    encoding: EncodingOption = "utf-8",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Discipline incidents file (Ed-Fi behaviour descriptors or severities)."""

    from edsight.ingest.attendance import ingest_discipline

    wh = open_warehouse(home, create=True)
    _run(
        f"Ingesting discipline {source}",
        as_json,
        lambda step: ingest_discipline(wh, source, encoding=encoding, force=force, progress=step),
    )


@ingest_app.command("events")
@handle_errors
def events(
    spool: Annotated[Path | None, typer.Argument(help="Spool folder (default: HOME/spool/events).")] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply spooled Canvas live events / Caliper events (received by `edsight serve`)."""

    from edsight.ingest.events import ingest_events

    wh = open_warehouse(home, create=True)
    _run("Applying live events", as_json, lambda step: ingest_events(wh, spool, progress=step))


@ingest_app.command("map")
@handle_errors
def nwea_map(
    source: SourceArg,
    home: HomeOption = None,
    encoding: EncodingOption = "utf-8",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """NWEA MAP Growth export: a folder, AssessmentResults.csv or ComboStudentAssessment.csv."""
    from edsight.ingest.assessments import ingest_map

    wh = open_warehouse(home, create=True)
    _run(
        f"Ingesting MAP {source}",
        as_json,
        lambda step: ingest_map(wh, source, encoding=encoding, force=force, progress=step),
    )


@ingest_app.command("state-tests")
@handle_errors
def state_tests(
    source: SourceArg,
    mapping: Annotated[Path, typer.Option("--mapping", help="YAML column mapping (see docs).")],
    home: HomeOption = None,
    encoding: EncodingOption = "utf-8",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Wide yearly state test files, mapped to long form by a YAML column mapping."""
    from edsight.ingest.assessments import ingest_state_tests

    wh = open_warehouse(home, create=True)
    _run(
        f"Ingesting state tests {source}",
        as_json,
        lambda step: ingest_state_tests(
            wh, source, mapping=mapping, encoding=encoding, force=force, progress=step
        ),
    )


@ingest_app.command("canvas-data2")
@handle_errors
def canvas_data2(
    source: SourceArg,
    home: HomeOption = None,
    encoding: EncodingOption = "utf-8",
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Canvas Data 2 (DAP) snapshot or incremental export: JSONL/CSV with key.* and value.*."""
    from edsight.ingest.canvas_data2 import ingest_canvas_data2

    wh = open_warehouse(home, create=True)
    _run(
        f"Ingesting Canvas Data 2 {source}",
        as_json,
        lambda step: ingest_canvas_data2(wh, source, encoding=encoding, force=force, progress=step),
    )


@ingest_app.command("canvas-api")
@handle_errors
def canvas_api(
    url: Annotated[str, typer.Option("--url", help="Canvas base URL, e.g. https://school.instructure.com")],
    token_env: Annotated[
        str, typer.Option("--token-env", help="Name of the environment variable holding the API token.")
    ],
    since: Annotated[
        datetime | None,
        typer.Option("--since", help="Fetch changes since this time (overrides the stored cursor)."),
    ] = None,
    course_id: Annotated[
        list[int] | None, typer.Option("--course-id", help="Only these Canvas course ids (repeatable).")
    ] = None,
    account_id: Annotated[int | None, typer.Option("--account-id", help="Canvas account id.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=16, help="Parallel requests.")] = 4,
    per_page: Annotated[int, typer.Option("--per-page", min=1, max=100, help="Page size.")] = 100,
    analytics: Annotated[
        bool, typer.Option("--analytics/--no-analytics", help="Read the Analytics API (page views).")
    ] = True,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Canvas LMS over its REST API: incremental, resumable, throttling-aware.

    The token is read from the environment variable named by --token-env; it is never
    printed or logged.
    """
    from edsight.ingest.canvas_api import ingest_canvas_api

    token = os.environ.get(token_env, "")
    if not token:
        raise InvalidInput(f"environment variable {token_env} is not set or empty (it must hold the token)")
    wh = open_warehouse(home, create=True)
    _run(
        f"Reading Canvas at {url}",
        as_json,
        lambda step: ingest_canvas_api(
            wh,
            url,
            token=token,
            since=since,
            course_ids=course_id,
            account_id=account_id,
            concurrency=concurrency,
            per_page=per_page,
            analytics=analytics,
            progress=step,
        ),
    )
