"""Measure value-added truth recovery and SGP distribution / speed.

python benchmarks/vam_sgp.py vam --students 30000 --years 4 --schools 50 --seeds 1,2,3
python benchmarks/vam_sgp.py star
python benchmarks/vam_sgp.py sgp [--sample-pct 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from edsight.stats._vam_truth import coverage, truth_on_estimate_scale
from edsight.stats.sgp import StudentGrowthPercentiles, sgp_long_from_wide, sgp_uniformity
from edsight.stats.vam import ValueAddedModel, value_added_tables, vam_frame_from_tables
from edsight.synth.district import generate_district

DATA = Path(__file__).parents[1] / "tests" / "data"


def _corr(a: pd.Series, b: pd.Series) -> float:
    return round(float(np.corrcoef(a, b)[0, 1]), 3)


def _cov(g: pd.DataFrame, truth: str, level: float) -> float:
    return round(coverage(g["effect"].to_numpy(), g["se"].to_numpy(), g[truth].to_numpy(), level), 3)


def _recovery(model: ValueAddedModel, truth: dict[str, pd.DataFrame]) -> dict[str, dict[str, float]]:
    """Correlations, coverage and slopes against the generator's truth, per subject."""
    ty, t, s = truth_on_estimate_scale(model.residuals_, truth, unit=85.0)
    a = model.teacher_year_effects_.merge(ty, on=["subject", "teacher_id", "school_year"])
    a = a[a["students"] >= 10]
    b = model.teacher_effects_.merge(t, on=["subject", "teacher_id"])
    b = b[b["students"] >= 10]
    c = model.school_effects_.merge(s, on=["subject", "school_id"])
    c = c[c["students"] >= 100]
    out: dict[str, dict[str, float]] = {}
    for subject in sorted(a["subject"].unique()):
        g, h, k = a[a["subject"] == subject], b[b["subject"] == subject], c[c["subject"] == subject]
        out[subject] = {
            "teacher_years": len(g),
            "corr_teacher_year": _corr(g["effect"], g["true_total"]),
            "coverage90_teacher_year": _cov(g, "true_total", 0.9),
            "coverage95_teacher_year": _cov(g, "true_total", 0.95),
            "corr_forecast": _corr(g["forecast"], g["true_total"]),
            "teachers": len(h),
            "corr_teacher_mean": _corr(h["effect"], h["true_total"]),
            "coverage90_teacher_mean": _cov(h, "true_total", 0.9),
            "coverage95_teacher_mean": _cov(h, "true_total", 0.95),
            "corr_within_school_vs_teacher_effect": _corr(h["effect_within_school"], h["true_teacher"]),
            "schools": len(k),
            "corr_school_vs_school_total": _corr(k["effect"], k["true_school_total"]),
            "corr_school_vs_generator_school_effect": _corr(k["effect"], k["true_school"]),
            "slope_school_raw_mean_on_truth": round(
                float(np.polyfit(k["true_school_total"], k["raw_mean"], 1)[0]), 3
            ),
            "coverage90_school": _cov(k, "true_school_total", 0.9),
            "coverage95_school": _cov(k, "true_school_total", 0.95),
        }
    return out


def bench_vam(students: int, years: int, schools: int, seed: int) -> dict[str, object]:
    """One district: the model with the prior-score SEM correction and, as the baseline in
    the same process, the same frame without the ``sem`` column (no correction)."""
    data = generate_district(students, n_years=years, n_schools=schools, seed=seed)
    t0 = time.perf_counter()
    frame = vam_frame_from_tables(data.tables)
    t1 = time.perf_counter()
    model = ValueAddedModel(standardize=False).fit(frame)
    t2 = time.perf_counter()
    base = ValueAddedModel(standardize=False).fit(frame.drop(columns="sem"))
    t3 = time.perf_counter()
    out: dict[str, object] = {
        "seed": seed,
        "frame_s": round(t1 - t0, 2),
        "fit_s": round(t2 - t1, 2),
        "fit_baseline_s": round(t3 - t2, 2),
        "fit_ratio": round((t2 - t1) / max(t3 - t2, 1e-9), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "model": _recovery(model, data.truth),
        "baseline_no_sem": _recovery(base, data.truth),
    }
    comp = model.components_
    out["components"] = comp.drop(columns=["autocovariance", "pairs"]).round(4).to_dict(orient="records")
    return out


def summarize(runs: list[dict[str, object]], key: str) -> dict[str, dict[str, float]]:
    """Mean of every figure over the seeds, per subject."""
    rows = [
        {"subject": subject, **figures}
        for run in runs
        for subject, figures in run[key].items()  # type: ignore[attr-defined]
    ]
    return pd.DataFrame(rows).groupby("subject").mean().round(3).to_dict(orient="index")


def bench_star() -> dict[str, object]:
    star = pd.read_csv(DATA / "star" / "star.csv")
    star["grade_level"] = star["gr"].replace({"K": "0"}).astype(int)
    long = star.melt(
        id_vars=["id", "sch", "tch", "grade_level", "ses", "eth", "sx"],
        value_vars=["read", "math"],
        var_name="subject",
        value_name="score",
    ).dropna(subset=["score"])
    long = long.rename(columns={"id": "person_id", "sch": "school_id", "tch": "teacher_id"})
    long["school_year"] = long["grade_level"]
    long["subject"] = long["subject"].replace({"read": "reading"})
    tabs = value_added_tables(long, covariates=("ses", "eth", "sx"))
    comp = tabs["components"]
    top = tabs["teacher"].sort_values("effect").groupby("subject").tail(3)
    sch = tabs["school"].sort_values("effect").groupby("subject").tail(3)
    return {
        "components": comp[
            [
                "subject",
                "students",
                "teachers",
                "sd_teacher_year",
                "sd_school",
                "mean_reliability_teacher_year",
                "mean_reliability_school",
            ]
        ].to_dict(orient="records"),
        "teacher_effect_sd": tabs["teacher"].groupby("subject")["effect"].std().round(3).to_dict(),
        "top_teachers": top[["subject", "teacher_id", "students", "effect", "lower", "upper"]]
        .round(3)
        .to_dict(orient="records"),
        "top_schools": sch[["subject", "school_id", "students", "effect", "lower", "upper"]]
        .round(3)
        .to_dict(orient="records"),
    }


def bench_sgp(sample_pct: int) -> dict[str, object]:
    wide = pd.read_csv(DATA / "sgp" / "sgpData.csv")
    wide = wide[wide["ID"] % 100 < sample_pct]
    long = sgp_long_from_wide(wide)
    t0 = time.perf_counter()
    model = StudentGrowthPercentiles(max_order=2).fit(long)
    fit_s = time.perf_counter() - t0
    u = sgp_uniformity(model.sgp_["sgp"])
    return {"fit_s": round(fit_s, 1), "models": len(model.fits_), **u}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["vam", "star", "sgp"])
    p.add_argument("--students", type=int, default=30000)
    p.add_argument("--years", type=int, default=4)
    p.add_argument("--schools", type=int, default=50)
    p.add_argument("--seeds", default="1,2,3", help="comma-separated generator seeds")
    p.add_argument("--sample-pct", type=int, default=100)
    a = p.parse_args()
    if a.what == "vam":
        runs = [bench_vam(a.students, a.years, a.schools, int(x)) for x in a.seeds.split(",")]
        res = {
            "runs": runs,
            "mean_over_seeds": summarize(runs, "model"),
            "baseline_mean_over_seeds": summarize(runs, "baseline_no_sem"),
        }
    elif a.what == "star":
        res = bench_star()
    else:
        res = bench_sgp(a.sample_pct)
    print(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
