"""Canvas LMS REST API connector: courses, rosters, grades, submissions and activity.

``ingest_canvas_api(warehouse, "https://canvas.example.edu", token=...)`` reads, for
every course the token's user can see (or the given ``course_ids``, or an account's
courses): sections, users, enrollments (with ``grades.current_score``), assignments,
all submissions in bulk, and, from the Analytics API, student summaries and each
student's hourly activity. Rows are validated as Canvas rows first (a bad value is
quarantined as ``submissions: row 7, column 'score' ...``), mapped to the canonical
organization, term, course, section, person, enrollment, course_grade, assignment,
submission, lms_activity and id_map tables, and loaded in one transaction.

Reliability:

* retries 5xx answers and dropped connections (also mid-pagination) with jittered
  exponential backoff, a bounded number of times; on Canvas's ``403 Rate Limit
  Exceeded`` every request pauses and then retries; 401 (token expired or revoked, or
  not permitted), other 403s and 404s stop the run with a :class:`SourceError` that
  names the resource but never the token;
* pages are spooled under ``HOME/spool/canvas-api/`` as they arrive, with a checkpoint;
  a run killed at any moment resumes where it stopped without fetching finished pages
  again, and the warehouse sees the run only when its single transaction commits (the
  batch id derives from the run, so a run that did commit is never loaded twice);
* incremental: each course's cursor (newest ``submitted_at`` and ``graded_at`` seen,
  and when the run started) is committed with the data; the next run asks only for
  submissions submitted or graded since then (plus those that fell due, and those of
  new students or assignments), and for the activity of students whose Analytics
  totals moved. Rows identical to what is stored are counted as unchanged and not
  stored again.

See docs/ingest-canvas-api.md for the mapping and the options.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TypeVar

from edsight.errors import InvalidInput
from edsight.ingest._canvas_api_fetch import Fetcher, FetchOptions, take_snapshot
from edsight.ingest._canvas_api_http import CanvasHttp, HttpPolicy, check_token, normalize_base_url
from edsight.ingest._canvas_api_map import map_canvas_api, unchanged_rows, without_rows
from edsight.ingest._canvas_api_schema import SOURCE_TABLES
from edsight.ingest._canvas_api_spool import Spool
from edsight.ingest._canvas_api_tables import build_source_rows
from edsight.ingest.batch import IngestBatch, RawSource, SyncCursor
from edsight.store.warehouse import LoadResult, Warehouse

__all__ = ["SOURCE_TABLES", "CanvasLoadResult", "HttpPolicy", "ingest_canvas_api", "source_name"]

log = logging.getLogger(__name__)
T = TypeVar("T")
KIND = "canvas-api"


@dataclass
class CanvasLoadResult(LoadResult):
    """A :class:`LoadResult` with what the run did over HTTP."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    pages: int = 0  # pages of this run, fetched now or found in the spool
    resumed_pages: int = 0  # pages an interrupted run had already fetched
    fetched: dict[str, int] = field(default_factory=dict)  # rows per Canvas source table
    activity_skipped: int = 0  # students whose activity had not changed, so was not asked for
    seconds: float = 0.0

    @property
    def rows_fetched(self) -> int:
        """Rows read from Canvas: those passed to the batch plus those unchanged."""
        return sum(self.fetched.values())


def source_name(base_url: str) -> str:
    """The ``source`` of this connector's batches and cursors for a Canvas instance."""
    return f"{KIND}:{normalize_base_url(base_url)}"


def ingest_canvas_api(
    warehouse: Warehouse,
    base_url: str,
    *,
    token: str,
    since: datetime | None = None,
    course_ids: Sequence[int] | None = None,
    account_id: int | None = None,
    concurrency: int = 4,
    per_page: int = 100,
    analytics: bool = True,
    policy: HttpPolicy | None = None,
    progress: Callable[[str], None] | None = None,
) -> CanvasLoadResult:
    """Read a Canvas instance over its REST API into ``warehouse`` (see the module docstring).

    ``since`` (aware, or naive UTC) overrides the per-course cursors: submissions
    submitted or graded after it, activity hours from it on. ``course_ids`` limits the
    run to those courses; ``account_id`` reads an account's courses (needs an admin
    token) instead of the token user's own. ``analytics=False`` skips the Analytics API
    where it is not enabled. ``policy`` sets retries, backoff, timeouts and size limits.
    """
    started = time.perf_counter()
    base = normalize_base_url(base_url)
    check_token(token)
    if not 1 <= per_page <= 100:
        raise InvalidInput(f"per_page must be between 1 and 100 (Canvas's maximum), got {per_page}")
    if concurrency < 1:
        raise InvalidInput(f"concurrency must be at least 1, got {concurrency}")
    if course_ids is not None and not all(isinstance(c, int) and c > 0 for c in course_ids):
        raise InvalidInput("course_ids must be positive Canvas course ids")
    options = FetchOptions(
        course_ids=tuple(dict.fromkeys(course_ids)) if course_ids is not None else None,
        account_id=account_id,
        since=_naive_utc(since),
        per_page=per_page,
        analytics=analytics,
    )
    source = f"{KIND}:{base}"
    identity = {
        "base_url": base,
        "course_ids": sorted(options.course_ids) if options.course_ids is not None else None,
        "account_id": account_id,
        "since": options.since.isoformat() if options.since else None,
        "analytics": analytics,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    with warehouse.connect(read_only=True) as con:  # fails early when there is no warehouse
        spool = Spool.open(warehouse.settings.home / "spool" / KIND / key, identity)
        try:
            if spool.snapshot is None:
                spool.set_snapshot(take_snapshot(con, source, datetime.now(UTC).replace(tzinfo=None)))
        except BaseException:
            spool.close()
            raise
    snapshot = spool.snapshot or {}

    async def fetch() -> tuple[Fetcher, CanvasHttp]:
        async with CanvasHttp(base, token, policy=policy or HttpPolicy(), concurrency=concurrency) as http:
            fetcher = Fetcher(http, spool, options, snapshot, progress)
            await fetcher.run()
            return fetcher, http

    try:
        fetcher, http = _run(fetch())
        batch, fetched = _batch(warehouse, source, spool, fetcher, snapshot, options.since, progress)
        loaded = warehouse.load_batch(batch, progress=progress)
        spool.remove()
    finally:
        spool.close()  # releases the run's lock; the spool stays for a rerun unless removed above
    skipped_activity = sum(p.activity_skipped for p in fetcher.plans.values())
    result = CanvasLoadResult(
        **{f.name: getattr(loaded, f.name) for f in fields(LoadResult)},
        requests=http.stats.requests,
        retries=http.stats.retries,
        throttled=http.stats.throttled,
        pages=sum(len(lp.pages) for lp in spool.lists.values()),
        resumed_pages=fetcher.resumed_pages,
        fetched=fetched,
        activity_skipped=skipped_activity,
        seconds=time.perf_counter() - started,
    )
    log.info(
        "%s: %d requests, %d pages (%d resumed), %d retried, %d throttled; %d rows fetched, "
        "%d unchanged, %d stored, %d quarantined%s",
        KIND,
        result.requests,
        result.pages,
        result.resumed_pages,
        result.retries,
        result.throttled,
        result.rows_fetched,
        result.unchanged,
        result.rows_stored,
        result.rows_quarantined,
        " (already loaded)" if result.already_loaded else "",
    )
    return result


def _batch(
    warehouse: Warehouse,
    source: str,
    spool: Spool,
    fetcher: Fetcher,
    snapshot: dict[str, Any],
    since: datetime | None,
    progress: Callable[[str], None] | None,
) -> tuple[IngestBatch, dict[str, int]]:
    """The run's batch (rows unchanged since the last sync left out) and the rows fetched per table."""
    rows = build_source_rows(fetcher.course_records(), fetcher.records, fetcher.activity, since=since)
    fetched = {name: sum(r.rows_read for r in raws) for name, raws in rows.tables.items()}
    inputs: dict[str, list[RawSource]] = {name: list(raws) for name, raws in rows.tables.items()}
    unchanged = 0
    if snapshot.get("cursors"):  # a first sync has nothing to compare with
        if progress:
            progress("comparing with the warehouse")
        with warehouse.connect(read_only=True) as con:
            same = unchanged_rows(con, rows.tables)
        unchanged = sum(len(v) for v in same.values())
        inputs = {
            name: [without_rows(raw, same.get(raw.name, set())) for raw in raws]
            for name, raws in rows.tables.items()
        }
    batch = IngestBatch(
        source=source,
        content_hash=spool.content_hash(),
        source_tables=SOURCE_TABLES,
        source_inputs=inputs,
        mapper=map_canvas_api,
        unchanged=unchanged,
        skipped=list(fetcher.skipped),
        sync=[
            SyncCursor(source, f"course:{cid}", json.dumps(cursor, sort_keys=True))
            for cid, cursor in fetcher.cursors(rows.latest).items()
        ],
    )
    skipped_activity = sum(p.activity_skipped for p in fetcher.plans.values())
    if skipped_activity:
        batch.skipped.append(
            f"activity of {skipped_activity} enrolments unchanged since the last sync; not fetched"
        )
    return batch, fetched


def _naive_utc(when: datetime | None) -> datetime | None:
    if when is None or when.tzinfo is None:
        return when
    return when.astimezone(UTC).replace(tzinfo=None)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion, also when called from code that is itself async."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
