"""``edsight stats ...``: district statistics over the warehouse or a data file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from edsight.commands._output import handle_errors
from edsight.commands._shared import HomeOption, JsonOption, open_warehouse
from edsight.errors import InvalidInput

stats_app = typer.Typer(
    help="District statistics: hierarchical models, value-added, growth percentiles, gaps, trends.",
    no_args_is_help=True,
)

PlotOption = Annotated[Path | None, typer.Option("--plot", help="Also write a figure here (.png or .svg).")]
DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="CSV or Parquet file to analyse instead of the warehouse."),
]


def read_frame(path: Path) -> Any:
    """A CSV or Parquet file as a DataFrame, with a clear error otherwise."""
    import pandas as pd

    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    raise InvalidInput(f"{path.name}: expected a .csv or .parquet file")


def _gap_frame(data: Path | None, home: Path | None) -> Any:
    from edsight.stats.gaps import gap_frame_from_frame, gap_frame_from_tables

    if data is not None:
        return gap_frame_from_frame(read_frame(data))

    tables = open_warehouse(home).frames(["assessment_result", "student_demographics", "school_enrollment"])
    return gap_frame_from_tables(tables)


def print_frame(
    frame: Any, as_json: bool, title: str, screen_columns: list[str] | None = None, limit: int = 40
) -> None:
    """All rows and columns as JSON records, or the first ``limit`` rows of the main columns."""
    if as_json:
        typer.echo(frame.to_json(orient="records", date_format="iso", indent=2))
        return
    if screen_columns is not None:
        frame = frame[[c for c in screen_columns if c in frame.columns]]
    from rich.console import Console
    from rich.table import Table

    table = Table(*[str(c) for c in frame.columns], title=f"{title} ({len(frame):,} rows)")
    for row in frame.head(limit).itertuples(index=False):
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    Console().print(table)


@stats_app.command("hlm")
@handle_errors
def hlm(
    data: Annotated[Path, typer.Option("--data", help="CSV or Parquet file, one row per observation.")],
    formula: Annotated[
        str, typer.Option("--formula", help='lme4 syntax, e.g. "y ~ x + (1 + x | g1) + (1 | g2)".')
    ],
    reml: Annotated[bool, typer.Option("--reml/--ml", help="REML (default, as lme4) or ML.")] = True,
    levels: Annotated[
        list[str] | None,
        typer.Option("--levels", help="Factor level order, first = reference: col=a,b,c (repeatable)."),
    ] = None,
    plot: PlotOption = None,
    time: Annotated[str | None, typer.Option("--time", help="Time column of growth curves (--plot).")] = None,
    group: Annotated[str | None, typer.Option("--group", help="Group of growth curves (--plot).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Linear mixed model in lme4 syntax: fixed effects, variance components, REML criterion."""
    from edsight.stats.mixed import fit_lmm

    order: dict[str, list[str]] = {}
    for item in levels or []:
        column, _, values = item.partition("=")
        if not column or not values:
            raise InvalidInput(f"--levels {item!r}: expected column=level1,level2,...")
        order[column] = values.split(",")
    result = fit_lmm(read_frame(data), formula, reml=reml, levels=order or None)
    payload = result.to_dict()
    if plot is not None:
        if time is None or group is None:
            raise InvalidInput("--plot draws growth curves: give --time and --group too")
        from edsight.stats.plots import plot_growth_curves

        plot_growth_curves(result.growth_curves(time=time, group=group), plot, time=time, group=group)
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    import pandas as pd

    print_frame(result.fixed_effects(), False, "Fixed effects")
    print_frame(pd.DataFrame(payload["vcov"]), False, "Variance components")
    crit = "REML criterion" if reml else "deviance"
    typer.echo(f"{crit} {payload['reml_crit']:.4f}, fitted in {payload['seconds']:.2f} s")


@stats_app.command("vam")
@handle_errors
def vam(
    table: Annotated[
        str, typer.Option("--table", help="teacher, teacher_year, school, components or coefficients.")
    ] = "teacher",
    covariates: Annotated[
        str,
        typer.Option("--covariates", help="Comma-separated extra covariates (default: prior scores only)."),
    ] = "",
    level: Annotated[float, typer.Option("--level", min=0.5, max=0.999, help="Interval level.")] = 0.95,
    plot: PlotOption = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Teacher and school value-added with empirical-Bayes shrinkage, intervals and reliability."""
    from edsight.stats.vam import value_added_tables, vam_frame_from_warehouse

    with open_warehouse(home).connect(read_only=True) as con:
        frame = vam_frame_from_warehouse(con)
    tables = value_added_tables(
        frame, covariates=[c.strip() for c in covariates.split(",") if c.strip()], level=level
    )
    if table not in tables:
        raise InvalidInput(f"--table {table!r}: expected one of {', '.join(tables)}")
    result = tables[table]
    if plot is not None and {"effect", "lower", "upper"} <= set(result.columns):
        from edsight.stats.plots import plot_estimates

        label = next(c for c in ("teacher_id", "school_id") if c in result.columns)
        plot_estimates(result, plot, label=label, title=f"Value-added ({table})")
    print_frame(result, as_json, f"Value-added: {table}")


@stats_app.command("sgp")
@handle_errors
def sgp(
    data: Annotated[
        Path, typer.Option("--data", help="Wide file as the SGP package's: ID, GRADE_<year>, SS_<year>.")
    ],
    max_order: Annotated[int, typer.Option("--max-order", min=1, max=3, help="Prior years used.")] = 2,
    by: Annotated[str, typer.Option("--by", help="Comma-separated columns for median SGPs.")] = "grade_level",
    plot: PlotOption = None,
    as_json: JsonOption = False,
) -> None:
    """Student growth percentiles (quantile regression on B-splines of prior scores)."""
    from edsight.stats.sgp import StudentGrowthPercentiles, sgp_long_from_wide, sgp_summary, sgp_uniformity

    long = sgp_long_from_wide(read_frame(data))
    model = StudentGrowthPercentiles(max_order=max_order).fit(long)
    groups = [c.strip() for c in by.split(",") if c.strip()]
    missing = [c for c in groups if c not in model.sgp_.columns]
    if missing:
        raise InvalidInput(f"--by: no column {', '.join(missing)} (have {', '.join(model.sgp_.columns)})")
    summary = sgp_summary(model.sgp_, groups)
    uniformity = sgp_uniformity(model.sgp_["sgp"].dropna())
    if plot is not None:
        from edsight.stats.plots import plot_sgp_distribution

        plot_sgp_distribution(model.sgp_["sgp"], plot)
    if as_json:
        payload = {"uniformity": uniformity, "by": json.loads(summary.to_json(orient="records"))}
        typer.echo(json.dumps(payload, indent=2, default=float))
        return
    print_frame(summary, False, "Median SGP")
    typer.echo(json.dumps(uniformity, default=float))


@stats_app.command("gaps")
@handle_errors
def gaps(
    subgroup: Annotated[
        str,
        typer.Option(
            "--subgroup",
            help="race_ethnicity, economically_disadvantaged, english_learner, disability or sex.",
        ),
    ],
    focal: Annotated[str | None, typer.Option("--focal", help="Focal group value (default: all).")] = None,
    reference: Annotated[str | None, typer.Option("--reference", help="Reference group value.")] = None,
    by: Annotated[
        str, typer.Option("--by", help="Comma-separated cell columns.")
    ] = "school_id,grade_level,subject,school_year",
    v_method: Annotated[str, typer.Option("--v-method", help="trapezoid or ml.")] = "trapezoid",
    include_small_cells: Annotated[
        bool,
        typer.Option("--include-small-cells", help="Keep cells where a group has fewer than 10 students."),
    ] = False,
    plot: PlotOption = None,
    data: DataOption = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Achievement gaps: mean difference, Cohen's d, Hedges' g with CI, percent proficient, V.

    Cells where either group has fewer than 10 students are left out unless
    --include-small-cells is given (for analysts with student-level access).
    """
    from edsight.stats.gaps import achievement_gaps

    frame = _gap_frame(data, home)
    result = achievement_gaps(
        frame,
        subgroup,
        focal=_parse_value(focal),
        reference=_parse_value(reference),
        by=[c.strip() for c in by.split(",") if c.strip()],
        v_method=v_method,
        level="perf_level" if "perf_level" in frame.columns else None,
    )
    if not include_small_cells:
        result = result[~result["small_cell"].astype(bool)]
    cells = [c.strip() for c in by.split(",") if c.strip()]
    if plot is not None:
        from edsight.stats.plots import plot_estimates

        labelled = result.assign(cell=result[[*cells, "focal"]].astype(str).agg(" / ".join, axis=1))
        plot_estimates(
            labelled,
            plot,
            label="cell",
            estimate="hedges_g",
            lower="hedges_g_ci_low",
            upper="hedges_g_ci_high",
            title=f"{subgroup} gap (Hedges' g, focal minus reference)",
        )
    shown = [*cells, "focal", "n_focal", "n_reference", "mean_diff", "hedges_g", "hedges_g_ci_low"]
    shown += ["hedges_g_ci_high", "pct_proficient_gap", "v_statistic"]
    print_frame(result, as_json, f"Gaps by {subgroup}", shown)


@stats_app.command("trends")
@handle_errors
def trends(
    subgroup: Annotated[
        str | None, typer.Option("--subgroup", help="Trend of this subgroup's gap (else: mean scores).")
    ] = None,
    horizon: Annotated[int, typer.Option("--horizon", min=1, max=5, help="Years to forecast.")] = 1,
    plot: PlotOption = None,
    data: DataOption = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Multi-year trends with a forecast: mean scores by subject and grade, or a subgroup gap."""
    from edsight.stats.gaps import achievement_gaps
    from edsight.stats.trends import gap_trends, mean_score_trends

    frame = _gap_frame(data, home)
    if subgroup is None:
        result = mean_score_trends(frame, horizon=horizon)
        title = "Mean score trends"
    else:
        level = "perf_level" if "perf_level" in frame.columns else None
        gaps_by_year = achievement_gaps(frame, subgroup, by=["subject", "school_year"], level=level)
        result = gap_trends(gaps_by_year, horizon=horizon)
        title = f"Trend of the {subgroup} gap"
    if plot is not None:
        from edsight.stats.plots import plot_trend

        series = [c for c in ("subject", "grade_level", "focal") if c in result.columns]
        plot_trend(result, plot, series=series, title=title)
    shown = ["subject", "grade_level", "focal", "school_year", "is_forecast", "observed", "fitted", "pi_low"]
    shown += ["pi_high", "slope", "slope_se"]
    print_frame(result, as_json, title, shown)


def _parse_value(text: str | None) -> object:
    """Command-line group values: true/false become booleans, the rest stays text."""
    if text is None:
        return None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


__all__ = ["print_frame", "read_frame", "stats_app"]
