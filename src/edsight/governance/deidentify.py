"""De-identified research extracts (FERPA 34 CFR 99.31(b)) and directory rosters (99.37).

Research ids are keyed HMAC-SHA256 pseudonyms under a key drawn fresh for each
release: the same student gets unrelated ids in two releases, and without the
key an id can be neither reversed nor recomputed from a student number. Direct
identifiers (names, birth date, address, e-mail, phone, student and state
numbers, source ids) are dropped. The key is not stored; the release ledger
keeps a fingerprint of it, so a key handed back later can be recognised.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from edsight.errors import InvalidInput
from edsight.governance import _db
from edsight.governance.audit import AuditEvent, AuditLog, DisclosureLedger, canonical_json
from edsight.governance.identity import GovernanceStore
from edsight.schema import CANONICAL, WAREHOUSE_TABLES
from edsight.sql import quote_ident

# Column names that hold direct identifiers whatever table they come from, beside the
# schema's own pii columns.
DIRECT_IDENTIFIERS: frozenset[str] = frozenset(
    {
        "name",
        "full_name",
        "given_name",
        "family_name",
        "first_name",
        "last_name",
        "middle_name",
        "sortable_name",
        "short_name",
        "preferred_name",
        "birth_date",
        "birthdate",
        "date_of_birth",
        "dob",
        "address",
        "street",
        "street_address",
        "postal_code",
        "zip",
        "zip_code",
        "email",
        "email_address",
        "phone",
        "phone_number",
        "student_number",
        "student_id_number",
        "local_id",
        "state_id",
        "state_student_id",
        "ssn",
        "sis_id",
        "sis_user_id",
        "login_id",
        "source_id",
    }
) | frozenset(c.name for t in CANONICAL.values() for c in t.columns if c.pii)

# Columns that refer to a person, by table (foreign keys to person, plus staff references).
PERSON_REF_COLUMNS: frozenset[str] = frozenset(
    {"person_id", "owner_id", "recipient_id", "actor_id", "edsight_id"}
) | frozenset(
    col for t in CANONICAL.values() for fk in t.foreign_keys if fk.table == "person" for col in fk.columns
)

RELEASE_KEY_BYTES = 32


def new_release_key() -> bytes:
    """A fresh 256-bit key for one release."""
    return secrets.token_bytes(RELEASE_KEY_BYTES)


def key_fingerprint(key: bytes) -> str:
    return hmac.new(key, b"edsight:release-fingerprint", hashlib.sha256).hexdigest()[:16]


def research_id(key: bytes, value: str) -> str:
    """The research pseudonym of one id under a release key."""
    return "r_" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def research_extract(
    frame: pd.DataFrame,
    *,
    key: bytes,
    id_cols: Sequence[str] = ("person_id",),
    drop_identifiers: bool = True,
) -> pd.DataFrame:
    """``frame`` with ``id_cols`` replaced by keyed pseudonyms and direct identifiers dropped."""
    if len(key) < 16:
        raise InvalidInput("research_extract: the release key must have at least 128 bits")
    missing = [c for c in id_cols if c not in frame.columns]
    if missing:
        raise InvalidInput(f"research_extract: no id column(s) {', '.join(missing)}")
    out = frame.copy()
    for col in id_cols:
        values = out[col]
        uniques = values.dropna().astype(str).unique()
        mapping = {v: research_id(key, v) for v in uniques}
        out[col] = values.astype("string").map(mapping).astype("object")
    if drop_identifiers:
        drop = [c for c in out.columns if c.lower() in DIRECT_IDENTIFIERS and c not in id_cols]
        out = out.drop(columns=drop)
    return out


def drop_opted_out(
    frame: pd.DataFrame, opted_out: Iterable[str], *, id_col: str = "person_id"
) -> pd.DataFrame:
    """``frame`` without the rows of students who opted out of directory information."""
    return frame[~frame[id_col].astype(str).isin(set(opted_out))].reset_index(drop=True)


def roster_export(
    con: duckdb.DuckDBPyConnection, store: GovernanceStore, *, school_id: str | None = None
) -> pd.DataFrame:
    """A directory roster (name, school, grade) without opted-out students.

    A student is left out when the governance store holds an opt-out for them or the
    warehouse's ``person.directory_opt_out`` is set by the source system.
    """
    where = "p.role = 'student' AND NOT coalesce(p.directory_opt_out, false)"
    params: list[str] = []
    if school_id is not None:
        where += " AND se.school_id = ?"
        params.append(school_id)
    frame = con.execute(
        "SELECT p.person_id, p.given_name, p.family_name, se.school_id, se.grade_level "  # noqa: S608
        "FROM person p JOIN (SELECT person_id, school_id, grade_level, row_number() OVER "
        "(PARTITION BY person_id ORDER BY school_year DESC, entry_date DESC) AS k "
        "FROM school_enrollment) se ON se.person_id = p.person_id AND se.k = 1 "
        f"WHERE {where} ORDER BY p.family_name, p.given_name, p.person_id",
        params,
    ).df()
    return drop_opted_out(frame, store.directory_optouts())


def release_extract(
    con: duckdb.DuckDBPyConnection,
    store: GovernanceStore,
    *,
    tables: Sequence[str],
    out_dir: Path,
    actor: str,
    party: str,
    basis: str = "34 CFR 99.31(b)(2) research, de-identified with a record code",
) -> dict[str, object]:
    """Write a de-identified extract of warehouse ``tables`` under one new key; ledger it.

    The release goes to the release ledger (id, party, basis, tables, rows, key
    fingerprint), to each included student's disclosure ledger, and to the audit log.
    """
    unknown = [t for t in tables if t not in WAREHOUSE_TABLES]
    if unknown or not tables:
        raise InvalidInput(
            f"extract: unknown table(s) {', '.join(unknown) or '(none given)'}; "
            f"expected warehouse tables such as {', '.join(list(CANONICAL)[:6])}"
        )
    key = new_release_key()
    release_id = uuid.uuid4().hex[:16]
    out_dir.mkdir(parents=True, exist_ok=True)
    students: set[str] = set()
    fields: set[str] = set()
    rows = 0
    written: dict[str, int] = {}
    for table in tables:
        frame = con.sql(f"SELECT * FROM {quote_ident(table)}").df()  # noqa: S608
        id_cols = [c for c in frame.columns if c in PERSON_REF_COLUMNS]
        if "person_id" in frame.columns:
            students.update(frame["person_id"].dropna().astype(str))
        extract = research_extract(frame, key=key, id_cols=id_cols)
        partial = out_dir / f".{table}.parquet.partial"
        extract.to_parquet(partial, index=False)
        partial.replace(out_dir / f"{table}.parquet")
        written[table] = len(extract)
        rows += len(extract)
        fields.update(f"{table}.{c}" for c in extract.columns)
    at = datetime.now(UTC).isoformat(timespec="seconds")
    with _db.transaction(store.connection) as sq:
        sq.execute(
            "INSERT INTO research_release VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [release_id, at, actor, party, basis, canonical_json(written), rows, key_fingerprint(key)],
        )
    DisclosureLedger(store).record(
        party=party, basis=basis, fields=sorted(fields), person_ids=sorted(students), actor=actor
    )
    AuditLog(store).record(
        AuditEvent(
            actor=actor,
            role="governance",
            action="export_deidentified",
            what=f"release {release_id}: {', '.join(f'{t}={n}' for t, n in written.items())}",
            person_ids=tuple(sorted(students)),
            why=basis,
        )
    )
    return {
        "release_id": release_id,
        "out": str(out_dir),
        "tables": written,
        "students": len(students),
        "key_fingerprint": key_fingerprint(key),
    }


def releases(store: GovernanceStore) -> pd.DataFrame:
    """The release ledger."""
    return pd.read_sql_query("SELECT * FROM research_release ORDER BY created_at, rowid", store.connection)


__all__ = [
    "DIRECT_IDENTIFIERS",
    "PERSON_REF_COLUMNS",
    "drop_opted_out",
    "key_fingerprint",
    "new_release_key",
    "release_extract",
    "releases",
    "research_extract",
    "research_id",
    "roster_export",
]
