"""Audit chain and anchor (GOVERNANCE.md rows 6, 7 and 8)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edsight.governance.audit import AuditEvent, AuditLog, DisclosureLedger
from edsight.governance.identity import GovernanceStore

STUDENTS = [f"stu-{i:03d}" for i in range(40)]
NAMES = {p: f"Name{i}Surname" for i, p in enumerate(STUDENTS)}
N_ENTRIES = 30


def _read(rng: random.Random) -> AuditEvent:
    ids = tuple(rng.sample(STUDENTS, rng.randint(1, 4)))
    return AuditEvent(
        actor=f"acct-{rng.randint(1, 5)}",
        role=rng.choice(["teacher", "counselor", "principal"]),
        action="view_student",
        what=f"/students/{ids[0]}",
        person_ids=ids,
        why="instruction",
    )


def test_reads_are_logged_in_utc_without_identifiers(store: GovernanceStore) -> None:
    log = AuditLog(store)
    rng = random.Random(7)
    events = [_read(rng) for _ in range(100)]
    before = datetime.now(UTC)
    seqs = [log.record(e) for e in events]
    assert seqs == list(range(1, 101))
    frame = log.entries()
    assert len(frame) == 100
    for at in frame["at"]:
        stamp = datetime.fromisoformat(at)
        assert stamp.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC)
    assert list(frame["actor"]) == [e.actor for e in events]
    assert [len(r) for r in frame["person_refs"]] == [len(e.person_ids) for e in events]
    assert frame["person_refs"].iloc[0][0] == log.pseudonym(events[0].person_ids[0])
    text = frame.to_json()
    for pid in STUDENTS:
        assert pid not in text
        assert NAMES[pid] not in text
    raw = store.settings.governance_path.read_bytes()
    wal = store.settings.governance_path.with_name("governance.sqlite3-wal")
    raw += wal.read_bytes() if wal.exists() else b""
    assert not any(pid.encode() in raw for pid in STUDENTS)
    assert log.verify().ok


@pytest.fixture
def filled(store: GovernanceStore) -> Iterator[AuditLog]:
    log = AuditLog(store)
    rng = random.Random(3)
    for _ in range(N_ENTRIES):
        log.record(_read(rng))
    assert log.verify().ok
    return log


tampering = st.one_of(
    st.tuples(
        st.just("edit"), st.integers(1, N_ENTRIES), st.sampled_from(["actor", "what", "at", "role", "why"])
    ),
    st.tuples(st.just("refs"), st.integers(1, N_ENTRIES), st.just("")),
    st.tuples(st.just("delete"), st.integers(1, N_ENTRIES), st.just("")),
    st.tuples(st.just("swap"), st.integers(1, N_ENTRIES - 1), st.just("")),
    st.tuples(st.just("truncate"), st.integers(1, 5), st.just("")),
    st.tuples(st.just("rehash"), st.integers(1, N_ENTRIES), st.just("")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=tampering)
def test_any_tampering_is_detected(filled: AuditLog, change: tuple[str, int, str]) -> None:
    kind, seq, column = change
    con = filled.store.connection
    con.execute("BEGIN")
    try:
        if kind == "edit":
            con.execute(f"UPDATE audit_log SET {column} = coalesce({column}, '') || 'x' WHERE seq = ?", [seq])
        elif kind == "refs":
            con.execute("UPDATE audit_log SET person_refs = '[]' WHERE seq = ?", [seq])
        elif kind == "delete":
            con.execute("DELETE FROM audit_log WHERE seq = ?", [seq])
        elif kind == "swap":  # reorder: exchange the contents of two neighbouring rows
            con.execute("UPDATE audit_log SET seq = -1 WHERE seq = ?", [seq])
            con.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", [seq, seq + 1])
            con.execute("UPDATE audit_log SET seq = ? WHERE seq = -1", [seq + 1])
        elif kind == "truncate":  # drop the newest entries: the chain alone still links up
            con.execute("DELETE FROM audit_log WHERE seq > ?", [N_ENTRIES - seq])
        elif kind == "rehash":  # edit and recompute this entry's hash: the next link breaks
            con.execute("UPDATE audit_log SET actor = 'intruder', hash = ? WHERE seq = ?", ["f" * 64, seq])
        result = filled.verify()
    finally:
        con.execute("ROLLBACK")
    assert not result.ok
    if kind in ("edit", "refs", "delete", "rehash"):
        # The broken row is named; deleting the newest entry shows as a truncation.
        assert any(p.seq in (seq, seq + 1) or p.kind == "truncated" for p in result.problems)
    if kind == "truncate":
        assert [p.kind for p in result.problems] == ["truncated"]
    assert filled.verify().ok


def test_truncation_and_anchor_forgery_are_detected(filled: AuditLog) -> None:
    anchor = filled.anchor_path
    original = anchor.read_text()
    data = json.loads(original)
    data["seq"] -= 3  # a forger moves the anchor back to hide a truncation
    anchor.write_text(json.dumps(data))
    assert [p.kind for p in filled.verify().problems] == ["anchor"]
    anchor.unlink()
    assert [p.kind for p in filled.verify().problems] == ["anchor"]
    anchor.write_text(original)
    assert filled.verify().ok
    assert filled.verify().anchored_seq == N_ENTRIES


def test_free_text_ids_are_pseudonymised(store: GovernanceStore) -> None:
    log = AuditLog(store)
    log.record(
        AuditEvent("a", "teacher", "view_student", "/students/stu-001?x=stu-0011", ("stu-001", "stu-0011"))
    )
    what = log.entries()["what"].iloc[0]
    assert "stu-001" not in what
    assert what == f"/students/{log.pseudonym('stu-001')}?x={log.pseudonym('stu-0011')}"


def test_disclosure_ledger_per_student(store: GovernanceStore) -> None:
    ledger = DisclosureLedger(store)
    first = ledger.record(
        party="State DOE",
        basis="99.31(a)(3) audit",
        fields=["grades", "attendance"],
        person_ids=["stu-001", "stu-002"],
        actor="admin",
    )
    ledger.record(
        party="Research U",
        basis="99.31(a)(6) study",
        fields=["scores"],
        person_ids=["stu-002"],
        actor="admin",
    )
    one = ledger.for_student("stu-001")
    assert list(one["party"]) == ["State DOE"]
    assert one["disclosure_id"].iloc[0] == first
    assert one["fields"].iloc[0] == ["attendance", "grades"]
    assert list(ledger.for_student("stu-002")["party"]) == ["State DOE", "Research U"]
    assert ledger.for_student("stu-999").empty
