"""Valid ``live_event`` rows -> canonical rows, inside the load's transaction.

Runs as the batch mapper, on the load connection, so it sees the warehouse as it
is at commit time:

1. resolve Canvas ids through ``id_map`` (system ``canvas``): users to persons (or,
   failing that, through the SIS id: ``canvas_sis`` id_map entries, then
   ``person.local_id``), courses to the student's
   section, assignments to assignments; events that do not resolve, or that an
   earlier load already applied, are quarantined with the reason (kept, not lost);
2. page views (``asset_accessed``) and logins (``logged_in``) become hourly
   ``lms_activity`` rows *added to* the counts already stored for the same person,
   section and hour (the loader replaces rows by key, so the sum is staged here);
3. ``submission_created`` and ``grade_change`` update ``submission``: the newest
   event of each kind wins within the batch, merged over the stored row;
4. the ids of the applied events become the batch's ``event_log`` rows, and the
   newest applied event time the ``sync_state`` cursor (``events``, ``live_event``).

Every statement here is constant SQL over fixed temp tables; the validator's
generated table names are reached through the relation API, never pasted into SQL.
"""

from __future__ import annotations

from edsight.ingest.batch import IngestBatch, SyncCursor
from edsight.ingest.quarantine import BatchValidator
from edsight.sql import scalar

SOURCE_TABLE = "live_event"
CURSOR_SOURCE = "events"
DERIVED_LABEL = "live events"

# Canvas users seen in the batch -> persons: the canvas id_map first; then through the
# event's SIS id, as the Canvas API connector maps it (system canvas_sis), or as the
# local_id (SIS student number) of exactly one person.
_PEOPLE = """
CREATE OR REPLACE TEMP TABLE _ev_people AS
WITH users AS (
  SELECT user_id, max(user_sis_id) AS user_sis_id FROM _ev_src GROUP BY user_id
), mapped AS (
  SELECT m.source_id AS user_id, min(p.person_id) AS person_id
  FROM main.id_map m JOIN main.person p ON p.person_id = m.edsight_id
  WHERE m.source_system = 'canvas' AND m.entity = 'person'
    AND m.source_id IN (SELECT user_id FROM users)
  GROUP BY m.source_id
), by_sis AS (
  SELECT m.source_id AS user_sis_id, min(p.person_id) AS person_id
  FROM main.id_map m JOIN main.person p ON p.person_id = m.edsight_id
  WHERE m.source_system = 'canvas_sis' AND m.entity = 'person'
    AND m.source_id IN (SELECT user_sis_id FROM users)
  GROUP BY m.source_id HAVING count(DISTINCT p.person_id) = 1
), by_local_id AS (
  SELECT local_id, min(person_id) AS person_id FROM main.person
  WHERE local_id IN (SELECT user_sis_id FROM users)
  GROUP BY local_id HAVING count(*) = 1
)
SELECT u.user_id, coalesce(m.person_id, s.person_id, l.person_id) AS person_id,
       m.person_id IS NULL AND coalesce(s.person_id, l.person_id) IS NOT NULL AS via_sis_id
FROM users u LEFT JOIN mapped m USING (user_id)
LEFT JOIN by_sis s ON s.user_sis_id = u.user_sis_id
LEFT JOIN by_local_id l ON l.local_id = u.user_sis_id
"""

# (Canvas course, person) -> section: the section of that course the person is
# enrolled in (course through id_map), else the section id_map holds for the
# course id (the course-as-section convention of the Canvas seed files).
_SECTIONS = """
CREATE OR REPLACE TEMP TABLE _ev_sections AS
WITH pairs AS (
  SELECT DISTINCT e.course_id, p.person_id
  FROM _ev_src e JOIN _ev_people p USING (user_id)
  WHERE e.course_id IS NOT NULL AND p.person_id IS NOT NULL
), enrolled AS (
  SELECT pr.course_id, pr.person_id, min(s.section_id) AS section_id
  FROM pairs pr
  JOIN main.id_map m ON m.source_system = 'canvas' AND m.entity = 'course' AND m.source_id = pr.course_id
  JOIN main.section s ON s.course_id = m.edsight_id
  JOIN main.enrollment en ON en.section_id = s.section_id AND en.person_id = pr.person_id
  GROUP BY pr.course_id, pr.person_id
), direct AS (
  SELECT m.source_id AS course_id, min(s.section_id) AS section_id
  FROM main.id_map m JOIN main.section s ON s.section_id = m.edsight_id
  WHERE m.source_system = 'canvas' AND m.entity = 'section'
    AND m.source_id IN (SELECT course_id FROM pairs)
  GROUP BY m.source_id
)
SELECT pr.course_id, pr.person_id, coalesce(en.section_id, d.section_id) AS section_id
FROM pairs pr LEFT JOIN enrolled en USING (course_id, person_id) LEFT JOIN direct d USING (course_id)
"""

_ASSIGNMENTS = """
CREATE OR REPLACE TEMP TABLE _ev_assignments AS
SELECT m.source_id AS canvas_assignment_id, min(a.assignment_id) AS assignment_id
FROM main.id_map m JOIN main.assignment a ON a.assignment_id = m.edsight_id
WHERE m.source_system = 'canvas' AND m.entity = 'assignment'
  AND m.source_id IN (SELECT assignment_id FROM _ev_src)
GROUP BY m.source_id
"""

_UNKNOWN_USER = (
    "Canvas user is not in the roster yet (no canvas id_map entry, and no person with this "
    "SIS id); the event is kept here until the roster is loaded"
)
_UNKNOWN_COURSE = "Canvas course has no section in the warehouse (no canvas id_map entry)"
_UNKNOWN_ASSIGNMENT = "Canvas assignment is not in the warehouse (no canvas id_map entry)"
_ALREADY_APPLIED = "event already applied by an earlier load (event_log)"

_RESOLVED = """
CREATE OR REPLACE TEMP TABLE _ev_res AS
SELECT e.__file, e.__row, e.event_id, e.format, e.event_name, e.event_time, e.received_at,
       e.user_id, e.level, e.submitted_at, e.attempt, e.late, e.score, e.workflow_state,
       p.person_id, s.section_id, a.assignment_id, asg.due_at,
       CASE
         WHEN l.event_id IS NOT NULL THEN 'event_id'
         WHEN p.person_id IS NULL THEN 'user_id'
         WHEN e.event_name = 'asset_accessed' AND s.section_id IS NULL THEN 'course_id'
         WHEN e.event_name IN ('submission_created', 'grade_change') AND a.assignment_id IS NULL
           THEN 'assignment_id'
       END AS problem_column,
       CASE
         WHEN l.event_id IS NOT NULL THEN $already_applied
         WHEN p.person_id IS NULL THEN $unknown_user
         WHEN e.event_name = 'asset_accessed' AND s.section_id IS NULL
           THEN $unknown_course || ' (course ' || e.course_id || ')'
         WHEN e.event_name IN ('submission_created', 'grade_change') AND a.assignment_id IS NULL
           THEN $unknown_assignment || ' (assignment ' || coalesce(e.assignment_id, 'missing') || ')'
       END AS problem
FROM _ev_src e
LEFT JOIN _ev_people p USING (user_id)
LEFT JOIN _ev_sections s ON s.course_id = e.course_id AND s.person_id = p.person_id
LEFT JOIN _ev_assignments a ON a.canvas_assignment_id = e.assignment_id
LEFT JOIN main.assignment asg ON asg.assignment_id = a.assignment_id
LEFT JOIN (SELECT DISTINCT event_id FROM main.event_log WHERE event_id IN (SELECT event_id FROM _ev_src)) l
  ON l.event_id = e.event_id
"""
_REASONS = {
    "already_applied": _ALREADY_APPLIED,
    "unknown_user": _UNKNOWN_USER,
    "unknown_course": _UNKNOWN_COURSE,
    "unknown_assignment": _UNKNOWN_ASSIGNMENT,
}

_QUARANTINED = """
SELECT 'live_event' AS table_name, r.__file AS source_file, r.__row AS row_number,
       r.problem_column AS column_name,
       r.__file || ': row ' || r.__row || ', column ''' || r.problem_column || ''': ' || r.problem AS reason,
       to_json(e) AS record
FROM _ev_res r JOIN _ev_src e USING (__file, __row)
WHERE r.problem IS NOT NULL
ORDER BY r.__file, r.__row
"""

_APPLIED = "CREATE OR REPLACE TEMP TABLE _ev_ok AS SELECT * FROM _ev_res WHERE problem IS NULL"

# Page views count 1 each (participations when Canvas marks the access
# participate/submit); a login is an hourly row with no page views whose
# last_activity_at is the login time, in the section of its course context, or
# else in every section the student is enrolled in that day.
_ACTIVITY = """
WITH hits AS (
  SELECT person_id, section_id, event_time, 1 AS views,
         CASE WHEN level IN ('participate', 'submit') THEN 1 ELSE 0 END AS parts
  FROM _ev_ok WHERE event_name = 'asset_accessed'
  UNION ALL
  SELECT person_id, section_id, event_time, 0, 0
  FROM _ev_ok WHERE event_name = 'logged_in' AND section_id IS NOT NULL
  UNION ALL
  SELECT o.person_id, en.section_id, o.event_time, 0, 0
  FROM _ev_ok o JOIN main.enrollment en
    ON en.person_id = o.person_id AND en.role = 'student'
   AND en.start_date <= CAST(o.event_time AS DATE)
   AND (en.end_date IS NULL OR en.end_date >= CAST(o.event_time AS DATE))
  WHERE o.event_name = 'logged_in' AND o.section_id IS NULL
), hours AS (
  SELECT person_id, section_id, date_trunc('hour', event_time) AS period_start,
         sum(views) AS page_views, sum(parts) AS participations, max(event_time) AS last_activity_at
  FROM hits GROUP BY ALL
)
SELECT 'live events' AS __file,
       row_number() OVER (ORDER BY h.person_id, h.section_id, h.period_start) AS __row,
       h.person_id, h.section_id, h.period_start, 'hour' AS period,
       h.page_views + coalesce(x.page_views, 0) AS page_views,
       h.participations + coalesce(x.participations, 0) AS participations,
       greatest(h.last_activity_at, x.last_activity_at) AS last_activity_at
FROM hours h LEFT JOIN main.lms_activity x
  ON x.person_id = h.person_id AND x.section_id = h.section_id
 AND x.period_start = h.period_start AND x.period = 'hour'
"""

# The newest submission and the newest grade per (assignment, person) in the batch,
# merged over the stored row. An older attempt never replaces a newer stored one.
_SUBMISSION = """
WITH subs AS (
  SELECT * FROM _ev_ok WHERE event_name = 'submission_created'
  QUALIFY row_number() OVER (PARTITION BY assignment_id, person_id
                             ORDER BY event_time DESC, attempt DESC NULLS LAST, __file DESC, __row DESC) = 1
), grades AS (
  SELECT * FROM _ev_ok WHERE event_name = 'grade_change'
  QUALIFY row_number() OVER (PARTITION BY assignment_id, person_id
                             ORDER BY event_time DESC, __file DESC, __row DESC) = 1
), keys AS (
  SELECT assignment_id, person_id FROM subs UNION SELECT assignment_id, person_id FROM grades
), merged AS (
  SELECT k.assignment_id, k.person_id, x.assignment_id IS NOT NULL AS stored,
         s.assignment_id IS NOT NULL
           AND (x.attempt IS NULL OR s.attempt IS NULL OR s.attempt >= x.attempt) AS use_s,
         g.assignment_id IS NOT NULL AS use_g,
         coalesce(s.submitted_at, s.event_time) AS s_submitted_at,
         s.event_time AS s_time, s.attempt AS s_attempt, s.score AS s_score,
         s.workflow_state AS s_state, s.due_at,
         coalesce(s.late, coalesce(s.submitted_at, s.event_time) > s.due_at, false) AS s_late,
         g.event_time AS g_time, g.score AS g_score,
         x.submitted_at AS x_submitted_at, x.late AS x_late, x.missing AS x_missing,
         x.excused AS x_excused, x.seconds_late AS x_seconds_late, x.score AS x_score,
         x.attempt AS x_attempt, x.workflow_state AS x_state
  FROM keys k
  LEFT JOIN subs s USING (assignment_id, person_id)
  LEFT JOIN grades g USING (assignment_id, person_id)
  LEFT JOIN main.submission x USING (assignment_id, person_id)
), decided AS (
  SELECT *, use_g AND (NOT use_s OR s_score IS NULL OR g_time >= s_time) AS grade_wins FROM merged
)
SELECT 'live events' AS __file,
       row_number() OVER (ORDER BY assignment_id, person_id) AS __row,
       assignment_id, person_id,
       CASE WHEN use_s THEN s_submitted_at ELSE x_submitted_at END AS submitted_at,
       CASE WHEN use_s THEN s_late ELSE coalesce(x_late, false) END AS late,
       CASE WHEN use_s THEN false ELSE coalesce(x_missing, false) END AS missing,
       coalesce(x_excused, false) AS excused,
       CASE WHEN NOT use_s THEN x_seconds_late
            WHEN NOT s_late THEN 0
            WHEN due_at IS NULL THEN NULL
            ELSE greatest(0, date_diff('second', due_at, s_submitted_at)) END AS seconds_late,
       CASE WHEN grade_wins THEN g_score
            WHEN use_s AND s_score IS NOT NULL THEN s_score
            ELSE x_score END AS score,
       CASE WHEN use_s THEN coalesce(s_attempt, x_attempt) ELSE x_attempt END AS attempt,
       CASE WHEN grade_wins AND g_score IS NOT NULL AND (NOT use_s OR g_time >= s_time) THEN 'graded'
            WHEN use_s THEN coalesce(s_state, 'submitted')
            ELSE x_state END AS workflow_state
FROM decided
"""

# Users found through their SIS id are written to id_map, so later events resolve directly.
_ID_MAP = """
SELECT 'live events' AS __file, row_number() OVER (ORDER BY user_id) AS __row,
       'canvas' AS source_system, 'person' AS entity, user_id AS source_id, person_id AS edsight_id
FROM _ev_people WHERE via_sis_id
"""

_KINDS = """
SELECT (SELECT count(*) FROM _ev_ok WHERE event_name IN ('asset_accessed', 'logged_in')),
       (SELECT count(*) FROM _ev_ok WHERE event_name IN ('submission_created', 'grade_change')),
       (SELECT count(*) FROM _ev_people WHERE via_sis_id)
"""

_EVENT_LOG = """
SELECT event_id, format AS source, event_name, event_time, received_at
FROM _ev_ok ORDER BY event_time, event_id
"""


def map_events(source: BatchValidator, target: BatchValidator, batch: IngestBatch) -> None:
    """Resolve, quarantine and map the valid ``live_event`` rows (see the module docstring)."""
    con = source.con
    con.table(source.stage(SOURCE_TABLE)).to_view("_ev_src", replace=True)
    for sql in (_PEOPLE, _SECTIONS, _ASSIGNMENTS):
        con.execute(sql)
    con.execute(_RESOLVED, _REASONS)
    con.execute(_APPLIED)
    _quarantine_unresolved(source)
    ((activity, submissions, linked),) = con.execute(_KINDS).fetchall()
    for table, sql, n in (
        ("lms_activity", _ACTIVITY, activity),
        ("submission", _SUBMISSION, submissions),
        ("id_map", _ID_MAP, linked),
    ):
        if n:
            target.add_relation(table, sql, DERIVED_LABEL)
    batch.system_rows["event_log"] = con.sql(_EVENT_LOG).to_arrow_table()
    newest = scalar(con, "SELECT max(event_time) FROM _ev_ok")
    if newest is not None:
        # How current the live data is: the newest applied event (committed with it).
        batch.sync.append(SyncCursor(CURSOR_SOURCE, SOURCE_TABLE, newest.isoformat(sep=" ")))


def _quarantine_unresolved(source: BatchValidator) -> None:
    """Move events that did not resolve from the valid rows to the source quarantine."""
    con = source.con
    con.sql(_QUARANTINED).insert_into(source.quarantine)
    n = int(scalar(con, "SELECT count(*) FROM _ev_res WHERE problem IS NOT NULL"))
    if n:
        report = source.reports[SOURCE_TABLE]
        report.rows_valid -= n
        report.rows_quarantined += n
