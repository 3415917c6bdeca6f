"""What a connector hands to the warehouse: one all-or-nothing batch.

A connector (files, OneRoster, MAP, the Canvas API, live events) turns its source
into an :class:`IngestBatch` and calls ``Warehouse.load_batch``. Rows arrive in one
of two shapes:

* ``canonical``: already in the shape of canonical tables (validated as such);
* ``source_inputs`` + ``source_tables`` + ``mapper``: rows in the source's own
  layout, validated against its declarations first (so errors name the source
  file and row), then mapped to canonical relations by ``mapper``, which adds them
  to the canonical validator with ``BatchValidator.add_relation``.

``deletes`` removes rows by key (OneRoster ``tobedeleted``, Canvas deletions);
``unchanged`` counts rows a connector skipped because they had not changed since
the last sync, so that ``read = stored + quarantined + unchanged`` reconciles;
``sync`` records cursors (e.g. the newest ``updated_at`` seen) in ``sync_state``
when, and only when, the batch commits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from edsight.ingest.files import RawTable
from edsight.ingest.quarantine import BatchValidator
from edsight.schema import Table

Mapper = Callable[[BatchValidator, BatchValidator], None]
# A file is read only when its turn comes, so one table at a time is in memory.
RawSource = RawTable | Callable[[], RawTable]


def materialize(raw: RawSource) -> RawTable:
    """The rows of a source, reading them now if they were deferred."""
    return raw if isinstance(raw, RawTable) else raw()


@dataclass(frozen=True)
class SyncCursor:
    """Where an incremental source got to, recorded on commit."""

    source: str
    entity: str
    cursor: str


@dataclass
class IngestBatch:
    """Everything one load needs; see the module docstring."""

    source: str
    content_hash: str
    canonical: dict[str, list[RawSource]] = field(default_factory=dict)
    source_tables: Mapping[str, Table] = field(default_factory=dict)
    source_inputs: dict[str, list[RawSource]] = field(default_factory=dict)
    mapper: Mapper | None = None
    deletes: dict[str, pa.Table] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    unchanged: int = 0
    sync: list[SyncCursor] = field(default_factory=list)
    system_rows: dict[str, pa.Table] = field(default_factory=dict)  # e.g. event_log, appended

    def add_canonical(self, table: str, raw: RawSource) -> None:
        self.canonical.setdefault(table, []).append(raw)

    def add_source(self, table: str, raw: RawSource) -> None:
        self.source_inputs.setdefault(table, []).append(raw)
