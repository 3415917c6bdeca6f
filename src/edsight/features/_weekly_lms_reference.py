"""The first, window-function formulation of the LMS features (private reference).

It is kept verbatim as the specification that the fast builder of
:mod:`edsight.features._weekly_lms` must reproduce: the tests compare both on generated data,
and ``benchmarks/features.py`` times it as the baseline. It gives rows to every roster pair,
including sections without any LMS record; the fast builder drops those rows (see
``docs/features.md``). Too slow for production (DuckDB evaluates each running window
aggregate separately), so nothing outside tests and benchmarks runs it.

Week ``w`` of a section's term spans ``[t0 + 7 (w-1) days, t0 + 7 w days)`` with ``t0`` the
term's start date; an event maps to ``floor((ts - t0) / 7 days) + 1`` (at least 1); a period
of ``lms_activity`` counts in the week that holds its last instant.
"""

from __future__ import annotations

LMS_REFERENCE_SQL = """
WITH pairs AS (
    SELECT e.person_id, e.section_id, CAST(t.start_date AS TIMESTAMP) AS t0,
           CAST(ceil((date_diff('day', t.start_date, t.end_date) + 1) / 7.0) AS INTEGER) AS n_weeks
    FROM enrollment e
    JOIN section s ON s.section_id = e.section_id
    JOIN term t ON t.term_id = s.term_id
    WHERE e.role = 'student'
),
grid AS (
    SELECT person_id, section_id, t0, CAST(unnest(range(1, n_weeks + 1)) AS INTEGER) AS week
    FROM pairs
),
act_rows AS (
    SELECT a.person_id, a.section_id, p.t0, a.page_views, a.participations, a.last_activity_at,
           greatest(1, CAST(floor(date_diff('microsecond', p.t0,
               a.period_start + CASE a.period WHEN 'hour' THEN INTERVAL 1 HOUR
                                              WHEN 'day' THEN INTERVAL 1 DAY
                                              ELSE INTERVAL 7 DAY END
               - INTERVAL 1 MICROSECOND) / 604800000000.0) AS INTEGER) + 1) AS week
    FROM lms_activity a
    JOIN pairs p ON p.person_id = a.person_id AND p.section_id = a.section_id
),
act AS (
    SELECT person_id, section_id, week,
           sum(page_views) AS pv, sum(participations) AS pa,
           -- a last-activity stamp at or after the week's end would be news from the future
           max(last_activity_at) FILTER (WHERE last_activity_at < t0 + to_days(7 * week)) AS last_at
    FROM act_rows
    GROUP BY person_id, section_id, week, t0
),
work AS (
    SELECT p.person_id, p.section_id,
           CASE WHEN a.due_at IS NOT NULL THEN greatest(1, CAST(floor(
               date_diff('microsecond', p.t0, a.due_at) / 604800000000.0) AS INTEGER) + 1) END AS due_week,
           CASE WHEN s.submitted_at IS NOT NULL THEN greatest(1, CAST(floor(
               date_diff('microsecond', p.t0, s.submitted_at) / 604800000000.0) AS INTEGER) + 1) END
               AS sub_week,
           CASE WHEN s.submitted_at IS NULL THEN false
                WHEN a.due_at IS NULL THEN coalesce(s.late, false)
                ELSE s.submitted_at > a.due_at END AS is_late,
           CASE WHEN s.submitted_at IS NOT NULL AND s.score IS NOT NULL AND a.points_possible > 0
                THEN s.score / a.points_possible END AS pct,
           CASE WHEN s.submitted_at IS NOT NULL THEN coalesce(s.attempt, 1) ELSE 0 END AS attempts
    FROM pairs p
    JOIN assignment a ON a.section_id = p.section_id
    LEFT JOIN submission s ON s.assignment_id = a.assignment_id AND s.person_id = p.person_id
    -- excused work carries no timestamp: it is treated as never assigned to the student
    WHERE NOT coalesce(s.excused, false)
),
events AS (
    SELECT person_id, section_id, due_week AS week, 1 AS due,
           CASE WHEN sub_week IS NOT NULL AND NOT is_late THEN 1 ELSE 0 END AS on_time,
           0 AS late_due, 0 AS n_sub, 0 AS n_late, CAST(NULL AS DOUBLE) AS pct, 0 AS attempts
    FROM work WHERE due_week IS NOT NULL
    UNION ALL
    -- late work leaves "missing" in the week it is handed in (never before it became due)
    SELECT person_id, section_id, greatest(due_week, sub_week), 0, 0, 1, 0, 0, NULL, 0
    FROM work WHERE is_late AND due_week IS NOT NULL AND sub_week IS NOT NULL
    UNION ALL
    SELECT person_id, section_id, sub_week, 0, 0, 0, 1, CAST(is_late AS INTEGER), pct, attempts
    FROM work WHERE sub_week IS NOT NULL
),
ev AS (
    SELECT person_id, section_id, week,
           sum(due) AS due, sum(on_time) AS on_time, sum(late_due) AS late_due,
           sum(n_sub) AS n_sub, sum(n_late) AS n_late, sum(attempts) AS attempts,
           count(pct) AS g_n, sum(pct) AS g_sum,
           sum(CASE WHEN pct IS NOT NULL THEN week END) AS g_x,
           sum(CASE WHEN pct IS NOT NULL THEN week * week END) AS g_xx,
           sum(pct * week) AS g_xy
    FROM events
    GROUP BY person_id, section_id, week
),
base AS (
    SELECT g.person_id, g.section_id, g.week, g.t0,
           coalesce(a.pv, 0) AS pv, coalesce(a.pa, 0) AS pa, a.last_at,
           coalesce(e.due, 0) AS due, coalesce(e.on_time, 0) AS on_time,
           coalesce(e.late_due, 0) AS late_due, coalesce(e.n_sub, 0) AS n_sub,
           coalesce(e.n_late, 0) AS n_late, coalesce(e.attempts, 0) AS attempts,
           coalesce(e.g_n, 0) AS g_n, coalesce(e.g_sum, 0.0) AS g_sum,
           coalesce(e.g_x, 0) AS g_x, coalesce(e.g_xx, 0) AS g_xx, coalesce(e.g_xy, 0.0) AS g_xy
    FROM grid g
    LEFT JOIN act a ON a.person_id = g.person_id AND a.section_id = g.section_id AND a.week = g.week
    LEFT JOIN ev e ON e.person_id = g.person_id AND e.section_id = g.section_id AND e.week = g.week
),
win AS (
    SELECT person_id, section_id, week, t0, pv, pa, n_sub, attempts,
           regr_slope(pv, week) OVER w4 AS pv_slope,
           regr_slope(pa, week) OVER w4 AS pa_slope,
           avg(pv) OVER wprev AS pv_prev,
           avg(pa) OVER wprev AS pa_prev,
           max(CASE WHEN pv > 0 OR pa > 0 THEN week END) OVER wall AS last_active_week,
           max(last_at) OVER wall AS last_at,
           sum(due) OVER wall AS due_c, sum(on_time) OVER wall AS on_time_c,
           sum(late_due) OVER wall AS late_due_c, sum(n_sub) OVER wall AS n_sub_c,
           sum(n_late) OVER wall AS n_late_c, sum(attempts) OVER wall AS attempts_c,
           sum(g_n) OVER wall AS gn, sum(g_sum) OVER wall AS gs, sum(g_x) OVER wall AS gx,
           sum(g_xx) OVER wall AS gxx, sum(g_xy) OVER wall AS gxy,
           sum(g_n) OVER w4 AS gn4, sum(g_sum) OVER w4 AS gs4
    FROM base
    WINDOW wall AS (PARTITION BY person_id, section_id ORDER BY week
                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
           w4 AS (PARTITION BY person_id, section_id ORDER BY week
                  ROWS BETWEEN 3 PRECEDING AND CURRENT ROW),
           wprev AS (PARTITION BY person_id, section_id ORDER BY week
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT person_id, section_id,
       CAST(week AS SMALLINT) AS week,
       CAST(t0 AS DATE) + 7 * (week - 1) AS week_start,
       CAST(t0 AS DATE) + 7 * week AS week_end,
       CAST(pv AS INTEGER) AS page_views,
       CAST(pa AS INTEGER) AS participations,
       pv_slope AS page_views_slope_4w,
       pa_slope AS participations_slope_4w,
       pv - pv_prev AS page_views_vs_mean,
       pa - pa_prev AS participations_vs_mean,
       CAST(week - coalesce(last_active_week, 0) AS SMALLINT) AS inactive_streak_weeks,
       date_diff('second', last_at, t0 + to_days(7 * week)) / 86400.0 AS days_since_last_activity,
       CAST(due_c AS INTEGER) AS assignments_due,
       CAST(n_sub_c AS INTEGER) AS assignments_submitted,
       CAST(n_sub AS INTEGER) AS assignments_submitted_week,
       CAST(on_time_c AS INTEGER) AS assignments_on_time,
       CAST(late_due_c AS INTEGER) AS assignments_late,
       CAST(due_c - on_time_c - late_due_c AS INTEGER) AS assignments_missing,
       CASE WHEN due_c > 0 THEN on_time_c / due_c END AS on_time_rate,
       CASE WHEN due_c > 0 THEN late_due_c / due_c END AS late_rate,
       CASE WHEN due_c > 0 THEN (due_c - on_time_c - late_due_c) / due_c END AS missing_rate,
       CASE WHEN n_sub_c > 0 THEN n_late_c / n_sub_c ELSE 0.0 END AS late_submission_rate,
       CASE WHEN gn > 0 THEN gs / gn END AS current_grade,
       CASE WHEN gn * gxx - gx * gx > 0 THEN (gn * gxy - gx * gs) / (gn * gxx - gx * gx) END AS grade_slope,
       CASE WHEN gn4 > 0 THEN gs4 / gn4 END AS grade_recent_4w,
       CAST(attempts_c AS INTEGER) AS attempts_total,
       CAST(attempts AS INTEGER) AS attempts_week
FROM win
WHERE $as_of IS NULL OR CAST(t0 AS DATE) + 7 * week <= $as_of
"""
