"""The point-in-time LMS features, built in two stages (private; see :mod:`edsight.features.weekly`).

Week ``w`` of a section's term spans ``[t0 + 7 (w-1) days, t0 + 7 w days)`` with ``t0`` the
term's start date. Every event is mapped to the first week whose end lies after the event's
timestamp (``floor((ts - t0) / 7 days) + 1``, at least 1); a feature of week ``w`` then
aggregates events of weeks ``<= w`` only, so nothing at or after the end of week ``w`` can
reach it. A period of ``lms_activity`` counts in the week that holds its *last* instant.

1. DuckDB numbers the sections and the (student, section) pairs (in key order), joins every
   activity period and submission to its pair, computes its week, and stores the rows in pair
   order in temporary tables; assignments due are counted per section and week.
2. For consecutive slices of pairs, numpy adds those rows into dense (week x pair) grids
   (``np.bincount``) and takes running sums, 4-week frames and running maxima over the week
   axis. DuckDB's hash aggregate and running window aggregates were the cost of the first, pure
   SQL formulation (``_weekly_lms_reference``): each window aggregate took about a second per
   3 million rows on two cores; in numpy they take milliseconds. Slices bound the memory.

A section gets rows from the first week that holds an LMS record of it (an activity period of
one of its students, the due date of one of its assignments, or a submission): weeks before
it, and sections without any LMS record (SIS roster sections), get none. Whether week ``w``
has a row therefore depends only on records before the end of week ``w``.

The SQL names only tables and columns declared in :mod:`edsight.schema`; the cut-off date is
the parameter ``$as_of``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from datetime import date

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from edsight.errors import WarehouseError
from edsight.sql import scalar

__all__ = [
    "EVENT_SLICE_SQL",
    "PAIR_SLICE_SQL",
    "PREPARE_SQL",
    "SCHEMA",
    "SECTION_DUE_SQL",
    "TEMP_TABLES",
    "LmsSections",
    "lms_feature_batches",
    "lms_week_features",
]

_DAY_S = 86_400
_NEVER = np.iinfo(np.int64).min
#: Temporary tables that :data:`PREPARE_SQL` creates (drop them in this order).
TEMP_TABLES = (
    "_edsight_lms_start",
    "_edsight_lms_due",
    "_edsight_lms_events",
    "_edsight_lms_pairs",
    "_edsight_lms_sections",
)

# Sections and their term; ``n_weeks``: the weeks of the term that have ended by ``$as_of``
# (all of them without it).
_SECTIONS_SQL = """
CREATE OR REPLACE TEMP TABLE _edsight_lms_sections AS
WITH s AS (
    SELECT s.section_id, t.start_date AS d0,
           least(CAST(ceil((date_diff('day', t.start_date, t.end_date) + 1) / 7.0) AS INTEGER),
                 CASE WHEN CAST($as_of AS DATE) IS NULL THEN 2147483647
                      ELSE CAST(floor(date_diff('day', t.start_date, CAST($as_of AS DATE)) / 7.0) AS INTEGER)
                 END) AS n_weeks
    FROM section s JOIN term t ON t.term_id = s.term_id
)
SELECT CAST(row_number() OVER (ORDER BY section_id) - 1 AS INTEGER) AS sec, section_id,
       date_diff('day', DATE '1970-01-01', d0) AS d0, epoch_us(CAST(d0 AS TIMESTAMP)) AS t0_us, n_weeks
FROM s WHERE n_weeks >= 1
"""

_PAIRS_SQL = """
CREATE OR REPLACE TEMP TABLE _edsight_lms_pairs AS
SELECT CAST(row_number() OVER (ORDER BY e.person_id, e.section_id) - 1 AS INTEGER) AS pid,
       e.person_id, e.section_id, x.sec, x.d0, x.t0_us, x.n_weeks
FROM enrollment e JOIN _edsight_lms_sections x ON x.section_id = e.section_id
WHERE e.role = 'student'
"""

# One row per activity period (kind 0) and per submission that counts (kind 1): handed-in work
# that is not excused, and excused work with a due date, which leaves that week's due count
# (excused work is treated as never assigned). Week numbers use integer microseconds: DuckDB's
# integer division truncates, which differs from floor only below zero, where
# ``greatest(1, ...)`` clamps both to week 1.
_EVENTS_SQL = """
CREATE OR REPLACE TEMP TABLE _edsight_lms_events AS
WITH a AS (
    SELECT p.pid, p.sec, p.t0_us, p.n_weeks, a.page_views, a.participations,
           epoch_us(a.last_activity_at) AS la,
           greatest(1, (epoch_us(a.period_start) - p.t0_us - 1
                        + CASE a.period WHEN 'hour' THEN 3600000000
                                        WHEN 'day' THEN 86400000000
                                        ELSE 604800000000 END) // 604800000000 + 1) AS week
    FROM lms_activity a
    JOIN _edsight_lms_pairs p ON p.person_id = a.person_id AND p.section_id = a.section_id
),
s AS (
    SELECT p.pid, p.sec, p.n_weeks, coalesce(s.excused, false) AS excused,
           CASE WHEN a.due_at IS NOT NULL
                THEN greatest(1, (epoch_us(a.due_at) - p.t0_us) // 604800000000 + 1) END AS due_week,
           CASE WHEN s.submitted_at IS NOT NULL
                THEN greatest(1, (epoch_us(s.submitted_at) - p.t0_us) // 604800000000 + 1) END AS sub_week,
           CASE WHEN s.submitted_at IS NULL THEN false
                WHEN a.due_at IS NULL THEN coalesce(s.late, false)
                ELSE s.submitted_at > a.due_at END AS is_late,
           CASE WHEN s.submitted_at IS NOT NULL AND s.score IS NOT NULL AND a.points_possible > 0
                THEN s.score / a.points_possible END AS pct,
           CASE WHEN s.submitted_at IS NOT NULL THEN coalesce(s.attempt, 1) ELSE 0 END AS attempts
    FROM submission s
    JOIN assignment a ON a.assignment_id = s.assignment_id
    JOIN _edsight_lms_pairs p ON p.person_id = s.person_id AND p.section_id = a.section_id
)
SELECT * FROM (
    SELECT pid, sec, CAST(0 AS TINYINT) AS kind, CAST(week AS SMALLINT) AS week,
           page_views AS pv, participations AS pa,
           -- a last-activity stamp at or after the week's end would be news from the future
           CASE WHEN la < t0_us + week * 604800000000 THEN la END AS la,
           CAST(NULL AS BOOLEAN) AS excused, CAST(NULL AS SMALLINT) AS due_week,
           CAST(NULL AS BOOLEAN) AS is_late, CAST(NULL AS DOUBLE) AS pct, CAST(NULL AS INTEGER) AS attempts
    FROM a WHERE week <= n_weeks
    UNION ALL
    SELECT pid, sec, 1, CAST(sub_week AS SMALLINT), NULL, NULL, NULL,
           excused, CAST(due_week AS SMALLINT), is_late, pct, attempts
    FROM s WHERE CASE WHEN excused THEN due_week <= n_weeks ELSE sub_week <= n_weeks END
)
ORDER BY pid
"""

#: Assignments falling due per section and week (a small table every slice needs whole).
_DUE_SQL = """
CREATE OR REPLACE TEMP TABLE _edsight_lms_due AS
SELECT x.sec, CAST(greatest(1, (epoch_us(a.due_at) - x.t0_us) // 604800000000 + 1) AS INTEGER) AS week,
       CAST(count(*) AS INTEGER) AS n, any_value(x.n_weeks) AS n_weeks
FROM assignment a JOIN _edsight_lms_sections x ON x.section_id = a.section_id
WHERE a.due_at IS NOT NULL
GROUP BY ALL
"""

# A section's first week with an LMS record of it: the week its rows start.
_START_SQL = """
CREATE OR REPLACE TEMP TABLE _edsight_lms_start AS
SELECT sec, CAST(min(week) AS INTEGER) AS first_week
FROM (
    SELECT sec, min(week) AS week FROM _edsight_lms_events WHERE kind = 0 OR NOT excused GROUP BY sec
    UNION ALL SELECT sec, min(week) FROM _edsight_lms_due WHERE week <= n_weeks GROUP BY sec
)
GROUP BY sec
"""

#: The statements of stage 1, in order; the first takes the parameter ``$as_of``.
PREPARE_SQL = (_SECTIONS_SQL, _PAIRS_SQL, _EVENTS_SQL, _DUE_SQL, _START_SQL)

#: The pairs of one slice (``$lo <= pid < $hi``) with their section's first week.
PAIR_SLICE_SQL = """
SELECT p.pid, p.person_id, p.section_id, p.sec, p.d0, p.n_weeks,
       coalesce(st.first_week, 2147483647) AS first_week
FROM _edsight_lms_pairs p LEFT JOIN _edsight_lms_start st ON st.sec = p.sec
WHERE p.pid >= $lo AND p.pid < $hi
ORDER BY p.pid
"""

#: The activity and submission rows of one slice.
EVENT_SLICE_SQL = """
SELECT e.pid, e.kind, e.week, e.pv, e.pa, e.la, e.excused, e.due_week, e.is_late, e.pct, e.attempts
FROM _edsight_lms_events e
WHERE e.pid >= $lo AND e.pid < $hi
"""

#: Assignments due per section and week, for :meth:`LmsSections.from_arrow`.
SECTION_DUE_SQL = "SELECT sec, week, n FROM _edsight_lms_due WHERE week <= n_weeks"


class LmsSections:
    """What every slice needs of all sections: assignments due per (week, section)."""

    __slots__ = ("due",)

    def __init__(self, due: np.ndarray) -> None:
        self.due = due

    @classmethod
    def from_arrow(cls, due: pa.Table, *, n_sections: int, max_weeks: int) -> LmsSections:
        """From the rows of :data:`SECTION_DUE_SQL`."""
        grid = np.zeros((max(max_weeks, 1), n_sections), np.int64)
        grid[_column(due, "week", np.int64) - 1, _column(due, "sec", np.int64)] = _column(due, "n", np.int64)
        return cls(grid)


def lms_feature_batches(
    con: duckdb.DuckDBPyConnection,
    *,
    as_of: date | None = None,
    latest_only: bool = False,
    rows_per_batch: int = 2_000_000,
) -> Generator[pa.Table, None, None]:
    """Arrow tables of ``weekly_features_lms`` rows, in (person_id, section_id, week) order.

    ``as_of`` keeps the weeks that have ended by then; ``latest_only`` keeps, per pair, only
    the last of those weeks. Each table covers about ``rows_per_batch`` (pair, week) cells.
    Temporary tables named ``_edsight_lms_*`` live on ``con`` while the iterator runs.
    """
    try:
        _prepare(con, as_of)
        ((n_pairs, max_weeks, n_sections),) = con.execute(
            "SELECT count(*), coalesce(max(n_weeks), 1), "
            "(SELECT count(*) FROM _edsight_lms_sections) FROM _edsight_lms_pairs"
        ).fetchall()
        sections = LmsSections.from_arrow(
            con.sql(SECTION_DUE_SQL).to_arrow_table(), n_sections=int(n_sections), max_weeks=int(max_weeks)
        )
        step = max(1, rows_per_batch // max(int(max_weeks), 1))
        for lo in range(0, int(n_pairs), step):
            bounds = {"lo": lo, "hi": lo + step}
            out = lms_week_features(
                con.sql(PAIR_SLICE_SQL, params=bounds).to_arrow_table(),
                con.sql(EVENT_SLICE_SQL, params=bounds).to_arrow_table(),
                sections,
                latest_only=latest_only,
            )
            if out.num_rows:
                yield out
    finally:
        for name in TEMP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {name}")


def _prepare(con: duckdb.DuckDBPyConnection, as_of: date | None) -> None:
    """Create the temporary tables; the events are stored in pair order."""
    previous = bool(scalar(con, "SELECT current_setting('preserve_insertion_order')"))
    # Pair-ordered storage lets each slice read only its own row groups (zone maps).
    con.execute("SET preserve_insertion_order = true")
    try:
        con.execute(PREPARE_SQL[0], {"as_of": as_of})
        for sql in PREPARE_SQL[1:]:
            con.execute(sql)
    finally:
        con.execute(f"SET preserve_insertion_order = {'true' if previous else 'false'}")


def _column(table: pa.Table, name: str, dtype: type[np.generic], fill: int | float = 0) -> np.ndarray:
    col = table.column(name)
    if col.null_count:
        col = pc.fill_null(col, fill)
    return col.to_numpy().astype(dtype, copy=False)


def _back(a: np.ndarray, k: int) -> np.ndarray:
    """``a`` shifted ``k`` weeks later along its first (week) axis, zeros in the first ``k`` weeks."""
    out = np.zeros_like(a)
    if k < a.shape[0]:
        out[k:] = a[:-k]
    return out


def _running(a: np.ndarray, op: Callable[..., np.ndarray] = np.add) -> np.ndarray:
    """Running ``op`` (sum or maximum) over weeks, in week order, in place.

    One vector operation per week over all pairs (weeks are few, pairs many): several times
    faster than ``np.cumsum`` along an axis of 16 and summed in the same order.
    """
    for w in range(1, a.shape[0]):
        op(a[w - 1], a[w], out=a[w])
    return a


def _int32(name: str, a: np.ndarray) -> pa.Array:
    if a.size and a.max() > np.iinfo(np.int32).max:
        raise WarehouseError(f"weekly_features_lms.{name} exceeds the int32 range of its declared column")
    return pa.array(a.astype(np.int32))


def _float(a: np.ndarray, valid: np.ndarray) -> pa.Array:
    """Floats with nulls where ``valid`` is False (NULL, never NaN, as the SQL gives)."""
    return pa.array(a, mask=None if valid.all() else ~valid)


def lms_week_features(
    pairs: pa.Table,
    events: pa.Table,
    sections: LmsSections,
    *,
    latest_only: bool = False,
) -> pa.Table:
    """Feature rows for a slice of pairs from their activity and submission rows (stage 2, pure).

    ``pairs``: the rows of :data:`PAIR_SLICE_SQL` (``pid`` consecutive and ascending);
    ``events``: the rows of :data:`EVENT_SLICE_SQL` for those pairs, in any order. Returns the
    columns of ``weekly_features_lms`` in pair, then week, order.
    """
    n = pairs.num_rows
    n_weeks = _column(pairs, "n_weeks", np.int64)
    width = int(n_weeks.max()) if n else 0
    if n == 0 or width <= 0:
        return _empty()
    lo = int(pairs.column("pid")[0].as_py())
    sec = _column(pairs, "sec", np.int64)
    pair = _column(events, "pid", np.int64) - lo
    pair_weeks = n_weeks[pair]
    is_act = _column(events, "kind", np.int64) == 0
    week = _column(events, "week", np.int64)  # activity: its week; submission: hand-in week

    def cells(at: np.ndarray, when: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grid cells (week-major) of the rows selected by ``when`` whose week ``at`` has a row."""
        ok = when & (at >= 1) & (at <= pair_weeks)
        return (at[ok] - 1) * n + pair[ok], ok

    def total(cell: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Per-cell sums (``np.bincount`` adds in row order) as a (week, pair) grid."""
        return np.bincount(cell, weights, minlength=n * width).reshape(width, n)

    a_cell, a_ok = cells(week, is_act)
    la = np.full(n * width, _NEVER, np.int64)
    np.maximum.at(la, a_cell, _column(events, "la", np.int64, _NEVER)[a_ok])
    # submissions: due counts come per section; excused work leaves its due week
    excused = _column(events, "excused", np.bool_, False) & ~is_act
    due_w = _column(events, "due_week", np.int64)
    late = _column(events, "is_late", np.bool_, False)
    handed = ~is_act & ~excused
    x_cell, _ = cells(due_w, excused)
    on_cell, _ = cells(due_w, handed & ~late)
    # late work leaves "missing" in the week it is handed in (never before it became due)
    late_cell, _ = cells(np.maximum(due_w, week), handed & late & (due_w > 0))
    s_cell, s_ok = cells(week, handed)
    pct = _column(events, "pct", np.float64, np.nan)[s_ok]
    graded = ~np.isnan(pct)
    g_cell = s_cell[graded]
    grids = {
        "pv": total(a_cell, _column(events, "pv", np.float64)[a_ok]).astype(np.int64),
        "pa": total(a_cell, _column(events, "pa", np.float64)[a_ok]).astype(np.int64),
        "la": la.reshape(width, n),
        "due": sections.due[:width, sec] - total(x_cell),
        "on_time": total(on_cell),
        "late_due": total(late_cell),
        "n_sub": total(s_cell),
        "n_late": total(s_cell[late[s_ok]]),
        "attempts": total(s_cell, _column(events, "attempts", np.float64)[s_ok]).astype(np.int64),
        "g_n": total(g_cell),
        "g_sum": total(g_cell, pct[graded]),
        "g_xy": total(g_cell, pct[graded] * week[s_ok][graded]),
    }
    first = _column(pairs, "first_week", np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _features(pairs, grids, n_weeks, first, width, latest_only)


def _features(
    pairs: pa.Table,
    grid: dict[str, np.ndarray],
    n_weeks: np.ndarray,
    first: np.ndarray,
    width: int,
    latest_only: bool,
) -> pa.Table:
    wk = np.arange(1, width + 1, dtype=np.int64)[:, None]  # per-week constants broadcast over pairs
    pv, pa_ = grid["pv"], grid["pa"]
    g_n, g_sum = grid["g_n"], grid["g_sum"]

    # 4-week OLS slope over weeks max(1, w-3)..w from exact integer sums and one division
    n4 = np.minimum(wk, 4)
    sx = wk * n4 - n4 * (n4 - 1) // 2
    sxx = _running(wk * wk) - _back(_running(wk * wk), 4)
    den = (n4 * sxx - sx * sx).astype(np.float64)
    has_slope = np.broadcast_to(den > 0, pv.shape)

    def slope(y: np.ndarray) -> np.ndarray:
        cy, cxy = _running(y.copy()), _running(y * wk)
        return (n4 * (cxy - _back(cxy, 4)) - sx * (cy - _back(cy, 4))) / den

    def vs_mean(y: np.ndarray) -> np.ndarray:
        return y - (_running(y.copy()) - y) / (wk - 1).astype(np.float64)

    later = np.broadcast_to(wk > 1, pv.shape)
    active = _running(np.where((pv > 0) | (pa_ > 0), wk, 0), np.maximum)
    last_at = _running(grid["la"], np.maximum)
    seen = last_at != _NEVER
    d0 = _column(pairs, "d0", np.int64)
    # DuckDB's date_diff('second') floors both stamps to whole seconds
    days_since = ((d0 + 7 * wk) * _DAY_S - last_at // 1_000_000) / float(_DAY_S)

    due_c, on_time_c, late_due_c = (_running(grid[k]) for k in ("due", "on_time", "late_due"))
    n_sub, attempts = grid["n_sub"], grid["attempts"]
    n_sub_c, n_late_c, att_c = _running(n_sub.copy()), _running(grid["n_late"]), _running(attempts.copy())
    missing_c = due_c - on_time_c - late_due_c
    gn = _running(g_n.copy())
    gs = _running(g_sum.copy())
    gx = _running(g_n * wk)
    gxx = _running(g_n * (wk * wk))
    gxy = _running(grid["g_xy"])
    g_den = gn * gxx - gx * gx
    gn4 = gn - _back(gn, 4)
    # the 4-week grade sum adds the weeks in order, as the window frame does
    gs4 = _back(g_sum, 3) + _back(g_sum, 2) + _back(g_sum, 1) + g_sum

    keep = (wk <= n_weeks) & (wk >= first)
    if latest_only:
        keep &= wk == n_weeks
    # output rows in pair-major order: the transposed (pair, week) cells that are kept
    flat = np.flatnonzero(keep.T)
    if flat.size == 0:
        return _empty()
    row, week = flat // width, flat % width + 1
    every = flat.size == keep.size

    def take(a: np.ndarray) -> np.ndarray:
        t = np.ascontiguousarray(np.broadcast_to(a, keep.shape).T).reshape(-1)
        return t if every else t[flat]

    rows = pa.array(row.astype(np.int32))
    d0_row = d0[row]
    cols: dict[str, pa.Array] = {
        # dictionary-encoded ids: each pair's strings are stored once per slice
        "person_id": pa.DictionaryArray.from_arrays(rows, pairs.column("person_id").combine_chunks()),
        "section_id": pa.DictionaryArray.from_arrays(rows, pairs.column("section_id").combine_chunks()),
        "week": pa.array(week.astype(np.int16)),
        "week_start": pa.array((d0_row + 7 * (week - 1)).astype(np.int32)).cast(pa.date32()),
        "week_end": pa.array((d0_row + 7 * week).astype(np.int32)).cast(pa.date32()),
        "page_views": _int32("page_views", take(pv)),
        "participations": _int32("participations", take(pa_)),
        "page_views_slope_4w": _float(take(slope(pv)), take(has_slope)),
        "participations_slope_4w": _float(take(slope(pa_)), take(has_slope)),
        "page_views_vs_mean": _float(take(vs_mean(pv)), take(later)),
        "participations_vs_mean": _float(take(vs_mean(pa_)), take(later)),
        "inactive_streak_weeks": pa.array(take(wk - active).astype(np.int16)),
        "days_since_last_activity": _float(take(days_since), take(seen)),
        "assignments_due": _int32("assignments_due", take(due_c)),
        "assignments_submitted": _int32("assignments_submitted", take(n_sub_c)),
        "assignments_submitted_week": _int32("assignments_submitted_week", take(n_sub)),
        "assignments_on_time": _int32("assignments_on_time", take(on_time_c)),
        "assignments_late": _int32("assignments_late", take(late_due_c)),
        "assignments_missing": _int32("assignments_missing", take(missing_c)),
        "on_time_rate": _float(take(on_time_c / due_c), take(due_c > 0)),
        "late_rate": _float(take(late_due_c / due_c), take(due_c > 0)),
        "missing_rate": _float(take(missing_c / due_c), take(due_c > 0)),
        "late_submission_rate": pa.array(take(np.where(n_sub_c > 0, n_late_c / n_sub_c, 0.0))),
        "current_grade": _float(take(gs / gn), take(gn > 0)),
        "grade_slope": _float(take((gn * gxy - gx * gs) / g_den), take(g_den > 0)),
        "grade_recent_4w": _float(take(gs4 / gn4), take(gn4 > 0)),
        "attempts_total": _int32("attempts_total", take(att_c)),
        "attempts_week": _int32("attempts_week", take(attempts)),
    }
    return pa.table(cols, schema=SCHEMA)


SCHEMA = pa.schema(
    [
        ("person_id", pa.dictionary(pa.int32(), pa.string())),
        ("section_id", pa.dictionary(pa.int32(), pa.string())),
        ("week", pa.int16()),
        ("week_start", pa.date32()),
        ("week_end", pa.date32()),
        ("page_views", pa.int32()),
        ("participations", pa.int32()),
        ("page_views_slope_4w", pa.float64()),
        ("participations_slope_4w", pa.float64()),
        ("page_views_vs_mean", pa.float64()),
        ("participations_vs_mean", pa.float64()),
        ("inactive_streak_weeks", pa.int16()),
        ("days_since_last_activity", pa.float64()),
        ("assignments_due", pa.int32()),
        ("assignments_submitted", pa.int32()),
        ("assignments_submitted_week", pa.int32()),
        ("assignments_on_time", pa.int32()),
        ("assignments_late", pa.int32()),
        ("assignments_missing", pa.int32()),
        ("on_time_rate", pa.float64()),
        ("late_rate", pa.float64()),
        ("missing_rate", pa.float64()),
        ("late_submission_rate", pa.float64()),
        ("current_grade", pa.float64()),
        ("grade_slope", pa.float64()),
        ("grade_recent_4w", pa.float64()),
        ("attempts_total", pa.int32()),
        ("attempts_week", pa.int32()),
    ]
)


def _empty() -> pa.Table:
    return SCHEMA.empty_table()
