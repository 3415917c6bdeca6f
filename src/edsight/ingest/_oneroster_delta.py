"""Incremental OneRoster loads: per-file cursors, unchanged rows, and deletions.

* Each file's cursor (``sync_state``: source ``oneroster:<systemCode>``, entity the
  file name) is the newest ``dateLastModified`` seen in a committed load. Rows not
  newer than it are counted as unchanged and not staged again; rows with no date
  (allowed in bulk files) are always staged.
* Rows marked ``tobedeleted`` in delta files become deletes by canonical key. A
  class or user takes its enrollments (and a user its demographics) with it. A
  record that other warehouse tables still refer to (attendance, grades, tests,
  sections of a school, ...) is kept whole and reported: edsight keeps history, and
  erasing a student is the governance deletion's job, not a roster feed's.

SQL here is assembled from names declared in :mod:`edsight.schema` and the
connector's declarations; values travel as parameters or as registered data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from edsight.ingest._oneroster_common import value_case
from edsight.ingest._oneroster_package import Manifest
from edsight.ingest._oneroster_tables import ENROLLMENT_ROLE_MAP
from edsight.ingest.batch import SyncCursor
from edsight.ingest.files import ROW_COL, RawTable
from edsight.ingest.ids import edsight_id_sql
from edsight.schema import CANONICAL
from edsight.sql import quote_ident

log = logging.getLogger(__name__)

SYSTEM = "oneroster"
ENTITY_OF_FILE = {
    "orgs": "organization",
    "academicSessions": "term",
    "courses": "course",
    "classes": "section",
    "users": "person",
}
KEY_OF_ENTITY = {"organization": "org_id", "term": "term_id", "course": "course_id", "section": "section_id"}
# Rows that go with a deleted parent instead of keeping it alive.
CASCADE = {"section": ("enrollment",), "person": ("enrollment", "student_demographics")}
CURSOR_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def source_key(manifest: Manifest) -> str:
    """The ``sync_state.source`` of a package's SIS: its systemCode, else its systemName."""
    return f"{SYSTEM}:{manifest.system_code or manifest.system_name or 'default'}"


def read_cursors(con: duckdb.DuckDBPyConnection, key: str) -> dict[str, datetime]:
    """The committed cursor of each file of source ``key``."""
    rows = con.execute("SELECT entity, cursor FROM sync_state WHERE source = ?", [key]).fetchall()
    out: dict[str, datetime] = {}
    for entity, cursor in rows:
        try:
            out[str(entity)] = datetime.strptime(str(cursor), CURSOR_FORMAT)
        except ValueError:
            log.warning("sync_state cursor of %s/%s is not a timestamp; ignoring it", key, entity)
    return out


@dataclass
class Incremental:
    """The part of a package to stage, and what it means for cursors and deletes."""

    files: dict[str, RawTable]
    unchanged: int = 0
    cursors: list[SyncCursor] = field(default_factory=list)
    deletes: dict[str, pa.Table] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _modified_utc(mem: duckdb.DuckDBPyConnection, raw: RawTable) -> pa.ChunkedArray:
    """``dateLastModified`` of every row as a UTC timestamp (null when blank or unreadable)."""
    mem.register("or_dates", raw.data.select([ROW_COL, "dateLastModified"]))
    try:
        table = mem.sql(
            "SELECT try_cast(try_cast(dateLastModified AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS TIMESTAMP) AS t "
            "FROM or_dates ORDER BY __row"
        ).to_arrow_table()
    finally:
        mem.unregister("or_dates")
    return table.column("t")


def skip_unchanged(
    files: Mapping[str, RawTable], cursors: Mapping[str, datetime], key: str, *, full: bool = False
) -> Incremental:
    """Drop rows not newer than their file's cursor; work out the cursors to commit."""
    plan = Incremental(files={})
    mem = duckdb.connect(":memory:", config={"enable_external_access": False})
    try:
        mem.execute("SET TimeZone = 'UTC'")
        for name, raw in files.items():
            if "dateLastModified" not in raw.columns or raw.data.num_rows == 0:
                plan.files[name] = raw
                continue
            modified = _modified_utc(mem, raw)
            old = cursors.get(name)
            newest = pc.max(modified).as_py()
            if old is not None and not full:
                keep = pc.fill_null(pc.greater(modified, pa.scalar(old, pa.timestamp("us"))), True)
                kept = raw.data.filter(keep)
                plan.unchanged += raw.data.num_rows - kept.num_rows
                raw = RawTable(raw.path, kept, raw.malformed)
            plan.files[name] = raw
            if newest is not None and (old is None or newest > old):
                plan.cursors.append(SyncCursor(key, name, newest.strftime(CURSOR_FORMAT)))
    finally:
        mem.close()
    return plan


def _id(entity: str, expr: str) -> str:
    return edsight_id_sql(SYSTEM, entity, expr)


def _person_sql(expr: str) -> str:
    """A user's person id: the one the warehouse mapped it to, else the derived one."""
    return (
        f"coalesce((SELECT m.edsight_id FROM main.id_map m WHERE m.source_system = '{SYSTEM}' "  # noqa: S608
        f"AND m.entity = 'person' AND m.source_id = {expr}), {_id('person', expr)})"
    )


def _candidates(con: duckdb.DuckDBPyConnection, name: str, rows: pa.Table) -> dict[str, pa.Table]:
    """Canonical keys named by the tobedeleted rows of one file."""
    con.register("or_del", rows)
    try:
        if name in ("orgs", "academicSessions", "courses", "classes"):
            entity = ENTITY_OF_FILE[name]
            sql = f"SELECT DISTINCT {_id(entity, 'sourcedId')} AS {KEY_OF_ENTITY[entity]} FROM or_del"  # noqa: S608
            return {entity: con.sql(sql).to_arrow_table()}
        if name == "users":
            sql = f"SELECT DISTINCT {_person_sql('sourcedId')} AS person_id FROM or_del"  # noqa: S608
            return {"person": con.sql(sql).to_arrow_table()}
        if name == "demographics":
            user = (
                "coalesce(userSourcedId, sourcedId)" if "userSourcedId" in rows.column_names else "sourcedId"
            )
            sql = f"SELECT DISTINCT {_person_sql(user)} AS person_id FROM or_del"  # noqa: S608
            return {"student_demographics": con.sql(sql).to_arrow_table()}
        if name == "enrollments" and {"classSourcedId", "userSourcedId", "role"} <= set(rows.column_names):
            role = value_case("role", ENROLLMENT_ROLE_MAP)
            sql = (
                f"SELECT DISTINCT {_id('section', 'classSourcedId')} AS section_id, "  # noqa: S608
                f"{_person_sql('userSourcedId')} AS person_id, {role} AS role FROM or_del "
                f"WHERE classSourcedId IS NOT NULL AND userSourcedId IS NOT NULL AND {role} IS NOT NULL"
            )
            return {
                "enrollment": con.sql(sql).to_arrow_table(),
                "_enrollment_ids": rows.select(["sourcedId"]),
            }
        return {}
    finally:
        con.unregister("or_del")


def plan_deletes(
    con: duckdb.DuckDBPyConnection, files: Mapping[str, RawTable], modes: Mapping[str, str], plan: Incremental
) -> None:
    """Turn the ``tobedeleted`` rows of delta files into ``plan.deletes`` (see the module doc)."""
    keys: dict[str, set[str]] = {}
    direct: dict[str, list[pa.Table]] = {}
    enrollment_ids: list[str] = []
    for name, raw in files.items():
        if modes.get(name) != "delta" or "status" not in raw.columns or "sourcedId" not in raw.columns:
            continue
        data = raw.data
        rows = data.filter(pc.fill_null(pc.equal(data.column("status"), "tobedeleted"), False))
        # A delete needs its key and, as every delta row, its date; rows without either are
        # quarantined by the validator and delete nothing.
        rows = rows.filter(pc.is_valid(rows.column("sourcedId")))
        if "dateLastModified" not in rows.column_names:
            continue
        rows = rows.filter(pc.is_valid(rows.column("dateLastModified")))
        if rows.num_rows == 0:
            continue
        if name == "roles":
            plan.notes.append(
                f"roles.csv: {rows.num_rows} tobedeleted role(s); a person keeps the last role it was given"
            )
            continue
        for entity, table in _candidates(con, name, rows).items():
            if entity == "_enrollment_ids":
                enrollment_ids.extend(str(v) for v in table.column(0).to_pylist())
            elif entity in KEY_OF_ENTITY or entity == "person":
                keys.setdefault(entity, set()).update(str(v) for v in table.column(0).to_pylist())
            else:
                direct.setdefault(entity, []).append(table)
    kept = _protect(con, keys)
    for entity, reasons in kept.items():
        file = next(f for f, e in ENTITY_OF_FILE.items() if e == entity)
        plan.notes.append(
            f"{file}.csv: {len(reasons)} tobedeleted row(s) kept because the warehouse still refers to "
            f"them ({', '.join(sorted({t for r in reasons.values() for t in r}))}); edsight keeps history"
        )
    _finish(con, keys, direct, enrollment_ids, plan)


def _key_column(entity: str) -> str:
    return "person_id" if entity == "person" else KEY_OF_ENTITY[entity]


def _referrers(entity: str) -> list[tuple[str, str]]:
    """(table, column) of every single-column foreign key to ``entity`` that does not cascade."""
    out = []
    for table in CANONICAL.values():
        for fk in table.foreign_keys:
            if fk.table == entity and len(fk.columns) == 1 and table.name not in CASCADE.get(entity, ()):
                out.append((table.name, fk.columns[0]))
    return out


def _protect(con: duckdb.DuckDBPyConnection, keys: dict[str, set[str]]) -> dict[str, dict[str, set[str]]]:
    """Remove from ``keys`` those still referred to by rows that stay; return them with the referrers."""
    kept: dict[str, dict[str, set[str]]] = {}
    changed = True
    while changed:
        changed = False
        for entity, wanted in keys.items():
            if not wanted:
                continue
            con.register("or_keys", pa.table({"k": sorted(wanted)}))
            try:
                for table, column in _referrers(entity):
                    leaving = keys.get(table, set())
                    decl = CANONICAL[table]
                    pk = decl.primary_key[0] if len(decl.primary_key) == 1 else None
                    con.register("or_leaving", pa.table({"k": pa.array(sorted(leaving), pa.string())}))
                    stay = (
                        f" AND {quote_ident(pk)} NOT IN (SELECT k FROM or_leaving)"  # noqa: S608
                        if pk and leaving
                        else ""
                    )
                    col = quote_ident(column)
                    rows = con.execute(
                        f"SELECT DISTINCT {col} FROM main.{quote_ident(table)} "  # noqa: S608
                        f"WHERE {col} IN (SELECT k FROM or_keys){stay}"
                    ).fetchall()
                    con.unregister("or_leaving")
                    for (value,) in rows:
                        wanted.discard(str(value))
                        kept.setdefault(entity, {}).setdefault(str(value), set()).add(table)
                        changed = True
            finally:
                con.unregister("or_keys")
    return kept


def _finish(
    con: duckdb.DuckDBPyConnection,
    keys: dict[str, set[str]],
    direct: dict[str, list[pa.Table]],
    enrollment_ids: list[str],
    plan: Incremental,
) -> None:
    deletes: dict[str, pa.Table] = {}
    for entity, wanted in keys.items():
        if wanted:
            deletes[entity] = pa.table({_key_column(entity): pa.array(sorted(wanted), pa.string())})
    enrollment = list(direct.get("enrollment", []))
    demographics = list(direct.get("student_demographics", []))
    for parent, column in (("section", "section_id"), ("person", "person_id")):
        if parent in deletes:
            con.register("or_keys", deletes[parent])
            enrollment.append(
                con.sql(
                    "SELECT section_id, person_id, role FROM main.enrollment "  # noqa: S608
                    f"WHERE {column} IN (SELECT {column} FROM or_keys)"
                ).to_arrow_table()
            )
            con.unregister("or_keys")
    if "person" in deletes:
        demographics.append(deletes["person"])
    if enrollment:
        deletes["enrollment"] = _concat(enrollment)
    if demographics:
        deletes["student_demographics"] = _concat(demographics)
    id_map = _id_map_rows(con, deletes, enrollment_ids)
    if id_map.num_rows:
        deletes["id_map"] = id_map
    plan.deletes = deletes


def _concat(tables: list[pa.Table]) -> pa.Table:
    schema = tables[0].schema
    return pa.concat_tables([t.cast(schema) for t in tables]).group_by(schema.names).aggregate([])


def _id_map_rows(
    con: duckdb.DuckDBPyConnection, deletes: Mapping[str, pa.Table], enrollment_ids: list[str]
) -> pa.Table:
    """id_map rows of deleted entities (every system's, so no id points at nothing)."""
    parts = []
    for entity in ("organization", "term", "course", "section", "person"):
        if entity in deletes:
            parts.append(
                pa.table(
                    {
                        "entity": pa.array([entity] * deletes[entity].num_rows, pa.string()),
                        "edsight_id": deletes[entity].column(0).cast(pa.string()),
                    }
                )
            )
    out = []
    if parts:
        con.register("or_gone", pa.concat_tables(parts))
        out.append(
            con.sql(
                "SELECT m.source_system, m.entity, m.source_id FROM main.id_map m "
                "JOIN or_gone g ON g.entity = m.entity AND g.edsight_id = m.edsight_id"
            ).to_arrow_table()
        )
        con.unregister("or_gone")
    if enrollment_ids:
        n = len(enrollment_ids)
        out.append(
            pa.table(
                {
                    "source_system": pa.array([SYSTEM] * n, pa.string()),
                    "entity": pa.array(["enrollment"] * n, pa.string()),
                    "source_id": pa.array(enrollment_ids, pa.string()),
                }
            )
        )
    if not out:
        return pa.table({"source_system": pa.array([], pa.string())})
    return _concat(out)
