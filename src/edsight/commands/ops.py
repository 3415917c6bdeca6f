"""``edsight run-daily`` and ``edsight replay``: the operational loop."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from edsight.commands._output import handle_errors
from edsight.commands._shared import HomeOption, JsonOption


@handle_errors
def run_daily(
    day: Annotated[
        datetime | None, typer.Option("--date", help="Run for this date (default: today, UTC).")
    ] = None,
    step: Annotated[
        list[str] | None,
        typer.Option(
            "--step", help="Only these steps (repeatable): ingest features retrain score alerts drift."
        ),
    ] = None,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest new files from HOME/incoming, rebuild features, retrain when due, score, alert.

    Idempotent and resumable: a step done for the date is skipped; after a crash the next run
    resumes at the step that did not finish. A lock keeps two runs from overlapping. Settings
    in HOME/ops.yaml (see docs/operations.md).
    """
    from datetime import UTC

    from edsight.config import load_settings
    from edsight.ops.daily import run_daily as run

    today = day.date() if day else datetime.now(UTC).date()
    report = run(
        load_settings(home),
        today,
        only=tuple(step) if step else None,
        before_step=None if as_json else (lambda s: typer.echo(f"... {s}", err=True)),
    )
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2, default=str))
        return
    for name, detail in report.steps.items():
        extra = {k: v for k, v in detail.items() if k not in ("status", "seconds")}
        seconds = f"{detail['seconds']:.1f}s" if "seconds" in detail else ""
        typer.echo(f"{name:<9} {detail['status']:<16} {seconds:>7}  {json.dumps(extra, default=str)[:100]}")


@handle_errors
def replay(
    weeks: Annotated[int, typer.Option("--weeks", min=1, max=16, help="Weeks of the term to replay.")] = 16,
    students: Annotated[int, typer.Option("--students", min=20, help="Generated students.")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Generator seed.")] = 0,
    capacity: Annotated[
        int, typer.Option("--capacity", min=0, help="Interventions the counselor can open per day.")
    ] = 4,
    effect: Annotated[
        float,
        typer.Option(
            "--effect", min=0.0, max=1.0, help="Chance a supported student hands in work that was missing."
        ),
    ] = 0.8,
    home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replay a generated term school day by school day through the daily run.

    Produces alerts, interventions opened by a simulated counselor, and a final effectiveness
    table comparing the propensity-score estimate with the true effect. Writes into --home
    (use a fresh one).
    """
    from edsight.config import load_settings
    from edsight.ops.replay import replay as run

    settings = load_settings(home)

    def show(day: date, report: dict[str, object]) -> None:
        steps = report["steps"]
        assert isinstance(steps, dict)
        done = [k for k, v in steps.items() if v.get("status") == "done"]
        typer.echo(f"{day}  {' '.join(done)}", err=True)

    result = run(
        Path(settings.home),
        weeks=weeks,
        students=students,
        seed=seed,
        capacity=capacity,
        effect=effect,
        progress=None if as_json else show,
    )
    summary = result.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(f"{weeks} weeks replayed: {result.alerts} alerts, {result.interventions} interventions")
    typer.echo(f"true effect on missing assignments at the end: {result.true_effect:+.3f}")
    for row in summary["effectiveness"]:
        typer.echo(
            f"  {row['method']:<9} estimate {row['effect']:+.3f} "
            f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
            f"  naive {row['naive']:+.3f}  treated {row['n_treated']}, matched/used {row['n_used']}"
        )
    if summary["effectiveness"]:
        typer.echo(summary["effectiveness"][0]["caveat"])
