"""Statistics the school page shows (gaps, value-added) and the model cards.

The statistics run over the whole warehouse and take seconds, so each is computed once per
process through :meth:`DashboardQueries.cached` and sliced per school afterwards. A
statistic that cannot be estimated on the data at hand (too few years, no tests) shows as
unavailable with the reason instead of failing the page.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from edsight.errors import EdsightError
from edsight.web.queries import DashboardQueries

log = logging.getLogger(__name__)

GAP_SUBGROUP = "economically_disadvantaged"
GAP_COLUMNS = (
    "subject",
    "school_year",
    "n_focal",
    "n_reference",
    "small_cell",
    "mean_diff",
    "hedges_g",
    "pct_proficient_gap",
)


def _gaps(con: duckdb.DuckDBPyConnection) -> pd.DataFrame | str:
    from edsight.stats.gaps import achievement_gaps, gap_frame_from_tables

    try:
        tables = {
            n: con.table(n).df() for n in ("assessment_result", "student_demographics", "school_enrollment")
        }
        frame = gap_frame_from_tables(tables)
        if frame.empty:
            return "no state test results in the warehouse"
        return achievement_gaps(frame, GAP_SUBGROUP, by=("school_id", "subject", "school_year"))
    except (EdsightError, ValueError, KeyError) as exc:
        log.info("achievement gaps unavailable: %s", exc)
        return f"not estimable on this data ({type(exc).__name__})"


def _value_added(con: duckdb.DuckDBPyConnection) -> pd.DataFrame | str:
    from edsight.stats.vam import school_value_added, vam_frame_from_warehouse

    try:
        frame = vam_frame_from_warehouse(con)
        if frame.empty:
            return "no tested students linked to teachers"
        return school_value_added(frame)
    except (EdsightError, ValueError, KeyError, ZeroDivisionError, ArithmeticError) as exc:
        log.info("value-added unavailable: %s", exc)
        return f"not estimable on this data ({type(exc).__name__})"


def start_statistics(queries: DashboardQueries) -> threading.Thread:
    """Compute the statistics in a background thread (at startup: the first school page
    then finds them ready instead of waiting seconds)."""

    def run() -> None:
        started = time.perf_counter()
        try:
            queries.student_now()
            queries.history()
            queries.cached("gaps", _gaps)
            queries.cached("value_added", _value_added)
        except Exception:
            log.exception("computing the school statistics failed; pages will retry")
            return
        log.info("school statistics ready in %.1f s", time.perf_counter() - started)

    thread = threading.Thread(target=run, name="edsight-statistics", daemon=True)
    thread.start()
    return thread


def school_gaps(queries: DashboardQueries, school_id: str, *, hide_small: bool = True) -> pd.DataFrame | str:
    """Gap rows (disadvantaged minus not) of one school, newest year first; or why there are none.

    With ``hide_small`` the statistics of cells where either group has fewer than 10
    students are blanked (the ``small_cell`` flag of :func:`achievement_gaps`)."""
    gaps = queries.cached("gaps", _gaps)
    if isinstance(gaps, str):
        return gaps
    rows = gaps[gaps["school_id"] == school_id]
    if rows.empty:
        return "no tested students at this school"
    rows = rows.loc[:, list(GAP_COLUMNS)].sort_values(["school_year", "subject"], ascending=[False, True])
    if hide_small:
        small = rows["small_cell"].astype(bool)
        stats = ["n_focal", "n_reference", "mean_diff", "hedges_g", "pct_proficient_gap"]
        rows[stats] = rows[stats].astype(float).mask(small)
    return rows


def school_value_added_rows(queries: DashboardQueries, school_id: str) -> pd.DataFrame | str:
    va = queries.cached("value_added", _value_added)
    if isinstance(va, str):
        return va
    rows = va[va["school_id"] == school_id]
    if rows.empty:
        return "no value-added estimate for this school"
    return rows[["subject", "students", "teachers", "effect", "lower", "upper", "reliability"]]


def model_cards(home: Path) -> list[dict[str, Any]]:
    """The latest version of every saved model, as a card: metrics, window, features, fairness."""
    from edsight.models.registry import list_models

    listing = list_models(home)
    cards: list[dict[str, Any]] = []
    for name, group in listing.groupby("name", sort=True):
        version = str(group["version"].astype(int).max())
        path = Path(home) / "models" / str(name) / version / "metadata.json"
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cards.append({"name": name, "version": version, "error": "metadata.json is unreadable"})
            continue
        metrics = meta.get("metrics") or {}
        scalars = {
            k: v for k, v in metrics.items() if isinstance(v, int | float | str) and not isinstance(v, bool)
        }
        groups = _group_tables(metrics) + _group_tables(meta.get("extra") or {})
        cards.append(
            {
                "name": name,
                "version": version,
                "created_at": meta.get("created_at"),
                "learner": (meta.get("params") or {}).get("learner"),
                "training_window": meta.get("training_window") or {},
                "features": meta.get("features") or [],
                "metrics": scalars,
                "groups": groups,
                "data_sha256": meta.get("data_sha256"),
            }
        )
    return cards


def _group_tables(section: dict[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    """Per-group metric tables (``by_group`` / fairness dicts of dicts) found in a metadata section."""
    out: list[tuple[str, pd.DataFrame]] = []
    for key, value in section.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            inner = value
            # {"sex": {"F": {...}, "M": {...}}} or {"F": {"auc": ...}}
            if all(isinstance(vv, dict) for v in inner.values() for vv in v.values()):
                for attr, groups in inner.items():
                    out.append((f"{key}: {attr}", _flat(groups)))
            else:
                out.append((key, _flat(inner)))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.append((key, pd.DataFrame(value).head(50)))
    return out


def _flat(groups: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(groups, orient="index")
    frame = frame[[c for c in frame.columns if frame[c].map(lambda x: not isinstance(x, dict | list)).all()]]
    return frame.reset_index(names="group").head(50)


__all__ = ["model_cards", "school_gaps", "school_value_added_rows", "start_statistics"]
