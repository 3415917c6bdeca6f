"""Options and plumbing every command shares: the data home, --json, the warehouse."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from edsight.store.warehouse import Warehouse

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Data home (default: $EDSIGHT_HOME or ./edsight-data)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def open_warehouse(home: Path | None, *, create: bool = False) -> Warehouse:
    """The warehouse under ``home``; with ``create``, initialised first when missing."""
    from edsight.config import load_settings
    from edsight.store.warehouse import Warehouse

    warehouse = Warehouse(load_settings(home))
    if create and not warehouse.path.exists():
        warehouse.init()
    return warehouse
