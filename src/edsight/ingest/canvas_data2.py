"""Canvas Data 2 (DAP) exports -> canonical tables.

``dap snapshot`` / ``dap incremental`` write JSON lines (``{"key": {...},
"value": {...}, "meta": {"action": "U"|"D", "ts": ...}}``) or CSV with the
same fields flattened (``key.id``, ``value.user_id``, ``meta.action``), often
gzipped and split into part files. Four tables are read: ``assignments``,
``submissions``, ``enrollments`` (namespace ``canvas``) and ``web_logs``
(``canvas_logs``); a file belongs to the table named by its file name or by a
folder on its path. Rows are validated as themselves (:data:`CD2_TABLES`:
upserts as ``<table>``, deletions as ``<table>_deletes``), then mapped:

* assignments -> ``assignment``; submissions -> ``submission`` (``late`` and
  ``missing`` from ``late_policy_status``, else from ``submitted_at`` against
  ``cached_due_date``); enrollments -> ``enrollment`` (one row per course,
  person and role); web_logs -> ``lms_activity`` per hour (every request is a
  page view, non-GET requests are participations; masquerading requests and
  requests outside a course are not counted). Hourly counts are added to
  those already stored; web_logs ids go to ``event_log`` so a request is
  counted once however often it is exported.
* ``meta.action = D`` and ``workflow_state`` deleted remove rows (a deleted
  assignment takes its submissions along).

Ids are those of the Canvas API connector: ``edsight_id("canvas", entity,
<Canvas id>)``, with a Canvas course as the canonical ``section`` (and
``course``), unless ``id_map`` already links the Canvas id elsewhere. Persons
are created, without names, for enrolled users the warehouse does not know;
courses are not created (a section needs a term and a school that these
tables do not carry): rows of courses not in the warehouse are quarantined.
A cursor per table (the newest ``meta.ts``) is kept in ``sync_state``; rows
not newer than it are skipped as unchanged.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from edsight.errors import InvalidInput
from edsight.ingest._assessments_prep import FIRST_ROW, Progress, content_hash, read_bytes, read_jsonl
from edsight.ingest._canvas_data2_rows import Export, text
from edsight.ingest._canvas_data2_tables import (
    ASSIGNMENT,
    CD2_TABLES,
    KIND,
    LINK,
    LOCAL,
    NEW,
    PERSON,
    ROLES,
    SECTION,
    SYSTEM,
    TABLES,
    TEST_STUDENT,
    json_types,
)
from edsight.ingest.batch import IngestBatch
from edsight.ingest.files import RawTable, read_table_file
from edsight.ingest.quarantine import BatchValidator
from edsight.sql import quote_ident

if TYPE_CHECKING:
    from edsight.store.warehouse import LoadResult, Warehouse

log = logging.getLogger(__name__)

# -- files ----------------------------------------------------------------------------------


def _table_of(relative: PurePath) -> str | None:
    parts = [p.lower() for p in relative.parts[:-1]] + [relative.name.lower().split(".")[0]]
    return next((p for p in reversed(parts) if p in TABLES), None)


def export_files(source: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Files per table under ``source`` (a folder or one file), and messages for files not read."""
    if not source.exists():
        raise InvalidInput(f"{source}: no such file or folder")
    candidates = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    found: dict[str, list[Path]] = {}
    skipped: list[str] = []
    for path in candidates:
        suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
        if not suffixes or suffixes[-1] not in (".json", ".jsonl", ".csv"):
            continue
        relative = PurePath(path.name) if path == source else path.relative_to(source)
        table = _table_of(relative)
        if table is None:
            skipped.append(f"{relative}: not one of the tables read ({', '.join(TABLES)})")
        else:
            found.setdefault(table, []).append(path)
    if not found:
        raise InvalidInput(f"{source}: no Canvas Data 2 files of {', '.join(TABLES)} found")
    return found, skipped


def _read(path: Path, table: str, label: str, encoding: str) -> RawTable:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes[-1] != ".csv":
        return read_jsonl(path, json_types(table), label=label)
    if path.suffix.lower() != ".gz":
        raw = read_table_file(path, encoding)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / label
            plain.write_bytes(read_bytes(path))
            raw = read_table_file(plain, encoding)
    return RawTable(Path(label), raw.data, raw.malformed)


# -- mapping ------------------------------------------------------------------------------------


def _select(table: str, columns: str, where: str = "") -> str:
    return f"SELECT __file, __row, {columns} FROM {table} {where}"  # noqa: S608


def map_to_canonical(source: BatchValidator, target: BatchValidator) -> None:
    """Add the canonical relations built from the valid Canvas Data 2 rows to ``target``."""
    q = quote_ident
    have = set(source.reports)
    person, section, assignment = q(PERSON), q(SECTION), q(ASSIGNMENT)
    state = q("value.workflow_state")
    id_maps: list[str] = []

    def id_map(entity: str, source_id: str, edsight: str, rows: str) -> None:
        id_maps.append(
            f"SELECT __file, __row, '{SYSTEM}' AS source_system, '{entity}' AS entity, "  # noqa: S608
            f"CAST({source_id} AS VARCHAR) AS source_id, {edsight} AS edsight_id FROM ({rows})"
        )

    if "enrollments" in have:
        st = source.stage("enrollments")
        kind = q("value.type")
        role = "CASE " + " ".join(f"WHEN {kind} = '{t}' THEN '{r[0]}'" for t, r in ROLES.items()) + " END"
        made = " ".join(f"WHEN bool_or({kind} = '{t}') THEN '{r[1]}'" for t, r in ROLES.items())
        user = q("value.user_id")
        people = (
            f"SELECT {FIRST_ROW}, {person} AS person_id, CASE {made} END AS role, "  # noqa: S608
            f"min({q(LOCAL)}) AS local_id, false AS directory_opt_out "
            f"FROM {st} WHERE {q(NEW)} GROUP BY {person}"
        )
        target.add_relation("person", people, "enrollments")
        # Users created here or found by SIS number; the enrollment's own id_map row
        # carries the same (file, row), so these rows are told apart by their label.
        linked = f"SELECT {FIRST_ROW}, {person}, {user} FROM {st} WHERE {q(LINK)} GROUP BY {person}, {user}"  # noqa: S608
        relabelled = f"SELECT * REPLACE (__file || ' (user)' AS __file) FROM ({linked})"  # noqa: S608
        id_map("person", user, person, relabelled)
        end_at = q("value.end_at")
        ends = (
            f"CASE WHEN {state} IN ('completed', 'inactive') "
            f"THEN coalesce({end_at}, {q('value.updated_at')}) ELSE {end_at} END"
        )
        live = (
            f"SELECT *, {role} AS role, CAST({ends} AS DATE) AS ends FROM {st} "  # noqa: S608
            f"WHERE {state} NOT IN ('deleted', 'rejected') AND {kind} <> '{TEST_STUDENT}'"
        )
        target.add_relation(
            "enrollment",
            f"SELECT {FIRST_ROW}, {section} AS section_id, "  # noqa: S608
            f"{person} AS person_id, role, min(CAST(coalesce({q('value.start_at')}, {q('value.created_at')}, "
            f"{q('value.updated_at')}) AS DATE)) AS start_date, "
            f"CASE WHEN bool_or(ends IS NULL) THEN NULL ELSE max(ends) END AS end_date "
            f"FROM ({live}) GROUP BY {section}, {person}, role",
            "enrollments",
        )
        id_map("enrollment", q("key.id"), f"{section} || '/' || {person} || '/' || role", live)
    if "assignments" in have:
        st = source.stage("assignments")
        types = q("value.submission_types")
        live = f"SELECT * FROM {st} WHERE {state} <> 'deleted'"  # noqa: S608
        target.add_relation(
            "assignment",
            _select(
                f"({live})",
                f"{assignment} AS assignment_id, {section} AS section_id, {q('value.title')} AS title, "
                f"CASE WHEN {types} LIKE '%online_quiz%' THEN 'quiz' "
                f"WHEN {types} LIKE '%discussion_topic%' THEN 'discussion_topic' ELSE 'assignment' END "
                f"AS assignment_type, {q('value.due_at')} AS due_at, "
                f"{q('value.points_possible')} AS points_possible",
            ),
            "assignments",
        )
        id_map("assignment", q("key.id"), assignment, live)
    if "submissions" in have:
        _map_submissions(source, target, id_map)
    if "web_logs" in have:
        _map_web_logs(source, target)
    if id_maps:
        target.add_relation("id_map", " UNION ALL ".join(id_maps), "id_map")


def _map_submissions(
    source: BatchValidator, target: BatchValidator, id_map: Callable[[str, str, str, str], None]
) -> None:
    q = quote_ident
    st = source.stage("submissions")
    policy, submitted, due = (
        q("value.late_policy_status"),
        q("value.submitted_at"),
        q("value.cached_due_date"),
    )
    as_of = f"coalesce({q('meta.ts')}, current_localtimestamp())"
    # Canvas: an explicit late policy status decides; otherwise late is submitted after the due
    # date, and missing is not submitted, not graded or excused, with the due date passed.
    late = (
        f"CASE WHEN {policy} IS NOT NULL THEN {policy} = 'late' ELSE coalesce({submitted} > {due}, false) END"
    )
    missing = (
        f"CASE WHEN {policy} IS NOT NULL THEN {policy} = 'missing' ELSE {submitted} IS NULL "
        f"AND {q('value.workflow_state')} <> 'graded' AND NOT coalesce({q('value.excused')}, false) "
        f"AND coalesce({due} < {as_of}, false) END"
    )
    seconds = f"coalesce({q('value.seconds_late_override')}, greatest(0, epoch({submitted}) - epoch({due})))"
    live = (
        f"SELECT *, {late} AS is_late FROM {st} "  # noqa: S608
        f"WHERE {q('value.workflow_state')} <> 'deleted'"
    )
    target.add_relation(
        "submission",
        _select(
            f"({live})",
            f"{q(ASSIGNMENT)} AS assignment_id, {q(PERSON)} AS person_id, {submitted} AS submitted_at, "
            f"is_late AS late, {missing} AS missing, coalesce({q('value.excused')}, false) AS excused, "
            f"CASE WHEN is_late THEN CAST({seconds} AS BIGINT) END AS seconds_late, "
            f"{q('value.score')} AS score, {q('value.attempt')} AS attempt, "
            f"{q('value.workflow_state')} AS workflow_state",
        ),
        "submissions",
    )
    id_map("submission", q("key.id"), f"{q(ASSIGNMENT)} || '/' || {q(PERSON)}", live)


def _map_web_logs(source: BatchValidator, target: BatchValidator) -> None:
    """Hourly page views and participations, added to the counts already stored."""
    q = quote_ident
    st = source.stage("web_logs")
    user, real = q("value.user_id"), q("value.real_user_id")
    hour = f"date_trunc('hour', {q('value.timestamp')})"
    method = f"upper(coalesce({q('value.http_method')}, 'GET'))"
    counted = (
        f"SELECT {FIRST_ROW}, {q(PERSON)} AS person_id, "  # noqa: S608
        f"{q(SECTION)} AS section_id, {hour} AS period_start, count(*) AS views, "
        f"count(*) FILTER (WHERE {method} NOT IN ('GET', 'HEAD', 'OPTIONS')) AS acts, "
        f"max({q('value.timestamp')}) AS last_at FROM {st} "
        f"WHERE {q(PERSON)} IS NOT NULL AND {q(SECTION)} IS NOT NULL AND ({real} IS NULL OR {real} = {user}) "
        f"GROUP BY {q(PERSON)}, {q(SECTION)}, {hour}"
    )
    target.add_relation(
        "lms_activity",
        f"SELECT c.__file, c.__row, c.person_id, c.section_id, c.period_start, 'hour' AS period, "  # noqa: S608
        f"c.views + coalesce(e.page_views, 0) AS page_views, c.acts + coalesce(e.participations, 0) "
        f"AS participations, greatest(c.last_at, e.last_activity_at) AS last_activity_at FROM ({counted}) c "
        f"LEFT JOIN main.lms_activity e ON e.person_id = c.person_id AND e.section_id = c.section_id "
        f"AND e.period_start = c.period_start AND e.period = 'hour'",
        "web_logs",
    )


# -- the entry point ----------------------------------------------------------------------------


def _labels(paths: list[Path], source: Path, table: str) -> list[str]:
    """Names for messages: the file name, with the table when the name does not say it."""
    labels: list[str] = []
    for path in paths:
        name = path.name
        if name in [p.name for p in paths if p != path] and source.is_dir():
            name = "_".join(path.relative_to(source).parts)  # part files of two jobs may share a name
        labels.append(name if name.lower().startswith(table) else f"{name} [{table}]")
    return labels


def _count(raws: list[RawTable], mask: Callable[[RawTable], pa.ChunkedArray]) -> int:
    return sum(int(pc.sum(pc.fill_null(mask(r), False)).as_py() or 0) for r in raws)


def _notes(export: Export) -> list[str]:
    """Valid rows that, by design, are not stored: said once per kind, with how many."""
    notes = []
    if web_deletes := sum(r.data.num_rows for r in export.deletions.get("web_logs", [])):
        notes.append(f"web_logs: {web_deletes} D rows ignored (the request log is append-only)")
    logs = export.upserts.get("web_logs", [])
    outside = _count(logs, lambda r: pc.or_(pc.is_null(text(r, PERSON)), pc.is_null(text(r, SECTION))))
    masked = _count(
        logs,
        lambda r: pc.and_(
            pc.and_(pc.is_valid(text(r, PERSON)), pc.is_valid(text(r, SECTION))),
            pc.not_equal(text(r, "value.real_user_id"), text(r, "value.user_id")),
        ),
    )
    if outside or masked:
        notes.append(
            f"web_logs: {outside} requests outside a course, {masked} made while masquerading, "
            "not counted as course activity"
        )
    tests = _count(
        export.upserts.get("enrollments", []), lambda r: pc.equal(text(r, "value.type"), TEST_STUDENT)
    )
    if tests:
        notes.append(f"enrollments: {tests} test-student (StudentViewEnrollment) rows not stored")
    return notes


def ingest_canvas_data2(
    warehouse: Warehouse,
    source: Path,
    *,
    encoding: str = "utf-8",
    force: bool = False,
    progress: Progress | None = None,
) -> LoadResult:
    """Load one Canvas Data 2 export (a folder of DAP output, or one file of it)."""
    files, skipped = export_files(source)
    with warehouse.connect(read_only=True) as con:
        export = Export(con)
        for table in TABLES:
            for path, label in zip(
                files.get(table, []), _labels(files.get(table, []), source, table), strict=True
            ):
                if progress:
                    progress(f"reading {label}")
                export.add(table, _read(path, table, label, encoding))
        export.resolve()
        deletes, sync, events = export.deletes(), export.sync(), export.events()
    skipped += _notes(export)
    parts = [(t, r) for t, rs in export.upserts.items() for r in rs]
    parts += [(f"{t}_deletes", r) for t, rs in export.deletions.items() for r in rs]
    extra = b"".join(b.serialize().to_pybytes() for t in deletes.values() for b in t.to_batches())
    batch = IngestBatch(
        source=f"{KIND}:{source}",
        content_hash=content_hash(KIND, parts, extra + repr(sync).encode()),
        source_tables=CD2_TABLES,
        mapper=map_to_canonical,
        deletes=deletes,
        skipped=skipped,
        unchanged=export.unchanged,
        sync=sync,
        system_rows={"event_log": events} if events.num_rows else {},
    )
    for table, raw in parts:
        batch.add_source(table, raw)
    return warehouse.load_batch(batch, force=force, progress=progress)
