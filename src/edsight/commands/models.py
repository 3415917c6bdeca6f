"""``edsight models ...``: risk models on any student table and on the warehouse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edsight.commands._output import handle_errors

models_app = typer.Typer(help="Early-warning risk models.", no_args_is_help=True)


@models_app.command("cross-validate")
@handle_errors
def cross_validate(
    table: Annotated[Path, typer.Option("--table", help="CSV/TSV or Parquet file, one row per student.")],
    target: Annotated[str, typer.Option("--target", help="Outcome column.")],
    positive: Annotated[str, typer.Option("--positive", help="Value of the outcome that is flagged.")],
    id_col: Annotated[
        str | None, typer.Option("--id", help="Student id: folds never split a student's rows.")
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option("--group", help="Audit fairness by this column (repeatable); kept out of inputs."),
    ] = None,
    drop: Annotated[
        list[str] | None, typer.Option("--drop", help="Column to leave out (repeatable).")
    ] = None,
    folds: Annotated[int, typer.Option("--folds", min=2, max=20, help="Number of folds.")] = 5,
    learner: Annotated[str, typer.Option("--learner", help="lightgbm or logistic.")] = "lightgbm",
    calibration: Annotated[
        str, typer.Option("--calibration", help="isotonic, sigmoid (Platt) or none.")
    ] = "isotonic",
    include_groups: Annotated[
        bool, typer.Option("--include-groups", help="Let the --group columns be model inputs.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
) -> None:
    """Cross-validated AUC, PR-AUC, Brier and fairness by group on any tabular student file.

    Prints {auc, pr_auc, brier, by_group:{...}} and how the split was made.
    """
    from edsight.models.risk import cross_validate as run
    from edsight.models.risk import read_table

    result = run(
        read_table(table),
        target=target,
        positive=positive,
        id_col=id_col,
        group_cols=group or (),
        drop=drop or (),
        folds=folds,
        learner=learner,  # type: ignore[arg-type]
        calibration=calibration,  # type: ignore[arg-type]
        include_groups=include_groups,
        seed=seed,
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"AUC {result['auc']:.3f}  PR-AUC {result['pr_auc']:.3f}  Brier {result['brier']:.3f}  "
        f"({result['split']['method']}, {folds} folds)"
    )
    for column, groups in result["by_group"].items():
        for value, figures in groups.items():
            shown = ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()
            )
            typer.echo(f"  {column}={value}: {shown}")
