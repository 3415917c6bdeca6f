"""The spool of one Canvas API run: fetched pages on disk, so a crashed run resumes.

Private to :mod:`edsight.ingest.canvas_api`. A run folder holds ``run.json`` (what was
asked, the run id, the warehouse snapshot the plan was made from), one JSON-lines file
per fetched page, and ``checkpoint.jsonl``, appended after each page file is complete:
``{"list", "page", "file", "next", "rows", "sha256"}``. A page counts as fetched only
once its checkpoint line is there and its file still has that hash, so a run killed at
any instant (``kill -9``) resumes from the first page it cannot prove it has, following
the stored ``next`` link. Nothing here is durable against power loss on purpose: a page
whose bytes did not reach the disk fails its hash and is fetched again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from edsight.errors import SourceError, WarehouseError

log = logging.getLogger("edsight.ingest.canvas_api")

SPOOL_VERSION = 1
# A spool older than this is stale: its pages no longer describe Canvas, so start over.
MAX_AGE = timedelta(days=1)
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.jsonl"


@dataclass
class ListProgress:
    """The pages of one paginated list that are safely on disk, in order."""

    pages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return bool(self.pages) and self.pages[-1]["next"] is None

    @property
    def next_url(self) -> str | None:
        return self.pages[-1]["next"] if self.pages else None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Spool:
    """One run's folder of pages; :meth:`open` resumes or starts it."""

    def __init__(
        self,
        root: Path,
        meta: dict[str, Any],
        lists: dict[str, ListProgress],
        resumed: bool,
        lock: IO[bytes] | None = None,
    ) -> None:
        self.root = root
        self._lock = lock
        self.meta = meta
        self.lists = lists
        self.resumed = resumed
        self.pages_written = 0
        self._counter = 1 + max(
            (int(p["file"].split(".")[0]) for lp in lists.values() for p in lp.pages), default=0
        )
        self._checkpoint = (root / CHECKPOINT_FILE).open("a", encoding="utf-8")

    @classmethod
    def open(cls, root: Path, identity: dict[str, Any], *, now: datetime | None = None) -> Spool:
        """Resume the run in ``root`` if it is for the same request and fresh; else start anew."""
        now = now or datetime.now(UTC)
        lock = _lock(root)
        meta = _read_meta(root)
        if meta is not None:
            created = datetime.fromisoformat(meta.get("created_at", "1970-01-01T00:00:00+00:00"))
            if (
                meta.get("identity") == identity
                and meta.get("version") == SPOOL_VERSION
                and now - created < MAX_AGE
            ):
                lists = _verified_checkpoint(root)
                _rewrite_checkpoint(root, lists)
                log.info(
                    "resuming Canvas API run %s: %d pages already fetched",
                    meta["run_id"],
                    sum(len(v.pages) for v in lists.values()),
                )
                return cls(root, meta, lists, resumed=True, lock=lock)
            log.info("discarding a stale or different Canvas API spool in %s", root)
        if root.exists():
            shutil.rmtree(root)
        (root / "pages").mkdir(parents=True)
        meta = {
            "version": SPOOL_VERSION,
            "run_id": uuid.uuid4().hex,
            "identity": identity,
            "created_at": now.isoformat(),
            "snapshot": None,
        }
        _atomic_write(root / RUN_FILE, json.dumps(meta).encode())
        return cls(root, meta, {}, resumed=False, lock=lock)

    @property
    def run_id(self) -> str:
        return str(self.meta["run_id"])

    @property
    def snapshot(self) -> dict[str, Any] | None:
        value = self.meta.get("snapshot")
        return value if isinstance(value, dict) else None

    def set_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Keep the warehouse state the plan is made from, so a resumed run plans the same."""
        self.meta["snapshot"] = snapshot
        _atomic_write(self.root / RUN_FILE, json.dumps(self.meta).encode())

    def progress(self, key: str) -> ListProgress | None:
        return self.lists.get(key)

    def write_page(self, key: str, records: list[Any], next_url: str | None) -> None:
        """Store one page of ``key`` (page files first, then the checkpoint line)."""
        progress = self.lists.setdefault(key, ListProgress())
        name = f"{self._counter:08d}.jsonl"
        self._counter += 1
        try:
            text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        except (RecursionError, ValueError) as exc:
            raise SourceError(f"{key}: an answer could not be stored ({type(exc).__name__})") from None
        data = text.encode()
        _atomic_write(self.root / "pages" / name, data)
        entry = {
            "list": key,
            "page": len(progress.pages) + 1,
            "file": name,
            "next": next_url,
            "rows": len(records),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        self._checkpoint.write(json.dumps(entry) + "\n")
        self._checkpoint.flush()
        progress.pages.append(entry)
        self.pages_written += 1

    def records(self, key: str) -> Iterator[Any]:
        """Every record of list ``key``, page by page."""
        progress = self.lists.get(key)
        for page in progress.pages if progress else []:
            with (self.root / "pages" / page["file"]).open(encoding="utf-8") as fh:
                for line in fh:
                    yield json.loads(line)

    def keys(self) -> list[str]:
        return sorted(self.lists)

    def content_hash(self) -> str:
        """sha256 of the run's input: its id and every page's hash, in list order."""
        digest = hashlib.sha256(self.run_id.encode())
        for key in self.keys():
            for page in self.lists[key].pages:
                digest.update(f"\0{key}\0{page['page']}\0{page['sha256']}".encode())
        return digest.hexdigest()

    def close(self) -> None:
        """Stop writing; the lock goes with it (and with the process, however it ends)."""
        self._checkpoint.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def remove(self) -> None:
        """Delete the run folder and its lock (after its batch committed)."""
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root.parent / f"{self.root.name}.lock").unlink(missing_ok=True)
        self.close()


def _lock(root: Path) -> IO[bytes]:
    """An exclusive lock on the run folder's name: two runs must not share one spool."""
    root.parent.mkdir(parents=True, exist_ok=True)
    handle = (root.parent / f"{root.name}.lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise WarehouseError("another Canvas API run for this source is in progress") from None
    return handle


def _read_meta(root: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((root / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and "run_id" in meta else None


def _verified_checkpoint(root: Path) -> dict[str, ListProgress]:
    """Checkpointed pages whose files are intact, each list cut at its first gap."""
    lists: dict[str, ListProgress] = {}
    broken: set[str] = set()
    try:
        lines = (root / CHECKPOINT_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # the line a kill cut short
        if not isinstance(entry, dict) or entry.get("list") in broken:
            continue
        key = str(entry.get("list"))
        progress = lists.setdefault(key, ListProgress())
        if entry.get("page") != len(progress.pages) + 1:
            continue
        if _sha256(root / "pages" / str(entry.get("file"))) != entry.get("sha256"):
            broken.add(key)
            continue
        progress.pages.append(entry)
    return {k: v for k, v in lists.items() if v.pages}


def _rewrite_checkpoint(root: Path, lists: dict[str, ListProgress]) -> None:
    # A clean file, so that new lines never follow a half-written one.
    text = "".join(json.dumps(p) + "\n" for lp in lists.values() for p in lp.pages)
    _atomic_write(root / CHECKPOINT_FILE, text.encode())
