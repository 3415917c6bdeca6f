"""Deletion down to the bytes (GOVERNANCE.md row 14)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edsight.config import Settings
from edsight.governance.audit import AuditLog, DisclosureLedger
from edsight.governance.identity import GovernanceStore, Grant
from edsight.governance.retention import delete_student
from edsight.store.lake import export_lake
from edsight.store.warehouse import Warehouse

VICTIM = "stu-ZQ-4711"
SENTINEL = "Zebulon-SENTINEL-Quaxley"


def _files(settings: Settings) -> bytes:
    data = b""
    for path in sorted(settings.home.rglob("*")):
        if path.is_file() and "secrets" not in path.parts:
            data += path.read_bytes()
    return data


@pytest.fixture
def populated(warehouse: Warehouse, make_batch: Callable[..., Path]) -> Warehouse:
    people = [
        {
            "person_id": p,
            "role": "student",
            "given_name": name,
            "family_name": "Family",
            "birth_date": "2012-03-04",
            "local_id": lid,
            "directory_opt_out": "false",
        }
        for p, name, lid in ((VICTIM, SENTINEL, "88001"), ("stu-keep", "Keeper", "88002"))
    ]
    orgs = [
        {"org_id": "d1", "name": "D", "org_type": "district"},
        {"org_id": "s1", "name": "S", "org_type": "school", "parent_org_id": "d1"},
    ]
    attendance = [
        {"person_id": VICTIM, "school_id": "s1", "date": "2024-09-03", "status": "absent_excused"},
        {"person_id": "stu-keep", "school_id": "s1", "date": "2024-09-03", "status": "tardy"},
        # Invalid status: goes to quarantine with the raw record, which names the student.
        {"person_id": VICTIM, "school_id": "s1", "date": "2024-09-04", "status": f"gone {SENTINEL}"},
    ]
    result = warehouse.load_directory(
        make_batch("b", organization=orgs, person=people, attendance=attendance)
    )
    assert result.rows_quarantined == 1
    with warehouse.connect() as con:
        con.execute(
            "INSERT INTO risk_score VALUES (?, NULL, DATE '2024-10-01', 'will_dropout', 0.7, 'm1', ?)",
            [VICTIM, f'{{"note": "{SENTINEL}"}}'],
        )
        con.execute("INSERT INTO id_map VALUES ('sis', 'person', 'SIS-ZQ-99', ?)", [VICTIM])
        con.execute("INSERT INTO id_map VALUES ('sis', 'person', 'SIS-KEEP', 'stu-keep')")
        con.execute(
            "INSERT INTO quarantine VALUES ('b0', 'enrollment', 'x.csv', 7, NULL, 'bad', ?)",
            ['{"sourcedId": "SIS-ZQ-99", "note": "raw"}'],
        )
        # Bulk churn so the victim's rows sit in blocks of their own, as in a real file.
        con.execute(
            "INSERT INTO event_log SELECT 'e' || i, 'src', 'view', TIMESTAMP '2024-01-01', "
            "TIMESTAMP '2024-01-01' "
            "FROM range(20000) t(i)"
        )
    export_lake(warehouse, warehouse.settings.lake_path)
    return warehouse


def test_delete_student_leaves_no_bytes(populated: Warehouse, settings: Settings) -> None:
    store = GovernanceStore(settings)
    ledger = DisclosureLedger(store)
    ledger.record(
        party="DOE", basis="audit", fields=["attendance"], person_ids=[VICTIM, "stu-keep"], actor="a"
    )
    store.set_directory_optout(VICTIM, True)
    parent = store.create_account("parent-of-victim", "long-enough-passw0rd", [Grant("parent", VICTIM)])
    counselor = store.create_account("cora", "long-enough-passw0rd", [Grant("counselor")])
    store.set_caseload(counselor, [VICTIM, "stu-keep"])
    log = AuditLog(store)
    from edsight.governance.audit import AuditEvent

    log.record(AuditEvent("cora", "counselor", "view_student", f"/students/{VICTIM}", (VICTIM,)))
    before = _files(settings)
    assert SENTINEL.encode() in before
    assert VICTIM.encode() in before

    certificate = delete_student(populated, store, VICTIM, actor="dpo")

    after = _files(settings)
    assert SENTINEL.encode() not in after
    assert VICTIM.encode() not in after
    assert b"SIS-ZQ-99" not in after
    assert b"88001" not in after
    assert (
        not Path(str(populated.path) + ".wal").exists()
        or SENTINEL.encode() not in Path(str(populated.path) + ".wal").read_bytes()
    )
    deleted = certificate["warehouse_rows_deleted"]
    assert deleted["person"] == 1
    assert deleted["attendance"] == 1
    assert deleted["risk_score"] == 1
    assert deleted["id_map"] == 1
    assert deleted["quarantine"] == 2
    assert certificate["governance_rows_deleted"] == {
        "caseload": 1,
        "directory_optout": 1,
        "disclosure": 1,
        "account_grant": 1,
    }
    assert certificate["lake_files_rewritten"] >= 2
    # Everyone else is untouched.
    counts = populated.counts()
    assert counts["person"] == 1
    assert counts["attendance"] == 1
    assert counts["event_log"] == 20000
    assert counts["id_map"] == 1
    assert len(DisclosureLedger(store).for_student("stu-keep")) == 1
    assert store.caseload(counselor) == {"stu-keep"}
    assert store.grants(parent) == frozenset()
    # The certificate closes the chain, which still verifies.
    entries = log.entries()
    assert entries["action"].iloc[-1] == "delete_student"
    assert entries["seq"].iloc[-1] == certificate["audit_seq"]
    assert log.verify().ok
    store.close()


def test_delete_unknown_student_still_certifies(populated: Warehouse, settings: Settings) -> None:
    store = GovernanceStore(settings)
    certificate = delete_student(populated, store, "nobody", actor="dpo")
    assert certificate["warehouse_rows_deleted"] == {}
    assert populated.counts()["person"] == 2
    store.close()
