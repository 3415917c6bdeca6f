"""``make demo``: the main job end to end on the embedded default.

Generates a K-12 district and a Canvas course, loads both into a fresh warehouse
under the data home, prints what landed, builds the leak-free weekly features and
labels, and cross-validates an early-warning model. Grows as later stages land.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edsight.config import load_settings
from edsight.features.labels import store_labels
from edsight.features.weekly import store_features
from edsight.store.overview import district_overview, lms_overview
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas
from edsight.synth.district import write_district

DEMO_SEED = 7


def run_demo(home: Path | None = None, console: Console | None = None) -> dict[str, object]:
    """Run the demo into ``home`` (a fresh warehouse there) and return the overview."""
    console = console or Console()
    settings = load_settings(home)
    demo_dir = settings.home / "demo"
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    if settings.warehouse_path.exists():
        settings.warehouse_path.unlink()
    warehouse = Warehouse(settings)
    warehouse.init()
    started = time.perf_counter()

    with console.status("Generating a K-12 district (4,000 students, 4 years, 8 schools)..."):
        write_district(demo_dir / "district", 4000, n_years=4, n_schools=8, seed=DEMO_SEED)
    with console.status("Generating a Canvas course term (1,000 students, 16 weeks)..."):
        write_canvas(demo_dir / "canvas", 1000, seed=DEMO_SEED, fmt="csv")

    loads = Table(
        "source", "file rows", "warehouse rows", "quarantined", title="Loaded into " + str(warehouse.path)
    )
    for name in ("district", "canvas"):
        with console.status(f"Validating and loading {name}..."):
            result = warehouse.load_directory(demo_dir / name)
        loads.add_row(
            name, f"{result.rows_read:,}", f"{result.rows_stored:,}", f"{result.rows_quarantined:,}"
        )
    console.print(loads)

    with warehouse.connect(read_only=True) as con:
        district = district_overview(con)
        lms = lms_overview(con)
    years = Table("school year", "enrolled", "chronic absence", "proficient math", "proficient reading")
    for year, facts in district["years"].items():
        years.add_row(
            f"{year}-{(year + 1) % 100:02d}",
            f"{facts.get('enrolled', 0):,}",
            _pct(facts.get("chronic_absence")),
            _pct(facts.get("proficient_math")),
            _pct(facts.get("proficient_reading")),
        )
    console.print(years)
    console.print(
        f"District: {district['students']:,} students, {district['schools']} schools, "
        f"{district['sections']:,} sections. Graduation by cohort: "
        + json.dumps({k: v["rate"] for k, v in district["graduation_rate_by_cohort"].items()})
    )
    console.print(
        f"Canvas: {lms['submissions']:,} submissions, submitted {_pct(lms['submission_rate'])}, "
        f"late among submitted {_pct(lms['late_among_submitted'])}."
    )
    with console.status("Building leak-free weekly features and 4-week-ahead labels..."):
        feature_rows = store_features(warehouse)
        feature_rows.update(store_labels(warehouse))
    console.print("Features: " + ", ".join(f"{name} {n:,}" for name, n in feature_rows.items()))
    with console.status("Cross-validating an early-warning model (week 8, folds by student)..."):
        early_warning = _week8_disengagement(warehouse)
    console.print(
        f"Early warning, will_disengage at week 8: AUC {early_warning['auc']:.3f} "
        f"(one-feature baseline {early_warning['baseline_auc']:.3f}), PR-AUC "
        f"{early_warning['pr_auc']:.3f}, Brier {early_warning['brier']:.3f}, "
        f"{int(early_warning['rows']):,} student-courses."
    )
    console.print(f"Done in {time.perf_counter() - started:.1f} s. Data home: {settings.home}")
    return {"district": district, "lms": lms, "features": feature_rows, "early_warning": early_warning}


def _week8_disengagement(warehouse: Warehouse) -> dict[str, float]:
    """Cross-validated 4-week-ahead disengagement risk from week-8 features."""
    from sklearn.metrics import roc_auc_score

    from edsight.models.risk import cross_validate

    with warehouse.connect(read_only=True) as con:
        # LMS features are built for every section; this model is about Canvas courses.
        rows = con.sql(
            "SELECT * FROM weekly_features_lms JOIN labels_lms USING (person_id, section_id, week) "
            "WHERE week = 8 AND section_id IN (SELECT edsight_id FROM id_map "
            "WHERE source_system = 'canvas' AND entity = 'section')"
        ).df()
    others = ["will_fail_academically", "will_miss_assignments", "will_dropout"]
    result = cross_validate(
        rows,
        target="will_disengage",
        positive=True,
        id_col="person_id",
        drop=["section_id", "week", "week_start", "week_end", "horizon_weeks", *others],
        folds=5,
        seed=DEMO_SEED,
    )
    baseline = roc_auc_score(rows["will_disengage"], -rows["page_views"])
    return {
        "auc": float(result["auc"]),
        "pr_auc": float(result["pr_auc"]),
        "brier": float(result["brier"]),
        "baseline_auc": float(baseline),
        "rows": float(len(rows)),
    }


def _pct(value: object) -> str:
    return "-" if value is None else f"{float(value):.1%}"  # type: ignore[arg-type]


if __name__ == "__main__":
    run_demo()
