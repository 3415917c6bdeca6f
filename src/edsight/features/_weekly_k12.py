"""SQL of the point-in-time K-12 features (private; see :mod:`edsight.features.weekly`).

Week ``w`` of school year ``Y`` spans ``[s + 7 (w-1) days, s + 7 w days)`` with ``s`` the start
date of the ``school_year`` term of ``Y``. A dated record (absence, incident, enrolled day)
belongs to the week that holds its date; a course grade becomes known in the week holding its
term's end date; assessments count only from earlier school years. Features of week ``w``
aggregate weeks ``<= w`` only. Presence is not stored: an enrolled day is an instructional
day of the school's calendar (or its district's) inside an enrolment window.

The SQL is a constant over declared tables and columns; ``$as_of`` is its only parameter.
"""

from __future__ import annotations

K12_SQL = """
WITH years AS (
    SELECT school_year, min(start_date) AS y0, max(end_date) AS y_end,
           CAST(ceil((date_diff('day', min(start_date), max(end_date)) + 1) / 7.0) AS INTEGER) AS n_weeks
    FROM term WHERE term_type = 'school_year' GROUP BY school_year
),
stu AS (
    SELECT e.person_id, e.school_year, min(e.entry_date) AS first_entry, y.y0, y.n_weeks
    FROM school_enrollment e JOIN years y ON y.school_year = e.school_year
    GROUP BY e.person_id, e.school_year, y.y0, y.n_weeks
),
grid AS (
    SELECT person_id, school_year, y0, week FROM (
        SELECT person_id, school_year, y0, first_entry,
               CAST(unnest(range(1, n_weeks + 1)) AS INTEGER) AS week
        FROM stu)
    -- a student appears from the week of the first entry on
    WHERE y0 + 7 * week > first_entry
),
school_days AS (
    SELECT DISTINCT o.org_id AS school_id, c.date
    FROM organization o JOIN calendar c ON c.org_id = o.org_id OR c.org_id = o.parent_org_id
),
enrolled AS (
    SELECT DISTINCT e.person_id, e.school_year, d.date
    FROM school_enrollment e
    JOIN school_days d ON d.school_id = e.school_id
     AND d.date >= e.entry_date AND (e.exit_date IS NULL OR d.date <= e.exit_date)
),
dated AS (
    SELECT n.person_id, n.school_year, n.date, 1 AS enrolled,
           CASE WHEN a.status IN ('absent_excused', 'absent_unexcused') THEN 1 ELSE 0 END AS absent,
           CASE WHEN a.status = 'tardy' THEN 1 ELSE 0 END AS tardy,
           0 AS minor, 0 AS major, 0 AS state_offense
    FROM enrolled n
    LEFT JOIN attendance a ON a.person_id = n.person_id AND a.date = n.date
    UNION ALL
    SELECT d.person_id, s.school_year, d.date, 0, 0, 0,
           CAST(d.severity = 'minor' AS INTEGER), CAST(d.severity = 'major' AS INTEGER),
           CAST(d.severity = 'state_offense' AS INTEGER)
    FROM discipline d JOIN stu s ON s.person_id = d.person_id
    JOIN years y ON y.school_year = s.school_year AND d.date BETWEEN y.y0 AND y.y_end
),
weekly AS (
    SELECT d.person_id, d.school_year,
           greatest(1, CAST(floor(date_diff('day', y.y0, d.date) / 7) AS INTEGER) + 1) AS week,
           sum(enrolled) AS enrolled, sum(absent) AS absent, sum(tardy) AS tardy,
           sum(minor) AS minor, sum(major) AS major, sum(state_offense) AS state_offense
    FROM dated d JOIN years y ON y.school_year = d.school_year
    GROUP BY ALL
),
marks AS (
    SELECT g.person_id, t.school_year, c.subject, g.credits_earned,
           greatest(1, CAST(floor(date_diff('day', y.y0, t.end_date) / 7) AS INTEGER) + 1) AS week,
           g.numeric_grade,
           coalesce(upper(g.letter_grade) = 'F', g.numeric_grade < 60, false) AS is_f
    FROM course_grade g
    JOIN term t ON t.term_id = g.term_id
    JOIN years y ON y.school_year = t.school_year
    JOIN section s ON s.section_id = g.section_id
    LEFT JOIN course c ON c.course_id = s.course_id
),
mark_weeks AS (
    SELECT person_id, school_year, week, count(*) AS n_grades,
           count(numeric_grade) AS n_num, sum(numeric_grade) AS num_sum,
           sum(CAST(is_f AS INTEGER)) AS f,
           sum(CAST(is_f AND subject IN ('math', 'ela', 'science', 'social_studies') AS INTEGER)) AS core_f,
           sum(coalesce(credits_earned, 0)) AS credits
    FROM marks GROUP BY ALL
),
spring_end AS (
    -- on-track is evaluable once the year's last term has ended
    SELECT school_year, max(end_date) AS last_term_end FROM term
    WHERE term_type <> 'school_year' GROUP BY school_year
),
prior AS (
    SELECT s.person_id, s.school_year, r.subject, r.scale_score, r.perf_level,
           row_number() OVER (PARTITION BY s.person_id, s.school_year, r.subject
                              ORDER BY r.test_date DESC, r.assessment) AS rn
    FROM stu s JOIN assessment_result r
      ON r.person_id = s.person_id AND r.school_year < s.school_year AND r.subject IN ('math', 'reading')
),
base AS (
    SELECT g.person_id, g.school_year, g.week, g.y0,
           coalesce(w.enrolled, 0) AS enrolled, coalesce(w.absent, 0) AS absent,
           coalesce(w.tardy, 0) AS tardy, coalesce(w.minor, 0) AS minor,
           coalesce(w.major, 0) AS major, coalesce(w.state_offense, 0) AS state_offense,
           coalesce(m.n_grades, 0) AS n_grades, coalesce(m.n_num, 0) AS n_num,
           coalesce(m.num_sum, 0.0) AS num_sum, coalesce(m.f, 0) AS f,
           coalesce(m.core_f, 0) AS core_f, coalesce(m.credits, 0.0) AS credits
    FROM grid g
    LEFT JOIN weekly w ON w.person_id = g.person_id AND w.school_year = g.school_year AND w.week = g.week
    LEFT JOIN mark_weeks m ON m.person_id = g.person_id AND m.school_year = g.school_year AND m.week = g.week
),
win AS (
    SELECT person_id, school_year, week, y0,
           sum(enrolled) OVER wall AS enr, sum(absent) OVER wall AS abs,
           sum(enrolled) OVER w4 AS enr4, sum(absent) OVER w4 AS abs4,
           sum(tardy) OVER wall AS tardies,
           sum(minor) OVER wall AS minor_c, sum(major) OVER wall AS major_c,
           sum(state_offense) OVER wall AS so_c,
           sum(minor + major + state_offense) OVER w4 AS inc4,
           sum(n_grades) OVER wall AS n_grades_c, sum(n_num) OVER wall AS n_num_c,
           sum(num_sum) OVER wall AS num_sum_c, sum(f) OVER wall AS f_c,
           sum(core_f) OVER wall AS core_f_c, sum(credits) OVER wall AS credits_c
    FROM base
    WINDOW wall AS (PARTITION BY person_id, school_year ORDER BY week
                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
           w4 AS (PARTITION BY person_id, school_year ORDER BY week ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)
),
current_enrollment AS (
    -- the latest enrolment that had begun by the end of the week
    SELECT v.person_id, v.school_year, v.week, e.school_id, e.grade_level,
           row_number() OVER (PARTITION BY v.person_id, v.school_year, v.week
                              ORDER BY e.entry_date DESC, e.school_id) AS rn
    FROM win v JOIN school_enrollment e
      ON e.person_id = v.person_id AND e.school_year = v.school_year AND e.entry_date < v.y0 + 7 * v.week
)
SELECT v.person_id,
       CAST(v.school_year AS SMALLINT) AS school_year,
       CAST(v.week AS SMALLINT) AS week,
       v.y0 + 7 * (v.week - 1) AS week_start,
       v.y0 + 7 * v.week AS week_end,
       ce.school_id,
       ce.grade_level,
       CAST(v.enr AS INTEGER) AS days_enrolled,
       CAST(v.abs AS INTEGER) AS days_absent,
       CASE WHEN v.enr > 0 THEN 1 - v.abs / v.enr END AS attendance_rate,
       CASE WHEN v.enr > 0 THEN v.abs / v.enr >= 0.1 END AS chronic_absence,
       CAST(v.enr4 AS INTEGER) AS days_enrolled_4w,
       CAST(v.abs4 AS INTEGER) AS days_absent_4w,
       CASE WHEN v.enr4 > 0 THEN 1 - v.abs4 / v.enr4 END AS attendance_rate_4w,
       CAST(v.tardies AS INTEGER) AS tardies,
       CAST(v.minor_c AS INTEGER) AS incidents_minor,
       CAST(v.major_c AS INTEGER) AS incidents_major,
       CAST(v.so_c AS INTEGER) AS incidents_state_offense,
       CAST(v.inc4 AS INTEGER) AS incidents_4w,
       pm.scale_score AS prior_math_scale_score,
       CAST(pm.perf_level AS TINYINT) AS prior_math_perf_level,
       pr.scale_score AS prior_reading_scale_score,
       CAST(pr.perf_level AS TINYINT) AS prior_reading_perf_level,
       CAST(v.n_grades_c AS INTEGER) AS grades_known,
       CASE WHEN v.n_num_c > 0 THEN v.num_sum_c / v.n_num_c END AS grade_mean,
       CAST(v.f_c AS INTEGER) AS f_count,
       CAST(v.core_f_c AS INTEGER) AS core_f_count,
       CAST(v.credits_c AS DOUBLE) AS credits_earned,
       CASE WHEN v.enr > 0 THEN 1 - v.abs / v.enr < 0.9 END AS abc_attendance_lt90,
       CASE WHEN v.enr > 0 THEN 1 - v.abs / v.enr < 0.8 END AS abc_attendance_lt80,
       v.core_f_c > 0 AS abc_course_failure,
       v.major_c + v.so_c > 0 OR v.minor_c + v.major_c + v.so_c >= 2 AS abc_behavior,
       CASE WHEN ce.grade_level = 9 AND se.last_term_end < v.y0 + 7 * v.week
            THEN v.credits_c >= 5.0 AND v.core_f_c <= 1 END AS on_track_grade9
FROM win v
JOIN current_enrollment ce
  ON ce.person_id = v.person_id AND ce.school_year = v.school_year AND ce.week = v.week AND ce.rn = 1
LEFT JOIN spring_end se ON se.school_year = v.school_year
LEFT JOIN prior pm ON pm.person_id = v.person_id AND pm.school_year = v.school_year
                  AND pm.subject = 'math' AND pm.rn = 1
LEFT JOIN prior pr ON pr.person_id = v.person_id AND pr.school_year = v.school_year
                  AND pr.subject = 'reading' AND pr.rn = 1
WHERE $as_of IS NULL OR v.y0 + 7 * v.week <= $as_of
"""
