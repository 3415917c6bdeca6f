"""Deleting a student everywhere (SOPIPA, AB 801, NDPA), down to the file bytes.

``delete_student`` removes the student's rows from every warehouse table (every
column that refers to a person, JSON columns and quarantined raw rows that name
the student or one of the student's source ids), from the Parquet lake, and from
the governance tables, then rewrites the storage so the bytes are gone:

* DuckDB does not zero freed blocks, so the warehouse is rebuilt: every table is
  copied into a fresh file, which is fsynced and renamed over the old one; the
  WAL is checkpointed away first.
* SQLite runs with ``secure_delete`` (freed pages are zeroed); the WAL is then
  checkpointed and truncated and the file vacuumed.

The audit chain keeps its entries: they hold keyed pseudonyms of person ids,
never the ids, so nothing in them needs rewriting (which would break the chain).
The deletion certificate is appended to the chain as the last word on the student.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from edsight.errors import InvalidInput, WarehouseError
from edsight.governance import _db
from edsight.governance.audit import AuditEvent, AuditLog
from edsight.governance.deidentify import PERSON_REF_COLUMNS
from edsight.governance.identity import GovernanceStore
from edsight.schema import WAREHOUSE_TABLES
from edsight.sql import quote_ident, quote_literal

if TYPE_CHECKING:
    from edsight.store.warehouse import Warehouse

log = logging.getLogger(__name__)

# Free-text/JSON columns searched for the id as a whole token (not just equality).
_TEXT_COLUMNS = frozenset(c.name for t in WAREHOUSE_TABLES.values() for c in t.columns if c.dtype == "json")
# Characters that may belong to an id: a match must not sit inside a longer id.
_ID_CHARS = "A-Za-z0-9_.:-"


def _token_pattern(values: list[str]) -> str:
    alternatives = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return f"(^|[^{_ID_CHARS}])({alternatives})($|[^{_ID_CHARS}])"


def _person_columns(table: str, columns: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(columns compared for equality, text columns searched for the id as a token)."""
    equal = [
        name
        for name, dtype in columns
        if dtype == "VARCHAR"
        and (name in PERSON_REF_COLUMNS or name.endswith("person_id") or name == "student_id")
    ]
    text = [name for name, dtype in columns if dtype == "VARCHAR" and name in _TEXT_COLUMNS]
    if table == "quarantine":
        text = sorted({*text, "record"} & {n for n, _ in columns})
    return equal, text


def _delete_from_warehouse(con: duckdb.DuckDBPyConnection, person_id: str) -> dict[str, int]:
    source_ids = (
        [
            str(r[0])
            for r in con.execute(
                "SELECT DISTINCT source_id FROM id_map WHERE edsight_id = ?", [person_id]
            ).fetchall()
        ]
        if _has_table(con, "id_map")
        else []
    )
    id_pattern = _token_pattern([person_id])
    raw_pattern = _token_pattern([person_id, *source_ids])
    tables = con.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY table_name"
    ).fetchall()
    deleted: dict[str, int] = {}
    for (table,) in tables:
        columns = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        equal, text = _person_columns(table, columns)
        conditions = [f"{quote_ident(c)} = $pid" for c in equal]
        pattern = raw_pattern if table == "quarantine" else id_pattern
        conditions += [f"coalesce(regexp_matches({quote_ident(c)}, $pattern), false)" for c in text]
        if not conditions:
            continue
        where = " OR ".join(conditions)
        params: dict[str, str] = {}
        if equal:
            params["pid"] = person_id
        if text:
            params["pattern"] = pattern
        row = con.execute(f"SELECT count(*) FROM {quote_ident(table)} WHERE {where}", params).fetchone()  # noqa: S608
        n = int(row[0]) if row else 0
        if n:
            con.execute(f"DELETE FROM {quote_ident(table)} WHERE {where}", params)  # noqa: S608
            deleted[table] = n
    return deleted


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?",
        [name],
    ).fetchone()
    return bool(row and row[0])


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rebuild_duckdb(path: Path) -> None:
    """Copy every table, view and index of ``path`` into a fresh file and swap it in.

    The copy holds only live rows, so blocks freed by deletes (which DuckDB leaves
    as they were) do not come along.
    """
    fresh = path.with_name(path.name + ".rebuild")
    for leftover in (fresh, Path(str(fresh) + ".wal")):
        leftover.unlink(missing_ok=True)
    con = duckdb.connect(str(fresh))
    try:
        row = con.execute("SELECT current_database()").fetchone()
        new = quote_ident(str(row[0])) if row else "main"
        con.execute(f"ATTACH {quote_literal(str(path))} AS old (READ_ONLY)")
        schemas = con.execute(
            "SELECT DISTINCT schema_name FROM duckdb_tables() WHERE database_name = 'old' AND NOT internal"
        ).fetchall()
        for (schema,) in schemas:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {new}.{quote_ident(schema)}")
        tables = con.execute(
            "SELECT schema_name, table_name, sql FROM duckdb_tables() "
            "WHERE database_name = 'old' AND NOT internal ORDER BY schema_name, table_name"
        ).fetchall()
        con.execute("BEGIN")
        for schema, table, ddl in tables:
            con.execute(f"USE {new}.{quote_ident(schema)}")
            con.execute(ddl)
            con.execute(
                f"INSERT INTO {new}.{quote_ident(schema)}.{quote_ident(table)} "  # noqa: S608
                f"SELECT * FROM old.{quote_ident(schema)}.{quote_ident(table)}"
            )
        for (ddl,) in con.execute(
            "SELECT sql FROM duckdb_views() WHERE database_name = 'old' AND NOT internal AND sql IS NOT NULL"
        ).fetchall():
            con.execute(ddl)
        for (ddl,) in con.execute(
            "SELECT sql FROM duckdb_indexes() WHERE database_name = 'old' AND sql IS NOT NULL"
        ).fetchall():
            con.execute(ddl)
        con.execute("COMMIT")
        con.execute(f"USE {new}.main")
        con.execute("DETACH old")
        con.execute("CHECKPOINT")
    except duckdb.Error as exc:
        con.close()
        fresh.unlink(missing_ok=True)
        raise WarehouseError(f"rebuilding {path} failed: {exc}") from exc
    con.close()
    _fsync_path(fresh)
    os.replace(fresh, path)
    Path(str(path) + ".wal").unlink(missing_ok=True)
    _fsync_path(path.parent)


def _rewrite_lake(lake: Path, person_id: str) -> int:
    """Rewrite the lake's Parquet files that hold the student; return how many."""
    if not lake.is_dir():
        return 0
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rewritten = 0
    for file in sorted(lake.glob("*.parquet")):
        table = pq.read_table(file)
        cols = [c for c in table.column_names if c in PERSON_REF_COLUMNS or c.endswith("person_id")]
        if not cols:
            continue
        hit = None
        for col in cols:
            match = pc.fill_null(pc.equal(table[col].cast("string"), person_id), False)
            hit = match if hit is None else pc.or_(hit, match)
        if hit is None or not pc.any(hit).as_py():
            continue
        partial = file.with_name(f".{file.name}.partial")
        pq.write_table(table.filter(pc.invert(hit)), partial)
        _fsync_path(partial)
        os.replace(partial, file)
        rewritten += 1
    return rewritten


def _delete_from_governance(store: GovernanceStore, person_id: str) -> dict[str, int]:
    con = store.connection
    deleted: dict[str, int] = {}
    with _db.transaction(con):
        for table, sql in (
            ("caseload", "DELETE FROM caseload WHERE person_id = ?"),
            ("directory_optout", "DELETE FROM directory_optout WHERE person_id = ?"),
            ("disclosure", "DELETE FROM disclosure WHERE person_id = ?"),
            ("account_grant", "DELETE FROM account_grant WHERE target = ?"),
        ):
            n = con.execute(sql, [person_id]).rowcount
            if n:
                deleted[table] = n
    return deleted


def _scrub_sqlite(store: GovernanceStore) -> None:
    con = store.connection
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("VACUUM")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def delete_student(
    warehouse: Warehouse, store: GovernanceStore, person_id: str, *, actor: str
) -> dict[str, Any]:
    """Delete ``person_id`` from the warehouse, the lake and the governance tables; return the certificate.

    Run it with the web server stopped: open read connections keep the old file's
    inode (and its bytes) alive until they close.
    """
    if not person_id or not person_id.strip():
        raise InvalidInput("delete: a person id is required")
    with warehouse.connect() as con:
        con.execute("BEGIN")
        try:
            deleted = _delete_from_warehouse(con, person_id)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("FORCE CHECKPOINT")
    rebuild_duckdb(warehouse.path)
    lake_files = _rewrite_lake(warehouse.settings.lake_path, person_id)
    governance = _delete_from_governance(store, person_id)
    _scrub_sqlite(store)
    audit = AuditLog(store)
    certificate: dict[str, Any] = {
        "certificate_id": uuid.uuid4().hex,
        "person_ref": audit.pseudonym(person_id),
        "deleted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "actor": actor,
        "warehouse_rows_deleted": deleted,
        "governance_rows_deleted": governance,
        "lake_files_rewritten": lake_files,
        "warehouse_rebuilt": True,
    }
    summary = ", ".join(f"{t}={n}" for t, n in sorted(deleted.items())) or "no rows"
    certificate["audit_seq"] = audit.record(
        AuditEvent(
            actor=actor,
            role="governance",
            action="delete_student",
            what=f"deletion certificate {certificate['certificate_id']}: {summary}",
            person_ids=(person_id,),
            why="retention: delete on request",
        )
    )
    log.info("deleted a student: certificate %s", certificate["certificate_id"])
    return certificate


__all__ = ["delete_student", "rebuild_duckdb"]
