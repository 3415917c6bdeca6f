"""The governance database: one SQLite file per data home (WAL, synchronous=FULL).

SQLite rather than the DuckDB warehouse because this state is written on every
request (sessions, audit) by many processes, and the warehouse stays read-only
for the web.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edsight.config import Settings
from edsight.errors import WarehouseError

SCHEMA = """
CREATE TABLE IF NOT EXISTS account (
  account_id TEXT PRIMARY KEY,
  username TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  totp_secret TEXT,
  totp_last_counter INTEGER,
  disabled INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS account_grant (
  account_id TEXT NOT NULL REFERENCES account(account_id),
  role TEXT NOT NULL,
  target TEXT NOT NULL DEFAULT '',
  granted_at TEXT NOT NULL,
  PRIMARY KEY (account_id, role, target)
);
CREATE TABLE IF NOT EXISTS session (
  token_hash TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES account(account_id),
  created_at REAL NOT NULL,
  last_seen REAL NOT NULL,
  mfa INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS session_account ON session(account_id);
CREATE TABLE IF NOT EXISTS login_failure (
  username TEXT NOT NULL,
  client TEXT NOT NULL,
  at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failure_user ON login_failure(username, at);
CREATE INDEX IF NOT EXISTS login_failure_client ON login_failure(client, at);
CREATE TABLE IF NOT EXISTS caseload (
  account_id TEXT NOT NULL REFERENCES account(account_id),
  person_id TEXT NOT NULL,
  PRIMARY KEY (account_id, person_id)
);
CREATE TABLE IF NOT EXISTS directory_optout (
  person_id TEXT PRIMARY KEY,
  since TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
  seq INTEGER PRIMARY KEY,
  at TEXT NOT NULL,
  actor TEXT NOT NULL,
  role TEXT NOT NULL,
  action TEXT NOT NULL,
  what TEXT NOT NULL,
  person_refs TEXT NOT NULL,
  why TEXT,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS disclosure (
  disclosure_id TEXT NOT NULL,
  person_id TEXT NOT NULL,
  party TEXT NOT NULL,
  basis TEXT NOT NULL,
  fields TEXT NOT NULL,
  disclosed_at TEXT NOT NULL,
  actor TEXT NOT NULL,
  PRIMARY KEY (disclosure_id, person_id)
);
CREATE INDEX IF NOT EXISTS disclosure_person ON disclosure(person_id);
CREATE TABLE IF NOT EXISTS research_release (
  release_id TEXT PRIMARY KEY,
  created_at TEXT NOT NULL,
  actor TEXT NOT NULL,
  party TEXT NOT NULL,
  basis TEXT NOT NULL,
  tables TEXT NOT NULL,
  rows INTEGER NOT NULL,
  key_fingerprint TEXT NOT NULL
);
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode; callers open transactions with :func:`transaction`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # One connection per thread (see GovernanceStore); closed from any thread at shutdown.
        con = sqlite3.connect(str(path), isolation_level=None, timeout=30.0, check_same_thread=False)
    except sqlite3.Error as exc:
        raise WarehouseError(f"cannot open governance database {path}: {exc}") from exc
    con.execute("PRAGMA journal_mode=WAL")
    # Acknowledged audit rows and revocations must survive a power cut.
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA foreign_keys=ON")
    # Freed pages are overwritten, so deleted rows do not linger in the file.
    con.execute("PRAGMA secure_delete=ON")
    return con


@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on any error)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def open_store_db(settings: Settings) -> sqlite3.Connection:
    con = connect(settings.governance_path)
    con.executescript(SCHEMA)
    return con


def secret_key(settings: Settings, name: str) -> bytes:
    """A 32-byte key from ``HOME/secrets/<name>.key``, created 0600 on first use."""
    folder = settings.secrets_path
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{name}.key"
    if not path.exists():
        key = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first; read theirs
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(key.hex().encode())
                fh.flush()
                os.fsync(fh.fileno())
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise WarehouseError(f"{path}: expected a hex key") from exc
    if len(key) < 16:
        raise WarehouseError(f"{path}: key shorter than 128 bits")
    return key
