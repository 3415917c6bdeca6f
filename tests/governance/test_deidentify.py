"""Research extracts and directory rosters (GOVERNANCE.md rows 12 and 13)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from edsight.config import Settings
from edsight.errors import InvalidInput
from edsight.governance.audit import AuditLog, DisclosureLedger
from edsight.governance.deidentify import (
    new_release_key,
    release_extract,
    releases,
    research_extract,
    roster_export,
)
from edsight.governance.identity import GovernanceStore
from edsight.store.warehouse import Warehouse

FRAME = pd.DataFrame(
    {
        "person_id": ["p1", "p2", "p3"],
        "given_name": ["Ann", "Bo", "Cy"],
        "family_name": ["Lee", "Ng", "Ox"],
        "birth_date": ["2010-01-01", "2010-02-02", "2010-03-03"],
        "local_id": ["1001", "1002", "1003"],
        "Email": ["a@x.org", "b@x.org", "c@x.org"],
        "address": ["1 Elm St", "2 Oak St", "3 Ash St"],
        "grade_level": [6, 7, 8],
        "score": [410.0, 420.0, 430.0],
    }
)


def test_research_ids_are_keyed_per_release_and_identifiers_dropped() -> None:
    a = research_extract(FRAME, key=new_release_key())
    b = research_extract(FRAME, key=new_release_key())
    assert list(a.columns) == ["person_id", "grade_level", "score"]
    assert a["person_id"].is_unique
    assert len(set(a["person_id"]) & set(b["person_id"])) == 0
    plain = set()
    for value in [*FRAME["person_id"], *FRAME["local_id"]]:
        for algo in ("sha256", "sha1", "md5"):
            digest = hashlib.new(algo, value.encode()).hexdigest()
            plain |= {digest, digest[:32]}
        plain.add(value)
    for rid in a["person_id"]:
        assert rid not in plain
        assert rid.removeprefix("r_") not in plain
    key = new_release_key()  # the same key gives the same ids (one release, several tables)
    assert (
        research_extract(FRAME, key=key)["person_id"].tolist()
        == research_extract(FRAME, key=key)["person_id"].tolist()
    )
    assert (a["score"] == FRAME["score"]).all()
    with pytest.raises(InvalidInput, match="128 bits"):
        research_extract(FRAME, key=b"short")


@pytest.fixture
def loaded(warehouse: Warehouse, tiny_batch: Path, make_batch: Callable[..., Path]) -> Warehouse:
    warehouse.load_directory(tiny_batch)
    enrollments = [
        {
            "person_id": f"p{i}",
            "school_id": "s1" if i < 4 else "s2",
            "school_year": 2024,
            "grade_level": 3,
            "entry_date": "2024-08-20",
        }
        for i in range(1, 7)
    ]
    warehouse.load_directory(make_batch("enr", school_enrollment=enrollments))
    with warehouse.connect() as con:
        con.execute("UPDATE person SET directory_opt_out = true WHERE person_id = 'p6'")
    return warehouse


def test_roster_export_drops_opted_out_students(loaded: Warehouse, settings: Settings) -> None:
    store = GovernanceStore(settings)
    with loaded.connect(read_only=True) as con:
        assert roster_export(con, store)["person_id"].tolist() == [f"p{i}" for i in range(1, 6)]
        store.set_directory_optout("p2", True)
        roster = roster_export(con, store)
        assert "p2" not in set(roster["person_id"])
        assert "p6" not in set(roster["person_id"])
        assert roster_export(con, store, school_id="s1")["person_id"].tolist() == ["p1", "p3"]
        store.set_directory_optout("p2", False)
        assert "p2" in set(roster_export(con, store)["person_id"])
    store.close()


def test_release_is_ledgered(loaded: Warehouse, settings: Settings, tmp_path: Path) -> None:
    store = GovernanceStore(settings)
    with loaded.connect(read_only=True) as con:
        first = release_extract(
            con, store, tables=["person", "attendance"], out_dir=tmp_path / "r1", actor="admin", party="Uni"
        )
        second = release_extract(
            con, store, tables=["person"], out_dir=tmp_path / "r2", actor="admin", party="Uni"
        )
    person1 = pd.read_parquet(tmp_path / "r1" / "person.parquet")
    person2 = pd.read_parquet(tmp_path / "r2" / "person.parquet")
    attendance1 = pd.read_parquet(tmp_path / "r1" / "attendance.parquet")
    assert {"given_name", "family_name", "birth_date", "local_id"}.isdisjoint(person1.columns)
    assert set(attendance1["person_id"]) <= set(person1["person_id"])  # linkable within a release
    assert set(person1["person_id"]).isdisjoint(person2["person_id"])  # not across releases
    assert first["key_fingerprint"] != second["key_fingerprint"]
    ledger = releases(store)
    assert ledger["release_id"].tolist() == [first["release_id"], second["release_id"]]
    assert ledger["rows"].tolist() == [6 + 4, 6]
    assert len(DisclosureLedger(store).for_student("p1")) == 2
    entries = AuditLog(store).entries()
    assert entries["action"].tolist() == ["export_deidentified"] * 2
    with loaded.connect(read_only=True) as con, pytest.raises(InvalidInput, match="unknown table"):
        release_extract(con, store, tables=["secrets"], out_dir=tmp_path / "r3", actor="a", party="p")
    store.close()
