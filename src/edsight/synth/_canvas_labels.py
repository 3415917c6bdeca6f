"""The seed's four look-ahead label rules on dense week-major arrays (private).

Shared by the generator (which labels each chunk) and the public
:func:`edsight.synth.canvas.label_training_rows`, so both give bit-identical labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
BOOL = NDArray[np.bool_]

LABELS: tuple[str, ...] = (
    "will_fail_academically",
    "will_disengage",
    "will_miss_assignments",
    "will_dropout",
)


def dense_labels(
    grade: F64,
    page_views: NDArray[Any],
    participations: NDArray[Any],
    missing: NDArray[Any],
    present: BOOL,
    horizon: int,
) -> tuple[BOOL, dict[str, BOOL]]:
    """The seed's label rules on dense week-major (n_weeks, n_groups) arrays.

    Returns ``eligible`` (row j has all of rows j+1..j+horizon present) and the four labels,
    each over the next ``horizon`` rows. NaN grades are skipped by the mean; if all are NaN the
    grade conditions are False. Integer means are compared as integer sums and the grade mean
    is summed in week order, so the result is exact and matches a plain loop bit for bit.
    """
    width, n = grade.shape
    eligible = np.zeros((width, n), np.bool_)
    labels = {name: np.zeros((width, n), np.bool_) for name in LABELS}
    keep = width - horizon
    if keep <= 0:
        return eligible, labels

    def next_weeks(values: NDArray[Any], dtype: type[np.generic]) -> NDArray[Any]:
        # Sum of rows j+1..j+horizon for every j < keep, added in week order (in place).
        acc = values[1 : 1 + keep].astype(dtype, copy=True)
        for h in range(2, horizon + 1):
            acc += values[h : h + keep]
        return acc

    def count_dtype(values: NDArray[Any]) -> type[np.generic]:
        # Integer counts sum exactly in int32; float input (e.g. read from CSV) stays float.
        return np.int32 if np.issubdtype(values.dtype, np.integer) else np.float64

    graded = ~np.isnan(grade)
    g_sum = next_weeks(np.where(graded, grade, 0.0), np.float64)
    g_cnt = next_weeks(graded, np.int32)
    pv_sum = next_weeks(page_views, count_dtype(page_views))
    part_sum = next_weeks(participations, count_dtype(participations))
    miss_sum = next_weeks(missing, count_dtype(missing))
    ok = present[:keep].copy()
    for h in range(1, horizon + 1):
        ok &= present[h : h + keep]
    eligible[:keep] = ok
    has_grade = g_cnt > 0
    g_mean = g_sum / np.maximum(g_cnt, 1)
    labels["will_fail_academically"][:keep] = ok & has_grade & (g_mean < 0.6)
    labels["will_disengage"][:keep] = ok & (pv_sum < 10 * horizon) & (part_sum < 2 * horizon)
    labels["will_miss_assignments"][:keep] = ok & (miss_sum > 2 * horizon)
    labels["will_dropout"][:keep] = ok & has_grade & (g_mean < 0.4) & (pv_sum < 5 * horizon)
    return eligible, labels
    eligible[:keep] = present[:keep]
    g_sum = np.zeros((keep, n))
    # float64 sums of integer counts are exact, and also accept float input (e.g. from CSV).
    g_cnt = np.zeros((keep, n))
    pv_sum = np.zeros((keep, n))
    part_sum = np.zeros((keep, n))
    miss_sum = np.zeros((keep, n))
    for h in range(1, horizon + 1):
        rows = slice(h, h + keep)
        eligible[:keep] &= present[rows]
        g = grade[rows]
        ok = ~np.isnan(g)
        g_sum += np.where(ok, g, 0.0)
        g_cnt += ok
        pv_sum += page_views[rows]
        part_sum += participations[rows]
        miss_sum += missing[rows]
    has_grade = g_cnt > 0
    g_mean = g_sum / np.maximum(g_cnt, 1)
    ok = eligible[:keep]
    labels["will_fail_academically"][:keep] = ok & has_grade & (g_mean < 0.6)
    labels["will_disengage"][:keep] = ok & (pv_sum < 10 * horizon) & (part_sum < 2 * horizon)
    labels["will_miss_assignments"][:keep] = ok & (miss_sum > 2 * horizon)
    labels["will_dropout"][:keep] = ok & has_grade & (g_mean < 0.4) & (pv_sum < 5 * horizon)
    return eligible, labels
