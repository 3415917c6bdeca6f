"""``edsight features build``: point-in-time weekly features and labels into the warehouse."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

import typer

from edsight.commands._output import handle_errors, progress
from edsight.commands._shared import HomeOption, open_warehouse

features_app = typer.Typer(help="Point-in-time weekly features and labels.", no_args_is_help=True)


@features_app.command("build")
@handle_errors
def build(
    kind: Annotated[
        list[str] | None, typer.Option("--kind", help="lms and/or k12 (repeatable; default both).")
    ] = None,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="Only weeks that ended by this date.")
    ] = None,
    horizon: Annotated[int, typer.Option("--horizon", min=1, max=12, help="Label horizon in weeks.")] = 4,
    labels: Annotated[bool, typer.Option("--labels/--no-labels", help="Also build the labels.")] = True,
    engine: Annotated[
        str | None,
        typer.Option("--engine", help="duckdb (default) or spark (reads HOME/lake; EDSIGHT_SPARK_MASTER)."),
    ] = None,
    home: HomeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print row counts as JSON.")] = False,
) -> None:
    """Rebuild the weekly feature tables (and labels) from what the warehouse holds now."""
    from edsight.errors import InvalidInput
    from edsight.features.labels import store_labels
    from edsight.features.weekly import store_features

    chosen = kind or ["lms", "k12"]
    unknown = [k for k in chosen if k not in ("lms", "k12")]
    if unknown:
        raise InvalidInput(f"--kind {', '.join(unknown)}: expected lms or k12")
    kinds: tuple[Literal["lms", "k12"], ...] = tuple(k for k in ("lms", "k12") if k in chosen)
    warehouse = open_warehouse(home)
    with progress("Building weekly features", as_json):
        from edsight.commands.engine import build_features_with_engine, resolve_engine

        engine_name = resolve_engine(warehouse.settings, engine)
        if engine_name != "duckdb":
            rows = build_features_with_engine(
                warehouse.settings,
                engine_name,
                kinds=kinds,
                as_of=as_of.date() if as_of else None,
                labels=labels,
                horizon=horizon,
            )
        else:
            rows = store_features(warehouse, kinds=kinds, as_of=as_of.date() if as_of else None)
            if labels:
                rows.update(store_labels(warehouse, kinds=kinds, horizon=horizon))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for name, n in rows.items():
        typer.echo(f"{name:<24} {n:>12,}")
