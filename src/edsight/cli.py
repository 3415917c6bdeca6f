"""The ``edsight`` command line.

Heavy modules are imported inside the commands so that ``--help`` stays fast.
Every command turns an :class:`~edsight.errors.EdsightError` into ``Error: ...``
on stderr and exit code 2.
"""

from __future__ import annotations

import json
import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edsight.commands._output import handle_errors, print_counts, print_load, progress
from edsight.commands._shared import HomeOption, JsonOption, open_warehouse
from edsight.commands.features import features_app
from edsight.commands.governance import accounts_app, audit_app, governance_app
from edsight.commands.ingest import ingest_app
from edsight.commands.models import models_app
from edsight.commands.ops import replay as replay_command
from edsight.commands.ops import run_daily as run_daily_command
from edsight.commands.report import report_app
from edsight.commands.stats import stats_app

if TYPE_CHECKING:
    pass

app = typer.Typer(
    name="edsight",
    help="Learning analytics and student early warning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
generate_app = typer.Typer(help="Write realistic synthetic data.", no_args_is_help=True)
lake_app = typer.Typer(help="Parquet lake: export the warehouse, import it back.", no_args_is_help=True)
app.add_typer(generate_app, name="generate")
app.add_typer(ingest_app, name="ingest")
app.add_typer(stats_app, name="stats")
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
app.add_typer(lake_app, name="lake")
app.add_typer(accounts_app, name="accounts")
app.add_typer(audit_app, name="audit")
app.add_typer(governance_app, name="governance")
app.add_typer(report_app, name="report")
app.command("run-daily")(run_daily_command)
app.command("replay")(replay_command)


class FileFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    """edsight: ingest, warehouse, early warning, statistics, dashboards."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
@handle_errors
def init(home: HomeOption = None) -> None:
    """Create the warehouse (a DuckDB file under the data home)."""
    warehouse = open_warehouse(home)
    created = warehouse.init()
    word = "Created" if created else "Already present:"
    typer.echo(f"{word} {warehouse.path}")


@generate_app.command("canvas")
@handle_errors
def generate_canvas(
    students: Annotated[int, typer.Option("--students", min=1, help="Number of students.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    fmt: Annotated[FileFormat, typer.Option("--format", help="File format.")] = FileFormat.csv,
    as_json: JsonOption = False,
) -> None:
    """Canvas course data in the seed notebook's six tables, calibrated and leak-free."""
    from edsight.synth.canvas import write_canvas

    with progress("Generating Canvas course data", as_json) as step:
        counts = write_canvas(out, students, seed=seed, fmt=fmt.value, progress=step.counts)
    print_counts(counts, out, as_json)


@generate_app.command("district")
@handle_errors
def generate_district(
    students: Annotated[int, typer.Option("--students", min=1, help="Students in year 1.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    years: Annotated[int, typer.Option("--years", min=1, help="School years.")] = 1,
    schools: Annotated[int, typer.Option("--schools", min=3, help="Schools (>= 3).")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    start_year: Annotated[int, typer.Option("--start-year", help="Fall year of year 1.")] = 2021,
    fmt: Annotated[FileFormat, typer.Option("--format", help="File format.")] = FileFormat.parquet,
    as_json: JsonOption = False,
) -> None:
    """A K-12 district over several years, with its ground truth in OUT/ground_truth."""
    from edsight.synth.district import write_district

    with progress("Generating district", as_json) as step:
        counts = write_district(
            out,
            students,
            n_years=years,
            n_schools=schools,
            seed=seed,
            start_year=start_year,
            fmt=fmt.value,
            progress=step.message,
        )
    print_counts(counts, out, as_json)


@app.command()
@handle_errors
def load(
    directory: Annotated[Path, typer.Argument(help="Folder of table files.")],
    home: HomeOption = None,
    force: Annotated[bool, typer.Option("--force", help="Load even if loaded before.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any row was quarantined.")] = False,
    encoding: Annotated[
        str, typer.Option("--encoding", help="Text encoding of CSV files, e.g. latin-1.")
    ] = "utf-8",
    as_json: JsonOption = False,
) -> None:
    """Validate and load a folder of tables (canonical or Canvas seed format).

    Bad rows are kept in the quarantine table with the file, row, column and reason.
    """
    warehouse = open_warehouse(home, create=True)
    with progress(f"Loading {directory}", as_json) as step:
        result = warehouse.load_directory(directory, force=force, progress=step.message, encoding=encoding)
    print_load(result, as_json)
    if strict and result.rows_quarantined:
        raise typer.Exit(code=1)


@app.command()
@handle_errors
def summary(home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Rows per warehouse table."""
    counts = open_warehouse(home).counts()
    if as_json:
        typer.echo(json.dumps(counts, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("table", "rows", title="Warehouse")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    Console().print(table)


@lake_app.command("export")
@handle_errors
def lake_export(
    home: HomeOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder (default: HOME/lake).")] = None,
    partitioned: Annotated[
        bool,
        typer.Option(
            "--partitioned/--flat",
            help="Hive-partition tables by school_year/school_id (for Spark); lake import reads flat only.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Write every non-empty canonical table to OUT/<table>.parquet (or partitioned folders)."""
    from edsight.store.lake import export_lake

    warehouse = open_warehouse(home)
    target = out or warehouse.settings.lake_path
    counts = export_lake(warehouse, target, partitioned=partitioned)
    print_counts(counts, target, as_json)


@lake_app.command("import")
@handle_errors
def lake_import(
    directory: Annotated[Path | None, typer.Argument(help="Folder (default: HOME/lake).")] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Load a Parquet lake back, through the same validation as any load."""
    warehouse = open_warehouse(home, create=True)
    result = warehouse.load_directory(directory or warehouse.settings.lake_path)
    print_load(result, as_json)


@app.command()
@handle_errors
def serve(
    home: HomeOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8000,
    schedule: Annotated[
        str | None,
        typer.Option(
            "--schedule",
            metavar="HH:MM",
            help="Run the daily job inside the server at this time on weekdays (needed while the "
            "server runs: it holds the warehouse, so a separate `edsight run-daily` fails on the lock).",
        ),
    ] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="Time zone of --schedule.")] = "UTC",
    demo_accounts: Annotated[
        bool,
        typer.Option("--demo-accounts", help="Create one demo account per role first and list them."),
    ] = False,
    show_secrets: Annotated[
        bool,
        typer.Option("--show-secrets", help="With --demo-accounts: print passwords and TOTP secrets too."),
    ] = False,
) -> None:
    """Serve the dashboard, the /api/v1 API and the live-events receiver over HTTP."""
    import uvicorn
    from rich.console import Console

    from edsight.config import load_settings
    from edsight.ops.schedule import parse_time
    from edsight.web.app import create_app

    settings = load_settings(home)
    if schedule is not None:
        parse_time(schedule)
    if demo_accounts:
        from edsight.demo import demo_accounts_table
        from edsight.governance.identity import GovernanceStore
        from edsight.store.warehouse import Warehouse
        from edsight.web.demo_accounts import create_demo_accounts, free_prefix

        store = GovernanceStore(settings)
        try:
            with Warehouse(settings).connect(read_only=True) as con:
                accounts = create_demo_accounts(store, con, prefix=free_prefix(store))
        finally:
            store.close()
        Console(stderr=True).print(demo_accounts_table(accounts, show_secrets=show_secrets))
    app_ = create_app(settings, schedule=schedule, schedule_timezone=timezone)
    uvicorn.run(app_, host=host, port=port, log_level="info")


if __name__ == "__main__":  # pragma: no cover
    app()
