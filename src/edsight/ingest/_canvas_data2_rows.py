"""Canvas Data 2 rows prepared against the warehouse as it stands.

Private to :mod:`edsight.ingest.canvas_data2`. :class:`Export` reads the
warehouse once (read-only) to skip rows applied before, attach edsight ids
(``id_map`` first, then the derived id, then, through ``pseudonyms``, the SIS
number in ``person.local_id``), set aside rows whose course, user or
assignment is unknown, and work out deletions, cursors and ``event_log`` rows.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from edsight.ingest._assessments_prep import (
    column,
    derived_ids,
    drop,
    existing_ids,
    integer_text,
    keep_declared,
    normalise_vocabulary,
    reject,
    students,
    to_timestamps,
    utc_timestamps,
    with_column,
)
from edsight.ingest._canvas_data2_tables import (
    ASSIGNMENT,
    CD2_TABLES,
    GONE,
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
    VALUES,
)
from edsight.ingest.batch import SyncCursor
from edsight.ingest.files import RawTable

# -- preparing rows ---------------------------------------------------------------------------


def text(raw: RawTable, col: str) -> pa.ChunkedArray:
    values = column(raw, col)
    return values if values is not None else pa.chunked_array([pa.nulls(raw.data.num_rows, pa.string())])


def _ints(raw: RawTable, col: str) -> pa.ChunkedArray:
    return integer_text(text(raw, col))


def _members(chunks: list[pa.ChunkedArray]) -> pa.Array:
    values = [c for chunked in chunks for c in chunked.chunks]
    return (
        pc.unique(pa.chunked_array(values, pa.string())).drop_null() if values else pa.array([], pa.string())
    )


def _active(raw: RawTable, table: str) -> pa.ChunkedArray:
    """Rows that are not deletions in disguise (``workflow_state`` deleted or rejected)."""
    gone = pc.is_in(text(raw, "value.workflow_state"), value_set=pa.array(GONE.get(table, ())))
    return pc.invert(pc.fill_null(gone, False))


_NOT_FOUND = {
    "section": "this Canvas course is not in the warehouse; load the course first "
    "(Canvas API connector or a canonical section)",
    "person": "this Canvas user is not in the warehouse nor enrolled in this export",
    "assignment": "this Canvas assignment is not in the warehouse nor in this export",
}


class Export:
    """The rows of one export, prepared against the warehouse as it stands (read-only)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.upserts: dict[str, list[RawTable]] = {}
        self.deletions: dict[str, list[RawTable]] = {}
        self.unchanged = 0
        self._sis = pa.table({"user_id": pa.array([], pa.string()), "sis_user_id": pa.array([], pa.string())})
        rows = con.execute("SELECT entity, cursor FROM sync_state WHERE source = ?", [KIND]).fetchall()
        self.cursors: dict[str, str] = {str(e): str(c) for e, c in rows}

    # -- reading ---------------------------------------------------------------------------

    def add(self, table: str, raw: RawTable) -> None:
        """Normalise one file's rows, skip those applied before, split upserts from deletions."""
        raw, _ = keep_declared(raw, CD2_TABLES[table])
        stamped = ["meta.ts", *(f[0] for f in VALUES[table] if f[1] == "timestamp")]
        for name in stamped:
            if (values := column(raw, name)) is not None:
                raw = with_column(raw, name, utc_timestamps(values))
        if (actions := column(raw, "meta.action")) is not None:
            raw = with_column(raw, "meta.action", normalise_vocabulary(actions, {"u": "U", "d": "D"}))
        raw = self._skip_seen(table, raw)
        is_delete = pc.fill_null(pc.equal(text(raw, "meta.action"), "D"), False)
        keep = ["__row", *(c for c in CD2_TABLES[f"{table}_deletes"].column_names if c in raw.columns)]
        deletes = RawTable(raw.path, raw.data.filter(is_delete).select(keep))
        self.upserts.setdefault(table, []).append(
            RawTable(raw.path, raw.data.filter(pc.invert(is_delete)), raw.malformed)
        )
        if deletes.data.num_rows:
            self.deletions.setdefault(table, []).append(deletes)

    def _skip_seen(self, table: str, raw: RawTable) -> RawTable:
        """Drop rows applied before: by ``event_log`` id for web_logs, by cursor for the others."""
        if raw.data.num_rows == 0 or table == "pseudonyms":  # a lookup: every row of the export counts
            return raw
        if table == "web_logs":
            ids = text(raw, "key.id")
            seen = self._probe(
                "SELECT p.v FROM _edsight_probe p JOIN event_log e ON e.event_id = p.v AND e.source = ?",
                pc.unique(ids.drop_null()),
                [KIND],
            ).column(0)
            raw, n = drop(raw, pc.is_in(ids, value_set=seen.combine_chunks()))
        elif (cursor := self.cursors.get(table)) is not None:
            stamps = to_timestamps(text(raw, "meta.ts"))
            raw, n = drop(
                raw, pc.less_equal(stamps, pa.scalar(datetime.fromisoformat(cursor), pa.timestamp("us")))
            )
        else:
            n = 0
        self.unchanged += n
        return raw

    def _probe(self, sql: str, values: pa.Array | pa.ChunkedArray, params: list[object]) -> pa.Table:
        self.con.register("_edsight_probe", pa.table({"v": values}))
        try:
            return self.con.sql(sql, params=params).to_arrow_table()
        finally:
            self.con.unregister("_edsight_probe")

    # -- references --------------------------------------------------------------------------

    def resolve(self) -> None:
        """Attach edsight ids; set aside rows whose course, user or assignment cannot be found."""
        up = self.upserts
        self._sis = _sis_numbers(up.get("pseudonyms", []))
        up["enrollments"] = [self._enrollments(r) for r in up.get("enrollments", [])]
        enrolled = _members(
            [
                _ints(r, "value.user_id").filter(r.data.column(NEW))
                for r in up["enrollments"]
                if NEW in r.columns
            ]
        )
        up["assignments"] = [self._assignments(r) for r in up.get("assignments", [])]
        listed = _members([_ints(r, "key.id").filter(_active(r, "assignments")) for r in up["assignments"]])
        gone = _members(
            [_ints(r, "key.id").filter(pc.invert(_active(r, "assignments"))) for r in up["assignments"]]
            + [_ints(r, "key.id") for r in self.deletions.get("assignments", [])]
        )
        up["submissions"] = [self._submissions(r, enrolled, listed, gone) for r in up.get("submissions", [])]
        up["web_logs"] = [self._web_logs(r, enrolled) for r in up.get("web_logs", [])]
        self.upserts = {t: rs for t, rs in up.items() if rs}

    def _attach(
        self,
        raw: RawTable,
        col: str,
        entity: str,
        target: str,
        needed: pa.ChunkedArray,
        also: pa.Array | None = None,
    ) -> RawTable:
        """Add the edsight id of ``entity`` for ``col`` as ``target``; reject needed rows without one.

        An id counts when the warehouse has its row, or (``also``) when this
        export creates it.
        """
        ids = _ints(raw, col)
        if entity == "person":
            found = self._people(ids)[0]
        else:
            found = existing_ids(self.con, SYSTEM, entity, ids, entity, f"{entity}_id")
        if also is not None:
            fresh = pc.is_in(ids, value_set=also)
            made = pc.if_else(fresh, derived_ids(SYSTEM, entity, ids), pa.scalar(None, pa.string()))
            found = pc.coalesce(found, made)
        raw = with_column(raw, target, found)
        missing = pc.and_(pc.and_(pc.is_valid(ids), pc.is_null(found)), needed)
        return reject(raw, missing, f"column {col!r}: {_NOT_FOUND[entity]}")

    def _people(self, ids: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray, pa.ChunkedArray]:
        """Person ids of Canvas users already in the warehouse, whether found by SIS number, and that number.

        ``id_map`` and the derived id come first; then the SIS number from this
        export's pseudonyms is matched to ``person.local_id`` (the SIS is the
        roster authority), whatever the person's role.
        """
        known = existing_ids(self.con, SYSTEM, "person", ids, "person", "person_id")
        sis = pc.take(
            self._sis.column("sis_user_id"), pc.index_in(ids, value_set=self._sis.column("user_id"))
        )
        if sis.null_count == len(sis):
            return known, pc.is_valid(sis), sis
        matched, _ = students(self.con, SYSTEM, [("local_id", sis)], any_role=True)
        by_sis = pc.fill_null(pc.and_(pc.is_null(known), pc.is_valid(matched)), False)
        return pc.coalesce(known, matched), by_sis, sis

    def _enrollments(self, raw: RawTable) -> RawTable:
        active = _active(raw, "enrollments")
        raw = self._attach(raw, "value.course_id", "section", SECTION, active)
        ids = _ints(raw, "value.user_id")
        known, by_sis, sis = self._people(ids)
        real = pc.fill_null(pc.not_equal(text(raw, "value.type"), TEST_STUDENT), True)
        creates = pc.and_(
            pc.and_(pc.is_null(known), pc.is_valid(ids)), pc.and_(_active(raw, "enrollments"), real)
        )
        raw = with_column(raw, PERSON, pc.coalesce(known, derived_ids(SYSTEM, "person", ids)))
        raw = with_column(raw, NEW, creates)
        raw = with_column(raw, LINK, pc.or_(creates, by_sis))
        return with_column(raw, LOCAL, pc.if_else(creates, sis, pa.scalar(None, pa.string())))

    def _assignments(self, raw: RawTable) -> RawTable:
        ids = _ints(raw, "key.id")
        known = existing_ids(self.con, SYSTEM, "assignment", ids, "assignment", "assignment_id")
        raw = with_column(raw, ASSIGNMENT, pc.coalesce(known, derived_ids(SYSTEM, "assignment", ids)))
        return self._attach(raw, "value.context_id", "section", SECTION, _active(raw, "assignments"))

    def _submissions(self, raw: RawTable, enrolled: pa.Array, listed: pa.Array, gone: pa.Array) -> RawTable:
        active = _active(raw, "submissions")
        doomed = pc.and_(pc.is_in(_ints(raw, "value.assignment_id"), value_set=gone), active)
        raw = reject(raw, doomed, "column 'value.assignment_id': the assignment is deleted in this export")
        raw = self._attach(
            raw, "value.assignment_id", "assignment", ASSIGNMENT, _active(raw, "submissions"), listed
        )
        return self._attach(raw, "value.user_id", "person", PERSON, _active(raw, "submissions"), enrolled)

    def _web_logs(self, raw: RawTable, enrolled: pa.Array) -> RawTable:
        raw = _check_web_logs(raw)
        in_course = pc.and_(
            pc.is_valid(_ints(raw, "value.user_id")), pc.is_valid(_ints(raw, "value.course_id"))
        )
        raw = self._attach(raw, "value.course_id", "section", SECTION, in_course)
        in_course = pc.and_(
            pc.is_valid(_ints(raw, "value.user_id")), pc.is_valid(_ints(raw, "value.course_id"))
        )
        return self._attach(raw, "value.user_id", "person", PERSON, in_course, enrolled)

    # -- what the batch carries besides rows ------------------------------------------------------

    def deletes(self) -> dict[str, pa.Table]:
        """Canonical keys to delete: D rows (through ``id_map``) and rows deleted by their state."""
        out: dict[str, list[pa.Table]] = {}
        by_state = {
            t: [RawTable(r.path, r.data.filter(pc.invert(_active(r, t)))) for r in rs]
            for t, rs in self.upserts.items()
            if t in GONE
        }
        gone = _members(
            [
                _ints(r, "key.id")
                for r in [*self.deletions.get("assignments", []), *by_state.get("assignments", [])]
            ]
        )
        if len(gone):
            found = existing_ids(
                self.con, SYSTEM, "assignment", pa.chunked_array([gone]), "assignment", "assignment_id"
            )
            keys = pc.unique(found.drop_null())
            out["assignment"] = [pa.table({"assignment_id": keys})]
            # A deleted assignment takes its submissions along, or they would dangle.
            out["submission"] = [
                self._probe(
                    "SELECT s.assignment_id, s.person_id FROM submission s "
                    "JOIN _edsight_probe p ON p.v = s.assignment_id",
                    keys,
                    [],
                )
            ]
        for table, entity, parts in (
            ("submissions", "submission", ("assignment_id", "person_id")),
            ("enrollments", "enrollment", ("section_id", "person_id", "role")),
        ):
            ids = _members([_ints(r, "key.id") for r in self.deletions.get(table, [])])
            if len(ids):
                linked = self._probe(
                    "SELECT m.edsight_id FROM id_map m JOIN _edsight_probe p ON p.v = m.source_id "
                    "WHERE m.source_system = ? AND m.entity = ?",
                    ids,
                    [SYSTEM, entity],
                ).column(0)
                out.setdefault(entity, []).append(_split_keys(linked, parts))
        for raw in by_state.get("submissions", []):
            keys = pa.table({"assignment_id": text(raw, ASSIGNMENT), "person_id": text(raw, PERSON)})
            out.setdefault("submission", []).append(keys)
        for raw in by_state.get("enrollments", []):
            types = text(raw, "value.type").to_pylist()
            roles = pa.array([ROLES[t][0] if t in ROLES else None for t in types], pa.string())
            keys = pa.table({"section_id": text(raw, SECTION), "person_id": text(raw, PERSON), "role": roles})
            out.setdefault("enrollment", []).append(keys)
        tables = {t: pa.concat_tables(ts).drop_null() for t, ts in out.items()}
        return {t: keys for t, keys in tables.items() if keys.num_rows}

    def sync(self) -> list[SyncCursor]:
        """The newest ``meta.ts`` per table, where it moves the stored cursor forward."""
        out = []
        for table in TABLES[1:]:  # pseudonyms are a lookup, read whole every time
            raws = [*self.upserts.get(table, []), *self.deletions.get(table, [])]
            stamps = [c for r in raws for c in to_timestamps(text(r, "meta.ts")).chunks]
            newest = pc.max(pa.chunked_array(stamps, pa.timestamp("us"))).as_py() if stamps else None
            old = self.cursors.get(table)
            if newest is not None and (old is None or newest > datetime.fromisoformat(old)):
                out.append(SyncCursor(KIND, table, newest.isoformat(sep=" ")))
        return out

    def events(self) -> pa.Table:
        """``event_log`` rows for the web_logs requests this batch counts (each id once)."""
        raws = self.upserts.get("web_logs", [])
        ids = pa.chunked_array([c for r in raws for c in text(r, "key.id").chunks], pa.string())
        times = pa.chunked_array(
            [c for r in raws for c in to_timestamps(text(r, "value.timestamp")).chunks], pa.timestamp("us")
        )
        table = (
            pa.table({"event_id": ids, "event_time": times})
            .group_by("event_id")
            .aggregate([("event_time", "min")])
        )
        n = table.num_rows
        now = datetime.now(UTC).replace(tzinfo=None)
        return pa.table(
            {
                "event_id": table.column("event_id"),
                "source": pa.repeat(KIND, n),
                "event_name": pa.repeat("web_log", n),
                "event_time": table.column("event_time_min"),
                "received_at": pa.array([now] * n, pa.timestamp("us")),
            }
        )


def _sis_numbers(raws: list[RawTable]) -> pa.Table:
    """Canvas user id -> SIS number, from the live pseudonyms of the export (one per user)."""
    parts = [
        pa.table({"user_id": _ints(r, "value.user_id"), "sis_user_id": text(r, "value.sis_user_id")}).filter(
            pc.fill_null(pc.not_equal(text(r, "value.workflow_state"), "deleted"), True)
        )
        for r in raws
    ]
    table = pa.concat_tables(parts) if parts else pa.table({"user_id": [], "sis_user_id": []})
    table = table.cast(pa.schema([("user_id", pa.string()), ("sis_user_id", pa.string())])).drop_null()
    first = table.group_by("user_id").aggregate([("sis_user_id", "min")])
    return first.rename_columns(["user_id", "sis_user_id"]).combine_chunks()


def _split_keys(linked: pa.ChunkedArray, parts: tuple[str, ...]) -> pa.Table:
    """Composite keys kept in ``id_map`` (``a/b[/c]``) back into key columns."""
    pieces = pc.split_pattern(linked, "/")
    whole = pc.equal(pc.list_value_length(pieces), len(parts))
    pieces = pieces.filter(pc.fill_null(whole, False))
    return pa.table({name: pc.list_element(pieces, i) for i, name in enumerate(parts)})


def _check_web_logs(raw: RawTable) -> RawTable:
    """Check the columns web_logs needs before validation, so every id put in event_log is counted."""
    checks = [
        ("key.id", pc.is_null(text(raw, "key.id")), "required value is missing"),
        (
            "meta.action",
            pc.invert(pc.fill_null(pc.equal(text(raw, "meta.action"), "U"), False)),
            "expected one of U",
        ),
        (
            "value.timestamp",
            pc.is_null(to_timestamps(text(raw, "value.timestamp"))),
            "expected a timestamp (YYYY-MM-DD HH:MM:SS)",
        ),
    ]
    for col in ("value.user_id", "value.real_user_id", "value.course_id"):
        values = text(raw, col)
        checks.append(
            (col, pc.and_(pc.is_valid(values), pc.is_null(integer_text(values))), "expected an integer")
        )
    stamps = text(raw, "meta.ts")
    checks.append(
        ("meta.ts", pc.and_(pc.is_valid(stamps), pc.is_null(to_timestamps(stamps))), "expected a timestamp")
    )
    reasons = pa.chunked_array([pa.nulls(raw.data.num_rows, pa.string())])
    for col, bad, why in reversed(checks):
        reasons = pc.if_else(pc.fill_null(bad, False), pa.scalar(f"column {col!r}: {why}"), reasons)
    return reject(raw, pc.is_valid(reasons), reasons)
