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

from edsight.config import Settings
from edsight.errors import InvalidInput, WarehouseError
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

    @property
    def rows_read(self) -> int:
        reports = self.source_tables or self.tables
        return sum(r.rows_read for r in reports.values())

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
        self, directory: Path, *, force: bool = False, progress: Progress | None = None
    ) -> LoadResult:
        """Load a folder of table files: canonical tables, or the Canvas seed format."""
        files = table_files(directory)
        if not files:
            raise InvalidInput(f"{directory}: no .csv, .parquet or .jsonl table files found")
        kind = detect_kind(files)
        digest = batch_hash(kind, files)
        batch_id = digest[:16]
        result = LoadResult(batch_id=batch_id, source=kind)
        with self.connect() as con:
            if not force and _batch_exists(con, batch_id):
                result.already_loaded = True
                return result
            con.execute("BEGIN")
            try:
                self._load(con, kind, files, result, progress)
                _record_batch(con, result, str(directory), digest)
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
        kind: str,
        files: Mapping[str, Path],
        result: LoadResult,
        progress: Progress | None,
    ) -> None:
        def existing(table: str) -> str | None:
            return f"main.{quote_ident(table)}" if table in CANONICAL else None

        validators: list[BatchValidator] = []
        if kind == "canvas_seed":
            from edsight.ingest.canvas_files import map_seed_to_canonical

            source = BatchValidator(con, CANVAS_SEED, prefix="s")
            for table in DERIVED_SEED_TABLES & set(files):
                result.skipped.append(f"{files[table].name}: derived labels, rebuilt by features")
            for table in load_order(CANVAS_SEED, set(files) - DERIVED_SEED_TABLES):
                source.add_file(table, _read(files[table], progress))
            result.source_tables = source.run()
            validators.append(source)
            target = BatchValidator(con, CANONICAL, prefix="b", existing=existing)
            map_seed_to_canonical(source, target)
        else:
            target = BatchValidator(con, CANONICAL, prefix="b", existing=existing)
            for table in load_order(CANONICAL, files):
                target.add_file(table, _read(files[table], progress))
        result.tables = target.run()
        validators.append(target)
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


def _read(path: Path, progress: Progress | None) -> RawTable:
    if progress:
        progress(f"reading {path.name}")
    return read_table_file(path)


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


def _record_batch(con: duckdb.DuckDBPyConnection, result: LoadResult, source: str, digest: str) -> None:
    con.execute("DELETE FROM load_batch WHERE batch_id = ?", [result.batch_id])
    con.execute(
        "INSERT INTO load_batch VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            result.batch_id,
            f"{result.source}:{source}",
            digest,
            datetime.now(UTC).replace(tzinfo=None),
            result.rows_read,
            result.rows_stored,
            result.rows_quarantined,
        ],
    )


__all__ = ["SYSTEM", "LoadResult", "Warehouse", "batch_hash", "detect_kind"]
