"""Achievement gaps between student subgroups, by school, grade, subject and year.

``achievement_gaps(frame, "economically_disadvantaged")`` returns one row per cell with the
mean difference, Cohen's d, Hedges' g (with a CI), the percent-proficient gap and Ho &
Reardon's V statistic from the performance-level counts. ``adjusted_gaps`` gives the
regression-adjusted (partial) gaps, holding the other subgroups fixed. Every gap is focal
minus reference, so a negative value means the focal group scores lower. Each row carries
the n of both groups and a ``small_cell`` flag so governance can suppress cells later.
See docs/stats-gaps.md.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import cast

import numpy as np
import pandas as pd
from scipy import stats

from edsight.errors import InvalidInput
from edsight.stats._gaps_effect import effect_sizes, hedges_j, pooled_sd, proportion_gap
from edsight.stats._gaps_input import (
    GAP_FRAME_COLUMNS,
    SUBGROUPS,
    gap_frame_from_frame,
    gap_frame_from_tables,
    perf_levels_from_cuts,
    require_columns,
)
from edsight.stats._gaps_ordinal import auc_from_counts, v_statistic, v_statistic_ml

__all__ = [
    "DEFAULT_BY",
    "DEFAULT_REFERENCE",
    "GAP_FRAME_COLUMNS",
    "SMALL_CELL_N",
    "SUBGROUPS",
    "achievement_gaps",
    "adjusted_gaps",
    "auc_from_counts",
    "gap_frame_from_frame",
    "gap_frame_from_tables",
    "hedges_j",
    "perf_levels_from_cuts",
    "pooled_sd",
    "v_statistic",
    "v_statistic_ml",
]

log = logging.getLogger(__name__)

DEFAULT_BY: tuple[str, ...] = ("school_id", "grade_level", "subject", "school_year")
SMALL_CELL_N = 10
# The conventional comparison group of each subgroup in US accountability reporting.
DEFAULT_REFERENCE: dict[str, object] = {
    "race_ethnicity": "white",
    "economically_disadvantaged": False,
    "english_learner": False,
    "disability": False,
    "sex": "M",
}
BAD_V_METHOD = "v_method must be 'trapezoid' or 'ml', got {value!r}"
NO_FOCAL = "subgroup {subgroup!r} has no value other than the reference {reference!r}"


def _focal_values(frame: pd.DataFrame, subgroup: str, focal: object, reference: object) -> list[object]:
    if focal is not None:
        return [focal]
    values = [v for v in pd.unique(frame[subgroup].dropna()) if v != reference]
    if not values:
        raise InvalidInput(NO_FOCAL.format(subgroup=subgroup, reference=reference))
    return sorted(values, key=str)


def _stack_roles(
    frame: pd.DataFrame, subgroup: str, focal_values: list[object], reference: object
) -> pd.DataFrame:
    """One copy of the rows per focal value, each labelled focal or reference."""
    col = frame[subgroup]
    is_ref = (col == reference).fillna(False).to_numpy(dtype=bool)
    parts = []
    for value in focal_values:
        is_foc = (col == value).fillna(False).to_numpy(dtype=bool)
        part = frame.loc[is_foc | is_ref].copy()
        part["focal"] = pd.Series([value] * len(part), index=part.index, dtype=object)
        part["_role"] = np.where(is_foc[is_foc | is_ref], "f", "r")
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def achievement_gaps(
    frame: pd.DataFrame,
    subgroup: str,
    *,
    focal: object = None,
    reference: object = None,
    by: Sequence[str] = DEFAULT_BY,
    score: str = "scale_score",
    level: str | None = "perf_level",
    proficient_level: int = 3,
    conf_level: float = 0.95,
    v_method: str = "trapezoid",
) -> pd.DataFrame:
    """Gap statistics of ``subgroup`` per cell of ``by`` (focal minus reference).

    ``reference`` defaults to :data:`DEFAULT_REFERENCE` (white, not disadvantaged, ...);
    ``focal=None`` compares every other value of the subgroup with the reference, one row
    each. ``level`` names the performance-level column (None: no proficiency and V columns);
    students at ``proficient_level`` or above count as proficient. ``v_method`` is
    ``"trapezoid"`` (Ho & Reardon's V with ties split evenly) or ``"ml"`` (their
    respective-normal maximum-likelihood V, one small optimisation per cell).
    """
    if v_method not in ("trapezoid", "ml"):
        raise InvalidInput(BAD_V_METHOD.format(value=v_method))
    if not 0.0 < conf_level < 1.0:
        raise InvalidInput(f"conf_level must lie in (0, 1), got {conf_level}")
    by = list(by)
    needed = [*by, subgroup, score, *([level] if level else [])]
    require_columns(frame, needed, "gap frame")
    if reference is None:
        if subgroup not in DEFAULT_REFERENCE:
            raise InvalidInput(f"no default reference for subgroup {subgroup!r}; pass reference=")
        reference = DEFAULT_REFERENCE[subgroup]
    data = frame.loc[frame[score].notna(), needed]
    focal_values = _focal_values(data, subgroup, focal, reference)
    long = _stack_roles(data, subgroup, focal_values, reference)
    keys = [*by, "focal"]
    long["_y"] = long[score].astype(float)
    if level:
        long["_prof"] = (long[level] >= proficient_level).astype(float)
    agg = long.groupby([*keys, "_role"], dropna=False, sort=True).agg(
        n=("_y", "size"), mean=("_y", "mean"), var=("_y", "var"), **({"k": ("_prof", "sum")} if level else {})
    )
    wide = cast(pd.DataFrame, agg.unstack("_role"))
    wide.columns = pd.Index([f"{pair[0]}_{pair[1]}" for pair in wide.columns])
    for col in ("n_f", "n_r", "k_f", "k_r"):
        if col in wide.columns:
            wide[col] = wide[col].fillna(0.0)
    for col in ("mean_f", "mean_r", "var_f", "var_r", "n_f", "n_r"):
        if col not in wide.columns:
            wide[col] = 0.0 if col.startswith("n_") else np.nan
    n_f = wide["n_f"].to_numpy(dtype=float)
    n_r = wide["n_r"].to_numpy(dtype=float)
    out = pd.DataFrame(index=wide.index)
    out["subgroup"] = subgroup
    out["reference"] = pd.Series([reference] * len(out), index=out.index, dtype=object)
    out["n_focal"] = n_f.astype(np.int64)
    out["n_reference"] = n_r.astype(np.int64)
    # n: students behind the cell's estimates (both groups), the count suppression reads;
    # small_cell flags the smaller group.
    out["n"] = (n_f + n_r).astype(np.int64)
    out["small_cell"] = np.minimum(n_f, n_r) < SMALL_CELL_N
    out["mean_focal"] = wide["mean_f"].to_numpy(dtype=float)
    out["mean_reference"] = wide["mean_r"].to_numpy(dtype=float)
    out["sd_focal"] = np.sqrt(wide["var_f"].to_numpy(dtype=float))
    out["sd_reference"] = np.sqrt(wide["var_r"].to_numpy(dtype=float))
    es = effect_sizes(
        n_f,
        out["mean_focal"].to_numpy(),
        wide["var_f"].to_numpy(dtype=float),
        n_r,
        out["mean_reference"].to_numpy(),
        wide["var_r"].to_numpy(dtype=float),
        conf_level,
    )
    for name, values in es.items():
        out[name] = values
    if level:
        for name, values in proportion_gap(
            wide["k_f"].to_numpy(dtype=float), n_f, wide["k_r"].to_numpy(dtype=float), n_r, conf_level
        ).items():
            out[name] = values
        out["v_statistic"] = _v_per_cell(long, keys, level, out.index, v_method)
    return out.reset_index()


def _v_per_cell(long: pd.DataFrame, keys: list[str], level: str, index: pd.Index, method: str) -> np.ndarray:
    """V for each cell from the level counts of both groups (levels pooled over the frame)."""
    has_level = long[level].notna()
    counts = (
        long.loc[has_level].groupby([*keys, "_role", level], dropna=False).size().unstack(level, fill_value=0)
    )
    counts = counts.sort_index(axis=1)
    levels_cols = counts.columns
    focal = counts.xs("f", level="_role").reindex(index, fill_value=0)[levels_cols].to_numpy(dtype=float)
    ref = counts.xs("r", level="_role").reindex(index, fill_value=0)[levels_cols].to_numpy(dtype=float)
    if method == "trapezoid":
        return v_statistic(focal, ref)
    return np.array([v_statistic_ml(f, r) for f, r in zip(focal, ref, strict=True)])


def adjusted_gaps(
    frame: pd.DataFrame,
    subgroups: Sequence[str] = SUBGROUPS,
    *,
    references: dict[str, object] | None = None,
    by: Sequence[str] = ("subject", "school_year"),
    fixed_effects: Sequence[str] = ("grade_level",),
    score: str = "scale_score",
    conf_level: float = 0.95,
) -> pd.DataFrame:
    """Partial (regression-adjusted) gaps: OLS of the score on all subgroups at once, per cell.

    Each subgroup enters as indicators of its non-reference values; ``fixed_effects`` (grade by
    default, add ``school_id`` to compare students within schools) enter as dummies. The
    coefficient of a focal value is its gap holding the other subgroups fixed, which is what
    the district generator's status-gap constants are. Rows with a missing subgroup are
    dropped. Python loops run over cells only (subject x year by default).
    """
    by = list(by)
    subgroups = list(subgroups)
    fixed = list(fixed_effects)
    refs = {**DEFAULT_REFERENCE, **(references or {})}
    missing_ref = [s for s in subgroups if s not in refs]
    if missing_ref:
        raise InvalidInput(f"no reference value for subgroup(s) {missing_ref}; pass references=")
    require_columns(frame, [*by, *subgroups, *fixed, score], "gap frame")
    data = frame[[*by, *subgroups, *fixed, score]].dropna()
    z = float(stats.norm.ppf(0.5 + conf_level / 2.0))
    rows: list[dict[str, object]] = []
    groups = data.groupby(by, sort=True) if by else [((), data)]
    for key, cell in groups:
        key_t: tuple[Hashable, ...] = key if isinstance(key, tuple) else (key,)
        columns: list[np.ndarray] = [np.ones(len(cell))]
        labels: list[tuple[str, object]] = [("(intercept)", None)]
        for sg in subgroups:
            col = cell[sg]
            for value in sorted((v for v in pd.unique(col) if v != refs[sg]), key=str):
                columns.append((col == value).to_numpy(dtype=float))
                labels.append((sg, value))
        for fe in fixed:
            values = sorted(pd.unique(cell[fe]), key=str)
            for value in values[1:]:
                columns.append((cell[fe] == value).to_numpy(dtype=float))
                labels.append(("_fe", value))
        x = np.column_stack(columns)
        y = cell[score].to_numpy(dtype=float)
        beta, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
        df = len(y) - rank
        if df <= 0:
            log.info("adjusted_gaps: cell %s has no residual df; skipped", key_t)
            continue
        resid = y - x @ beta
        sigma2 = float(resid @ resid) / df
        cov = sigma2 * np.linalg.pinv(x.T @ x)
        for j, (sg, value) in enumerate(labels):
            if sg in ("(intercept)", "_fe"):
                continue
            ind = x[:, j] > 0
            is_ref = (cell[sg] == refs[sg]).to_numpy(dtype=bool)
            se = float(np.sqrt(cov[j, j]))
            rows.append(
                {
                    **dict(zip(by, key_t, strict=True)),
                    "subgroup": sg,
                    "focal": value,
                    "reference": refs[sg],
                    "n_focal": int(ind.sum()),
                    "n_reference": int(is_ref.sum()),
                    "small_cell": min(int(ind.sum()), int(is_ref.sum())) < SMALL_CELL_N,
                    "estimate": float(beta[j]),
                    "se": se,
                    "ci_low": float(beta[j]) - z * se,
                    "ci_high": float(beta[j]) + z * se,
                    "n": len(y),
                }
            )
    return pd.DataFrame(rows)
