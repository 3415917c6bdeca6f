"""Replay a generated term day by day through the daily run, with staff acting on alerts.

The Canvas generator writes a whole 16-week term; the replay hands it to the warehouse as it
would have arrived: the roster and assignment list the day before the term, then each day
the submissions made that day and the activity periods that ended that day, as files under
``HOME/incoming/<date>/`` that :func:`edsight.ops.daily.run_daily` ingests the next morning
before it rebuilds features, trains when due, scores and raises alerts.

Staff are simulated: each day the counselor takes up to ``capacity`` of the day's new
high-risk alerts, the highest probabilities first, and opens the intervention recommended
for the student's reason codes. The intervention works, by construction: from its start,
each of the student's later assignments in that course that would have been missing is
handed in on time with probability ``effect``, scored at the student's own average. Because
the untouched term is kept beside the replayed one, the *true* effect on the missing
assignments at the end of the replay, for the students who got the support, is known
exactly, and the propensity-score estimate of :mod:`edsight.ops.effectiveness` is reported
next to it.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.ops.alerts import AlertPolicy
from edsight.ops.daily import OpsConfig, run_daily
from edsight.ops.effectiveness import intervention_effect
from edsight.ops.interventions import assign_intervention, close_intervention, recommend
from edsight.sql import quote_ident
from edsight.store.warehouse import Warehouse

__all__ = ["ReplayResult", "replay"]

log = logging.getLogger(__name__)

COUNSELOR = "counselor-replay"
TARGET = "will_fail_academically"
STATIC_TABLES = ("organization", "term", "person", "course", "section", "enrollment", "assignment", "id_map")


@dataclass
class ReplayResult:
    """What the replayed term produced."""

    days: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    alerts: int = 0
    interventions: int = 0
    effectiveness: pd.DataFrame = field(default_factory=pd.DataFrame)
    true_effect: float = float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "alerts": self.alerts,
            "interventions": self.interventions,
            "true_effect": self.true_effect,
            "effectiveness": self.effectiveness.to_dict(orient="records"),
        }


def _write_batch(folder: Path, tables: dict[str, pd.DataFrame]) -> bool:
    tables = {k: v for k, v in tables.items() if len(v)}
    if not tables:
        return False
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, frame in tables.items():
        frame.to_parquet(partial / f"{name}.parquet", index=False)
    partial.rename(folder)
    return True


def _source(work: Path, students: int, seed: int) -> tuple[Warehouse, dict[str, pd.DataFrame]]:
    from edsight.synth.canvas import write_canvas

    write_canvas(work / "canvas", students, seed=seed, fmt="parquet")
    staging = Warehouse(Settings(home=work / "staging"))
    staging.init()
    staging.load_directory(work / "canvas")
    with staging.connect(read_only=True) as con:
        frames = {
            t: con.sql(f"SELECT * FROM {quote_ident(t)}").df()  # noqa: S608 - declared table names
            for t in (*STATIC_TABLES, "submission", "lms_activity")
        }
    return staging, frames


def _final_missing(wh: Warehouse, end: date) -> pd.DataFrame:
    """Missing assignments per student and course in the last week ended by ``end``."""
    from edsight.features.weekly import build_lms_features

    features = build_lms_features(wh, as_of=end)
    last = features.sort_values("week").groupby(["person_id", "section_id"], as_index=False).last()
    return last[["person_id", "section_id", "assignments_missing"]]


def _rescue(
    submissions: pd.DataFrame,
    assignments: pd.DataFrame,
    person_id: str,
    section_id: str,
    start: datetime,
    effect: float,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """The student's later missing work in the section, handed in on time with probability ``effect``."""
    mine = submissions.merge(
        assignments[["assignment_id", "section_id", "due_at", "points_possible"]], on="assignment_id"
    )
    mine = mine[(mine["person_id"] == person_id) & (mine["section_id"] == section_id)]
    done = mine[mine["score"].notna() & (mine["points_possible"] > 0)]
    average = float((done["score"] / done["points_possible"]).mean()) if len(done) else 0.7
    todo = mine[mine["submitted_at"].isna() & (mine["due_at"] > pd.Timestamp(start))]
    todo = todo[rng.random(len(todo)) < effect]
    if todo.empty:
        return todo[submissions.columns]
    rescued = todo.copy()
    rescued["submitted_at"] = rescued["due_at"] - pd.Timedelta(hours=2)
    rescued["missing"] = False
    rescued["late"] = False
    rescued["seconds_late"] = 0
    rescued["score"] = (np.clip(average, 0, 1) * rescued["points_possible"]).round(2)
    rescued["attempt"] = 1
    rescued["workflow_state"] = "graded"
    return rescued[submissions.columns]


def replay(
    home: Path,
    *,
    weeks: int = 16,
    students: int = 300,
    seed: int = 0,
    capacity: int = 4,
    effect: float = 0.8,
    progress: Callable[[date, dict[str, Any]], None] | None = None,
) -> ReplayResult:
    """Replay ``weeks`` weeks of a generated term into the warehouse at ``home``."""
    from edsight.synth.canvas import N_WEEKS

    if not 1 <= weeks <= N_WEEKS:
        raise InvalidInput(f"weeks must be between 1 and {N_WEEKS} (the generated term), got {weeks}")
    if not 0 <= effect <= 1:
        raise InvalidInput(f"effect is a probability between 0 and 1, got {effect}")
    settings = Settings(home=home)
    work = home / "replay-source"
    shutil.rmtree(work, ignore_errors=True)
    staging, src = _source(work, students, seed)
    rng = np.random.default_rng(seed)
    term_start = pd.Timestamp(src["term"]["start_date"].min()).date()
    people = src["person"][src["person"]["role"] == "student"]["person_id"].tolist()
    config = OpsConfig(
        kinds=("lms",),
        targets={"lms": (TARGET,)},
        retrain_every_days=14,
        alerts=AlertPolicy(rules=("risk_threshold",), routes={"risk_threshold": ("counselor",)}),
        caseloads={COUNSELOR: people},
    )
    incoming = home / "incoming"
    subs = src["submission"].copy()
    subs["day"] = pd.to_datetime(subs["submitted_at"]).dt.normalize()
    activity = src["lms_activity"].copy()
    ends = pd.to_datetime(activity["period_start"]) + pd.to_timedelta(
        activity["period"].map({"hour": 1 / 24, "day": 1.0, "week": 7.0}).fillna(1.0), unit="D"
    )
    activity["day"] = (ends - pd.Timedelta(microseconds=1)).dt.normalize()
    _write_batch(
        incoming / f"{term_start - timedelta(days=1)}-roster",
        {**{t: src[t] for t in STATIC_TABLES}, "submission": subs[subs["day"].isna()].drop(columns="day")},
    )
    treated: dict[tuple[str, str], date] = {}
    rescued_rows: list[pd.DataFrame] = []
    result = ReplayResult(days=weeks * 7)
    last_run = term_start - timedelta(days=2)
    for offset in range(-1, weeks * 7):
        day = term_start + timedelta(days=offset)
        if (day + timedelta(days=1)).weekday() >= 5 and offset < weeks * 7 - 1:
            continue  # the job runs on school-day mornings; weekend data arrives on Monday
        window = (pd.Timestamp(last_run), pd.Timestamp(day))
        last_run = day
        todays = [subs[(subs["day"] > window[0]) & (subs["day"] <= window[1])].drop(columns="day")]
        todays += [
            r[(pd.to_datetime(r["submitted_at"]).dt.normalize() > window[0])
              & (pd.to_datetime(r["submitted_at"]).dt.normalize() <= window[1])]
            for r in rescued_rows
        ]  # fmt: skip
        batch = pd.concat(todays, ignore_index=True).drop_duplicates(
            ["assignment_id", "person_id"], keep="last"
        )
        _write_batch(
            incoming / f"{day}-daily",
            {
                "submission": batch,
                "lms_activity": activity[(activity["day"] > window[0]) & (activity["day"] <= window[1])].drop(
                    columns="day"
                ),
            },
        )
        report = run_daily(settings, day + timedelta(days=1), config=config)
        result.runs.append(report.as_dict())
        new = _act_on_alerts(Warehouse(settings), day + timedelta(days=1), treated, capacity, rng)
        for person_id, section_id in new:
            rescued_rows.append(
                _rescue(src["submission"], src["assignment"], person_id, section_id,
                        datetime.combine(day + timedelta(days=1), datetime.min.time()), effect, rng)
            )  # fmt: skip
        if progress is not None:
            progress(day, report.as_dict())
    _close_and_measure(Warehouse(settings), staging, treated, result, term_start + timedelta(days=weeks * 7))
    return result


def _act_on_alerts(
    wh: Warehouse, today: date, treated: dict[tuple[str, str], date], capacity: int, rng: np.random.Generator
) -> list[tuple[str, str]]:
    """The counselor opens up to ``capacity`` interventions for today's highest-risk new alerts."""
    with wh.connect() as con:
        alerts = con.execute(
            """
            SELECT a.person_id, json_extract_string(a.detail, '$.section_id') AS section_id,
                   CAST(json_extract_string(a.detail, '$.value') AS DOUBLE) AS probability, r.reasons
            FROM alert a
            LEFT JOIN risk_score r ON r.person_id = a.person_id
                 AND r.section_id = json_extract_string(a.detail, '$.section_id')
                 AND r.as_of = CAST(json_extract_string(a.detail, '$.as_of') AS DATE)
                 AND r.target = json_extract_string(a.detail, '$.target')
            WHERE CAST(a.raised_at AS DATE) >= ? - INTERVAL 1 DAY
              AND CAST(json_extract_string(a.detail, '$.as_of') AS DATE) = ?
            ORDER BY probability DESC, a.person_id
            """,
            [today, today],
        ).df()
        alerts = alerts[
            [
                (str(p), str(s)) not in treated
                for p, s in zip(alerts["person_id"], alerts["section_id"], strict=True)
            ]
        ].drop_duplicates(["person_id", "section_id"])
        if alerts.empty or capacity == 0:
            return []
        # Staff favour the highest risks but do not follow the score blindly: a weighted draw.
        weights = alerts["probability"].fillna(0.5).to_numpy(dtype=float) + 0.05
        take = min(capacity, len(alerts))
        picked = rng.choice(len(alerts), size=take, replace=False, p=weights / weights.sum())
        chosen: list[tuple[str, str]] = []
        for row in alerts.iloc[np.sort(picked)].itertuples():
            key = (str(row.person_id), str(row.section_id))
            reasons = json.loads(row.reasons) if isinstance(row.reasons, str) else []
            recs = recommend(reasons)
            kind = recs[0]["intervention"] if recs else "tutoring"
            assign_intervention(
                con, key[0], kind, owner_id=COUNSELOR, author_id=COUNSELOR, start=today, reasons=reasons,
                status="active", note="opened from an early-warning alert (replay)",
            )  # fmt: skip
            treated[key] = today
            chosen.append(key)
    return chosen


def _close_and_measure(
    wh: Warehouse, staging: Warehouse, treated: dict[tuple[str, str], date], result: ReplayResult, end: date
) -> None:
    actual = _final_missing(wh, end).rename(columns={"assignments_missing": "final"})
    untouched = _final_missing(staging, end).rename(columns={"assignments_missing": "final_without"})
    with wh.connect() as con:
        first_alert = con.execute(
            """
            SELECT a.person_id, json_extract_string(a.detail, '$.section_id') AS section_id,
                   min(CAST(json_extract_string(a.detail, '$.as_of') AS DATE)) AS alerted_on,
                   arg_min(CAST(json_extract_string(a.detail, '$.value') AS DOUBLE),
                           CAST(json_extract_string(a.detail, '$.as_of') AS DATE)) AS probability
            FROM alert a GROUP BY ALL
            """
        ).df()
        at_alert = con.execute(
            """
            SELECT f.person_id, f.section_id, f.week_end, f.current_grade, f.assignments_missing,
                   f.page_views, f.missing_rate
            FROM weekly_features_lms f
            """
        ).df()
        result.alerts = int(con.execute("SELECT count(*) FROM alert").fetchall()[0][0])
        for (person_id, _section), _start in treated.items():
            rows = con.execute(
                "SELECT intervention_id FROM intervention WHERE person_id = ? AND status <> 'closed'",
                [person_id],
            ).fetchall()
            for (iid,) in rows:
                close_intervention(con, iid, author_id=COUNSELOR, outcome="no_change", end=end,
                                   note="term ended (replay)")  # fmt: skip
    result.interventions = len(treated)
    frame = first_alert.merge(actual, on=["person_id", "section_id"]).merge(
        untouched, on=["person_id", "section_id"]
    )
    frame["alerted_on"] = pd.to_datetime(frame["alerted_on"])
    at_alert["week_end"] = pd.to_datetime(at_alert["week_end"])
    frame = pd.merge_asof(
        frame.sort_values("alerted_on"),
        at_alert.sort_values("week_end"),
        left_on="alerted_on",
        right_on="week_end",
        by=["person_id", "section_id"],
    )
    frame["treated"] = [
        (p, s) in treated for p, s in zip(frame["person_id"], frame["section_id"], strict=True)
    ]
    got = frame[frame["treated"]]
    result.true_effect = float((got["final"] - got["final_without"]).mean()) if len(got) else float("nan")
    estimates: list[dict[str, object]] = []
    covariates = ["probability", "current_grade", "assignments_missing", "missing_rate", "page_views"]
    for method in ("matching", "ipw"):
        try:
            est = intervention_effect(
                frame, treatment="treated", outcome="final", covariates=covariates, method=method, n_boot=100
            )
        except InvalidInput as exc:
            log.warning("effectiveness (%s) not estimated: %s", method, exc)
            continue
        estimates.append({**est.as_row(), "true_effect": result.true_effect, "caveat": est.caveat})
    result.effectiveness = pd.DataFrame(estimates)
