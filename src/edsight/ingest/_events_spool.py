"""The on-disk spool of accepted live events: JSON lines, appended durably, claimed by ingest.

Layout under the spool folder (``EDSIGHT_HOME/spool/events`` by default)::

    events-<YYYYMMDDTHHMM>-p<pid>-<nnnn>.jsonl   segments being written (one per minute,
                                                 process and size step)
    claimed/                                     files an ingest is loading
    done/                                        files whose events are committed

Writers (the HTTP endpoint, any number of processes and threads) append whole
lines under an exclusive ``flock`` of the segment and fsync before they return, so
an acknowledged event is on disk. A write cut short by a crash can leave a torn
last line; the next writer of that segment cuts it off before appending, and a
reader never takes a final line without its newline. The torn bytes were never
acknowledged, so nothing acknowledged is lost.

The ingest *claims* a segment by renaming it into ``claimed/`` while holding its
lock. A writer that opened the segment before the rename sees, once it holds the
lock, that the path no longer names its file and moves on to a new segment, so
nothing is appended to a file after it was read. Claimed files move to ``done/``
only after the warehouse commit; a crash in between leaves them in ``claimed/``,
where the next ingest reads them again (and skips their events by id).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from edsight.errors import WarehouseError

log = logging.getLogger(__name__)

SEGMENT_BYTES = 64 << 20
SUFFIX = ".jsonl"
CLAIMED = "claimed"
DONE = "done"
_INGEST_LOCK = ".ingest.lock"
_SCAN = 1 << 16


class EventSpool:
    """A spool folder: append events (writers), claim and finish files (the ingest)."""

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._minute = ""
        self._seq = 0

    @property
    def claimed_dir(self) -> Path:
        return self.directory / CLAIMED

    @property
    def done_dir(self) -> Path:
        return self.directory / DONE

    # -- writing -----------------------------------------------------------------------

    def append(self, lines: Sequence[bytes]) -> Path:
        """Append whole lines (each ending in a newline) durably; return the segment written."""
        data = b"".join(lines)
        if not data.endswith(b"\n"):
            raise ValueError("spool lines must end with a newline")
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            minute = datetime.now(UTC).strftime("%Y%m%dT%H%M")
            if minute != self._minute:
                self._minute, self._seq = minute, 0
            while True:
                path = self.directory / f"events-{minute}-p{os.getpid()}-{self._seq:04d}{SUFFIX}"
                if _append_locked(path, data, self.segment_bytes):
                    return path
                self._seq += 1

    # -- reading (the ingest) -----------------------------------------------------------

    @contextmanager
    def ingest_lock(self) -> Iterator[None]:
        """Hold the spool for one ingest; a second concurrent ingest is refused."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / _INGEST_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WarehouseError(
                    f"another events ingest is running on {self.directory}; try again when it ends"
                ) from None
            yield
        finally:
            os.close(fd)

    def pending(self) -> list[Path]:
        """Spool files not yet claimed, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*" + SUFFIX) if p.is_file())

    def claim(self, max_bytes: int | None = None) -> list[Path]:
        """Claim files for one ingest: those a crashed ingest left claimed, then pending ones.

        Stops claiming once ``max_bytes`` are claimed (at least one file is always taken).
        """
        self.claimed_dir.mkdir(parents=True, exist_ok=True)
        claimed = sorted(p for p in self.claimed_dir.glob("*" + SUFFIX) if p.is_file())
        total = sum(p.stat().st_size for p in claimed)
        for path in self.pending():
            if max_bytes is not None and claimed and total >= max_bytes:
                break
            moved = _claim_one(path, self.claimed_dir)
            if moved is not None:
                claimed.append(moved)
                total += moved.stat().st_size
        _fsync_dir(self.claimed_dir)
        _fsync_dir(self.directory)
        return claimed

    def finish(self, paths: Sequence[Path]) -> None:
        """Move claimed files to ``done/`` (after their events were committed)."""
        if not paths:
            return
        self.done_dir.mkdir(parents=True, exist_ok=True)
        for path in paths:
            os.replace(path, _free_name(self.done_dir, path.name))
        _fsync_dir(self.done_dir)
        _fsync_dir(self.claimed_dir)


def split_lines(data: bytes) -> tuple[list[tuple[int, bytes]], bool]:
    """The complete, non-blank lines of spool file bytes with their 1-based numbers, and
    whether a torn last line (no newline: a write cut short) was left out."""
    parts = data.split(b"\n")
    tail = parts.pop()
    lines = [(number, line) for number, line in enumerate(parts, 1) if line.strip()]
    return lines, bool(tail.strip())


def _append_locked(path: Path, data: bytes, segment_bytes: int) -> bool:
    """Append to ``path`` under its lock; False when the segment was claimed or is full."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        mine = os.fstat(fd)
        try:
            now = os.stat(path)
        except FileNotFoundError:
            return False
        if (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev):
            return False  # claimed by an ingest between our open and our lock
        size = mine.st_size
        if size and size + len(data) > segment_bytes:
            return False
        if size:
            size = _cut_torn_tail(fd, size, path)
        _write_all(fd, data)
        os.fsync(fd)
        if size == 0:
            _fsync_dir(path.parent)  # the new file's name must survive a crash too
        return True
    finally:
        os.close(fd)  # releases the lock


def _cut_torn_tail(fd: int, size: int, path: Path) -> int:
    """Truncate a last line without its newline (a crashed write); return the new size."""
    if os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - _SCAN)
        block = os.pread(fd, end - start, start)
        at = block.rfind(b"\n")
        if at >= 0:
            cut = start + at + 1
            break
        end = start
    else:
        cut = 0
    os.ftruncate(fd, cut)
    log.warning("%s: cut off %d bytes of an interrupted write", path.name, size - cut)
    return cut


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _claim_one(path: Path, claimed_dir: Path) -> Path | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits for a writer in the middle of an append
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return None
        except FileNotFoundError:
            return None
        target = _free_name(claimed_dir, path.name)
        os.rename(path, target)
        return target
    finally:
        os.close(fd)


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/name.<n>.jsonl`` when that is taken."""
    target = folder / name
    n = 1
    while target.exists():
        target = folder / f"{name.removesuffix(SUFFIX)}.{n}{SUFFIX}"
        n += 1
    return target


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
