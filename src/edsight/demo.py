"""``make demo``: the main job end to end on the embedded default.

Generates a K-12 district and a Canvas course, loads both into a fresh warehouse
under the data home, prints what landed, builds the leak-free weekly features and
labels, and cross-validates an early-warning model. Then it trains a model on the Canvas
course (``will_fail_academically``) and one on the district (``dropout_1y``), scores the
last week of each, raises alerts, creates one demo account per role, prints their logins
(username, password, role, TOTP secret and a current code) and serves the dashboard on
http://127.0.0.1:8000 until interrupted. ``EDSIGHT_DEMO_NO_SERVE=1`` stops before serving
(tests and CI).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edsight.config import Settings, load_settings
from edsight.errors import WarehouseError
from edsight.features.labels import store_labels
from edsight.features.weekly import store_features
from edsight.store.overview import district_overview, lms_overview
from edsight.store.warehouse import Warehouse
from edsight.synth.canvas import write_canvas
from edsight.synth.district import write_district
from edsight.web.demo_accounts import DemoAccount

DEMO_SEED = 7
DEMO_MODELS = (("lms", "will_fail_academically"), ("k12", "dropout_1y"))


def run_demo(
    home: Path | None = None, console: Console | None = None, *, serve: bool = False
) -> dict[str, object]:
    """Run the demo into ``home`` (a fresh warehouse and governance store there) and return the
    overview; with ``serve`` it then serves the dashboard on 127.0.0.1:8000 until interrupted."""
    console = console or Console()
    settings = load_settings(home)
    demo_dir = settings.home / "demo"
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    # A fresh start: the warehouse, the demo's models, and the governance store (its accounts,
    # audit log and anchor belong to the previous demo's warehouse).
    for path in (settings.warehouse_path, settings.governance_path, settings.audit_anchor_path):
        if path.exists():
            path.unlink()
    if (settings.home / "models").exists():
        shutil.rmtree(settings.home / "models")
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
    served = _dashboard_ready(settings, warehouse, console)
    console.print(f"Done in {time.perf_counter() - started:.1f} s. Data home: {settings.home}")
    overview: dict[str, object] = {
        "district": district,
        "lms": lms,
        "features": feature_rows,
        "early_warning": early_warning,
        **served,
    }
    if serve:
        _serve(settings, console)
    return overview


def _last_weeks(warehouse: Warehouse, kind: str, n: int = 4) -> list[date]:
    """The ends of the last ``n`` feature weeks of ``kind``, newest first (Canvas sections only
    for ``lms``)."""
    sql = {
        "k12": "SELECT DISTINCT week_end FROM weekly_features_k12 ORDER BY 1 DESC LIMIT ?",
        "lms": "SELECT DISTINCT week_end FROM weekly_features_lms WHERE section_id IN "
        "(SELECT edsight_id FROM id_map WHERE source_system = 'canvas' AND entity = 'section') "
        "ORDER BY 1 DESC LIMIT ?",
    }[kind]
    with warehouse.connect(read_only=True) as con:
        found = [r[0] for r in con.execute(sql, [n]).fetchall()]
    if not found:
        raise WarehouseError(f"demo: no {kind} feature weeks to score")
    return [d if isinstance(d, date) else date.fromisoformat(str(d)[:10]) for d in found]


def _dashboard_ready(settings: Settings, warehouse: Warehouse, console: Console) -> dict[str, object]:
    """Train and score both models, create the demo accounts, raise alerts, print the logins."""
    from edsight.governance.identity import GovernanceStore
    from edsight.models.pipeline import score, train_model
    from edsight.ops.alerts import AlertPolicy
    from edsight.ops.daily import OpsConfig, run_daily
    from edsight.web.demo_accounts import create_demo_accounts, demo_targets

    scored: dict[str, int] = {}
    weeks: dict[str, date] = {}
    for kind, target in DEMO_MODELS:
        with console.status(f"Training a {kind} model for {target}..."):
            record = train_model(warehouse, kind=kind, target=target, seed=DEMO_SEED)
        # The last week that falls in a running term or school year (the very last feature
        # week can end after the year's last day, when there is nothing current to score).
        for day in _last_weeks(warehouse, kind):
            weeks[kind] = day
            with console.status(f"Scoring the week ending {day} with it (reasons for the flagged)..."):
                scored[kind] = score(warehouse, as_of=day, kind=kind)
            if scored[kind]:
                break
        console.print(f"Model {record.name} v{record.version}: {scored[kind]:,} scores as of {weeks[kind]}.")

    store = GovernanceStore(settings)
    try:
        with warehouse.connect(read_only=True) as con:
            accounts = create_demo_accounts(store, con)
            targets = demo_targets(con)
    finally:
        store.close()
    by_role = {a.role: a.username for a in accounts}
    # Dropout within a year is rare, so few students cross the default 0.5; the demo alerts on
    # the top 5 % of current K-12 risk instead (a district sets its own threshold in ops.yaml).
    with warehouse.connect(read_only=True) as con:
        top = con.execute(
            "SELECT quantile_cont(probability, 0.95) FROM risk_score_latest WHERE target = 'dropout_1y'"
        ).fetchall()[0][0]
    threshold = min(max(float(top or 0.5), 0.02), 0.5)
    config = OpsConfig(
        alerts=AlertPolicy(threshold=threshold),
        caseloads={by_role["counselor"]: [str(p) for p in targets["caseload"]]},  # type: ignore[attr-defined]
        principals={str(targets["school"]): [by_role["principal"]]},
    )
    alerts = 0
    for day in sorted(set(weeks.values())):
        report = run_daily(settings, day, config=config, only=("alerts",))
        alerts += int(report.steps.get("alerts", {}).get("alerts", 0))
    console.print(
        f"Alerts raised: {alerts:,} at a risk threshold of {threshold:.2f} (teachers by section, "
        "the demo counselor and principal)."
    )
    console.print(demo_accounts_table(accounts, show_secrets=True))
    return {"scores": scored, "alerts": alerts, "accounts": accounts}


def demo_accounts_table(accounts: Sequence[DemoAccount], *, show_secrets: bool) -> Table:
    """The demo logins as a table; passwords, TOTP secrets and codes only with ``show_secrets``."""
    import pyotp

    columns = ["username", "role"] + (["password", "TOTP secret", "TOTP code now"] if show_secrets else [])
    table = Table(*columns, title="Demo accounts (log in at http://127.0.0.1:8000/login)")
    for a in accounts:
        row = [a.username, a.role]
        if show_secrets:
            code = pyotp.TOTP(a.totp_secret).now() if a.totp_secret else "-"
            row += [a.password, a.totp_secret or "- (no MFA for parents)", code]
        table.add_row(*row)
    return table


def _serve(settings: Settings, console: Console) -> None:
    import uvicorn

    from edsight.web.app import create_app

    console.print("Serving the dashboard on http://127.0.0.1:8000 (Ctrl-C stops it).")
    uvicorn.run(create_app(settings), host="127.0.0.1", port=8000, log_level="warning")


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
    run_demo(serve=os.environ.get("EDSIGHT_DEMO_NO_SERVE", "") != "1")
