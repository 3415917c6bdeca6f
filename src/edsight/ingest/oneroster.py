"""OneRoster 1.1 and 1.2 CSV rosters (PowerSchool, Infinite Campus, ClassLink, Clever exports).

``ingest_oneroster(warehouse, source)`` loads a package (a .zip or a folder with
``manifest.csv``) in one all-or-nothing transaction:

1. the package is read whole (:mod:`._oneroster_package`): a missing or bad
   manifest, a file the manifest names but the package lacks, a truncated zip or
   a file that is not UTF-8 stops the load with :class:`~edsight.errors.InvalidInput`
   and stores nothing;
2. rows not newer than their file's cursor are counted as unchanged, and
   ``tobedeleted`` rows of delta files become deletes (:mod:`._oneroster_delta`);
3. every file is validated as itself (:mod:`._oneroster_tables`), so errors name
   the file, the row and the column, then mapped to canonical tables
   (:mod:`._oneroster_map`); ids come from :mod:`edsight.ingest.ids`.

The same package loaded twice is skipped as already loaded; the cursors are
committed with the data, so a crash leaves them where the last commit put them.
See ``docs/ingest-sis.md``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from edsight.ingest._oneroster_delta import plan_deletes, read_cursors, skip_unchanged, source_key
from edsight.ingest._oneroster_export import write_oneroster
from edsight.ingest._oneroster_map import oneroster_mapper
from edsight.ingest._oneroster_package import Manifest, Package, Progress, read_manifest, read_package
from edsight.ingest._oneroster_tables import files_for, source_tables
from edsight.ingest.batch import IngestBatch

if TYPE_CHECKING:
    from edsight.store.warehouse import LoadResult, Warehouse

log = logging.getLogger(__name__)

__all__ = [
    "Manifest",
    "Package",
    "build_oneroster_batch",
    "ingest_oneroster",
    "read_manifest",
    "read_package",
    "write_oneroster",
]


def build_oneroster_batch(warehouse: Warehouse, package: Package, *, full_sync: bool = False) -> IngestBatch:
    """The load of ``package`` against the warehouse's cursors and rows (nothing is written)."""
    manifest = package.manifest
    key = source_key(manifest)
    with warehouse.connect(read_only=True) as con:
        cursors = read_cursors(con, key)
        plan = skip_unchanged(package.files, cursors, key, full=full_sync)
        plan_deletes(con, plan.files, manifest.modes, plan)
    content_hash = package.content_hash
    if full_sync:
        # A full re-read of a package loaded before is a different load.
        content_hash = hashlib.sha256(f"{content_hash}:full".encode()).hexdigest()
    batch = IngestBatch(source=f"oneroster:{package.source}", content_hash=content_hash)
    batch.source_tables = source_tables(manifest.version, {n: manifest.modes[n] for n in plan.files})
    batch.mapper = oneroster_mapper(manifest.version)
    for name in files_for(manifest.version):
        if name in plan.files:
            batch.add_source(name, plan.files[name])
    batch.deletes = plan.deletes
    batch.unchanged = plan.unchanged
    batch.sync = plan.cursors
    batch.skipped = [*package.notes, *plan.notes]
    if plan.unchanged:
        log.info("oneroster: %d rows unchanged since the last sync of %s", plan.unchanged, key)
    return batch


def ingest_oneroster(
    warehouse: Warehouse,
    source: Path,
    *,
    encoding: str = "utf-8",
    full_sync: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> LoadResult:
    """Load a OneRoster 1.1/1.2 CSV package (a .zip or a folder) into the warehouse.

    Args:
        warehouse: an initialised warehouse.
        source: the package: a zip of CSV files or a folder of them, with ``manifest.csv``.
        encoding: text encoding of the CSV files (OneRoster requires UTF-8; a BOM is dropped).
        full_sync: stage every row, ignoring the per-file cursors (to pick up rows that were
            quarantined once and are sent again unchanged).
        force: load even when the same package was loaded before.
        progress: called with a short message at each step.

    Returns:
        The load's counts: per source file and per canonical table, unchanged rows,
        deletes, and the first problems found.

    Raises:
        InvalidInput: the package cannot be read (see ``docs/ingest-sis.md``).
        WarehouseError: the warehouse is missing or locked.
    """
    package = read_package(Path(source), encoding=encoding, progress=progress)
    batch = build_oneroster_batch(warehouse, package, full_sync=full_sync)
    return warehouse.load_batch(batch, force=force, progress=progress)
