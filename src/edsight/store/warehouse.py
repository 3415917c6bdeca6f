"""The embedded warehouse: one DuckDB file under the data home.

Loads are all-or-nothing: a batch is validated and applied inside one
transaction, so a crash at any point leaves the previous committed state. Loads
are idempotent: rows replace rows with the same primary key, quarantine rows
are keyed by batch, and a batch whose content was loaded before is skipped.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from edsight.config import Settings
from edsight.errors import InvalidInput, WarehouseError
from edsight.ingest.batch import IngestBatch, materialize
from edsight.ingest.files import RawTable, read_table_file, table_files
from edsight.ingest.quarantine import BatchValidator, TableReport
from edsight.schema import CANONICAL, CANVAS_SEED, SYSTEM, WAREHOUSE_TABLES, Table, load_order
from edsight.sql import quote_ident, scalar

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

# Seed files that hold values derived from the others (labels); they are not stored.
DERIVED_SEED_TABLES = frozenset({"training_data"})


@dataclass
class LoadResult:
    """Outcome of one load: per-table counts and the first problems found."""

    batch_id: str
    source: str
    already_loaded: bool = False
    tables: dict[str, TableReport] = field(default_factory=dict)
    source_tables: dict[str, TableReport] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files not read, with why
    unchanged: int = 0  # rows the source skipped as unchanged since the last sync
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def rows_read(self) -> int:
        """Rows the source gave: validated ones plus those skipped as unchanged."""
        reports = self.source_tables or self.tables
        return sum(r.rows_read for r in reports.values()) + self.unchanged

    @property
    def rows_stored(self) -> int:
        return sum(r.rows_valid for r in self.tables.values())

    @property
    def rows_quarantined(self) -> int:
        reports = [*self.source_tables.values(), *self.tables.values()]
        return sum(r.rows_quarantined for r in reports)


def batch_hash(kind: str, files: Mapping[str, Path]) -> str:
    """Content hash of a batch: its kind and the bytes of every file, by table name."""
    digest = hashlib.sha256(kind.encode())
    for table in sorted(files):
        digest.update(b"\0" + table.encode() + b"\0")
        with files[table].open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


class Warehouse:
    """A DuckDB warehouse file with the canonical tables."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = settings.warehouse_path

    # -- lifecycle ---------------------------------------------------------------

    def init(self) -> bool:
        """Create the data home and the tables; return False when it already existed."""
        existed = self.path.exists()
        self.settings.home.mkdir(parents=True, exist_ok=True)
        with self.connect(create=True) as con:
            con.execute("BEGIN")
            for table in WAREHOUSE_TABLES.values():
                con.execute(table.ddl())
            con.execute("COMMIT")
        return not existed

    @contextmanager
    def connect(
        self, *, read_only: bool = False, create: bool = False
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse; files are read by edsight, never by SQL."""
        if not create and not self.path.exists():
            raise WarehouseError(f"no warehouse at {self.path}: run `edsight init` first")
        config: dict[str, Any] = {
            "enable_external_access": False,
            "memory_limit": self.settings.duckdb_memory_limit,
            "temp_directory": str(self.settings.spill_path),
            # Loads and exports order rows explicitly; not preserving insertion order
            # lets DuckDB stream large inserts instead of buffering them.
            "preserve_insertion_order": False,
        }
        if self.settings.duckdb_threads:
            config["threads"] = self.settings.duckdb_threads
        try:
            con = duckdb.connect(str(self.path), read_only=read_only, config=config)
        except duckdb.ConnectionException:
            # This process already holds the file read-write (the web server with its in-process
            # daily run): DuckDB refuses a second, read-only configuration of the same file, so
            # share the read-write instance. Reads stay reads; the caller never writes.
            if not read_only:
                raise
            con = duckdb.connect(str(self.path), read_only=False, config=config)
        except duckdb.IOException as exc:
            raise WarehouseError(f"cannot open warehouse {self.path}: {exc}") from exc
        try:
            con.execute("SET enable_progress_bar = false")
            yield con
        finally:
            con.close()

    # -- reading -----------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per warehouse table."""
        with self.connect(read_only=True) as con:
            out = {}
            for name in WAREHOUSE_TABLES:
                out[name] = int(scalar(con, f"SELECT count(*) FROM {quote_ident(name)}"))
            return out

    def frames(self, tables: list[str]) -> dict[str, Any]:
        """Whole canonical tables as pandas DataFrames (for analyses of district-sized data)."""
        out: dict[str, Any] = {}
        with self.connect(read_only=True) as con:
            for name in tables:
                if name not in WAREHOUSE_TABLES:
                    raise InvalidInput(f"unknown table {name!r}")
                out[name] = con.sql(f"SELECT * FROM {quote_ident(name)}").df()
        return out

    def checksum(self, table: str) -> str:
        """Order-independent fingerprint of a table's content (for idempotency checks)."""
        decl = WAREHOUSE_TABLES[table]
        cols = ", ".join(quote_ident(c) for c in decl.column_names)
        with self.connect(read_only=True) as con:
            value = scalar(
                con,
                f"SELECT count(*) || ':' || coalesce(sum(hash({cols})), 0) FROM {quote_ident(table)}",
            )
        return str(value)

    # -- loading -----------------------------------------------------------------

    def load_directory(
        self,
        directory: Path,
        *,
        force: bool = False,
        progress: Progress | None = None,
        encoding: str = "utf-8",
    ) -> LoadResult:
        """Load a folder of table files: canonical tables, or the Canvas seed format."""
        files = table_files(directory)
        if not files:
            raise InvalidInput(f"{directory}: no .csv, .parquet or .jsonl table files found")
        kind = detect_kind(files)
        batch = IngestBatch(source=f"{kind}:{directory}", content_hash=batch_hash(kind, files))
        if kind == "canvas_seed":
            from edsight.ingest.canvas_files import map_seed_to_canonical

            batch.source_tables = CANVAS_SEED
            batch.mapper = map_seed_to_canonical
            for table in sorted(DERIVED_SEED_TABLES & set(files)):
                batch.skipped.append(f"{files[table].name}: derived labels, rebuilt by features")
            for table in sorted(set(files) - DERIVED_SEED_TABLES):
                batch.add_source(table, _reader(files[table], progress, encoding))
        else:
            for table in sorted(files):
                batch.add_canonical(table, _reader(files[table], progress, encoding))
        return self.load_batch(batch, force=force, progress=progress)

    def load_batch(
        self, batch: IngestBatch, *, force: bool = False, progress: Progress | None = None
    ) -> LoadResult:
        """Validate and apply one batch in one transaction (see :mod:`edsight.ingest.batch`)."""
        result = LoadResult(batch_id=batch.content_hash[:16], source=batch.source.split(":")[0])
        result.skipped = list(batch.skipped)
        result.unchanged = batch.unchanged
        with self.connect() as con:
            _ensure_tables(con)
            if not force and _batch_exists(con, result.batch_id):
                result.already_loaded = True
                return result
            con.execute("BEGIN")
            try:
                self._load(con, batch, result, progress)
                _record_batch(con, result, batch)
                if progress:
                    progress("commit")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return result

    def _load(
        self,
        con: duckdb.DuckDBPyConnection,
        batch: IngestBatch,
        result: LoadResult,
        progress: Progress | None,
    ) -> None:
        def existing(table: str) -> str | None:
            return f"main.{quote_ident(table)}" if table in CANONICAL else None

        validators: list[BatchValidator] = []
        target = BatchValidator(con, CANONICAL, prefix="b", existing=existing)
        if batch.source_inputs:
            source = BatchValidator(con, batch.source_tables, prefix="s")
            for table in load_order(batch.source_tables, batch.source_inputs):
                for raw in batch.source_inputs[table]:
                    source.add_file(table, materialize(raw))
            result.source_tables = source.run()
            validators.append(source)
            if batch.mapper is not None:
                batch.mapper(source, target)
        for table in load_order(CANONICAL, batch.canonical):
            for raw in batch.canonical[table]:
                target.add_file(table, materialize(raw))
        result.tables = target.run()
        validators.append(target)
        for table, keys in batch.deletes.items():
            result.deleted[table] = _delete_keys(con, CANONICAL[table], keys)
        for table in load_order(CANONICAL, result.tables):
            _apply(con, CANONICAL[table], target.stage(table))
            if progress:
                progress(f"applied {table}")
        con.execute("DELETE FROM quarantine WHERE batch_id = ?", [result.batch_id])
        for validator in validators:
            con.execute(
                "INSERT INTO quarantine SELECT ?, table_name, source_file, row_number, "
                f"column_name, reason, record FROM {validator.quarantine}",
                [result.batch_id],
            )
            result.problems.extend(validator.problems())
        for table, rows in batch.system_rows.items():
            cols = ", ".join(quote_ident(c) for c in SYSTEM[table].column_names)
            con.register("_system_rows", rows)
            con.execute(f"INSERT INTO {quote_ident(table)} SELECT {cols} FROM _system_rows")
            con.unregister("_system_rows")
        now = datetime.now(UTC).replace(tzinfo=None)
        for cursor in batch.sync:
            con.execute(
                "DELETE FROM sync_state WHERE source = ? AND entity = ?",
                [cursor.source, cursor.entity],
            )
            con.execute(
                "INSERT INTO sync_state VALUES (?, ?, ?, ?)",
                [cursor.source, cursor.entity, cursor.cursor, now],
            )


def detect_kind(files: Mapping[str, Path]) -> str:
    """'canonical' or 'canvas_seed' by the table names; anything else is an error."""
    names = set(files)
    if names <= set(CANONICAL):
        return "canonical"
    if names <= set(CANVAS_SEED):
        return "canvas_seed"
    unknown = sorted(names - set(CANONICAL) - set(CANVAS_SEED))
    if unknown:
        shown = ", ".join(files[n].name for n in unknown)
        raise InvalidInput(
            f"{shown}: not a table edsight knows; expected canonical tables "
            f"({', '.join(CANONICAL)}) or the Canvas seed files ({', '.join(CANVAS_SEED)})"
        )
    raise InvalidInput(
        "a folder holds either canonical tables or Canvas seed files, not both: "
        + ", ".join(p.name for p in files.values())
    )


def _reader(path: Path, progress: Progress | None, encoding: str) -> Callable[[], RawTable]:
    def read() -> RawTable:
        if progress:
            progress(f"reading {path.name}")
        return read_table_file(path, encoding)

    return read


def _ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Tables added by a newer edsight appear in an older warehouse file."""
    for table in WAREHOUSE_TABLES.values():
        con.execute(table.ddl())


def _delete_keys(con: duckdb.DuckDBPyConnection, decl: Table, keys: pa.Table) -> int:
    """Delete the rows whose primary key is in ``keys``; return how many went."""
    missing = [k for k in decl.primary_key if k not in keys.column_names]
    if missing:
        raise InvalidInput(f"deletes for {decl.name} lack key column(s) {', '.join(missing)}")
    before = int(scalar(con, f"SELECT count(*) FROM {quote_ident(decl.name)}"))
    con.register("_delete_keys", keys)
    match = " AND ".join(
        f"t.{quote_ident(k)} IS NOT DISTINCT FROM CAST(d.{quote_ident(k)} AS {decl.column_index[k].sql_type})"
        for k in decl.primary_key
    )
    con.execute(
        f"DELETE FROM {quote_ident(decl.name)} t WHERE EXISTS (SELECT 1 FROM _delete_keys d WHERE {match})"
    )
    con.unregister("_delete_keys")
    return before - int(scalar(con, f"SELECT count(*) FROM {quote_ident(decl.name)}"))


def _batch_exists(con: duckdb.DuckDBPyConnection, batch_id: str) -> bool:
    return bool(scalar(con, "SELECT count(*) FROM load_batch WHERE batch_id = ?", [batch_id]))


def _apply(con: duckdb.DuckDBPyConnection, decl: Table, stage: str) -> None:
    """Replace rows with the same key, then insert the batch's rows."""
    target = f"main.{quote_ident(decl.name)}"
    match = " AND ".join(
        f"t.{quote_ident(k)} IS NOT DISTINCT FROM s.{quote_ident(k)}" for k in decl.primary_key
    )
    cols = ", ".join(quote_ident(c) for c in decl.column_names)
    con.execute(f"DELETE FROM {target} t WHERE EXISTS (SELECT 1 FROM {stage} s WHERE {match})")
    con.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage}")


def _record_batch(con: duckdb.DuckDBPyConnection, result: LoadResult, batch: IngestBatch) -> None:
    con.execute("DELETE FROM load_batch WHERE batch_id = ?", [result.batch_id])
    con.execute(
        "INSERT INTO load_batch VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            result.batch_id,
            batch.source,
            batch.content_hash,
            datetime.now(UTC).replace(tzinfo=None),
            result.rows_read,
            result.rows_stored,
            result.rows_quarantined,
        ],
    )


__all__ = ["SYSTEM", "LoadResult", "Warehouse", "batch_hash", "detect_kind"]
