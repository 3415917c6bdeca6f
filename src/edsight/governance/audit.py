"""The audit trail (hash chain + external anchor) and the FERPA 99.32 disclosure ledger.

Each audit entry stores the SHA-256 of the previous entry's hash and its own
canonical JSON, so editing, deleting or reordering any entry breaks the chain.
A chain alone cannot show that its newest entries were cut off, so after every
append the head (last seq and hash) is written, with an HMAC, to
``HOME/audit.anchor`` outside both databases; :meth:`AuditLog.verify` checks the
chain against it.

Entries never hold student identifiers: person ids are stored as keyed
HMAC pseudonyms (a subkey of the audit key), and any person id found in the
free-text fields is replaced by its pseudonym. Whoever holds the key and a
student's id can still find that student's entries; after a deletion the id is
gone from everywhere else, so the pseudonyms point at nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from edsight.errors import InvalidInput, WarehouseError
from edsight.governance import _db
from edsight.governance._keys import audit_key, derive, pseudonym
from edsight.governance.identity import GovernanceStore

log = logging.getLogger(__name__)

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEvent:
    """One audited access: who, in which role, did what, to which students, and why."""

    actor: str
    role: str
    action: str
    what: str
    person_ids: tuple[str, ...] = ()
    why: str | None = None


@dataclass(frozen=True)
class AuditProblem:
    """Where the chain broke (``seq`` None: the anchor itself) and how."""

    seq: int | None
    kind: str  # content | link | gap | truncated | anchor
    detail: str

    def __str__(self) -> str:
        where = "anchor" if self.seq is None else f"seq {self.seq}"
        return f"{where}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class AuditVerification:
    entries: int
    anchored_seq: int | None
    problems: tuple[AuditProblem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "anchored_seq": self.anchored_seq,
            "problems": [{"seq": p.seq, "kind": p.kind, "detail": p.detail} for p in self.problems],
        }


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def entry_hash(prev_hash: str, body: dict[str, Any]) -> str:
    """The hash of one entry: SHA-256 over the previous hash and the canonical body."""
    return hashlib.sha256((prev_hash + "\n" + canonical_json(body)).encode()).hexdigest()


def _body(
    seq: int, at: str, actor: str, role: str, action: str, what: str, refs: list[str], why: str | None
) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": at,
        "actor": actor,
        "role": role,
        "action": action,
        "what": what,
        "person_refs": refs,
        "why": why,
    }


class AuditLog:
    """The hash-chained audit log in the governance database."""

    def __init__(self, store: GovernanceStore) -> None:
        self.store = store
        self.anchor_path: Path = store.settings.audit_anchor_path
        key = audit_key(store.settings)
        self._anchor_key = derive(key, "audit-anchor")
        self._pseudo_key = derive(key, "audit-pseudonym")

    def pseudonym(self, person_id: str) -> str:
        """What the log stores for ``person_id`` (to find a student's entries)."""
        return pseudonym(self._pseudo_key, person_id)

    def record(self, event: AuditEvent) -> int:
        """Append one entry; return its seq. The anchor moves to the new head."""
        for name in ("actor", "role", "action", "what"):
            if not getattr(event, name):
                raise InvalidInput(f"audit event: {name} is empty")
        refs = [self.pseudonym(p) for p in event.person_ids]
        what, why = event.what, event.why
        # Longest first, so an id that is a prefix of another is not replaced inside it.
        for pid in sorted(set(event.person_ids), key=len, reverse=True):
            what = what.replace(pid, self.pseudonym(pid))
            why = why.replace(pid, self.pseudonym(pid)) if why else why
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        con = self.store.connection
        with _db.transaction(con):
            last = con.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (1, GENESIS) if last is None else (int(last[0]) + 1, str(last[1]))
            body = _body(seq, at, event.actor, event.role, event.action, what, refs, why)
            digest = entry_hash(prev, body)
            con.execute(
                "INSERT INTO audit_log (seq, at, actor, role, action, what, person_refs, why, "
                "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    seq,
                    at,
                    event.actor,
                    event.role,
                    event.action,
                    what,
                    canonical_json(refs),
                    why,
                    prev,
                    digest,
                ],
            )
        self._advance_anchor(seq, digest)
        return seq

    def entries(self) -> pd.DataFrame:
        """The log as a frame (person_refs decoded to lists of pseudonyms)."""
        frame = pd.read_sql_query("SELECT * FROM audit_log ORDER BY seq", self.store.connection)
        frame["person_refs"] = frame["person_refs"].map(json.loads)
        return frame

    def verify(self) -> AuditVerification:
        """Check every link and content hash, and the head against the external anchor."""
        problems: list[AuditProblem] = []
        # The anchor first: entries appended meanwhile only make the log longer than it.
        anchor = self._read_anchor(problems)
        cursor = self.store.connection.execute(
            "SELECT seq, at, actor, role, action, what, person_refs, why, prev_hash, hash "
            "FROM audit_log ORDER BY seq"
        )
        expected, prev, count = 1, GENESIS, 0
        hashes: dict[int, str] = {}
        while rows := cursor.fetchmany(10_000):
            for seq, at, actor, role, action, what, refs_json, why, prev_hash, digest in rows:
                count += 1
                if seq != expected:
                    problems.append(
                        AuditProblem(seq, "gap", f"expected seq {expected}: entries deleted or reordered")
                    )
                if prev_hash != prev:
                    problems.append(AuditProblem(seq, "link", "prev_hash does not match the entry before"))
                try:
                    refs = json.loads(refs_json)
                except (TypeError, ValueError):
                    refs = refs_json
                body = _body(seq, at, actor, role, action, what, refs, why)
                if entry_hash(prev_hash, body) != digest:
                    problems.append(AuditProblem(seq, "content", "entry altered (hash does not match)"))
                if anchor is not None and seq == anchor[0]:
                    hashes[seq] = digest
                prev, expected = digest, seq + 1
        if anchor is not None:
            anchored_seq, head = anchor
            if anchored_seq > expected - 1:
                problems.append(
                    AuditProblem(
                        None,
                        "truncated",
                        f"anchor records seq {anchored_seq} but the log ends at {expected - 1}",
                    )
                )
            elif anchored_seq > 0 and hashes.get(anchored_seq) != head:
                problems.append(AuditProblem(anchored_seq, "anchor", "entry differs from the anchored head"))
        elif count and not self.anchor_path.exists():
            problems.append(AuditProblem(None, "anchor", f"{self.anchor_path.name} missing"))
        return AuditVerification(count, anchor[0] if anchor else None, tuple(problems))

    # -- the anchor --------------------------------------------------------------------

    def _mac(self, seq: int, head: str) -> str:
        return hmac.new(self._anchor_key, f"{seq}:{head}".encode(), hashlib.sha256).hexdigest()

    def _read_anchor(self, problems: list[AuditProblem]) -> tuple[int, str] | None:
        if not self.anchor_path.exists():
            return None
        try:
            data = json.loads(self.anchor_path.read_text())
            seq, head, mac = int(data["seq"]), str(data["head"]), str(data["mac"])
        except (OSError, ValueError, KeyError, TypeError):
            problems.append(AuditProblem(None, "anchor", f"{self.anchor_path.name} unreadable"))
            return None
        if not hmac.compare_digest(mac, self._mac(seq, head)):
            problems.append(AuditProblem(None, "anchor", f"{self.anchor_path.name} signature invalid"))
            return None
        return seq, head

    def _advance_anchor(self, seq: int, head: str) -> None:
        """Write the new head unless another process already anchored a later one."""
        path = self.anchor_path
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = path.with_suffix(".lock")
        try:
            with lock_path.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                current = self._read_anchor([])
                if current is not None and current[0] >= seq:
                    return
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(canonical_json({"seq": seq, "head": head, "mac": self._mac(seq, head)}))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
                dir_fd = os.open(path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            raise WarehouseError(f"cannot write the audit anchor {path}: {exc}") from exc


class DisclosureLedger:
    """Who received which student's records, when, on what basis (FERPA 34 CFR 99.32)."""

    def __init__(self, store: GovernanceStore) -> None:
        self.store = store

    def record(
        self,
        *,
        party: str,
        basis: str,
        fields: Sequence[str],
        person_ids: Sequence[str],
        actor: str,
    ) -> str:
        """One disclosure to ``party`` of ``fields`` for each of ``person_ids``; returns its id."""
        if not party or not basis:
            raise InvalidInput("disclosure: party and legal basis are required")
        disclosure_id = uuid.uuid4().hex
        at = datetime.now(UTC).isoformat(timespec="seconds")
        fields_json = canonical_json(sorted(set(fields)))
        rows = [(disclosure_id, p, party, basis, fields_json, at, actor) for p in sorted(set(person_ids))]
        with _db.transaction(self.store.connection) as con:
            con.executemany(
                "INSERT INTO disclosure (disclosure_id, person_id, party, basis, fields, "
                "disclosed_at, actor) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return disclosure_id

    def for_student(self, person_id: str) -> pd.DataFrame:
        """The student's ledger: disclosure_id, party, basis, fields (list), disclosed_at."""
        frame = pd.read_sql_query(
            "SELECT disclosure_id, party, basis, fields, disclosed_at FROM disclosure "
            "WHERE person_id = ? ORDER BY disclosed_at, rowid",
            self.store.connection,
            params=[person_id],
        )
        frame["fields"] = frame["fields"].map(json.loads)
        return frame


__all__ = [
    "GENESIS",
    "AuditEvent",
    "AuditLog",
    "AuditProblem",
    "AuditVerification",
    "DisclosureLedger",
    "canonical_json",
    "entry_hash",
]
