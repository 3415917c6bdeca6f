"""Terminal output shared by the commands: progress bars and run summaries."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from edsight.errors import EdsightError

if TYPE_CHECKING:
    from edsight.store.warehouse import LoadResult

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Print ``Error: <reason>`` and exit 2 for errors the user can fix."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (EdsightError, ValueError) as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


class Step:
    def __init__(self, progress: Any, task: Any) -> None:
        self._progress = progress
        self._task = task

    def message(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def counts(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total)


class progress:
    """A Rich progress bar on stderr, silent with --json or when not a terminal."""

    def __init__(self, title: str, quiet: bool) -> None:
        self.title = title
        self.quiet = quiet or not sys.stderr.isatty()
        self._bar: Any = None

    def __enter__(self) -> Step:
        if self.quiet:
            return Step(None, None)
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        return Step(self._bar, self._bar.add_task(self.title, total=None))

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def print_counts(counts: dict[str, int], out: Path, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"out": str(out), "rows": counts}, indent=2))
        return
    for name, n in counts.items():
        typer.echo(f"{name:<24} {n:>12,}")
    typer.echo(f"Wrote {len(counts)} tables to {out}")


def load_payload(result: LoadResult) -> dict[str, Any]:
    """A load result as plain data (the --json output)."""

    def tables(reports: dict[str, Any]) -> dict[str, dict[str, int]]:
        return {
            name: {"read": r.rows_read, "stored": r.rows_valid, "quarantined": r.rows_quarantined}
            for name, r in reports.items()
        }

    return {
        "batch_id": result.batch_id,
        "source": result.source,
        "already_loaded": result.already_loaded,
        "rows_read": result.rows_read,
        "rows_stored": result.rows_stored,
        "rows_quarantined": result.rows_quarantined,
        "rows_unchanged": result.unchanged,
        "rows_deleted": result.deleted,
        "source_tables": tables(result.source_tables),
        "tables": tables(result.tables),
        "problems": result.problems,
        "skipped": result.skipped,
    }


def print_load(result: LoadResult, as_json: bool) -> None:
    """The end-of-run summary: per table read, stored, quarantined; then the first reasons."""
    if as_json:
        typer.echo(json.dumps(load_payload(result), indent=2))
        return
    if result.already_loaded:
        typer.echo(f"Batch {result.batch_id} was loaded before; nothing changed.")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("table", "read", "stored", "quarantined", title=f"Batch {result.batch_id}")
    for name, r in {**result.source_tables, **result.tables}.items():
        style = "red" if r.rows_quarantined else None
        table.add_row(name, f"{r.rows_read:,}", f"{r.rows_valid:,}", f"{r.rows_quarantined:,}", style=style)
    console = Console()
    console.print(table)
    parts = [f"{result.rows_stored:,} rows stored", f"{result.rows_quarantined:,} quarantined"]
    if result.unchanged:
        parts.append(f"{result.unchanged:,} unchanged since the last sync")
    for name, n in result.deleted.items():
        parts.append(f"{n:,} deleted from {name}")
    console.print(", ".join(parts) + ".")
    for line in result.skipped:
        console.print(f"  not loaded: {line}", markup=False)
    for line in result.problems:
        typer.echo(f"  quarantined: {line}", err=True)
