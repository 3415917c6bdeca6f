"""Canvas Live Events and Caliper 1.1 events: from the spool into the warehouse.

The HTTP endpoint (:mod:`edsight.web.events`) never opens the warehouse; it appends
accepted events to a spool of JSON-lines files (:mod:`edsight.ingest._events_spool`).
:func:`ingest_events` loads that spool in one all-or-nothing batch:

1. claim the spool files (crash leftovers first), read and normalise every line to
   one ``live_event`` row (:mod:`edsight.ingest._events_formats`): both formats map
   to the same shape; lines that are not JSON or not an event are quarantined with
   their file and line; events edsight does not use are counted and named;
2. drop events already applied (ids in ``event_log``) or repeated within the batch,
   counted as ``unchanged``;
3. validate the rows as ``live_event`` (types, required values), then map them
   (:mod:`edsight.ingest._events_mapping`): page views and logins to hourly
   ``lms_activity``, submissions and grades to ``submission``; events whose user,
   course or assignment is not in the warehouse stay in quarantine;
4. commit, with the applied event ids in ``event_log``; only then move the files to
   ``done/``. A crash before the move re-reads them next time, and step 2 makes that
   harmless.

Retrying quarantined events (say, once the roster is loaded): ingest the ``done/``
folder again; events applied before are skipped by id.

For the events, ``read = applied + quarantined + unchanged``: ``applied`` is
``result.source_tables["live_event"].rows_valid``; the canonical tables count rows
(hourly activity, submissions), not events.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from edsight.config import Settings
from edsight.errors import InvalidInput, WarehouseError
from edsight.ingest._events_formats import (
    EVENT_NAMES,
    FORMATS,
    IgnoredEvent,
    is_used,
    json_limits_problem,
    normalise,
    reject_constant,
    split_payload,
    spool_line,
    unwrap_record,
    utc_text,
)
from edsight.ingest._events_mapping import SOURCE_TABLE, map_events
from edsight.ingest._events_spool import SEGMENT_BYTES, EventSpool, split_lines
from edsight.ingest.batch import IngestBatch
from edsight.ingest.files import ROW_COL, MalformedRow, RawTable
from edsight.ingest.quarantine import BatchValidator
from edsight.schema import Column, Table

if TYPE_CHECKING:
    from edsight.store.warehouse import LoadResult, Warehouse

log = logging.getLogger(__name__)

SOURCE = "events"
DEFAULT_BATCH_BYTES = 256 << 20
# Lines come from the endpoint (1 MiB requests) or from exports: bound what one line may cost.
MAX_LINE_BYTES = 8 << 20
_LINE_MAX_DEPTH = 64
_LINE_MAX_STRING = 1 << 20

LIVE_EVENT = Table(
    SOURCE_TABLE,
    (
        Column("event_id", "string"),
        Column("format", "string", allowed=FORMATS),
        Column("event_name", "string", allowed=EVENT_NAMES),
        Column("event_time", "timestamp"),
        Column("received_at", "timestamp"),
        Column("user_id", "string", pii=True),
        Column("user_sis_id", "string", nullable=True, pii=True),
        Column("course_id", "string", nullable=True),
        Column("assignment_id", "string", nullable=True),
        Column("level", "string", nullable=True),
        Column("submitted_at", "timestamp", nullable=True),
        Column("attempt", "int32", nullable=True, minimum=0),
        Column("late", "bool", nullable=True),
        Column("score", "float64", nullable=True),
        Column("workflow_state", "string", nullable=True),
    ),
    ("event_id",),
    description=(
        "One Canvas live event or Caliper 1.1 event, normalised: Canvas local ids, UTC times "
        "(docs/ingest-events.md)."
    ),
)
EVENT_TABLES: Mapping[str, Table] = {SOURCE_TABLE: LIVE_EVENT}
_COLUMNS = LIVE_EVENT.column_names
_SCHEMA = pa.schema([(ROW_COL, pa.int64()), *((name, pa.string()) for name in _COLUMNS)])

Progress = Callable[[str], None]


def default_spool_dir(settings: Settings) -> Path:
    """Where the endpoint spools events and the ingest reads them: HOME/spool/events."""
    return settings.home / "spool" / "events"


def ingest_events(
    warehouse: Warehouse,
    spool_dir: Path | None = None,
    *,
    max_batch_bytes: int = DEFAULT_BATCH_BYTES,
    progress: Progress | None = None,
) -> LoadResult:
    """Load the spooled live events into the warehouse (see the module docstring).

    ``spool_dir`` defaults to HOME/spool/events; any folder of JSON-lines files with
    one event per line (spool records or bare Canvas/Caliper events) works. At most
    about ``max_batch_bytes`` of spool files are loaded per call; the rest wait for
    the next call (and are named in ``result.skipped``). Loaded files move to
    ``<spool_dir>/done/`` after the commit.
    """
    if max_batch_bytes < 1:
        raise InvalidInput("max_batch_bytes must be positive")
    if spool_dir is not None and not spool_dir.is_dir():
        raise InvalidInput(f"{spool_dir}: not a folder of event files")
    if not warehouse.path.exists():
        # Checked before claiming, so that files are not moved for a load that cannot run.
        raise WarehouseError(f"no warehouse at {warehouse.path}: run `edsight init` first")
    spool = EventSpool(spool_dir or default_spool_dir(warehouse.settings))
    with spool.ingest_lock():
        files = spool.claim(max_batch_bytes)
        batch, counts = build_event_batch(warehouse, spool.directory, files, progress)
        left = spool.pending()
        if left:
            batch.skipped.append(
                f"{len(left)} spool file(s) left for the next run (batch limit {max_batch_bytes:,} bytes)"
            )
        result = warehouse.load_batch(batch, progress=progress)
        if progress:
            progress("moving spool files to done")
        spool.finish(files)
    report = result.source_tables.get(SOURCE_TABLE)
    log.info(
        "events: %d read from %d file(s), %d applied, %d quarantined, %d already applied, %d not used",
        result.rows_read,
        len(files),
        report.rows_valid if report else 0,
        result.rows_quarantined,
        counts.duplicates,
        counts.ignored,
    )
    return result


@dataclass
class EventCounts:
    """What reading the spool found, besides the rows handed to validation."""

    duplicates: int = 0
    ignored: int = 0
    ignored_by_reason: Counter[str] = field(default_factory=Counter)
    torn: list[str] = field(default_factory=list)


@dataclass
class _File:
    name: str
    table: pa.Table
    malformed: list[MalformedRow]


def build_event_batch(
    warehouse: Warehouse,
    folder: Path,
    files: list[Path],
    progress: Progress | None = None,
) -> tuple[IngestBatch, EventCounts]:
    """The batch for ``files``: normalised, deduplicated against ``event_log``, with its mapper."""
    counts = EventCounts()
    received = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    # Events are deduplicated by id, not by batch hash: the same files must load again
    # when their events were quarantined (say, before the roster came), so each run
    # is its own batch.
    digest = hashlib.sha256(f"{SOURCE}\0{folder}\0{received}".encode())
    parsed: list[_File] = []
    for path in files:
        if progress:
            progress(f"reading {path.name}")
        data = path.read_bytes()
        digest.update(b"\0" + data)
        parsed.append(_read_file(path.name, data, received, counts))
    _drop_applied(warehouse, parsed, counts)

    batch = IngestBatch(source=f"{SOURCE}:{folder}", content_hash=digest.hexdigest())
    batch.source_tables = EVENT_TABLES

    def mapper(source: BatchValidator, target: BatchValidator) -> None:
        map_events(source, target, batch)

    batch.mapper = mapper
    for item in parsed:
        batch.add_source(SOURCE_TABLE, RawTable(Path(item.name), item.table, item.malformed))
    batch.unchanged = counts.duplicates + counts.ignored
    if counts.duplicates:
        batch.skipped.append(
            f"{counts.duplicates} event(s) already applied (a repeated delivery, or re-read after a crash)"
        )
    for reason, n in sorted(counts.ignored_by_reason.items()):
        batch.skipped.append(f"{n} event(s) not used: {reason}")
    batch.skipped.extend(counts.torn)
    return batch, counts


def _read_file(name: str, data: bytes, received: str, counts: EventCounts) -> _File:
    lines, torn = split_lines(data)
    if torn:
        counts.torn.append(f"{name}: an incomplete last line (an interrupted write, never acknowledged)")
    columns: dict[str, list[str | None]] = {c: [] for c in _COLUMNS}
    numbers: list[int] = []
    malformed: list[MalformedRow] = []
    for number, line in lines:
        try:
            row = _normalise_line(line)
        except IgnoredEvent as exc:
            counts.ignored += 1
            counts.ignored_by_reason[str(exc)] += 1
            continue
        except InvalidInput as exc:
            text = line[:500].decode("utf-8", errors="replace")
            malformed.append(MalformedRow(number, str(exc), text))
            continue
        if row.get("received_at") is None:
            row["received_at"] = received
        numbers.append(number)
        for column in _COLUMNS:
            columns[column].append(row.get(column))
    arrays = [pa.array(numbers, pa.int64()), *(pa.array(columns[c], pa.string()) for c in _COLUMNS)]
    return _File(name, pa.Table.from_arrays(arrays, schema=_SCHEMA), malformed)


def _normalise_line(line: bytes) -> dict[str, str | None]:
    if len(line) > MAX_LINE_BYTES:
        raise InvalidInput(f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        record = json.loads(line, parse_constant=reject_constant)
    except RecursionError:
        raise InvalidInput("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise InvalidInput("not UTF-8 text (JSON lines are UTF-8)") from None
    except ValueError:
        raise InvalidInput("not valid JSON") from None
    # Deep nesting already failed above (RecursionError), and the mapping only follows
    # known paths; a string can only be too long in a line that is.
    if len(line) > _LINE_MAX_STRING:
        problem = json_limits_problem(record, _LINE_MAX_DEPTH, _LINE_MAX_STRING)
        if problem:
            raise InvalidInput(problem)
    fmt, event, received_at = unwrap_record(record)
    row = normalise(fmt, event)
    row["received_at"] = utc_text(received_at) if received_at is not None else None
    return row


def _drop_applied(warehouse: Warehouse, parsed: list[_File], counts: EventCounts) -> None:
    """Drop events repeated within the batch (the first is kept) or already in event_log."""
    seen: set[str] = set()
    for item in parsed:
        keep: list[bool] = []
        for event_id in item.table["event_id"].to_pylist():
            fresh = event_id is None or event_id not in seen
            keep.append(fresh)
            if event_id is not None:
                seen.add(event_id)
        item.table = item.table.filter(pa.array(keep))
        counts.duplicates += keep.count(False)
    if not seen:
        return
    ids = pa.table({"event_id": pa.array(sorted(seen), pa.string())})
    with warehouse.connect(read_only=True) as con:
        con.register("_batch_event_ids", ids)
        applied = pa.array(
            [
                r[0]
                for r in con.execute(
                    "SELECT event_id FROM event_log SEMI JOIN _batch_event_ids USING (event_id)"
                ).fetchall()
            ],
            pa.string(),
        )
    if len(applied) == 0:
        return
    for item in parsed:
        before = item.table.num_rows
        item.table = item.table.filter(
            pc.invert(pc.fill_null(pc.is_in(item.table["event_id"], applied), False))
        )
        counts.duplicates += before - item.table.num_rows


__all__ = [
    "DEFAULT_BATCH_BYTES",
    "EVENT_NAMES",
    "EVENT_TABLES",
    "LIVE_EVENT",
    "SEGMENT_BYTES",
    "EventCounts",
    "EventSpool",
    "IgnoredEvent",
    "build_event_batch",
    "default_spool_dir",
    "ingest_events",
    "is_used",
    "json_limits_problem",
    "reject_constant",
    "split_payload",
    "spool_line",
]
